"""edgekit's vocabularies of names, declared once: tasks, model kinds, artifact formats and backends.

Every Literal type, CLI choice and lookup table elsewhere derives from these
tuples (the quantization types have their own table in :mod:`edgekit.quants`).
Plain data: importing this module imports nothing else.
"""

from __future__ import annotations

from typing import Literal

# What a model does (the Hugging Face pipeline names); "auto" reads it from config.json.
TASKS = ("text-generation", "feature-extraction", "text-classification")
AUTO = "auto"
TASK_CHOICES = (AUTO, *sorted(TASKS))

# What the runtime drives: one kind per task.
KINDS = ("decoder", "encoder", "classifier")
KIND_OF_TASK = dict(zip(TASKS, KINDS))

# Artifact formats, and the backend that runs each.
FORMATS = ("onnx", "gguf")
BACKENDS = ("onnx", "llama.cpp")
BACKEND_OF_FORMAT = dict(zip(FORMATS, BACKENDS))

Task = Literal[TASKS]
Kind = Literal[KINDS]
Format = Literal[FORMATS]
Backend = Literal[BACKENDS]
