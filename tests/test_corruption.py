"""The corruption suite: damaged real exports must fail the gate (or be refused by the loader).

Each slow test copies a real SmolLM2-135M export (ONNX fp32/int8/int4 from the session
fixtures, GGUF f16/q4_k_m exported once for this module), damages the copy the way a
broken converter or a careless tool would, re-writes the manifest's file sizes and
hashes with edgekit's own helpers (as a careless tool would: the sha256 check alone
would otherwise refuse every damaged file, see ``test_hash_check_alone_refuses``), and
re-gates it with the default bounds of its precision. Every damaged artifact must fail
the gate or be refused by the loader for a reason other than its hash; every good
export of every precision must pass.

The gate runs on the 20 built-in prompts: the default bounds were measured on them, and
a re-gate compares itself with the gate recorded at export only on the same prompts
(:func:`edgekit.quality.check_recorded`; 8 prompts let the q4_k_m rope damage through).
At the end of the module a table (corruption, artifact, verdict, metric, value, bound)
is printed (visible with ``-s``) and written to ``corruption_table.md`` in the module's
temporary folder, and to the path in ``$EDGEKIT_CORRUPTION_TABLE`` when that is set.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from edgekit.errors import ArtifactError
from edgekit.manifest import list_files, read_manifest, write_manifest
from edgekit.quality import BUILTIN_PROMPTS, METRICS

LAYER = 15  # the layer the single-layer corruptions damage (SmolLM2-135M has 30)
WRONG_ROPE_THETA = 10_000.0  # SmolLM2 is trained with 100000; 10000 is Llama 2's, a plausible slip
TRUNCATED_TOKENS = 500  # tokens cut from the end of the vocabulary
PERMUTED_ROWS = np.arange(300, 600)  # rows reversed: early BPE merges, 57 of the 428 tokens of the gate's prompts

ONNX_ARTIFACTS = ("onnx-fp32", "onnx-int8", "onnx-int4", "onnx-fused-fp32", "onnx-fused-int4")  # traced; fused
GGUF_ARTIFACTS = ("gguf-f16", "gguf-q4_k_m")


# ------------------------------------------------------------------ copies and the careless re-hash


def copy_artifact(src: Path, dst: Path, *, skip: tuple[str, ...] = ()) -> Path:
    """A real copy of an artifact folder (never hard links: the damage is done in place), less ``skip``."""
    shutil.copytree(src, dst, ignore=lambda _d, names: [n for n in names if n in skip])
    return dst


def rehash_manifest(folder: Path) -> None:
    """What a careless tool does after editing an artifact: re-write the manifest's sizes and sha256."""
    manifest = read_manifest(folder)
    write_manifest(folder, manifest.model_copy(update={"files": list_files(folder)}))


# ------------------------------------------------------------------ ONNX damage (the onnx package)


class OnnxEdit:
    """An ONNX artifact's graph loaded for editing, with lookups by layer and role in both layouts edgekit
    exports: optimum's traced graph (``/model/layers.15/self_attn/o_proj/MatMul``, weights ``onnx::MatMul_N``)
    and edgekit's fused decoder (:mod:`edgekit.exporters.onnx_fused`: ``blk.15.attn_output``, ``rope.cos``)."""

    def __init__(self, model):
        from onnx import numpy_helper

        self.model, self.nh = model, numpy_helper
        self.inits = {t.name: t for t in model.graph.initializer}
        self.nodes = {n.name: n for n in model.graph.node}
        self.fused = "rope.cos" in self.inits

    def get(self, name: str) -> np.ndarray:
        return self.nh.to_array(self.inits[name]).copy()

    def set(self, name: str, value: np.ndarray) -> None:
        old = self.inits[name]
        assert value.shape == tuple(old.dims), (name, value.shape, tuple(old.dims))
        old.CopyFrom(self.nh.from_array(value.astype(self.get(name).dtype), name))

    def weight_inputs(self, node) -> list[str]:
        return [i for i in node.input[1:] if i in self.inits]

    def norm(self, layer: int) -> str:
        """The RMSNorm weight in front of a layer's attention."""
        return f"blk.{layer}.attn_norm" if self.fused else f"model.layers.{layer}.input_layernorm.weight"

    def o_proj(self, layer: int):
        if self.fused:
            return self.nodes[f"blk.{layer}.attn_output"]
        return self._traced_matmul(f"/model/layers.{layer}/self_attn/o_proj/MatMul")

    def _traced_matmul(self, prefix: str):
        found = [n for n in self.model.graph.node if n.op_type in ("MatMul", "MatMulNBits") and n.name.startswith(prefix)]
        assert len(found) == 1, (prefix, [n.name for n in found])
        return found[0]

    def layer_pairs(self, layer: int) -> list[tuple[str, str]]:
        """(initializer of ``layer``, the same one of ``layer + 1``) for every weight of the layer."""
        if self.fused:
            a, b = f"blk.{layer}.", f"blk.{layer + 1}."
            return [(n, b + n[len(a):]) for n in self.inits if n.startswith(a)]
        pairs = []
        for node in self.model.graph.node:
            marker = f"/model/layers.{layer}/"
            if node.op_type in ("MatMul", "MatMulNBits") and node.name.startswith(marker):
                other = self._traced_matmul(node.name.replace(marker, f"/model/layers.{layer + 1}/", 1))
                pairs += zip(self.weight_inputs(node), self.weight_inputs(other))
        for norm in ("input_layernorm", "post_attention_layernorm"):
            pairs.append((f"model.layers.{layer}.{norm}.weight", f"model.layers.{layer + 1}.{norm}.weight"))
        return pairs

    def embedding_rows(self) -> list[str]:
        """Every initializer that holds one row per token: the embedding, and the output layer's own copy
        of a tied embedding where a quantized export keeps one (rows, scales and zero points)."""
        if self.fused:
            names = ("embed.weight", "embed.qweight", "output.qweight", "embed.scales", "embed.zero_points")
            return [n for n in names if n in self.inits]
        names = ["model.embed_tokens.weight"]
        head = self._traced_matmul("/lm_head/MatMul")
        if head.op_type == "MatMulNBits":
            names += self.weight_inputs(head)
        return names

    # --- a weight matrix, as the float (K, N) matrix the MatMul multiplies by
    def read_matrix(self, node) -> np.ndarray:
        if node.op_type == "MatMul":
            return self.get(node.input[1])
        return dequantize_nbits(node, *[self.get(i) for i in self.weight_inputs(node)])

    def write_matrix(self, node, w: np.ndarray) -> None:
        if node.op_type == "MatMul":
            self.set(node.input[1], w.astype(np.float32))
            return
        names = self.weight_inputs(node)  # B, scales and (asymmetric) zero points
        for name, value in zip(names, quantize_nbits(node, w, symmetric=len(names) == 2)):
            self.set(name, value.reshape(self.get(name).shape))


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def dequantize_nbits(node, packed: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None = None
                     ) -> np.ndarray:
    """MatMulNBits weights (B: (N, blocks, blob) uint8; no zero points: symmetric, 2**(bits-1)) -> the float
    (K, N) matrix."""
    a = _attrs(node)
    n, k, bits, block = a["N"], a["K"], a["bits"], a["block_size"]
    blocks = packed.shape[1]
    if zero_points is None:
        zp = np.full((n, blocks), 1 << (bits - 1), dtype=np.uint8)
    elif bits == 4:
        zp = np.stack([zero_points & 0x0F, zero_points >> 4], axis=-1).reshape(n, -1)[:, :blocks]
    else:
        zp = zero_points.reshape(n, blocks)
    if bits == 4:
        q = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, blocks, block)
    else:
        q = packed.reshape(n, blocks, block)
    w = (q.astype(np.float32) - zp[..., None].astype(np.float32)) * scales.reshape(n, blocks)[..., None]
    return w.reshape(n, blocks * block)[:, :k].T.copy()


def quantize_nbits(node, w: np.ndarray, *, symmetric: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The float (K, N) matrix -> MatMulNBits weights, with onnxruntime's own block quantizer."""
    from onnxruntime.capi import _pybind_state as ortc

    a = _attrs(node)
    n, k, bits, block = a["N"], a["K"], a["bits"], a["block_size"]
    blocks = (k + block - 1) // block
    w = np.ascontiguousarray(np.pad(w.astype(np.float32), ((0, blocks * block - k), (0, 0))))
    packed = np.zeros((n, blocks, block * bits // 8), dtype=np.uint8)
    zero_points = np.zeros((n, (blocks * bits + 7) // 8), dtype=np.uint8)
    scales = np.zeros((n, blocks), dtype=np.float32)
    quantize = ortc.quantize_matmul_4bits if bits == 4 else ortc.quantize_matmul_8bits
    quantize(packed, w, scales, zero_points, block, n, blocks * block, symmetric)
    return packed, scales, zero_points


def damage_onnx(src: Path, dst: Path, edit: Callable[[OnnxEdit], str]) -> str:
    """Copy the artifact ``src`` to ``dst`` with its model edited by ``edit``; return what was done."""
    import onnx

    manifest = read_manifest(src)
    data = manifest.model_file + ".data"
    copy_artifact(src, dst, skip=(manifest.model_file, data))
    model = onnx.load(str(src / manifest.model_file))  # loads the external data too, when there is any
    what = edit(OnnxEdit(model))
    onnx.save_model(model, str(dst / manifest.model_file), save_as_external_data=(src / data).exists(),
                    all_tensors_to_one_file=True, location=data)
    return what


def onnx_zero_norm(g: OnnxEdit) -> str:
    name = g.norm(LAYER)
    g.set(name, np.zeros_like(g.get(name)))
    return f"{name} set to 0"


def _inv_freq(theta: float, head_dim: int) -> np.ndarray:
    return theta ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)


def onnx_rope_theta(g: OnnxEdit) -> str:
    """Rope is baked into the graph. Traced: the inverse frequencies ``theta ** (-2i/d)`` are a Constant feeding
    ``/model/rotary_emb``; fused: GroupQueryAttention reads cos/sin tables (positions x d/2). Both are checked to
    be SmolLM2's theta (1e5) and re-derived for the wrong one."""
    from onnx import numpy_helper

    if g.fused:
        cos = g.get("rope.cos")
        d = 2 * cos.shape[1]
        angles = np.outer(np.arange(cos.shape[0], dtype=np.float64), _inv_freq(100_000.0, d))
        assert np.allclose(cos[:64], np.cos(angles[:64]), atol=1e-5), "rope.cos is not theta 1e5's table"
        wrong = np.outer(np.arange(cos.shape[0], dtype=np.float64), _inv_freq(WRONG_ROPE_THETA, d))
        g.set("rope.cos", np.cos(wrong))
        g.set("rope.sin", np.sin(wrong))
        return f"rope.cos/rope.sin tables ({cos.shape[0]}x{cos.shape[1]}) for theta 100000 -> {WRONG_ROPE_THETA:.0f}"
    for node in g.model.graph.node:
        if node.op_type != "Constant" or node.attribute[0].name != "value":
            continue
        t = node.attribute[0].t
        if t.data_type != 1 or int(np.prod(t.dims)) < 8:
            continue
        inv = numpy_helper.to_array(t)
        d = 2 * inv.size
        if not np.allclose(inv.reshape(-1), _inv_freq(100_000.0, d), rtol=1e-5):
            continue
        t.CopyFrom(numpy_helper.from_array(_inv_freq(WRONG_ROPE_THETA, d).reshape(inv.shape).astype(inv.dtype), t.name))
        return f"inv_freq constant {node.output[0]} (theta 100000 -> {WRONG_ROPE_THETA:.0f})"
    raise AssertionError("no rope inverse-frequency constant for theta 1e5 in the graph")


def onnx_transpose(g: OnnxEdit) -> str:
    node = g.o_proj(LAYER)
    w = g.read_matrix(node)
    assert w.shape[0] == w.shape[1]
    g.write_matrix(node, w.T.copy())
    return f"{node.name} ({node.op_type}, {w.shape[0]}x{w.shape[1]})"


def onnx_copy_layer(g: OnnxEdit) -> str:
    pairs = g.layer_pairs(LAYER)
    for a, b in pairs:
        g.set(b, g.get(a))
    return f"all {len(pairs)} weights of layer {LAYER} over layer {LAYER + 1}"


def onnx_permute_embedding(g: OnnxEdit) -> str:
    """Reverse 300 rows of the token embedding (tied: also the output layer's rows)."""
    rows = PERMUTED_ROWS
    names = g.embedding_rows()
    for name in names:
        value = g.get(name)
        value[rows] = value[rows[::-1]]
        g.set(name, value)
    return f"{' + '.join(names)}: rows {rows[0]}..{rows[-1]} reversed"


def truncate_tokenizer_json(folder: Path, n: int) -> str:
    """Cut the last ``n`` tokens from tokenizer.json's vocabulary, and every merge that makes one of them
    (so that the tokenizers library still loads it: a careless cut that leaves the merges is refused outright)."""
    path = folder / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    size = max(max(vocab.values()), *(t["id"] for t in data["added_tokens"])) + 1
    keep = size - n
    data["model"]["vocab"] = {tok: i for tok, i in vocab.items() if i < keep}
    data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] < keep]
    merges = data["model"]["merges"]
    joined = ["".join(m) if isinstance(m, list) else m.replace(" ", "", 1) for m in merges]
    data["model"]["merges"] = [m for m, j in zip(merges, joined) if j in data["model"]["vocab"]]
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return f"tokenizer.json: {size} -> {keep} tokens, {len(merges) - len(data['model']['merges'])} merges dropped"


# ------------------------------------------------------------------ GGUF damage (gguf-py)


def _reader(path: Path, mode: str = "r"):
    from gguf import GGUFReader

    return GGUFReader(path, mode)


def _tensor(reader, name: str):
    for t in reader.tensors:
        if t.name == name:
            return t
    raise KeyError(name)


def damage_gguf(src: Path, dst: Path, edit: Callable[[Path], str]) -> str:
    copy_artifact(src, dst)
    return edit(dst / read_manifest(dst).model_file)


def gguf_zero_norm(path: Path) -> str:
    r = _reader(path, "r+")
    t = _tensor(r, f"blk.{LAYER}.attn_norm.weight")
    t.data[...] = 0
    r.data.flush()
    return f"{t.name} ({t.tensor_type.name}) set to 0"


def gguf_rope_theta(path: Path) -> str:
    r = _reader(path, "r+")
    field = r.fields["llama.rope.freq_base"]
    old = float(field.parts[field.data[0]][0])
    field.parts[field.data[0]][0] = WRONG_ROPE_THETA
    r.data.flush()
    return f"llama.rope.freq_base {old:.0f} -> {WRONG_ROPE_THETA:.0f}"


def gguf_transpose(path: Path) -> str:
    from gguf.quants import dequantize, quantize

    r = _reader(path, "r+")
    t = _tensor(r, f"blk.{LAYER}.attn_output.weight")
    w = dequantize(np.asarray(t.data), t.tensor_type)
    assert w.shape[0] == w.shape[1]
    t.data[...] = quantize(np.ascontiguousarray(w.T), t.tensor_type).reshape(t.data.shape)
    r.data.flush()
    return f"{t.name} ({t.tensor_type.name}, {w.shape[0]}x{w.shape[1]})"


def gguf_copy_layer(path: Path) -> str:
    r = _reader(path, "r+")
    copied = []
    for t in r.tensors:
        if t.name.startswith(f"blk.{LAYER}."):
            other = _tensor(r, t.name.replace(f"blk.{LAYER}.", f"blk.{LAYER + 1}.", 1))
            assert other.tensor_type == t.tensor_type and other.data.shape == t.data.shape, t.name
            other.data[...] = t.data
            copied.append(t.name)
    r.data.flush()
    assert len(copied) == 9
    return f"all {len(copied)} tensors of blk.{LAYER} over blk.{LAYER + 1} (block bytes as stored)"


def gguf_permute_embedding(path: Path) -> str:
    """Reverse rows of token_embd (tied: also the output layer); a quantized row is whole blocks."""
    r = _reader(path, "r+")
    t = _tensor(r, "token_embd.weight")
    rows = PERMUTED_ROWS
    t.data[rows] = np.asarray(t.data[rows[::-1]])
    r.data.flush()
    return f"token_embd.weight ({t.tensor_type.name}) rows {rows[0]}..{rows[-1]} reversed"


def gguf_truncate_vocab(path: Path) -> str:
    """Write a new file whose tokenizer.ggml.tokens (and the per-token arrays) lost their last tokens."""
    import gguf

    r = _reader(path)
    n = len(r.fields["tokenizer.ggml.tokens"].data)
    keep = n - TRUNCATED_TOKENS
    per_token = {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores"}
    tmp = path.with_suffix(".tmp")
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(tmp, arch, endianess=r.endianess)
    for field in r.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name in per_token:
            value = value[:keep]
        w.add_key_value(field.name, value, vtype, sub_type=sub)
    for t in r.tensors:
        w.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for t in r.tensors:
        w.write_tensor_data(t.data, tensor_endianess=r.endianess)
    w.close()
    del r
    os.replace(tmp, path)
    return f"tokenizer.ggml.tokens: {n} -> {keep} (types and scores alike; token_embd keeps {n} rows)"


# ------------------------------------------------------------------ the corruptions, per format

ONNX_DAMAGE = {
    "zeroed layer norm": onnx_zero_norm,
    "wrong rope theta": onnx_rope_theta,
    "transposed o_proj": onnx_transpose,
    "layer copied over the next": onnx_copy_layer,
    "permuted embedding rows": onnx_permute_embedding,
}
GGUF_DAMAGE = {
    "zeroed layer norm": gguf_zero_norm,
    "wrong rope theta": gguf_rope_theta,
    "transposed o_proj": gguf_transpose,
    "layer copied over the next": gguf_copy_layer,
    "permuted embedding rows": gguf_permute_embedding,
    "truncated vocabulary": gguf_truncate_vocab,
}
CASES = [(a, c) for a in ONNX_ARTIFACTS for c in (*ONNX_DAMAGE, "truncated vocabulary")]
CASES += [(a, c) for a in GGUF_ARTIFACTS for c in GGUF_DAMAGE]


def make_damaged(src: Path, dst: Path, artifact: str, corruption: str) -> str:
    """Damage a copy of ``src`` at ``dst``; return what was changed."""
    if artifact.startswith("gguf"):
        return damage_gguf(src, dst, GGUF_DAMAGE[corruption])
    if corruption == "truncated vocabulary":
        copy_artifact(src, dst)
        return truncate_tokenizer_json(dst, TRUNCATED_TOKENS)
    return damage_onnx(src, dst, ONNX_DAMAGE[corruption])


# ------------------------------------------------------------------ the table


@dataclass
class Row:
    corruption: str
    artifact: str
    verdict: str
    metric: str
    value: str
    bound: str
    detail: str


_FAILURE = __import__("re").compile(r"^(\w+) = (\S+), needs ([<>]=) ([^ ]+)(.*)$")


def _margin(metric: str, value: float, bound: float) -> float:
    """How far past its bound a failed value is, comparable across metrics (> 1: failed)."""
    if METRICS[metric] == "max":
        return value / bound if bound > 0 else math.inf
    return (1 - value) / (1 - bound) if bound < 1 else math.inf


def report_row(corruption: str, artifact: str, report, what: str) -> Row:
    """The failure that misses its bound by most, the others named in the detail column."""
    if report.status == "passed":
        m, t = report.metrics, report.thresholds
        return Row(corruption, artifact, "passed", "kl_mean", f"{m['kl_mean']:.4g}", f"<= {t['kl_mean']:g}",
                   f"kl_max {m['kl_max']:.3g} (<= {t['kl_max']:g}), top1 {m['top1']:.3f} (>= {t['top1']:g})")
    parsed = []
    for line in report.failures:
        match = _FAILURE.match(line)
        assert match, line
        name, value, op, bound, rest = match.groups()
        drift = bool(rest.strip())  # check_recorded's lines: worse than the export measured
        label = f"{name} vs export" if drift else name
        parsed.append((not drift, _margin(name, float(value), float(bound)), label, f"{float(value):.4g}",
                       f"{op} {float(bound):.4g}"))
    parsed.sort(reverse=True)  # a bound's failure first, then the largest miss
    bounds_caught, _, label, value, bound = parsed[0]
    verdict = "gate failed (bounds)" if bounds_caught else "gate failed (vs export only)"
    also = ", ".join(p[2] for p in parsed[1:])
    return Row(corruption, artifact, verdict, label, value, bound, what + (f"; also failed: {also}" if also else ""))


def render(rows: list[Row]) -> str:
    head = ("corruption", "artifact", "verdict", "metric", "value", "bound", "what was changed / notes")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (r.corruption, r.artifact, r.verdict, r.metric, r.value, r.bound, r.detail)
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    rows: list[Row] = []
    yield rows
    if not rows:
        return
    text = render(rows)
    print("\n\nCorruption suite (SmolLM2-135M, 20 built-in prompts, default bounds):\n" + text)
    out = tmp_path_factory.mktemp("corruption-table") / "corruption_table.md"
    out.write_text(text)
    extra = os.environ.get("EDGEKIT_CORRUPTION_TABLE")
    if extra:
        Path(extra).write_text(text)
    print(f"(table written to {out}{' and ' + extra if extra else ''})")


# ------------------------------------------------------------------ fixtures: the exports and the reference


@pytest.fixture(scope="module")
def gguf_exports(tmp_path_factory, smollm2_hf) -> dict[str, Path]:
    from edgekit.exporters.gguf import export_gguf

    root = tmp_path_factory.mktemp("corruption-gguf")
    return {f"gguf-{q}": export_gguf(smollm2_hf, root / q, quant=q).path for q in ("f16", "q4_k_m")}


@pytest.fixture(scope="module")
def artifacts(onnx_artifact, gguf_exports) -> Callable[[str], Path]:
    names = {a: a.replace("onnx-", "smollm2-") for a in ONNX_ARTIFACTS}  # the session's ArtifactStore names

    def get(name: str) -> Path:
        return gguf_exports[name] if name in gguf_exports else onnx_artifact(names[name]).path

    return get


@pytest.fixture(scope="module", autouse=True)
def reference_once():
    """gate_onnx runs the transformers reference for every re-gate (half a minute on a busy machine); the
    ONNX artifacts here share one tokenizer, so the same reference comes out each time. This runs the real
    :func:`edgekit.quality.compute_reference` once per distinct input (kind, source, prompts, token ids) and
    hands the result to every re-gate with that input. (GGUF re-gates keep their own cache of the last one.)"""
    import edgekit.exporters.onnx as onnx_exporter

    real, memo = onnx_exporter.compute_reference, {}

    def once(kind, source, prompts, tokenizer, **kwargs):
        ids = tuple(tuple(tokenizer.encode(p, add_special=True)) for p in prompts)
        key = (kind, str(source), tuple(prompts), ids, kwargs.get("encoder_settings"), kwargs.get("allow_pickle"))
        if key not in memo:
            memo[key] = real(kind, source, prompts, tokenizer, **kwargs)
        return memo[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(onnx_exporter, "compute_reference", once)
        yield memo


@pytest.fixture
def damaged(tmp_path):
    """Where a test puts its damaged copy; removed afterwards (a copy of the fp32 export is 540 MB)."""
    path = tmp_path / "damaged"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def regate(folder: Path, source: Path):
    """Re-gate an artifact with :func:`edgekit.exporters.gate_artifact`: the 20 built-in prompts, its
    precision's default bounds, and the comparison with the gate recorded at export."""
    from edgekit.exporters import gate_artifact

    return gate_artifact(folder, source)


# ------------------------------------------------------------------ the tests


def _report(kl_mean: float, digest: str = "p", status: str = "passed"):
    from edgekit.manifest import GateReport

    return GateReport(status=status, kind="decoder", precision="int4", reference="transformers fp32",
                      metrics={"kl_mean": kl_mean, "kl_max": 1.0, "top1": 0.6},
                      thresholds={"kl_mean": 0.8, "kl_max": 6.0, "top1": 0.55}, prompts_sha256=digest)


def test_regate_worse_than_the_recorded_gate_fails():
    from edgekit.quality import check_recorded, drift_limit

    recorded = _report(0.5)
    assert drift_limit(0.5, 0.8) == pytest.approx(0.55)  # 10 % of the recorded value
    assert drift_limit(1e-8, 1e-4) == pytest.approx(5e-6 + 1e-8)  # near-exact: 5 % of the bound
    assert check_recorded(_report(0.54), recorded).status == "passed"
    failed = check_recorded(_report(0.56), recorded)
    assert failed.status == "failed" and failed.failures[0].startswith("kl_mean = 0.56, needs <= 0.55")
    assert "the artifact changed since" in failed.failures[0]
    # other prompts, or no passed gate on record: nothing to compare with
    assert check_recorded(_report(0.56, digest="other"), recorded).status == "passed"
    assert check_recorded(_report(0.56), _report(0.5, status="skipped")).status == "passed"
    assert check_recorded(_report(0.56), None).status == "passed"


def test_tokenizer_size_is_recorded_and_checked_by_the_loader(tiny_llama, tmp_path):
    from edgekit.exporters.onnx import export_onnx
    from edgekit.runtimes import load
    from edgekit.runtimes.tokenizer import HFTokenizer

    art = export_onnx(tiny_llama, tmp_path / "out", run_gate=False)
    size = art.manifest.model.tokenizer_size
    assert size == HFTokenizer(art.path).vocab_size and size > 100
    load(art.path).close()
    truncate_tokenizer_json(art.path, 20)
    rehash_manifest(art.path)
    assert HFTokenizer(art.path).vocab_size == size - 20  # still a valid tokenizer
    with pytest.raises(ArtifactError, match=f"has {size - 20} tokens but the model was exported with {size}"):
        load(art.path)



@pytest.mark.slow
@pytest.mark.parametrize("artifact", ONNX_ARTIFACTS + GGUF_ARTIFACTS)
def test_good_exports_pass(artifact, artifacts, smollm2_hf, table):
    report = regate(artifacts(artifact), smollm2_hf)
    table.append(report_row("none (the export as made)", artifact, report, ""))
    assert report.status == "passed", report.failures
    assert report.n_prompts == len(BUILTIN_PROMPTS)


@pytest.mark.slow
@pytest.mark.parametrize(("artifact", "corruption"), CASES, ids=[f"{a}-{c.replace(' ', '_')}" for a, c in CASES])
def test_damaged_export_is_rejected(artifact, corruption, artifacts, smollm2_hf, damaged, table):
    what = make_damaged(artifacts(artifact), damaged, artifact, corruption)
    rehash_manifest(damaged)  # the hashes now match: only the gate (or the loader's own checks) can object
    try:
        report = regate(damaged, smollm2_hf)
    except ArtifactError as exc:
        reason = str(exc).replace(str(damaged), "<copy>")
        table.append(Row(corruption, artifact, "refused by the loader", "-", "-", "-", f"{what}: {reason}"))
        assert "sha256" not in reason and "bytes but" not in reason, reason  # not the hash or size check
        return
    table.append(report_row(corruption, artifact, report, what))
    assert report.status == "failed", f"{corruption} on {artifact} passed the gate: {report.metrics}"


@pytest.mark.slow
@pytest.mark.parametrize("artifact", ("onnx-fp32", "gguf-f16"))
def test_hash_check_alone_refuses(artifact, artifacts, damaged):
    """Without the careless re-hash the loader refuses the damaged file before anything runs."""
    from edgekit.runtimes import load

    make_damaged(artifacts(artifact), damaged, artifact, "zeroed layer norm")
    with pytest.raises(ArtifactError, match="does not match its sha256"):
        load(damaged)


@pytest.mark.slow
def test_cut_tokenizer_that_keeps_its_merges_is_refused(artifacts, damaged):
    """The careless form of the cut (vocabulary entries removed, merges left): the tokenizer no longer loads."""
    from edgekit.runtimes import load

    copy_artifact(artifacts("onnx-int4"), damaged)
    path = damaged / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    keep = len(data["model"]["vocab"]) - TRUNCATED_TOKENS
    data["model"]["vocab"] = {t: i for t, i in data["model"]["vocab"].items() if i < keep}
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    rehash_manifest(damaged)
    with pytest.raises(ArtifactError, match="not a valid tokenizer file"):
        load(damaged)
