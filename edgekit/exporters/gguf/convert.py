"""Hugging Face safetensors -> GGUF with gguf-py's writer, one tensor at a time.

The writer's explicit states are used in order: every tensor's name, shape and
type is declared from the safetensors headers (no data read), then header,
metadata and tensor infos are written, then each tensor is read, transformed
(see :mod:`archs`), cast and written before the next one is touched. The family
(architecture, tensor names, tied default) is a row of :mod:`edgekit.families`; tensors are
read with :mod:`edgekit.safetensors_io` (plain positioned reads: a 540 MB SmolLM2 converts
at 190 MB RSS, against 545 MB through ``safetensors.safe_open``'s memory map).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edgekit import quants
from edgekit.errors import ConfigError, ExportError, MissingDependencyError, UnsupportedModelError
from edgekit.exporters.gguf.archs import tensor_transform, write_hparams
from edgekit.exporters.gguf.tokenizer_check import choose_settings
from edgekit.exporters.gguf.vocab import Vocab, read_vocab
from edgekit.families import SKIP_SUFFIXES, Family, Shape, TensorNames, family_for, llama3_rope_factors, shape_of
from edgekit.progress import Progress, ensure
from edgekit.safetensors_io import TensorRef, read_tensor, scan_safetensors
from edgekit.sources import ResolvedSource

if TYPE_CHECKING:
    from edgekit.exporters.context import ExportContext

CONVERTER_ENV = "EDGEKIT_LLAMA_CPP_CONVERTER"


def _gguf():
    try:
        import gguf
    except ImportError as exc:
        raise MissingDependencyError("gguf (gguf-py, for GGUF export)", "gguf") from exc
    return gguf


@dataclass
class PlannedTensor:
    gguf_name: str
    shape: tuple[int, ...]
    out: str  # f32 | f16 | bf16
    ref: TensorRef | None = None
    transform: Callable[[np.ndarray], np.ndarray] | None = None
    data: np.ndarray | None = None  # generated tensors (rope_freqs)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * (4 if self.out == "f32" else 2)


@dataclass
class ConvertResult:
    path: Path
    spec: str
    gguf_arch: str
    n_tensors: int
    n_params: int
    vocab_model: str
    pre: str | None
    seconds_tokenizer_check: float = 0.0


def plan_tensors(spec: Family, cfg: dict[str, Any], refs: dict[str, TensorRef], shape: Shape, out_type: str) -> list[PlannedTensor]:
    """Map every checkpoint tensor to its GGUF name, output type and layout change."""
    gguf = _gguf()
    name_map = TensorNames(spec, shape.n_layers)
    allowed = {gguf.TENSOR_NAMES[t] for t in gguf.MODEL_TENSORS[spec.arch]}
    has_output = "output" in allowed
    plan: list[PlannedTensor] = []
    unknown = []
    for name, ref in refs.items():
        if name.endswith(SKIP_SUFFIXES):
            continue
        if name == "lm_head.weight" and (spec.is_tied(cfg) or not has_output):
            continue
        gname = name_map.get(name)
        base = gname.rsplit(".", 1)[0] if gname else None
        if gname is None or _template(base) not in allowed:
            unknown.append(name)
            continue
        out = "f32" if len(ref.shape) <= 1 else out_type
        plan.append(PlannedTensor(gname, ref.shape, out, ref=ref, transform=tensor_transform(spec, gname, shape)))
    if unknown:
        raise UnsupportedModelError(
            f"{len(unknown)} tensor(s) of this {cfg.get('model_type')} checkpoint have no place in llama.cpp's "
            f"{gguf.MODEL_ARCH_NAMES[spec.arch]} architecture (first: {unknown[0]}); a variant edgekit does not cover"
        )
    factors = llama3_rope_factors(cfg, shape)
    if factors is not None:
        plan.append(PlannedTensor("rope_freqs.weight", factors.shape, "f32", data=factors))
    names = {p.gguf_name for p in plan}
    if "token_embd.weight" not in names:
        raise UnsupportedModelError("the checkpoint has no token embedding (model.embed_tokens.weight)")
    return plan


def _template(base: str) -> str:
    parts = base.split(".")
    if len(parts) > 1 and parts[0] == "blk" and parts[1].isdigit():
        parts[1] = "{bid}"
    return ".".join(parts)


def _write_metadata(writer, spec: Family, cfg: dict[str, Any], vocab: Vocab, out_type: str, name: str) -> Shape:
    gguf = _gguf()
    from edgekit.version import __version__

    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_string("general.quantized_by", f"edgekit {__version__}")
    shape = write_hparams(writer, spec, cfg, len(vocab.tokens))
    from edgekit import quants

    writer.add_file_type(int(quants.export_quant("gguf", out_type).llama_ftype()))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    vocab.write(writer)
    return shape


def _ggml_type(out: str):
    gguf = _gguf()
    return {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
            "bf16": gguf.GGMLQuantizationType.BF16}[out]


def convert(
    src: ResolvedSource,
    out_path: Path,
    out_type: str = "f16",
    *,
    progress: Progress | None = None,
    ctx: ExportContext | None = None,
) -> ConvertResult:
    """Write ``src`` as a GGUF file at ``out_path`` with 2-D weights in ``out_type`` (f32, f16 or bf16).

    ``ctx``: the export's context, whose family row, tensor table and shape are used as they are."""
    import time

    direct = [q.name for q in quants.rows("gguf", export=True) if q.direct]
    if out_type not in direct:
        raise ConfigError(f"the converter writes {', '.join(direct)}, not {out_type!r}", param="quant")
    gguf = _gguf()
    progress = ensure(progress)
    if src.pickle_weights:
        raise UnsupportedModelError("GGUF export streams safetensors weights; convert the pickle weights to safetensors first")
    cfg = src.config
    spec = ctx.family("gguf") if ctx is not None else family_for(cfg, "gguf")
    refs = ctx.refs if ctx is not None else scan_safetensors(src.weight_files)
    shape = ctx.shape if ctx is not None else shape_of(cfg)
    plan = plan_tensors(spec, cfg, refs, shape, out_type)
    embd = next(p for p in plan if p.gguf_name == "token_embd.weight")
    arch_name = gguf.MODEL_ARCH_NAMES[spec.arch]
    model_name = str(cfg.get("_name_or_path") or src.path.name).rstrip("/").split("/")[-1] or src.path.name

    t0 = time.perf_counter()
    with progress.step("convert: tokenizer (checked against llama.cpp)"):
        vocab = _vocab_step(gguf, src, embd.shape[0], spec, out_type, model_name, out_path.parent, progress)
    t_tok = time.perf_counter() - t0
    _write_step(gguf, out_path, spec, cfg, vocab, plan, out_type, model_name, progress)
    return ConvertResult(
        path=out_path, spec=spec.name, gguf_arch=arch_name, n_tensors=len(plan),
        n_params=sum(math.prod(p.shape) for p in plan), vocab_model=vocab.model, pre=vocab.pre,
        seconds_tokenizer_check=round(t_tok, 3),
    )


def _vocab_step(gguf, src: ResolvedSource, n_vocab: int, spec, out_type: str, model_name: str, scratch: Path,
                progress: Progress) -> Vocab:
    """The tokenizer's vocabulary, with the settings under which llama.cpp reproduces the HF tokenizer."""
    cfg = src.config
    arch_name = gguf.MODEL_ARCH_NAMES[spec.arch]
    vocab = read_vocab(src.path, n_vocab, cfg)

    def write_vocab_only(v: Vocab, path: Path) -> None:
        w = gguf.GGUFWriter(path, arch_name)
        _write_metadata(w, spec, cfg, v, out_type, model_name)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        w.close()

    return choose_settings(vocab, write_vocab_only, scratch, log=progress.log)


def _write_step(gguf, out_path: Path, spec, cfg: dict[str, Any], vocab: Vocab, plan: list, out_type: str,
                model_name: str, progress: Progress) -> None:
    """Metadata, tensor table, then every tensor streamed from the safetensors (one in memory at a time)."""
    arch_name = gguf.MODEL_ARCH_NAMES[spec.arch]
    writer = gguf.GGUFWriter(out_path, arch_name)
    try:
        _write_metadata(writer, spec, cfg, vocab, out_type, model_name)
        for p in plan:
            writer.add_tensor_info(p.gguf_name, p.shape, np.dtype(np.float32 if p.out == "f32" else np.float16),
                                   p.nbytes, raw_dtype=_ggml_type(p.out))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        handles: dict[Path, Any] = {}
        try:
            with progress.step(f"convert: {len(plan)} tensors to {out_type} ({spec.name} -> {arch_name})",
                               total=len(plan)) as bar:
                for p in plan:
                    if p.data is not None:
                        arr = p.data.astype(np.float32)
                    else:
                        fh = handles.get(p.ref.file) or handles.setdefault(p.ref.file, open(p.ref.file, "rb"))
                        arr = read_tensor(p.ref, p.out, p.transform, fh)
                    writer.write_tensor_data(arr)
                    del arr
                    bar.advance()
        finally:
            for fh in handles.values():
                fh.close()
    except OSError as exc:
        raise ExportError(f"writing {out_path.name} failed: {exc.strerror or exc}") from exc
    finally:
        writer.close()


# ---------------------------------------------------------------- the llama.cpp delegate


def find_converter(explicit: str | os.PathLike | None) -> Path | None:
    """The llama.cpp converter script to delegate to: the argument, else $EDGEKIT_LLAMA_CPP_CONVERTER."""
    value = explicit or os.environ.get(CONVERTER_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        where = f"llama_cpp_converter={path}" if explicit else f"${CONVERTER_ENV} {path}"
        raise ConfigError(f"{where} does not exist: point it at llama.cpp's convert_hf_to_gguf.py",
                          param="llama_cpp_converter")
    return path.absolute()


def convert_with_llama_cpp(converter: Path, src: ResolvedSource, out_path: Path, out_type: str,
                           progress: Progress | None = None) -> ConvertResult:
    """Run llama.cpp's convert_hf_to_gguf.py (for architectures edgekit's own specs do not cover)."""
    progress = ensure(progress)
    cmd = [sys.executable, str(converter), str(src.path), "--outfile", str(out_path), "--outtype", out_type]
    with progress.step(f"convert: {converter.name} (llama.cpp's converter)"):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=24 * 3600)
        except OSError as exc:
            raise ExportError(f"could not run {converter}: {exc.strerror or exc}") from exc
    if proc.returncode != 0 or not out_path.is_file():
        lines = [line for line in (proc.stderr or proc.stdout or "").splitlines() if line.strip()]
        raise ExportError(f"{converter.name} failed (exit {proc.returncode}): {lines[-1] if lines else 'no output'}")
    from gguf import GGUFReader

    reader = GGUFReader(str(out_path))
    arch = reader.fields["general.architecture"].contents()
    pre = reader.fields["tokenizer.ggml.pre"].contents() if "tokenizer.ggml.pre" in reader.fields else None
    model = reader.fields["tokenizer.ggml.model"].contents() if "tokenizer.ggml.model" in reader.fields else "?"
    n_params = sum(int(t.n_elements) for t in reader.tensors)
    return ConvertResult(path=out_path, spec="llama.cpp converter", gguf_arch=str(arch), n_tensors=len(reader.tensors),
                         n_params=n_params, vocab_model=str(model), pre=pre)
