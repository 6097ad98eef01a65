"""``genai_config.json``: what onnxruntime-genai needs to load a fused decoder artifact as it is.

The fused graph already uses onnxruntime-genai's input/output names and its
``past_present_share_buffer`` convention (one KV buffer per layer, sequence
lengths from the attention mask), so the config only names them and gives the
shape and the search defaults (greedy, as edgekit's own default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.families import Shape
from edgekit.fileio import write_json_atomic

GENAI_CONFIG = "genai_config.json"


def genai_config(model_type: str, shape: Shape, vocab_size: int, context: int, model_file: str,
                 bos: int | None, eos: list[int], pad: int | None, threads: int | None = None) -> dict[str, Any]:
    eos_ids: Any = eos[0] if len(eos) == 1 else list(eos)
    session: dict[str, Any] = {"log_id": "onnxruntime-genai", "provider_options": []}
    if threads:
        session["intra_op_num_threads"] = int(threads)
    return {
        "model": {
            "bos_token_id": bos if bos is not None else (eos[0] if eos else 0),
            "context_length": int(context),
            "decoder": {
                "session_options": session,
                "filename": model_file,
                "head_size": shape.head_dim,
                "hidden_size": shape.hidden,
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
                "num_attention_heads": shape.n_heads,
                "num_hidden_layers": shape.n_layers,
                "num_key_value_heads": shape.n_kv_heads,
            },
            "eos_token_id": eos_ids,
            "pad_token_id": pad if pad is not None else (eos[0] if eos else 0),
            "type": model_type,
            "vocab_size": int(vocab_size),
        },
        "search": {
            "diversity_penalty": 0.0, "do_sample": False, "early_stopping": True, "length_penalty": 1.0,
            "max_length": int(context), "min_length": 0, "no_repeat_ngram_size": 0, "num_beams": 1,
            "num_return_sequences": 1, "past_present_share_buffer": True, "repetition_penalty": 1.0,
            "temperature": 1.0, "top_k": 1, "top_p": 1.0,
        },
    }


def write_genai_config(folder: Path, config: dict[str, Any]) -> Path:
    path = Path(folder) / GENAI_CONFIG
    write_json_atomic(path, config)
    return path
