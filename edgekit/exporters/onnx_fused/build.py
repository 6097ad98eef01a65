"""Build a decoder as one fused ONNX graph, op by op, straight from the safetensors (no torch, no tracing).

Per layer the graph is what onnxruntime's fused CPU kernels want (the layout
onnxruntime-genai's model builder emits, written here from the op specs)::

    x, residual = SkipSimplifiedLayerNormalization(previous output, residual, attn_norm)
    qkv         = MatMul | MatMulNBits (x, [Wq; Wk; Wv])            one packed projection
    attn        = GroupQueryAttention(qkv, past_k, past_v, seqlens_k, total_len, cos, sin)
                  (rotary inside; past and present share one buffer sized to the context)
    x, residual = SkipSimplifiedLayerNormalization(attn @ Wo, residual, ffn_norm)
    gate, up    = Split(MatMul | MatMulNBits (x, [Wgate; Wup]))
    out         = (Sigmoid(gate) * gate * up) @ Wdown

Inputs and outputs follow onnxruntime-genai's names (``input_ids``,
``attention_mask``, ``past_key_values.N.key/value``, ``logits``,
``present.N.key/value``), so its runtime loads the artifact as it is;
``seqlens_k`` and ``total_sequence_length`` are derived from the attention mask
inside the graph. Weights are read one tensor at a time and written to the
external data file at once (:mod:`graph`), so peak memory stays near one layer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekit.errors import UnsupportedModelError
from edgekit.exporters.onnx_fused import nbits
from edgekit.exporters.onnx_fused.graph import MS, Graph
from edgekit.exporters.onnx_fused.specs import (
    activation,
    attention_scale,
    fused_spec_for,
    layer_windows,
    local_rope,
    logit_softcap,
    rope_tables,
)
from edgekit.families import SKIP_SUFFIXES, Family, TensorNames, shape_of
from edgekit.safetensors_io import TensorRef, read_tensor, scan_safetensors

if TYPE_CHECKING:
    from edgekit.exporters.context import ExportContext

MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
GRAPH_KIND = "fused-decoder/v1"  # metadata "edgekit.graph": the runtime's cue for the shared KV buffer


@dataclass
class QuantPlan:
    """How each matrix is stored: ``bits`` per gguf-style weight name (missing = ``default_bits``; 0 = float)."""

    default_bits: int = 0  # 0: fp32 everywhere
    block: int = 32
    method: str = "rtn"
    accuracy_level: int = 4
    head_bits: int = 8  # output layer (and a tied embedding) when quantized
    embed_bits: int = 8  # an untied embedding's GatherBlockQuantized
    bits: dict[str, int] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)  # per-matrix overrides of ``method``
    importance: dict[str, np.ndarray] = field(default_factory=dict)  # per-input channel weights for "search"
    sensitive: float = 0.0  # this fraction of the layer matrices' weights at 8 bits, the costliest at 4 (calib.py)
    hessian: dict[str, np.ndarray] = field(default_factory=dict)  # per-matrix input second moments for "gptq"

    eight_bit: tuple[str, ...] = ()  # matrices at 8 bits by rule: "ffn_down" (every layer), "attn_qkv:more" (more_bits)
    on_grid: dict[str, Any] = field(default_factory=dict)  # fields that replace these for a source on a 4-bit grid
    source_on_grid: bool = False  # the export found the source's blocks on a 4-bit grid and applied ``on_grid``

    def bits_for(self, name: str) -> int:
        return self.bits.get(name, self.default_bits)

    def resolve(self, n_layers: int) -> None:
        """Turn the ``eight_bit`` rules into per-matrix ``bits`` for a model of ``n_layers`` (explicit bits win)."""
        more = set(more_bits_layers(n_layers))
        for rule in self.eight_bit:
            kind, _, which = rule.partition(":")
            for i in range(n_layers):
                if which != "more" or i in more:
                    self.bits.setdefault(f"blk.{i}.{kind}", 8)

    def describe(self) -> dict[str, Any]:
        return {"default_bits": self.default_bits, "block_size": self.block, "method": self.method,
                "accuracy_level": self.accuracy_level, "output_bits": self.head_bits,
                "embedding_bits": self.embed_bits, "overrides": dict(sorted(self.bits.items())),
                **({"sensitive_8bit_fraction": self.sensitive} if self.sensitive else {}),
                **({"eight_bit_rules": list(self.eight_bit)} if self.eight_bit else {}),
                **({"source_on_4bit_grid": True} if self.source_on_grid else {}),
                **({"method_overrides": dict(sorted(self.methods.items()))} if self.methods else {})}


def more_bits_layers(n_layers: int) -> list[int]:
    """llama.cpp's ``use_more_bits`` layers (the first and last eighth, every third between): where q4_k_m keeps
    attention v and ffn down at 6 bits."""
    return [i for i in range(n_layers)
            if i < n_layers // 8 or i >= 7 * n_layers // 8 or (i - n_layers // 8) % 3 == 2]


@dataclass
class BuildResult:
    model_path: Path
    spec: str
    n_nodes: int
    weight_bytes: int
    matrices: dict[str, int]  # weight name -> bits (0 = float)


class Weights:
    """The checkpoint's tensors by GGUF-style name (``blk.3.attn_q.weight``), read on demand as float32."""

    def __init__(self, spec: Family, files: list[Path], n_layers: int, refs: dict[str, TensorRef] | None = None):
        name_map = TensorNames(spec, n_layers)
        self.refs = {}
        for hf_name, ref in (scan_safetensors(files) if refs is None else refs).items():
            if hf_name.endswith(SKIP_SUFFIXES):
                continue
            name = name_map.get(hf_name)
            if name is None:
                raise UnsupportedModelError(
                    f"tensor {hf_name} has no place in the fused {spec.name} decoder: a variant edgekit does not cover "
                    "(export it with via='optimum')", param="via")
            self.refs[name] = ref
        self.used: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self.refs

    def get(self, name: str) -> np.ndarray:
        self.used.add(name)
        return read_tensor(self.refs[name], "f32")


class DecoderBuilder:
    def __init__(self, folder: Path, files: list[Path], plan: QuantPlan, context: int | None = None, *,
                 ctx: ExportContext | None = None):
        """``ctx``: the export's context, whose config, family, shape and tensor table are used as they are."""
        self.config = ctx.config if ctx is not None else json.loads((folder / "config.json").read_text())
        self.spec = ctx.family("onnx") if ctx is not None else fused_spec_for(self.config)
        self.shape = ctx.shape if ctx is not None else shape_of(self.config)
        self.plan = plan
        plan.resolve(self.shape.n_layers)
        self.context = int(context or self.shape.context)
        self.w = Weights(self.spec, files, self.shape.n_layers, ctx.refs if ctx is not None else None)
        self.eps = float(self.config.get("rms_norm_eps", 1e-6))
        self.act = activation(self.config, self.spec)
        self.matrices: dict[str, int] = {}
        self.taps: dict[str, str] = {}  # matrix name -> the graph value it multiplies (calibration outputs)
        self.tap_outputs = False  # also output every matrix's input (fp32 calibration graphs)

    # ------------------------------------------------------------ pieces
    def norm_weight(self, name: str) -> np.ndarray:
        w = self.w.get(name)
        return w + 1.0 if self.spec.norm_plus_one else w

    def linear(self, g: Graph, x: str, name: str, w: np.ndarray, bias: np.ndarray | None, bits: int) -> str:
        """x @ w.T (+ bias) with w (N, K): fp32 MatMul, or MatMulNBits at ``bits``."""
        n, k = w.shape
        self.matrices[name] = bits
        self.taps[name] = x
        if bits == 0:
            y = g.one("MatMul", [x, g.weight(f"{name}.weight", w.T)], name)
            if bias is not None:
                y = g.one("Add", [y, g.weight(f"{name}.bias", bias)], f"{name}/bias")
            return y
        method = self.plan.methods.get(name, self.plan.method)
        if method == "minmax" and k % self.plan.block:  # the block sums need whole blocks: integer zero points
            method = "search" if self.plan.importance.get(name) is not None else "rtn"
        q = nbits.quantize(w, bits, self.plan.block, method, self.plan.importance.get(name), self.plan.hessian.get(name))
        inputs = [x, g.weight(f"{name}.qweight", q.packed), g.weight(f"{name}.scales", q.scales),
                  g.weight(f"{name}.zero_points", q.zero_points)]
        if bias is not None:
            inputs += ["", g.weight(f"{name}.bias", bias)]
        y = g.one("MatMulNBits", inputs, name, domain=MS, K=k, N=n, bits=bits, block_size=self.plan.block,
                  accuracy_level=self.plan.accuracy_level)
        if q.offsets is None:
            return y
        # the blocks' float minimum: y += (x summed per block) @ offsets.T, a (K/block x N) fp32 MatMul
        nb = q.offsets.shape[1]
        xb = g.one("ReduceSum", [g.one("Reshape", [x, g.const([0, 0, nb, self.plan.block])], f"{name}/blocks"),
                                 g.const([-1])], f"{name}/block_sums", keepdims=0)
        offsets = g.one("Cast", [g.weight(f"{name}.offsets", q.offsets.T.astype(np.float16))], f"{name}/offsets_f32",
                        to=1)
        return g.one("Add", [y, g.one("MatMul", [xb, offsets], f"{name}/offset")], f"{name}/with_offset")

    def _bias(self, name: str) -> np.ndarray | None:
        return self.w.get(name) if self.w.has(name) else None

    def qkv(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        p = f"blk.{i}"
        if self.w.has(f"{p}.attn_qkv.weight"):
            return self.w.get(f"{p}.attn_qkv.weight"), self._bias(f"{p}.attn_qkv.bias")
        w = np.concatenate([self.w.get(f"{p}.attn_{t}.weight") for t in "qkv"])
        biases = [self._bias(f"{p}.attn_{t}.bias") for t in "qkv"]
        if all(b is None for b in biases):
            return w, None
        rows = [self.shape.n_heads, self.shape.n_kv_heads, self.shape.n_kv_heads]
        return w, np.concatenate([b if b is not None else np.zeros(r * self.shape.head_dim, np.float32)
                                  for b, r in zip(biases, rows)])

    def gate_up(self, i: int) -> np.ndarray:
        p = f"blk.{i}"
        if not self.w.has(f"{p}.ffn_gate.weight"):  # Phi-3: gate_up_proj packed as ffn_up
            return self.w.get(f"{p}.ffn_up.weight")
        return np.concatenate([self.w.get(f"{p}.ffn_gate.weight"), self.w.get(f"{p}.ffn_up.weight")])

    # ------------------------------------------------------------ graph
    def build(self, out_dir: Path) -> BuildResult:
        """The whole graph, written to ``out_dir``: inputs, rotary tables, embedding, the layers, the head."""
        s = self.shape
        g = Graph(out_dir / DATA_FILE)
        try:
            vocab = int(self.w.refs["token_embd.weight"].shape[0])
            ids, seqlens, total = self._inputs(g)
            rope = self._rope(g)
            h, head_w, head_q, head_bits = self._embedding(g, ids, vocab)
            residual = h
            x = g.one("SimplifiedLayerNormalization", [h, g.weight("blk.0.attn_norm", self.norm_weight("blk.0.attn_norm.weight"))],
                      "blk.0.attn_norm", epsilon=self.eps, axis=-1, stash_type=1)
            windows = layer_windows(self.config)
            for i in range(s.n_layers):
                x, residual = self._layer(g, i, x, residual, rope, seqlens, total, windows[i])
            return self._finish(g, out_dir, x, head_w, head_q, head_bits, vocab)
        finally:
            g.close()

    def _inputs(self, g: Graph) -> tuple[str, str, str]:
        """input_ids, and GroupQueryAttention's seqlens_k and total_sequence_length from the attention mask."""
        ids = g.input("input_ids", np.int64, ["batch_size", "sequence_length"])
        mask = g.input("attention_mask", np.int64, ["batch_size", "total_sequence_length"])
        seqlens = g.one("Cast", [g.one("Sub", [g.one("ReduceSum", [mask, g.const([1])], "seqlens/sum", keepdims=0),
                                             g.const(1)], "seqlens/sub")], "seqlens_k", to=6)
        total = g.one("Cast", [g.one("Gather", [g.one("Shape", [mask], "total/shape"), g.const(1)], "total/get",
                                     axis=0)], "total_sequence_length", to=6)
        return ids, seqlens, total

    def _rope(self, g: Graph) -> dict[bool, tuple[str, str]]:
        """The rotary cos/sin tables by "is a sliding-window layer" (False: the global ones)."""
        cfg, s = self.config, self.shape
        cos, sin = rope_tables(cfg, s, self.context)
        rope = {False: (g.weight("rope.cos", cos), g.weight("rope.sin", sin))}
        if local_rope(cfg):  # Gemma 3: the sliding-window layers rotate with their own base
            cos, sin = rope_tables(cfg, s, self.context, local=True)
            rope[True] = (g.weight("rope_local.cos", cos), g.weight("rope_local.sin", sin))
        del cos, sin

        return rope

    def _embedding(self, g: Graph, ids: str, vocab: int):
        """The token embedding (block-quantized where the plan says), and what the head reuses of it:
        (hidden, the tied float weight or None, the tied quantized blocks or None, the head's bits)."""
        s, plan = self.shape, self.plan
        tied = "output.weight" not in self.w.refs
        head_bits = plan.head_bits if plan.default_bits else 0
        embed = self.w.get("token_embd.weight")
        head_q = None
        if plan.default_bits and (tied or plan.embed_bits) and s.hidden % plan.block == 0:
            bits = head_bits if tied else plan.embed_bits
            # GatherBlockQuantized has no offsets: integer zero points for the embedding (8 bits: RTN is as good)
            method = "rtn" if bits == 8 else "search" if plan.method == "minmax" else plan.method
            qe = nbits.quantize(embed, bits, plan.block, method)
            if tied:
                head_q = qe
            if tied:  # one copy on disk: the output layer's blocks, reshaped for the Gather
                data = g.one("Reshape", [g.weight("output.qweight", qe.packed), g.const([vocab, -1])],
                             "embed/reshape")
            else:
                data = g.weight("embed.qweight", qe.packed.reshape(vocab, -1))
            h = g.one("GatherBlockQuantized", [data, ids, g.weight("embed.scales", qe.scales),
                                               g.weight("embed.zero_points", qe.zero_points)],
                      "embed", domain=MS, bits=bits, block_size=plan.block, gather_axis=0, quantize_axis=1)
            self.matrices["embed"] = bits
        else:
            h = g.one("Gather", [g.weight("embed.weight", embed), ids], "embed", axis=0)
            self.matrices["embed"] = 0
        if self.spec.embed_scale:
            h = g.one("Mul", [h, g.const(math.sqrt(s.hidden), np.float32)], "embed/scale")
        head_w = embed if tied else None
        del embed

        return h, head_w, head_q, head_bits

    def _layer(self, g: Graph, i: int, x: str, residual: str, rope, seqlens: str, total: str,
               window: int) -> tuple[str, str]:
        """One decoder layer: packed qkv, GroupQueryAttention, output projection, gated MLP; (x, residual)."""
        s, cfg, plan = self.shape, self.config, self.plan
        p = f"blk.{i}"
        w, b = self.qkv(i)
        qkv = self.linear(g, x, f"{p}.attn_qkv", w, b, plan.bits_for(f"{p}.attn_qkv"))
        del w
        qkv_in = [qkv, "", ""]
        if self.w.has(f"{p}.attn_q_norm.weight"):  # Qwen3, Gemma 3: RMSNorm per head of q and k, pre-rotary
            q, k, v = g.op("Split", [qkv, g.const([s.n_heads * s.head_dim, s.n_kv_heads * s.head_dim,
                                                   s.n_kv_heads * s.head_dim])], f"{p}.qkv_split", outputs=3,
                           axis=-1)
            qkv_in = [self.head_norm(g, q, f"{p}.attn_q_norm"), self.head_norm(g, k, f"{p}.attn_k_norm"), v]
        cos_name, sin_name = rope.get(window >= 0, rope[False])  # local tables for sliding layers
        past_k = g.input(f"past_key_values.{i}.key", np.float32, ["batch_size", s.n_kv_heads, "past_sequence_length", s.head_dim])
        past_v = g.input(f"past_key_values.{i}.value", np.float32, ["batch_size", s.n_kv_heads, "past_sequence_length", s.head_dim])
        attn, _, _ = g.op("GroupQueryAttention",
                          [*qkv_in, past_k, past_v, seqlens, total, cos_name, sin_name],
                          f"{p}.attn", outputs=[f"{p}.attn/out0", f"present.{i}.key", f"present.{i}.value"],
                          domain=MS, num_heads=s.n_heads, kv_num_heads=s.n_kv_heads, do_rotary=1,
                          rotary_interleaved=0, scale=attention_scale(cfg, s), local_window_size=window)
        for t in ("key", "value"):
            g.output(f"present.{i}.{t}", np.float32, ["batch_size", s.n_kv_heads, "total_sequence_length", s.head_dim])
        o = self.linear(g, attn, f"{p}.attn_output", self.w.get(f"{p}.attn_output.weight"),
                        self._bias(f"{p}.attn_output.bias"), plan.bits_for(f"{p}.attn_output"))
        o = self.post_norm(g, o, f"{p}.post_attention_norm")
        x, _, _, residual = g.op("SkipSimplifiedLayerNormalization",
                                 [o, residual, g.weight(f"{p}.ffn_norm", self.norm_weight(f"{p}.ffn_norm.weight"))],
                                 f"{p}.ffn_norm", outputs=[f"{p}.ffn_norm/out0", "", "", f"{p}.ffn_norm/res"],
                                 epsilon=self.eps, domain=MS)
        gu = self.linear(g, x, f"{p}.ffn_gate_up", self.gate_up(i), None, plan.bits_for(f"{p}.ffn_gate_up"))
        gate, up = g.op("Split", [gu, g.const([s.ffn, s.ffn])], f"{p}.ffn_split", outputs=2, axis=-1)
        act = self.activation(g, gate, p)
        m = self.linear(g, g.one("Mul", [act, up], f"{p}.ffn_mul"), f"{p}.ffn_down",
                        self.w.get(f"{p}.ffn_down.weight"), None, plan.bits_for(f"{p}.ffn_down"))
        m = self.post_norm(g, m, f"{p}.post_ffw_norm")
        nxt = f"blk.{i + 1}.attn_norm" if i + 1 < s.n_layers else "output_norm"
        x, _, _, residual = g.op("SkipSimplifiedLayerNormalization",
                                 [m, residual, g.weight(nxt, self.norm_weight(f"{nxt}.weight"))],
                                 nxt, outputs=[f"{nxt}/out0", "", "", f"{nxt}/res"], epsilon=self.eps, domain=MS)
        return x, residual

    def _finish(self, g: Graph, out_dir: Path, x: str, head_w, head_q, head_bits: int, vocab: int) -> BuildResult:
        """The output layer and logits; every tensor of the checkpoint used; the model saved."""
        cfg = self.config
        self._head(g, x, head_w, head_q, head_bits, vocab)
        self._softcap(g)
        g.output("logits", np.float32, ["batch_size", "sequence_length", vocab])
        if self.tap_outputs:
            for value in dict.fromkeys(v for k, v in self.taps.items() if k != "output"):
                g.output(value, np.float32, None)
        unused = set(self.w.refs) - self.w.used
        if unused:
            raise UnsupportedModelError(
                f"{len(unused)} tensor(s) of this {cfg.get('model_type')} checkpoint are not used by the fused "
                f"{self.spec.name} decoder (first: {sorted(unused)[0]}): export it with via='optimum'", param="via")
        model_path = out_dir / MODEL_FILE
        g.save(model_path, producer="edgekit", metadata={"edgekit.graph": GRAPH_KIND})
        return BuildResult(model_path, self.spec.name, len(g.nodes), g.weight_bytes, dict(self.matrices))

    def activation(self, g: Graph, gate: str, p: str) -> str:
        if self.act == "gelu_tanh":
            return g.one("Gelu", [gate], f"{p}.ffn_act", approximate="tanh")
        if self.act == "gelu":
            return g.one("Gelu", [gate], f"{p}.ffn_act")
        return g.one("Mul", [gate, g.one("Sigmoid", [gate], f"{p}.ffn_sigmoid")], f"{p}.ffn_silu")

    def head_norm(self, g: Graph, x: str, name: str) -> str:
        """RMSNorm over each head of a (batch, seq, heads * head_dim) projection (Qwen3's and Gemma 3's q/k norm)."""
        d = self.shape.head_dim
        heads = g.one("Reshape", [x, g.const([0, 0, -1, d])], f"{name}/heads")
        y = g.one("SimplifiedLayerNormalization", [heads, g.weight(name, self.norm_weight(f"{name}.weight"))], name,
                  epsilon=self.eps, axis=-1, stash_type=1)
        return g.one("Reshape", [y, g.const([0, 0, -1])], f"{name}/flat")

    def post_norm(self, g: Graph, x: str, name: str) -> str:
        """Gemma 3's norm of the attention or MLP output before the residual add (absent elsewhere: x as is)."""
        if not self.w.has(f"{name}.weight"):
            return x
        return g.one("SimplifiedLayerNormalization", [x, g.weight(name, self.norm_weight(f"{name}.weight"))], name,
                     epsilon=self.eps, axis=-1, stash_type=1)

    def _softcap(self, g: Graph) -> None:
        """Gemma's final logit softcapping: logits = cap * tanh(logits / cap)."""
        cap = logit_softcap(self.config)
        if cap is None:
            return
        head = next(n for n in reversed(g.nodes) if "logits" in n.output)
        head.output[list(head.output).index("logits")] = "logits/uncapped"
        t = g.one("Tanh", [g.one("Div", ["logits/uncapped", g.const(cap, np.float32)], "softcap/div")], "softcap/tanh")
        g.op("Mul", [t, g.const(cap, np.float32)], "softcap", outputs=["logits"])

    def _head(self, g: Graph, x: str, tied_w, tied_q, bits: int, vocab: int) -> None:
        name = "output"
        if tied_q is not None:  # share the embedding's 8-bit blocks with the output MatMulNBits
            self.matrices[name] = tied_q.bits
            g.op("MatMulNBits", [x, "output.qweight", "embed.scales", "embed.zero_points"],
                 name, outputs=["logits"], domain=MS, K=self.shape.hidden, N=vocab, bits=tied_q.bits,
                 block_size=self.plan.block, accuracy_level=self.plan.accuracy_level)
            return
        w = tied_w if tied_w is not None else self.w.get("output.weight")
        if tied_w is not None and bits == 0:  # fp32 tied: MatMul on the transposed embedding (folded at load)
            self.matrices[name] = 0
            t = g.one("Transpose", ["embed.weight"], "output/transpose", perm=[1, 0])
            g.op("MatMul", [x, t], name, outputs=["logits"])
            return
        y = self.linear(g, x, name, w, None, bits)
        g.nodes[-1].output[0] = "logits"
        del y
