"""The whole edgekit error tree.

Every error edgekit raises on purpose derives from :class:`EdgekitError`.
The tree splits into two halves, and the CLI maps them to exit codes:

    EdgekitError
    ├── UserError                 (exit 2: the input is wrong; the message says what to do)
    │   ├── SourceError           model source missing, not a Hugging Face model, unsafe or corrupt weights
    │   ├── UnsupportedModelError architecture or task the exporter/runtime cannot handle
    │   ├── ArtifactError         not an artifact, hash mismatch, corrupt or truncated model file
    │   ├── ConfigError           bad option values, bad config/prompts files, output path problems
    │   │   └── UnmetConstraintsError nothing meets optimize's constraints (carries the closest candidates)
    │   ├── ContextOverflowError  prompt longer than the model's context
    │   ├── HostKeyError          a device's SSH host key is unknown or changed (never skipped)
    │   └── MissingDependencyError an optional extra is not installed (names the pip command)
    └── BackendError              (exit 1: something failed while doing the work)
        ├── ExportError           tracing / conversion / quantization failed
        ├── QualityGateError      the artifact differs from its reference beyond the thresholds
        ├── RemoteError           the remote LLM tier failed
        │   ├── RemoteTimeout
        │   ├── RemoteUnavailable connection refused/dropped, 5xx after retries, 429 after retries
        │   ├── RemoteAuthError   401/403: wrong key, never retried
        │   └── RemoteProtocolError malformed responses or streams
        ├── BenchRunError         a profiler run crashed or timed out
        ├── DeviceError           a device over SSH: unreachable, dropped, or a command there failed
        └── FallbackExhausted     both the local and the remote tier failed (carries both causes)

Third-party exceptions are translated at the boundary (``raise X(...) from exc``),
through the one table in :mod:`edgekit.translate` ((library, phase) -> error),
so callers only need to catch edgekit's types. Bugs (``TypeError``, ``KeyError``
...) are not wrapped: they propagate.

Messages name Python parameters, never command-line flags: an error about a
parameter passes ``param="quant"`` (or a tuple of names) and words it as Python
does, either ``quant=bf16`` / ``force=True`` anywhere in the message or ``quant``
as its first word (``context must be an integer >= 2``). The CLI words those
as its flags (``--quant bf16``, ``--force``); see ``edgekit.cli.output.error_line``.
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Root of every error edgekit raises on purpose; ``params``: the parameters the message names."""

    exit_code = 1

    def __init__(self, *args: object, param: str | tuple[str, ...] = ()):
        super().__init__(*args)
        self.params: tuple[str, ...] = (param,) if isinstance(param, str) else tuple(param)


class UserError(EdgekitError):
    """The input is wrong; the message says what is wrong and what to do."""

    exit_code = 2


class SourceError(UserError):
    """A model source is missing, not a Hugging Face model, unsafe or corrupt."""


class UnsupportedModelError(UserError):
    """An architecture or task that the exporter or runtime cannot handle."""


class ArtifactError(UserError):
    """A path that is not a valid artifact: missing manifest, hash mismatch, corrupt model file."""


class ConfigError(UserError):
    """An option, config file, prompts file or output path is wrong."""


class UnmetConstraintsError(ConfigError):
    """No candidate of ``edgekit.optimize`` meets the constraints.

    ``details``: the closest candidates and what each misses, one line each (the CLI prints them under the
    error line); ``result``: the whole run (``OptimizeResult``: every candidate, its gate, size and speeds).
    """

    def __init__(self, message: str, *, details=(), result=None, param: str | tuple[str, ...] = ()):
        super().__init__(message, param=param)
        self.details: tuple[str, ...] = tuple(details)
        self.result = result


class ContextOverflowError(UserError):
    """A prompt does not fit the model's context window."""

    def __init__(self, message: str, *, prompt_tokens: int, context: int):
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.context = context


class HostKeyError(UserError):
    """A device's SSH host key is not in known_hosts (accept it explicitly) or differs from the one there."""


class MissingDependencyError(UserError):
    """An optional dependency is missing; the message names the pip extra to install."""

    def __init__(self, what: str, extra: str | None):
        hint = f"pip install 'edgekit[{extra}]'" if extra else "reinstall edgekit (pip install edgekit)"
        super().__init__(f"{what} is not installed: {hint}")
        self.extra = extra


class BackendError(EdgekitError):
    """Something failed while doing the work (not the user's input)."""

    exit_code = 1


class ExportError(BackendError):
    """Tracing, conversion or quantization failed."""


class QualityGateError(BackendError):
    """An artifact differs from its reference model beyond the gate's thresholds."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class RemoteError(BackendError):
    """The remote LLM tier failed."""


class RemoteTimeout(RemoteError):
    """The remote did not answer within the connect/read/total timeout."""


class RemoteUnavailable(RemoteError):
    """The remote refused or dropped the connection, or kept answering 5xx/429."""


class RemoteAuthError(RemoteError):
    """The remote rejected the credentials (401/403); never retried."""


class RemoteProtocolError(RemoteError):
    """The remote answered something that is not a valid OpenAI-compatible response."""


class BenchRunError(BackendError):
    """A profiler run crashed or exceeded its timeout."""


class DeviceError(BackendError):
    """A device could not be reached, dropped the connection, or a command on it failed."""


class FallbackExhausted(BackendError):
    """Both tiers failed; ``local_error`` and ``remote_error`` carry the causes."""

    def __init__(self, message: str, *, local_error: BaseException | None, remote_error: BaseException | None):
        super().__init__(message)
        self.local_error = local_error
        self.remote_error = remote_error


def describe_validation(exc, where: str) -> str:
    """One line for the first problem in a pydantic ``ValidationError``, naming the field."""
    first = exc.errors()[0]
    loc = _printable(".".join(str(x) for x in first["loc"]))
    msg = _printable(str(first["msg"]).removeprefix("Value error, "))
    if not loc:
        return f"{where}: {msg}"
    if first["type"] == "missing":
        return f"{where}: field '{loc}' is missing"
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown field '{loc}'"
    got = first.get("input")
    shown = "a table" if isinstance(got, dict) else short_repr(got)
    return f"{where}: field '{loc}' is invalid ({msg}; got {shown})"


def _printable(text: str) -> str:
    """``text`` with control characters (a newline in a key of a damaged file) escaped: messages stay one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def is_int(value, low: int | None = None, high: int | None = None) -> bool:
    """Whether ``value`` is an integer (a bool is not: ``True`` is no thread count) in ``low..high`` (either
    bound None: open). The one integer check of the parameters edgekit validates; the caller words the error."""
    return (isinstance(value, int) and not isinstance(value, bool)
            and (low is None or value >= low) and (high is None or value <= high))


def check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    """``value`` when :func:`is_int` (``minimum..maximum``), else a :class:`ConfigError` naming the parameter
    (``runs must be an integer >= 1, got 0``)."""
    if not is_int(value, minimum, maximum):
        span = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ConfigError(f"{name} must be an integer {span}, got {short_repr(value)}", param=name)
    return value


def short_repr(value, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages; an integer too long to print is described."""
    if isinstance(value, int) and value.bit_length() > 4 * limit:
        return f"an integer of {value.bit_length()} bits"
    return _printable(repr(value)[:limit])
