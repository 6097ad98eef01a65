"""Fused ONNX decoders written op by op from the safetensors (no torch, no tracing).

* :mod:`specs`: the builder's refusals, activations and rope tables (families: :mod:`edgekit.families`);
* :mod:`graph`: an ONNX graph writer that streams initializers to the external data file;
* :mod:`build`: the decoder graph (GroupQueryAttention with a shared KV buffer, fused norms, packed projections);
* :mod:`nbits`: block-wise int4/int8 quantization in numpy for MatMulNBits / GatherBlockQuantized;
* :mod:`genai`: ``genai_config.json`` so onnxruntime-genai loads the artifact as it is;
* :mod:`export`: build + gate + manifest (called by :func:`edgekit.exporters.onnx.export_onnx`).
"""

from edgekit.exporters.onnx_fused.specs import covered_model_types, covers

__all__ = ["covers", "covered_model_types"]
