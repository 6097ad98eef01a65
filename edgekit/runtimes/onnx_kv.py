"""The two KV-cache disciplines of ONNX decoders: a cache that grows each step, and one buffer shared in place.

* :class:`GrowingCache`: optimum's graphs (and edgekit's optimum path). Each step
  returns ``present`` tensors one token longer than ``past``; they are bound as the
  next step's ``past`` as onnxruntime allocated them (no copy through numpy).
* :class:`SharedBuffer`: edgekit's fused graphs (``edgekit.graph`` metadata
  ``fused-decoder/...``), whose GroupQueryAttention reads and writes one buffer per
  layer and tensor, sized to the context: ``past`` and ``present`` are bound to the
  same OrtValue, so a step writes only its new positions and nothing is copied or
  re-allocated between tokens (onnxruntime-genai's ``past_present_share_buffer``).
  The graph derives ``seqlens_k`` / ``total_sequence_length`` from the attention
  mask, whose length is the number of positions in use. The buffers stay bound to the
  decoder's IOBinding from one step to the next: they are bound again only when they
  change (a new capacity), since binding 2 x n_layers OrtValues costs ~75 us a step.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edgekit.errors import ContextOverflowError

FUSED_GRAPH_PREFIX = "fused-decoder/"


def is_fused(session) -> bool:
    """True for a graph written by edgekit's fused decoder builder (its metadata says so)."""
    meta = session.get_modelmeta().custom_metadata_map or {}
    return str(meta.get("edgekit.graph", "")).startswith(FUSED_GRAPH_PREFIX)


class GrowingCache:
    def __init__(self, ort, past_names: Sequence[str], present_names: Sequence[str], shape, dtype):
        self.ort, self.past_names, self.present_names = ort, list(past_names), list(present_names)
        self._empty = ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype=dtype))
        self.reset()

    def reset(self) -> None:
        self._past = [self._empty] * len(self.past_names)

    def bind(self, binding, n_past: int, n_new: int) -> None:
        for name, val in zip(self.past_names, self._past):
            binding.bind_ortvalue_input(name, val)
        for name in self.present_names:
            binding.bind_output(name, "cpu")

    def update(self, outputs) -> None:
        self._past = list(outputs)

    def close(self) -> None:
        self._past = []


class SharedBuffer:
    """One (1, kv_heads, capacity, head_dim) buffer per past/present pair, written in place.

    :meth:`bind` binds the buffers to a binding once, and again only after :meth:`reserve` replaced them or
    :meth:`forget_binding` was called (whoever clears the binding calls it).
    """

    def __init__(self, ort, past_names: Sequence[str], present_names: Sequence[str], shape, dtype):
        self.ort, self.past_names, self.present_names = ort, list(past_names), list(present_names)
        self.kv_heads, self.head_dim, self.dtype = shape[1], shape[3], dtype
        self.capacity = 0
        self._bufs: list = []
        self._bound = None  # the binding the current buffers are bound to

    def reserve(self, capacity: int) -> None:
        """(Re)allocate the buffers for ``capacity`` positions. Pages are touched only as positions are written."""
        if capacity != self.capacity:
            self._bufs = []
            self._bound = None
            self._bufs = [self.ort.OrtValue.ortvalue_from_shape_and_type((1, self.kv_heads, capacity, self.head_dim),
                                                                          self.dtype) for _ in self.past_names]
            self.capacity = capacity

    def reset(self) -> None:
        pass  # positions past the attention mask are never read: nothing to clear

    def forget_binding(self) -> None:
        """The binding was cleared: bind the buffers again on the next :meth:`bind`."""
        self._bound = None

    def bind(self, binding, n_past: int, n_new: int) -> None:
        if n_past + n_new > self.capacity:
            raise ContextOverflowError(
                f"{n_past + n_new} positions do not fit the model's context of {self.capacity} tokens: "
                "shorten the input or load with a larger context", prompt_tokens=n_past + n_new, context=self.capacity)
        if self._bound is binding:
            return
        for past, present, buf in zip(self.past_names, self.present_names, self._bufs):
            binding.bind_ortvalue_input(past, buf)
            binding.bind_ortvalue_output(present, buf)
        self._bound = binding

    def update(self, outputs) -> None:
        pass  # the step wrote into the bound buffers

    def close(self) -> None:
        self._bufs = []
        self._bound = None
        self.capacity = 0
