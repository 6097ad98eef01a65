"""Third-party exceptions translated into edgekit's, from one table (httpx's ``map_exceptions`` is the model).

Each row of :data:`TABLE` is one (library, phase): what the library raises there, and which edgekit error
(with what message) that becomes. A call site names its row and the fields its message needs::

    with translated("onnxruntime", "load", path=path):
        session = ort.InferenceSession(str(path), ...)

    except httpx.TransportError as exc:
        error = translate(exc, "httpx", "send", where=..., ...)

Only what the library raises is translated; the error is raised ``from`` the library's exception. A row
recognises an exception in up to four ways, narrowest first:

- ``modules``: its class (or a base) is defined in one of these packages (onnxruntime's ``Fail``,
  ``InvalidProtobuf``..., safetensors' ``SafetensorError``, httpx's ``HTTPError`` tree);
- ``builtins``: the builtin types the library raises on purpose there (llama-cpp-python's ``ValueError``
  "Failed to load model from file", ``RuntimeError`` "llama_decode returned 1");
- ``bare``: exactly ``Exception`` (tokenizers raises no type of its own: ``Exception("invalid type ...")``);
- ``inside``: anything raised from code inside these pure-Python packages (transformers, optimum,
  onnxruntime.tools), except ``TypeError``/``NameError``.

So a bug in edgekit (``TypeError``, ``KeyError``, ``AssertionError``... raised by our code) propagates as it
is, and so do an :class:`EdgekitError` raised inside the block (a callback of ours), ``MemoryError`` and
``RecursionError``. The table also lists
rows for the exporters (transformers, optimum, onnx): their call sites convert to it.

This module imports none of the libraries: classes are recognised by their module name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from edgekit.errors import (
    ArtifactError,
    BackendError,
    ConfigError,
    EdgekitError,
    ExportError,
    RemoteProtocolError,
    RemoteTimeout,
    RemoteUnavailable,
    SourceError,
    UnsupportedModelError,
)

_NEVER_INSIDE = (NameError,)  # raised from inside a library, still our wrong code
_NEVER = (MemoryError, RecursionError)  # the process's state, not the library's answer: they propagate
_ORT = ("onnxruntime",)
_ORT_TOOLS = ("onnxruntime", "onnx", "google.protobuf", "flatbuffers")
_HF = ("transformers", "tokenizers", "huggingface_hub", "sentencepiece", "safetensors", "torch", "jinja2")
_HUB = ("huggingface_hub", "requests", "urllib3", "httpx", "httpcore", "filelock")


def last_line(exc: BaseException, limit: int = 300) -> str:
    """The last line of the message (onnxruntime puts the reason there), or the type's name when empty."""
    text = str(exc).strip()
    return text.splitlines()[-1][:limit] if text else type(exc).__name__


def first_line(exc: BaseException, limit: int | None = 300) -> str:
    """The first line of the message (``limit`` None: whole), or the type's name when empty."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def _typed(exc: BaseException, limit: int = 300) -> str:
    return f"{type(exc).__name__}: {str(exc)[:limit]}"


@dataclass(frozen=True)
class Rule:
    """One row: what the library raises in this phase (``raises``, in words) and the edgekit error it becomes."""

    raises: str
    make: Callable[[BaseException, dict[str, Any]], EdgekitError]
    modules: tuple[str, ...] = ()
    builtins: tuple[type[BaseException], ...] = ()
    bare: bool = False
    inside: tuple[str, ...] = ()

    def catches(self, exc: BaseException) -> bool:
        if isinstance(exc, (EdgekitError, *_NEVER)) or not isinstance(exc, Exception):
            return False
        if self.modules and any(_in(getattr(c, "__module__", "") or "", self.modules) for c in type(exc).__mro__):
            return True
        if isinstance(exc, self.builtins) or (self.bare and type(exc) is Exception):
            return True
        return bool(self.inside) and not isinstance(exc, _NEVER_INSIDE) and _raised_inside(exc, self.inside)


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _raised_inside(exc: BaseException, packages: tuple[str, ...]) -> bool:
    """Whether the innermost Python frame of ``exc``'s traceback lies in one of ``packages`` (as imported)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    for name in packages:
        module = sys.modules.get(name)
        for folder in getattr(module, "__path__", None) or ():
            if filename.startswith(os.path.join(str(folder), "")):
                return True
    return False


def _llama_load(exc: BaseException, f: dict[str, Any]) -> EdgekitError:
    text = str(exc)
    if "llama_context" in text or "llama_batch" in text:  # the file loaded; the context could not be made
        return ConfigError(f"llama.cpp loaded {f['path']} but could not create a context of {f['context']} tokens "
                           f"(out of memory?): pass a smaller context, or free memory: {text}", param="context")
    return ArtifactError(f"{f['path']} could not be loaded by llama.cpp (corrupt or truncated?): {text}")


def _httpx_send(exc: BaseException, f: dict[str, Any]) -> EdgekitError:
    names = {c.__name__ for c in type(exc).__mro__ if _in(getattr(c, "__module__", ""), ("httpx",))}
    if "TimeoutException" in names:
        if names & {"ConnectTimeout", "PoolTimeout"}:
            return RemoteTimeout(f"{f['where']} did not accept the connection within {f['connect_timeout']:g} s")
        return RemoteTimeout(f"{f['where']} sent nothing for {f['read_timeout']:g} s (read timeout)")
    if "TransportError" in names:
        return RemoteUnavailable(f"{f['where']} {f['dropped']}: {f['detail'] or type(exc).__name__}")
    return RemoteProtocolError(f"{f['where']} sent an unreadable {f['what']}: {f['detail']}")


def _ort_tail(f: dict[str, Any]) -> str:
    return f" ({f['tail']})" if f.get("tail") else ""


#: (library, phase) -> Rule. Fields each message needs are read from the call's keyword arguments.
TABLE: dict[tuple[str, str], Rule] = {
    # ---- runtimes ---------------------------------------------------------------------------------------
    ("onnxruntime", "load"): Rule(
        "its own Fail / InvalidProtobuf / InvalidGraph / NoSuchFile... (each a bare Exception subclass in "
        "onnxruntime.capi.onnxruntime_pybind11_state), RuntimeError/ValueError/OSError from its Python wrapper",
        lambda e, f: ArtifactError(f"{f['path']} is not a loadable ONNX model (corrupt or truncated?): "
                                   f"{last_line(e, 200)}"),
        modules=_ORT, builtins=(RuntimeError, ValueError, OSError)),
    ("onnxruntime", "run"): Rule(
        "its own Fail / InvalidArgument / RuntimeException... types, RuntimeError",
        lambda e, f: BackendError(f"onnxruntime failed while running the model: {last_line(e)}"),
        modules=_ORT, builtins=(RuntimeError,)),
    ("llama.cpp", "load"): Rule(
        "ValueError ('Failed to load model from file: ...', 'Failed to create llama_context', "
        "'Failed to create llama_batch'), RuntimeError, OSError (ctypes)",
        _llama_load, builtins=(ValueError, RuntimeError, OSError)),
    ("llama.cpp", "vocab"): Rule(
        "as for load (vocab_only=True)",
        lambda e, f: ArtifactError(f"llama.cpp could not read the vocabulary of {f['path']} ({e}): re-export it"),
        builtins=(ValueError, RuntimeError, OSError)),
    ("llama.cpp", "eval"): Rule(
        "RuntimeError('llama_decode returned N')",
        lambda e, f: BackendError(f"llama.cpp failed to evaluate {f['tokens']} tokens: {e}"),
        builtins=(RuntimeError,)),
    ("tokenizers", "load"): Rule(
        "a bare Exception ('invalid type: ...', 'No such file or directory (os error 2)'): no type of its own",
        lambda e, f: ArtifactError(f"{f['path']} is not a valid tokenizer file ({e}): re-export the artifact"),
        modules=("tokenizers",), bare=True),
    ("jinja2", "compile"): Rule(
        "TemplateSyntaxError and the rest of jinja2's TemplateError tree",
        lambda e, f: ConfigError(f"the model's chat template does not compile: {e}"), modules=("jinja2",)),
    ("jinja2", "render"): Rule(
        "UndefinedError, SecurityError (the sandbox), TemplateRuntimeError...: jinja2's TemplateError tree",
        lambda e, f: ConfigError(f"the model's chat template failed on these messages: {e}"), modules=("jinja2",)),
    # ---- sources ----------------------------------------------------------------------------------------
    ("huggingface_hub", "fetch"): Rule(
        "RepositoryNotFoundError / RevisionNotFoundError / HfHubHTTPError (OSError), HFValidationError "
        "(ValueError), OfflineModeIsEnabled, requests'/httpx' errors, and more from its Python code",
        lambda e, f: SourceError(f"{f['repo_id']} is not a local folder and could not be fetched from the hub: "
                                 f"{first_line(e, None)}"),
        modules=_HUB, builtins=(OSError, ValueError, RuntimeError), inside=_HUB),
    ("safetensors", "read"): Rule(
        "SafetensorError ('Error while deserializing header: ...'), OSError",
        lambda e, f: SourceError(f"{f['path']} is not a valid safetensors file ({first_line(e)}): "
                                 "re-download or re-save the model"),
        modules=("safetensors",), builtins=(OSError,)),
    # ---- package ----------------------------------------------------------------------------------------
    ("onnxruntime", "convert"): Rule(
        "onnxruntime.tools: its own Fail/InvalidGraph types, onnx's and protobuf's errors, RuntimeError, "
        "anything from its Python code",
        lambda e, f: ExportError(f"onnxruntime could not convert {f['name']} to ORT format: "
                                 f"{last_line(e)}{_ort_tail(f)}"),
        modules=_ORT_TOOLS, builtins=(RuntimeError, ValueError, OSError), inside=_ORT_TOOLS),
    ("onnxruntime", "check"): Rule(
        "onnxruntime.tools' usability checker: as for convert",
        lambda e, f: ExportError(f"onnxruntime's mobile-usability checker failed on {f['name']}: {_typed(e)}"),
        modules=_ORT_TOOLS, builtins=(RuntimeError, ValueError, OSError), inside=_ORT_TOOLS),
    # ---- remote (edgekit.router.remote; the deadline check stays there, before this row) ---------------
    ("httpx", "send"): Rule(
        "httpx's HTTPError tree: TimeoutException (ConnectTimeout/PoolTimeout vs read), other TransportError, "
        "and the rest (DecodingError...: an unreadable body)",
        _httpx_send, modules=("httpx", "httpcore")),
    # ---- exporters and the gate (their sites convert next) ---------------------------------------------
    ("optimum", "trace"): Rule(
        "anything from optimum/transformers/torch/onnx while tracing",
        lambda e, f: ExportError(f"optimum-onnx could not trace {f['name']}: {_typed(e)}"),
        modules=("optimum", *_HF, "onnx", "onnxscript", "onnx_ir"), builtins=(RuntimeError, ValueError, OSError),
        inside=("optimum", *_HF, "onnx", "onnxscript", "onnx_ir")),
    ("transformers", "reference"): Rule(
        "the gate's reference model: torch/transformers errors, RuntimeError/ValueError/OSError, IndexError "
        "or KeyError from inside them (a token id out of range)",
        lambda e, f: ExportError(f"the gate's reference model (transformers) failed on {f['name']}: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"),
        modules=_HF, builtins=(RuntimeError, ValueError, OSError), inside=_HF),
    ("transformers", "tokenizer"): Rule(
        "AutoTokenizer on a source folder: OSError (no files), ValueError, tokenizers' bare Exception, anything "
        "from its Python code",
        lambda e, f: UnsupportedModelError(f"{f['folder']} has no tokenizer transformers can load "
                                           f"({_typed(e, 200)}); {f['need']}"),
        modules=_HF, builtins=(RuntimeError, ValueError, OSError), bare=True, inside=_HF),
    ("tokenizers", "source"): Rule(
        "a source's tokenizer.json: tokenizers' bare Exception",
        lambda e, f: UnsupportedModelError(f"{f['path']} cannot be read ({str(e)[:200]})"),
        modules=("tokenizers",), bare=True),
    ("onnx", "quantize"): Rule(
        "onnx / onnxruntime.quantization: their own types, RuntimeError/ValueError/OSError, anything from their "
        "Python code",
        lambda e, f: ExportError(f"{f['method']} quantization failed: {_typed(e)}"),
        modules=_ORT_TOOLS, builtins=(RuntimeError, ValueError, OSError), inside=_ORT_TOOLS),
    ("onnx", "rewrite"): Rule(
        "onnx / onnxruntime.transformers' graph optimizer, as for quantize",
        lambda e, f: ExportError(f"the attention graph rewrite failed ({_typed(e, 200)}): export with "
                                 "optimize=False", param="optimize"),
        modules=_ORT_TOOLS, builtins=(RuntimeError, ValueError, OSError), inside=_ORT_TOOLS),
}


def catches(exc: BaseException, library: str, phase: str) -> bool:
    """Whether ``exc`` is one the (library, phase) row translates (else: a bug, or not this library's)."""
    return TABLE[(library, phase)].catches(exc)


def translate(exc: BaseException, library: str, phase: str, **fields: Any) -> EdgekitError:
    """The edgekit error for ``exc`` per the (library, phase) row; ``exc`` itself is re-raised when the row
    does not cover it (a bug propagates). An unknown row is a ``KeyError`` (a bug at the call site)."""
    rule = TABLE[(library, phase)]
    if not rule.catches(exc):
        raise exc
    return rule.make(exc, fields)


@contextmanager
def translated(library: str, phase: str, **fields: Any) -> Iterator[None]:
    """Raise the (library, phase) row's edgekit error ``from`` what the library raises inside the block."""
    rule = TABLE[(library, phase)]
    try:
        yield
    except Exception as exc:
        if not rule.catches(exc):
            raise
        raise rule.make(exc, fields) from exc
