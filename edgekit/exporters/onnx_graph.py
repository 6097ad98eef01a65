"""Graph rewrites edgekit applies to traced decoders, in plain ONNX ops.

Each rewrite keeps the model's inputs, outputs and meaning (optimum and any
onnxruntime user run the result as before) and is checked by the quality gate
like everything else: the fp32 gate runs after it.

``share_kv_heads``: grouped-query attention without ``repeat_kv``.
    Llama-family decoders with fewer key/value heads than query heads (SmolLM2:
    9 query heads, 3 kv heads) are traced with transformers' ``repeat_kv``:
    ``Reshape(Expand(Unsqueeze(present.key, 2)))`` copies the whole KV cache
    ``n_heads / n_kv_heads`` times for every generated token, then a Transpose and
    a scale Mul pass over the copy again. Decode time then grows with the context
    (SmolLM2 fp32: 24 ms per token at 128 cached tokens, 30 ms at 256). The
    rewrite instead folds the query heads of each group into the sequence axis,
    ``Q (B, H, t, d) -> (B, KV, H/KV * t, d)``, multiplies by the cache as it is
    (``(B, KV, n, d)``), and unfolds the scores ``-> (B, H, t, n)`` for the mask
    and softmax; the same for probabilities times values. Same arithmetic, no
    copies of the cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import ExportError

_SHAPE_Q = "edgekit/gqa/shape_group_rows"  # (B, H, t, d) -> (B, KV, G*t, d)
_SHAPE_HEADS = "edgekit/gqa/shape_heads"  # (B, KV, G*t, x) -> (B, H, t, x)
_SHAPE_GROUP = "edgekit/gqa/shape_group"  # (B, H, t, n) -> (B, KV, G*t, n)


@dataclass
class _Block:
    scores: object  # the MatMul Q @ K^T
    values: object  # the MatMul P @ V
    q: str
    k: str
    v: str
    scale: float
    repeats: tuple[str, str]  # the repeat_kv outputs of K and V


class _Graph:
    def __init__(self, model):
        from onnx import numpy_helper

        self.graph = model.graph
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.const: dict[str, np.ndarray] = {}
        for t in self.graph.initializer:
            if int(np.prod(t.dims)) <= 16 and t.data_location != 1:  # small, not external
                self.const[t.name] = numpy_helper.to_array(t)
        for n in self.graph.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.const[n.output[0]] = numpy_helper.to_array(a.t)

    def made_by(self, name: str, op: str):
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op else None

    def scalar(self, name: str) -> float | None:
        v = self.const.get(name)
        return float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None

    def unscale(self, name: str) -> tuple[str, float]:
        """``Mul(x, c)`` with a scalar constant c -> (x, c); anything else -> (name, 1.0)."""
        mul = self.made_by(name, "Mul")
        if mul is not None:
            for i, j in ((0, 1), (1, 0)):
                c = self.scalar(mul.input[j])
                if c is not None:
                    return mul.input[i], c
        return name, 1.0

    def repeat_source(self, name: str) -> str | None:
        """``Reshape(Expand(Unsqueeze(x, axes=[2])))`` (transformers' repeat_kv) -> x."""
        reshape = self.made_by(name, "Reshape")
        expand = reshape is not None and self.made_by(reshape.input[0], "Expand")
        unsq = expand and self.made_by(expand.input[0], "Unsqueeze")
        if not unsq or len(unsq.input) < 2:
            return None
        axes = self.const.get(unsq.input[1])
        if axes is None or [int(a) for a in np.atleast_1d(axes)] != [2]:
            return None
        return unsq.input[0]


def _find_blocks(g: _Graph) -> list[_Block]:
    blocks = []
    for softmax in [n for n in g.graph.node if n.op_type == "Softmax"]:
        scores = g.made_by(softmax.input[0], "MatMul")
        add = g.made_by(softmax.input[0], "Add")
        if scores is None and add is not None:
            scores = next((g.made_by(i, "MatMul") for i in add.input if g.made_by(i, "MatMul") is not None), None)
        if scores is None:
            continue
        q, q_scale = g.unscale(scores.input[0])
        k_t, k_scale = g.unscale(scores.input[1])
        transpose = g.made_by(k_t, "Transpose")
        perm = transpose is not None and next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)
        if perm != [0, 1, 3, 2]:
            continue
        k = g.repeat_source(transpose.input[0])
        probs = [softmax.output[0]] + [
            w.output[0] for w in g.consumers.get(softmax.output[0], [])
            if w.op_type == "Where" and len(w.input) == 3 and w.input[2] == softmax.output[0]
        ]
        values = next((n for p in probs for n in g.consumers.get(p, []) if n.op_type == "MatMul" and n.input[0] == p), None)
        v = values is not None and g.repeat_source(values.input[1])
        if k and v:
            blocks.append(_Block(scores, values, q, k, v, q_scale * k_scale, (transpose.input[0], values.input[1])))
    return blocks


def _rewire_shapes(g: _Graph, repeated: str, source: str) -> None:
    """``Shape(repeated)`` read only at non-head axes -> ``Shape(source)``, so the copy is not kept alive for it."""
    for shape in [n for n in g.consumers.get(repeated, []) if n.op_type == "Shape" and not n.attribute]:
        users = g.consumers.get(shape.output[0], [])
        if users and all(
            u.op_type == "Gather" and u.input[0] == shape.output[0] and g.scalar(u.input[1]) is not None
            and int(g.scalar(u.input[1])) not in (1, -3)
            for u in users
        ):
            shape.input[0] = source


def _used_in_subgraphs(graph) -> set[str]:
    names: set[str] = set()
    for node in graph.node:
        for a in node.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                names.update(i for n in sub.node for i in n.input)
                names |= _used_in_subgraphs(sub)
    return names


def _drop_dead_nodes(graph) -> None:
    needed = {o.name for o in graph.output} | _used_in_subgraphs(graph)
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    keep.reverse()
    produced = {o for n in keep for o in n.output}
    value_info = [vi for vi in graph.value_info if vi.name in produced]
    del graph.node[:]
    graph.node.extend(keep)
    del graph.value_info[:]
    graph.value_info.extend(value_info)


def _grouped(n_heads: int | None, n_kv_heads: int | None, head_dim: int | None) -> bool:
    return bool(n_heads and n_kv_heads and head_dim) and n_heads != n_kv_heads and n_heads % n_kv_heads == 0


def share_kv_heads(model, n_heads: int, n_kv_heads: int, head_dim: int) -> int:
    """Rewrite ``model`` (an ``onnx.ModelProto``) in place; return how many attention blocks changed."""
    from onnx import helper, numpy_helper

    if not _grouped(n_heads, n_kv_heads, head_dim):
        return 0
    g = _Graph(model)
    blocks = _find_blocks(g)
    if not blocks:
        return 0
    for name, value in ((_SHAPE_Q, [0, n_kv_heads, -1, head_dim]), (_SHAPE_HEADS, [0, n_heads, -1, 0]),
                        (_SHAPE_GROUP, [0, n_kv_heads, -1, 0])):
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
    replace: dict[str, list] = {}  # a replaced node's output name -> the nodes that take its place
    for i, b in enumerate(blocks):
        pre = f"/edgekit/gqa.{i}/"
        scores = [helper.make_node("Reshape", [b.q, _SHAPE_Q], [pre + "q"], name=pre + "reshape_q")]
        q = pre + "q"
        if b.scale != 1.0:
            model.graph.initializer.append(numpy_helper.from_array(np.asarray(b.scale, dtype=np.float32), pre + "scale"))
            scores.append(helper.make_node("Mul", [q, pre + "scale"], [pre + "q_scaled"], name=pre + "scale_q"))
            q = pre + "q_scaled"
        scores += [
            helper.make_node("Transpose", [b.k], [pre + "k_t"], name=pre + "transpose_k", perm=[0, 1, 3, 2]),
            helper.make_node("MatMul", [q, pre + "k_t"], [pre + "scores"], name=pre + "scores"),
            helper.make_node("Reshape", [pre + "scores", _SHAPE_HEADS], [b.scores.output[0]], name=pre + "unfold_scores"),
        ]
        replace[b.scores.output[0]] = scores
        replace[b.values.output[0]] = [
            helper.make_node("Reshape", [b.values.input[0], _SHAPE_GROUP], [pre + "probs"], name=pre + "fold_probs"),
            helper.make_node("MatMul", [pre + "probs", b.v], [pre + "out"], name=pre + "values"),
            helper.make_node("Reshape", [pre + "out", _SHAPE_HEADS], [b.values.output[0]], name=pre + "unfold_out"),
        ]
        _rewire_shapes(g, b.repeats[0], b.k)
        _rewire_shapes(g, b.repeats[1], b.v)
    nodes = [m for n in model.graph.node for m in replace.get(n.output[0] if n.output else "", [n])]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _drop_dead_nodes(model.graph)
    return len(blocks)


def optimize_decoder(path: Path, n_heads: int | None, n_kv_heads: int | None, head_dim: int | None) -> list[str]:
    """Apply the decoder rewrites to the model file at ``path`` in place; return what was done, for the manifest."""
    import onnx

    from edgekit.exporters.onnx_quant import model_files, needs_external_data, save_model
    from edgekit.translate import translated

    if not _grouped(n_heads, n_kv_heads, head_dim):
        return []
    with translated("onnx", "rewrite"):
        model = onnx.load(str(path))
        try:
            n = share_kv_heads(model, n_heads or 0, n_kv_heads or 0, head_dim or 0)
        except (KeyError, IndexError, AttributeError, StopIteration, ValueError) as exc:  # a graph it does not know
            raise ExportError(f"the attention graph rewrite does not fit this graph ({type(exc).__name__}: {exc}): "
                              "export with optimize=False", param="optimize") from exc
        if not n:
            return []
        tmp = path.parent / ".rewrite"
        tmp.mkdir()
        save_model(model, tmp / path.name, needs_external_data(path))
        del model
        for f in model_files(path):
            f.unlink()
        for f in tmp.iterdir():
            f.replace(path.parent / f.name)
        tmp.rmdir()
    return [f"share_kv_heads: {n} attention blocks read the KV cache in place of repeat_kv copies"]
