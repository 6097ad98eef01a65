"""Exporters: Hugging Face checkpoints to ONNX and GGUF artifacts, each checked by the quality gate.

These modules may import torch, transformers and optimum (inside functions);
nothing on the runtime side imports them.
"""
