"""``edgekit.package()``: turn an artifact into one folder an Android or iOS app bundles.

ONNX artifacts become an ORT-format model with its reduced-build operator config and the
mobile-usability report (:mod:`edgekit.package.ort`, :mod:`edgekit.package.usability`);
GGUF artifacts keep their .gguf with llama.cpp's phone settings (:mod:`edgekit.package.gguf`).
Both get the tokenizer, the chat template as Jinja and as per-role strings
(:mod:`edgekit.package.chat`), ``package.json`` (:mod:`edgekit.package.schema`) and a size
report (:mod:`edgekit.package.sizes`). A target profile fills threads and context and
refuses a model that does not fit its RAM budget (:mod:`edgekit.package.memory`).

Everything is checked before the long work starts, and the package is built in a staging
folder beside ``out`` and renamed into place (:func:`edgekit.fileio.staged_artifact`):
a refusal or a failure leaves nothing at ``out``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.artifact import ResolvedArtifact, resolve_artifact
from edgekit.errors import ArtifactError, ConfigError, ExportError, is_int
from edgekit.fileio import check_output_path, read_json_dict, sha256_file, staged_artifact, write_json_atomic
from edgekit.manifest import FileEntry, now_iso, package_versions
from edgekit.names import KIND_OF_TASK
from edgekit.package.schema import (
    PACKAGE_NAME, PLATFORMS, ArtifactRef, ChatInfo, PackageManifest, SpecialToken, TokenizerInfo,
)
from edgekit.progress import Progress, ensure
from edgekit.version import __version__

# threads when no target says: the big (and middle) cores most current phones have
DEFAULT_THREADS = {"android": 4, "ios": 2, "generic": None}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass
class Package:
    """A package folder on disk, its manifest and its size report."""

    path: Path
    manifest: PackageManifest
    size_report: dict[str, Any]

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.manifest.files)


def _model_name(art: ResolvedArtifact) -> str:
    src = art.manifest.source
    if src.hub_id:
        return src.hub_id
    path = Path(src.path or art.folder)
    return path.parent.name if path.name == "model" else path.name


def _check_options(art: ResolvedArtifact, platform: str, *, context, ep: str, mmap) -> None:
    kind = KIND_OF_TASK[art.task]
    if context is not None and kind != "decoder":
        article = "an" if kind[0] in "aeiou" else "a"
        raise ConfigError(f"context applies to decoders (it sizes the KV cache); {art.path.name} is {article} {kind} "
                          f"({art.task}): drop context=", param="context")
    if mmap is not None and art.format != "gguf":
        raise ConfigError("mmap applies to GGUF packages (llama.cpp's use_mmap); onnxruntime loads the .ort itself: "
                          "drop mmap=", param="mmap")
    if ep != "auto" and art.format != "onnx":
        raise ConfigError(f"ep applies to ONNX packages; llama.cpp picks its own backends: drop ep={ep}", param="ep")
    from edgekit.package.usability import EP_PLATFORMS

    allowed = EP_PLATFORMS.get(ep)
    if allowed and platform not in allowed:
        raise ConfigError(f"ep={ep} runs on {' and '.join(allowed)} only, not platform={platform}: choose "
                          "ep=auto, cpu or xnnpack", param=("ep", "platform"))


def _platform(platform: str | None, profile) -> str:
    if platform is not None and platform not in PLATFORMS:
        raise ConfigError(f"unknown platform {platform!r}: use one of {', '.join(PLATFORMS)}", param="platform")
    if profile is None:
        return platform or "generic"
    if platform is None:
        return profile.os if profile.os in ("android", "ios") else "generic"
    if platform != "generic" and profile.os != platform:
        raise ConfigError(f"target {profile.name} is an {profile.os} device, not {platform}: drop platform= or "
                          f"choose an {platform} target", param=("platform", "target"))
    return platform


def _threads(threads, profile, platform: str) -> tuple[int | None, str]:
    if threads is not None:
        if not is_int(threads, 1):
            raise ConfigError(f"threads must be an integer >= 1, got {threads!r}", param="threads")
        return threads, "asked for"
    if profile is not None:
        return profile.threads, f"target {profile.name}: its big cores"
    default = DEFAULT_THREADS[platform]
    if default is None:
        return None, "the runtime's default (no target)"
    return default, f"default for {platform} without a target profile"


def _check_out_vs_artifact(out: Path, art: ResolvedArtifact) -> None:
    folder = art.folder.resolve()
    if out.resolve() == folder or folder in out.resolve().parents:
        raise ConfigError(f"{out} is the artifact itself or inside it: choose another out=", param="out")


def _io(model: Path) -> dict[str, Any]:
    """Load the .ort once (it must load) and record its inputs and outputs for the app."""
    from edgekit.runtimes.onnx import make_session

    try:
        session = make_session(model, threads=1)
    except ArtifactError as exc:
        raise ExportError(f"the converted {model.name} does not load in onnxruntime: {exc}") from exc

    def arg(a):
        return {"name": a.name, "type": a.type, "shape": [d if isinstance(d, int) else str(d) for d in a.shape]}

    return {"inputs": [arg(a) for a in session.get_inputs()], "outputs": [arg(a) for a in session.get_outputs()]}


def _model_notes(art: ResolvedArtifact, io: dict[str, Any]) -> dict[str, Any]:
    info = art.manifest.model
    if art.task == "text-generation":
        past = [i for i in io["inputs"] if i["name"].startswith("past_key_values.")]
        return {"decoder": {
            "kv_inputs": len(past), "kv_layout": "[batch, kv_heads, sequence, head_dim]",
            "kv_type": past[0]["type"] if past else None, "n_layers": info.n_layers, "kv_heads": info.n_kv_heads,
            "head_dim": info.head_dim,
            "loop": "first step: past_key_values.* with sequence length 0; each step feeds the present.* outputs back "
                    "as past_key_values.*, attention_mask of ones over past + new tokens, position_ids counting on",
        }}
    return {"encoder": {"pooling": info.pooling, "normalize": info.normalize, "labels": info.labels,
                        "output": "sentence_embedding" if any(o["name"] == "sentence_embedding" for o in io["outputs"])
                        else io["outputs"][0]["name"]}}


def _package_onnx(art, stage: Path, platform: str, ep: str, threads, progress: Progress) -> tuple[dict, dict]:
    from edgekit.package.ort import build_flags, convert_to_ort
    from edgekit.package.sizes import runtime_estimate
    from edgekit.package.usability import choose_eps, ep_settings, usability_report

    with progress.step("check: onnxruntime's mobile-usability checker (NNAPI, CoreML, XNNPACK)"):
        report = usability_report(art.model_file, stage / ".usability-work")
    eps, why = choose_eps(report, platform, ep)
    runtime_style = eps[0] in ("NNAPI", "CoreML")
    with progress.step(f"convert: ORT format ({'Runtime' if runtime_style else 'Fixed'} optimisations, "
                       "onnxruntime's converter)"):
        conv = convert_to_ort(art.model_file, stage, platform=platform, runtime_style=runtime_style)
        io = _io(conv.model)
    settings = ep_settings(eps, report, threads)
    if runtime_style:  # replay the optimisations saved for the nodes the compiling EP does not take
        settings["session_config_entries"]["session.enable_saved_runtime_optimizations"] = "1"
    runtime = {"runtime": "onnxruntime", "model": conv.model.name, **settings, "recommended_because": why,
               "conversion": {"tool": "onnxruntime.tools.convert_onnx_models_to_ort", "optimization_level": "all",
                              "optimization_style": conv.style, "target_platform": conv.target_platform},
               "io": io, **_model_notes(art, io)}
    report["recommended"] = {"platform": platform, "execution_providers": eps, "why": why}
    write_json_atomic(stage / "ep_report.json", report)
    sizes = {"runtime": {"name": "onnxruntime (reduced-operator minimal build)",
                         **runtime_estimate(len(conv.op_types))},
             "reduced_build": build_flags(platform, conv, eps)}
    return runtime, sizes


def _tokenizer_onnx(art, stage: Path) -> tuple[TokenizerInfo, str | None, dict[str, str]]:
    from edgekit.runtimes.tokenizer import HFTokenizer

    tok = HFTokenizer(art.folder)
    copied = [n for n in TOKENIZER_FILES if (art.folder / n).is_file()]
    for name in copied:
        shutil.copy2(art.folder / name, stage / name)
    specials = {k: SpecialToken(text=v, id=tok.token_to_id(v)) for k, v in tok.special_tokens.items()}
    info = TokenizerInfo(
        file="tokenizer.json", config_file="tokenizer_config.json" if "tokenizer_config.json" in copied else None,
        add_special_tokens=tok.encode("a", add_special=True) != tok.encode("a", add_special=False),
        special_tokens=specials, eos_token_ids=list(art.manifest.model.eos_token_ids),
    )
    return info, tok.chat_template, dict(tok.special_tokens)


def _package_gguf(art, stage: Path, platform: str, threads, context: int, mmap, progress: Progress):
    from edgekit.package.gguf import SPECIAL_KEYS, GgufVocab, llama_settings, tokenizer_mismatch

    with progress.step(f"copy: {art.model_file.name} (llama.cpp reads it as it is)"):
        shutil.copy2(art.model_file, stage / art.model_file.name)
    runtime = {**llama_settings(platform, threads=threads, context=context, mmap=True if mmap is None else mmap),
               "model": art.model_file.name}
    vocab = GgufVocab(stage / art.model_file.name)
    try:
        ids = {name: vocab.metadata.get(key) for name, key in SPECIAL_KEYS}
        texts = vocab.special_tokens()
        specials = {k: SpecialToken(text=texts.get(k), id=int(v)) for k, v in ids.items() if v is not None}
        source = Path(art.manifest.source.path) if art.manifest.source.path else None
        note, copied = "", []
        if source is None or not (source / "tokenizer.json").is_file():
            note = "no tokenizer.json: the source folder is not on this machine; llama.cpp's own vocabulary " \
                   "(in the .gguf) is the tokenizer"
        else:
            with progress.step("check: the source's tokenizer.json against llama.cpp's vocabulary"):
                sample = [vocab.token_text(i) or "" for i in vocab.eos_ids] + list(texts.values())
                bad = tokenizer_mismatch(source / "tokenizer.json", vocab, ("".join(sample) + " hi",))
            if bad is None:
                copied = [n for n in TOKENIZER_FILES if (source / n).is_file()]
                for name in copied:
                    shutil.copy2(source / name, stage / name)
                note = "tokenizer.json from the source folder, checked: it tokenizes like llama.cpp's vocabulary"
            else:
                note = f"no tokenizer.json: the source folder's differs from the .gguf's vocabulary ({bad})"
        info = TokenizerInfo(file="tokenizer.json" if copied else None,
                             config_file="tokenizer_config.json" if "tokenizer_config.json" in copied else None,
                             in_model_file=True, add_special_tokens=vocab.add_bos, special_tokens=specials,
                             eos_token_ids=vocab.eos_ids, note=note)
        gen = read_json_dict(source / "generation_config.json") if source is not None else {}
        eos_texts = [t for i in vocab.eos_ids if (t := vocab.token_text(i))]
        return runtime, info, vocab.chat_template, texts, gen, eos_texts
    finally:
        vocab.close()


def _files(stage: Path) -> list[FileEntry]:
    return [FileEntry(path=p.relative_to(stage).as_posix(), size=p.stat().st_size, sha256=sha256_file(p))
            for p in sorted(stage.rglob("*")) if p.is_file() and p.name != PACKAGE_NAME]


@dataclass
class _Plan:
    """What ``package`` resolved and checked before any work: the inputs of every later step."""

    art: ResolvedArtifact
    out: Path
    platform: str
    profile: Any  # a TargetProfile, or None
    threads: int | None
    threads_source: str
    memory: Any  # package.memory's plan: the context and the RAM it needs
    name: str
    kind: str


def _resolve_target(target):
    if isinstance(target, (str, os.PathLike)):
        from edgekit.targets.resolve import resolve_target

        return resolve_target(os.fspath(target))
    if target is not None and not hasattr(target, "app_ram_budget_gb"):
        raise ConfigError(f"target must be a preset name, a .toml file or a TargetProfile, got {target!r:.60}",
                          param="target")
    return target


def _plan(artifact, out, *, platform, target, context, threads, ep, mmap, force) -> _Plan:
    """Every check and every decision that needs no writing: options, target, artifact, memory."""
    from edgekit.package.memory import plan_memory
    from edgekit.package.usability import EP_CHOICES
    from edgekit.profiler.shape import artifact_shape

    if ep not in EP_CHOICES:
        raise ConfigError(f"unknown ep {ep!r}: use one of {', '.join(EP_CHOICES)}", param="ep")
    if mmap is not None and not isinstance(mmap, bool):
        raise ConfigError(f"mmap must be True or False, got {mmap!r}", param="mmap")
    profile = _resolve_target(target)
    platform = _platform(platform, profile)
    n_threads, threads_source = _threads(threads, profile, platform)
    out = check_output_path(out, force)
    art = resolve_artifact(getattr(artifact, "path", artifact), check="hashes")  # a folder, or an exporter's Artifact
    if art.manifest is None:
        raise ArtifactError(f"{art.path} is a bare model file: package an artifact folder made by 'edgekit export' "
                            "(its manifest carries the tokenizer, the chat template and the gate metrics)")
    _check_out_vs_artifact(out, art)
    _check_options(art, platform, context=context, ep=ep, mmap=mmap)
    shape = artifact_shape(art)
    name = _model_name(art)
    memory = plan_memory(
        name=f"{name} ({art.manifest.precision})", kind=KIND_OF_TASK[art.task], weights=shape.weight_bytes,
        kv_per_position=shape.kv_bytes_per_position or 0,
        trained_context=art.manifest.model.context_length or shape.context_length, context=context,
        target=profile.name if profile is not None else None,
        budget_bytes=int(profile.app_ram_budget_gb.value * 1e9) if profile is not None else None)
    return _Plan(art, out, platform, profile, n_threads, threads_source, memory, name, KIND_OF_TASK[art.task])


@dataclass
class _Built:
    """What ``_build`` put in the staging folder, for the size report and the manifest."""

    runtime: dict[str, Any]  # runtime.json's content less threads and context
    sizes: dict[str, Any]  # the runtime's size estimate
    tokenizer: TokenizerInfo
    chat: dict[str, Any] | None
    generation: Any


def _build(plan: _Plan, stage: Path, ep: str, mmap, progress: Progress) -> _Built:
    """The model, the tokenizer and runtime.json, written in ``stage``."""
    from edgekit.package.chat import chat_info, generation_settings

    art = plan.art
    if art.format == "onnx":
        runtime, sizes = _package_onnx(art, stage, plan.platform, ep, plan.threads, progress)
        tokenizer, template, special_texts = _tokenizer_onnx(art, stage)
        gen = read_json_dict(art.folder / "generation_config.json")
        eos_texts = [t.text for k, t in tokenizer.special_tokens.items() if k == "eos_token" and t.text]
    else:
        runtime, tokenizer, template, special_texts, gen, eos_texts = _package_gguf(
            art, stage, plan.platform, plan.threads, plan.memory.context, mmap, progress)
        sizes = {"runtime": {"name": "llama.cpp", "estimated_bytes": None,
                             "note": "llama.cpp is built into the app from source (no reduced-operator build)"}}
    chat = chat_info(template, special_texts) if plan.kind == "decoder" else None
    generation = generation_settings(gen, eos_texts) if plan.kind == "decoder" else None
    write_json_atomic(stage / "runtime.json", {**runtime, "threads": plan.threads, "context": plan.memory.context})
    return _Built(runtime, sizes, tokenizer, chat, generation)


def _size_report(stage: Path, model_file: str, sizes: dict) -> dict[str, Any]:
    files = _files(stage)
    report = {"model_bytes": sum(f.size for f in files if f.path == model_file),
              "tokenizer_bytes": sum(f.size for f in files if f.path in TOKENIZER_FILES),
              "files": {f.path: f.size for f in files}, **sizes}
    report["package_bytes"] = sum(f.size for f in files)
    write_json_atomic(stage / "size_report.json", report)
    return report


def _manifest(plan: _Plan, stage: Path, built: _Built, size_report: dict) -> PackageManifest:
    art, m, runtime = plan.art, plan.art.manifest, built.runtime
    files = _files(stage)
    return PackageManifest(
        platform=plan.platform, name=plan.name, format=art.format, task=art.task, precision=m.precision,
        model_file=runtime["model"], runtime=runtime["runtime"], model=m.model, context=plan.memory.context,
        threads=plan.threads, threads_source=plan.threads_source,
        target=plan.profile.name if plan.profile is not None else None,
        tokenizer=built.tokenizer, chat=ChatInfo(**built.chat) if built.chat else None, generation=built.generation,
        gate=m.gate, stage_gates=m.stage_gates, memory=plan.memory,
        sizes={"model_bytes": size_report["model_bytes"], "package_bytes": sum(f.size for f in files),
               "runtime_estimated_bytes": size_report["runtime"].get("estimated_bytes")},
        artifact=ArtifactRef(path=str(art.folder.resolve()), created_at=m.created_at, precision=m.precision,
                             source=m.source, manifest_sha256=hashlib.sha256(
                                 (art.folder / "edgekit.json").read_bytes()).hexdigest()),
        files=files,
        versions={"edgekit": __version__, **package_versions("onnxruntime", "onnx", "llama_cpp_python", "tokenizers")},
        created_at=now_iso(),
    )


def package(
    artifact: str | os.PathLike,
    out: str | os.PathLike,
    *,
    platform: str | None = None,
    target=None,
    context: int | None = None,
    threads: int | None = None,
    ep: str = "auto",
    mmap: bool | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> Package:
    """Package ``artifact`` (an artifact folder made by ``edgekit export``, or the Artifact an exporter returned)
    into the folder ``out`` for an app.

    ``platform``: android | ios | generic (default: the target's, else generic). ``target``: a preset name, a
    .toml profile or a :class:`~edgekit.targets.TargetProfile`; it fills threads and context and refuses a model
    whose weights plus KV cache exceed its app RAM budget. ``context`` (decoders): the context to allocate,
    checked against the budget. ``threads``: overrides the target's. ``ep`` (ONNX): auto | cpu | nnapi | coreml |
    xnnpack, the execution provider runtime.json puts first (auto: what onnxruntime's checker recommends).
    ``mmap`` (GGUF): llama.cpp's use_mmap (default True). ``force``: replace an existing package at ``out``.
    """
    progress = ensure(progress)
    plan = _plan(artifact, out, platform=platform, target=target, context=context, threads=threads, ep=ep,
                 mmap=mmap, force=force)
    with staged_artifact(plan.out, force, progress) as stage:
        built = _build(plan, stage, ep, mmap, progress)
        size_report = _size_report(stage, built.runtime["model"], built.sizes)
        manifest = _manifest(plan, stage, built, size_report)
        write_json_atomic(stage / PACKAGE_NAME, manifest.model_dump(mode="json"))
    return Package(plan.out, manifest, size_report)
