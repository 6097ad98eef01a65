"""Does the model fit the target? Weights plus the KV cache at the chosen context, against the app RAM budget.

The weights are the model file's bytes (ONNX with its external data; a GGUF as mapped),
the KV cache is K and V of every layer per position (fp32 for edgekit's ONNX exports,
f16 in llama.cpp) from :mod:`edgekit.profiler.shape`. The runtime's own buffers come on
top, so a package that fits only just may still be killed on a busy phone.

Context: a ``context`` the caller gives is checked as it is. Otherwise decoders get the
model's trained context, at most :data:`DEFAULT_CONTEXT`, halved (not below
:data:`MIN_CONTEXT`) until the model fits the target's budget.
"""

from __future__ import annotations

from edgekit.errors import ConfigError, is_int
from edgekit.package.schema import MemoryCheck

DEFAULT_CONTEXT = 4096  # what edgekit's llama.cpp runtime allocates by default (runtimes/llamacpp.py)
MIN_CONTEXT = 512  # below this a chat turn with a system prompt does not fit


def _mb(n: int) -> str:
    if n < 1e6:
        return f"{n / 1e3:,.1f} KB"
    return f"{n / 1e6:,.1f} MB" if n < 1e9 else f"{n / 1e9:,.2f} GB"


def _check(weights: int, per_pos: int, ctx: int | None, budget: int | None, target: str | None) -> MemoryCheck:
    kv = per_pos * (ctx or 0)
    total = weights + kv
    return MemoryCheck(weights_bytes=weights, kv_bytes_per_position=per_pos, context=ctx, kv_bytes=kv,
                       total_bytes=total, budget_bytes=budget, target=target,
                       fits=None if budget is None else total <= budget,
                       note="weights + KV cache; the runtime's own buffers come on top")


def plan_memory(*, name: str, kind: str, weights: int, kv_per_position: int, trained_context: int | None,
                context: int | None, target: str | None, budget_bytes: int | None) -> MemoryCheck:
    """Choose the context and check the fit; :class:`ConfigError` with the numbers when the model does not fit."""
    where = f"the app RAM budget of {target} ({_mb(budget_bytes)})" if budget_bytes is not None else ""
    if kind != "decoder":
        m = _check(weights, 0, trained_context, budget_bytes, target)
        if m.fits is False:
            raise ConfigError(f"{name} does not fit {where}: its weights are {_mb(weights)}; choose a smaller "
                              "model or quantization, or another target", param="target")
        return m
    trained = trained_context or DEFAULT_CONTEXT
    if context is not None:
        if not is_int(context, 16):
            raise ConfigError(f"context must be an integer >= 16, got {context!r}", param="context")
        if context > trained:
            raise ConfigError(f"context={context} is more than {name} was trained for ({trained}): "
                              f"use at most context={trained}", param="context")
        m = _check(weights, kv_per_position, context, budget_bytes, target)
        if m.fits is False:
            room = (budget_bytes - weights) // kv_per_position if kv_per_position else 0
            best = 1 << (room.bit_length() - 1) if room >= 16 else 0  # the largest power of two that fits
            hint = (f"use context={best} or less" if best
                    else "choose a smaller model or quantization, or another target")
            raise ConfigError(f"{name} does not fit {where} at context={context}: weights {_mb(weights)} + KV cache "
                              f"{_mb(m.kv_bytes)} = {_mb(m.total_bytes)}; {hint}", param=("context", "target"))
        return m
    ctx = min(trained, DEFAULT_CONTEXT)
    m = _check(weights, kv_per_position, ctx, budget_bytes, target)
    while m.fits is False and ctx > MIN_CONTEXT:
        ctx = max(MIN_CONTEXT, ctx // 2)
        m = _check(weights, kv_per_position, ctx, budget_bytes, target)
    if m.fits is False:
        raise ConfigError(f"{name} does not fit {where}: weights {_mb(weights)} + KV cache {_mb(m.kv_bytes)} at "
                          f"context {ctx} = {_mb(m.total_bytes)}; choose a smaller model or quantization, or "
                          "another target", param="target")
    return m
