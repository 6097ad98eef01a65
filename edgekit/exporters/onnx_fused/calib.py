"""Activation statistics for quantization: how much each input channel of each matrix matters.

The fp32 fused graph is built once more with the input of every matrix as an extra
output, run on a small calibration text (not the gate's prompts), and the mean
square of each input channel over all tokens is kept: llama.cpp's "importance
matrix" idea. :mod:`nbits`' ``search`` method then weighs each weight's rounding
error by it, so the channels that carry large activations are rounded most exactly.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

CALIBRATION_TEXTS = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined a screw "
    "press with movable metal type. Books became cheaper, literacy spread, and ideas travelled faster than ever.",
    "import numpy as np\n\ndef moving_average(x, k):\n    kernel = np.ones(k) / k\n    return np.convolve(x, kernel, "
    "mode='valid')\n\nprint(moving_average(np.arange(10), 3))\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHow do I boil an egg so that the "
    "yolk stays soft?<|im_end|>\n<|im_start|>assistant\nPlace the egg in boiling water for six minutes, then cool it "
    "in cold water for one minute before peeling.<|im_end|>\n",
    "Q: A train leaves at 3:40 pm and the trip takes 2 hours and 35 minutes. When does it arrive?\nA: It arrives at "
    "6:15 pm. Q: What is 12 squared? A: 144. Q: Name three primary colours. A: Red, yellow and blue.",
    "Les océans couvrent environ soixante et onze pour cent de la surface de la Terre. Die Alpen sind das höchste "
    "Gebirge Europas. El río Amazonas es el más caudaloso del mundo. 日本の首都は東京です。",
    '{"id": 42, "items": [{"sku": "A-17", "qty": 3, "price": 9.99}, {"sku": "B-02", "qty": 1, "price": 24.5}], '
    '"status": "shipped", "notes": null}\n| name | score |\n|------|-------|\n| Ada  | 97    |\n| Alan | 93    |',
    "Dear team, thank you all for the hard work this quarter. Our release shipped on time, customer tickets fell by "
    "a third, and the new onboarding flow is already showing results. Let us keep the momentum going.",
    "In mathematics, a prime number is a natural number greater than one that has no positive divisors other than "
    "one and itself. The first primes are 2, 3, 5, 7, 11 and 13; there are infinitely many of them.",
)


def activation_importance(folder: Path, files: list[Path], tokenizer, threads: int | None = None, *,
                          ctx=None, full: bool = False) -> dict[str, np.ndarray]:
    """Mean squared input activation per channel, for every matrix of the fused decoder (by its graph name).

    ``full``: the whole second moment ``X^T X / tokens`` (K x K) instead of its diagonal, what GPTQ needs.
    ``ctx``: the export's :class:`~edgekit.exporters.context.ExportContext` (config, family, tensors read once)."""
    import onnxruntime as ort

    from edgekit.exporters.onnx_fused.build import DecoderBuilder, QuantPlan

    with tempfile.TemporaryDirectory(prefix="edgekit-calib-") as tmp:
        builder = DecoderBuilder(folder, files, QuantPlan(), context=512, ctx=ctx)
        builder.tap_outputs = True
        result = builder.build(Path(tmp))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(result.model_path), opts, providers=["CPUExecutionProvider"])
        s = builder.shape
        values = {v: k for k, v in builder.taps.items() if k != "output"}
        names = list(dict.fromkeys(values))
        sums = {v: None for v in names}
        count = 0
        for text in CALIBRATION_TEXTS:
            ids = tokenizer.encode(text)[:500]
            feeds = {"input_ids": np.asarray([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
            for i in range(s.n_layers):
                for t in ("key", "value"):
                    feeds[f"past_key_values.{i}.{t}"] = np.zeros((1, s.n_kv_heads, 0, s.head_dim), np.float32)
            outs = sess.run(names, feeds)
            for v, x in zip(names, outs):
                x2 = x.reshape(-1, x.shape[-1])
                sq = (x2.T @ x2).astype(np.float32) if full else np.square(x2.astype(np.float64)).sum(axis=0)
                sums[v] = sq if sums[v] is None else sums[v] + sq
            count += len(ids)
        del sess
    return {k: (sums[v] / np.float32(count)).astype(np.float32) for k, v in builder.taps.items() if v in sums}


def sensitive_matrices(folder: Path, files: list[Path], plan, fraction: float, *, ctx=None) -> dict[str, int]:
    """8 bits for the layer matrices whose 4-bit rounding costs most, until ``fraction`` of their weights is 8-bit.

    A matrix's cost is its mean activation-weighted squared rounding error per weight at 4 bits under ``plan``
    (its method and the ``plan.importance`` this module measured): what the matrix adds to its output's error
    on the calibration text, per byte that 8 bits would spend on it."""
    from edgekit.exporters.onnx_fused import nbits
    from edgekit.exporters.onnx_fused.build import DecoderBuilder, QuantPlan

    builder = DecoderBuilder(folder, files, QuantPlan(), ctx=ctx)
    scored, total = [], 0
    for i in range(builder.shape.n_layers):
        p = f"blk.{i}"
        mats = {"attn_qkv": lambda: builder.qkv(i)[0], "attn_output": lambda: builder.w.get(f"{p}.attn_output.weight"),
                "ffn_gate_up": lambda: builder.gate_up(i), "ffn_down": lambda: builder.w.get(f"{p}.ffn_down.weight")}
        for kind, get in mats.items():
            name = f"{p}.{kind}"
            w = get()
            imp = plan.importance.get(name)
            a = np.ones(w.shape[1], np.float32) if imp is None else imp
            method = plan.methods.get(name, plan.method)
            if method == "minmax" and w.shape[1] % plan.block:
                method = "search" if imp is not None else "rtn"
            d = nbits.dequantize(nbits.quantize(w, 4, plan.block, method, imp)) - w
            scored.append((float((d * d * a[None, :]).sum()) / w.size, name, w.size))
            total += w.size
            del w, d
    budget, chosen = fraction * total, {}
    for _cost, name, n in sorted(scored, reverse=True):
        if n <= budget:
            chosen[name] = 8
            budget -= n
    return chosen
