"""Source resolution and task inference (fast, no export)."""

from __future__ import annotations

import json
import shutil
import struct

import pytest

from edgekit.errors import ConfigError, SourceError, UnsupportedModelError
from edgekit.sources import check_safetensors, count_params, infer_task, resolve_source


@pytest.mark.parametrize(
    "config, task",
    [
        ({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}, "text-generation"),
        ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "text-generation"),
        ({"model_type": "bert", "architectures": ["BertModel"]}, "feature-extraction"),
        ({"model_type": "bert", "architectures": ["BertForMaskedLM"]}, "feature-extraction"),
        ({"model_type": "bert", "architectures": ["BertForSequenceClassification"]}, "text-classification"),
        ({"model_type": "distilbert", "id2label": {"0": "a", "1": "b"}}, "text-classification"),
    ],
)
def test_infer_task_from_config(config, task):
    assert infer_task(config) == task


def test_infer_task_refuses_encoder_decoder_and_unknown():
    with pytest.raises(UnsupportedModelError, match="encoder-decoder"):
        infer_task({"model_type": "t5", "is_encoder_decoder": True, "architectures": ["T5ForConditionalGeneration"]})
    with pytest.raises(UnsupportedModelError, match="pass task="):
        infer_task({"model_type": "mystery", "architectures": ["MysteryForSomething"]})


def test_resolve_local_folder(tiny_bert):
    src = resolve_source(tiny_bert)
    assert src.info.kind == "local" and src.info.path == str(tiny_bert)
    assert len(src.info.weights_sha256) == 64
    assert src.model_type == "bert" and src.weight_files[0].suffix == ".safetensors"
    assert count_params(src.weight_files) > 10_000


def test_resolve_errors(tmp_path, tiny_bert):
    with pytest.raises(SourceError, match="does not exist"):
        resolve_source(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="not a Hugging Face model folder"):
        resolve_source(tmp_path / "empty")
    with pytest.raises(SourceError, match="is a file"):
        resolve_source(tiny_bert / "config.json")
    bad = tmp_path / "badcfg"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(SourceError, match="not valid JSON"):
        resolve_source(bad)


def test_hub_id_respects_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SourceError, match="HF_HUB_OFFLINE"):
        resolve_source("some-org/some-model")


def test_pickle_weights_refused_unless_allowed(tmp_path, tiny_bert):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_bert, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 pickle bytes")
    with pytest.raises(SourceError, match="pickle.*allow_pickle=True"):
        resolve_source(folder)
    src = resolve_source(folder, allow_pickle=True)
    assert src.pickle_weights


@pytest.mark.parametrize("damage", ["truncate", "garbage-header", "huge-header", "tiny"])
def test_corrupt_safetensors_detected(tmp_path, tiny_bert, damage):
    folder = tmp_path / damage
    shutil.copytree(tiny_bert, folder)
    path = folder / "model.safetensors"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage-header":
        (n,) = struct.unpack("<Q", data[:8])
        path.write_bytes(data[:8] + b"\xff" * n + data[8 + n :])
    elif damage == "huge-header":
        path.write_bytes(struct.pack("<Q", 1 << 40) + data[8:])
    else:
        path.write_bytes(b"abc")
    with pytest.raises(SourceError, match="not a valid safetensors file"):
        resolve_source(folder)


def test_safetensors_header_is_returned(tiny_bert):
    header = check_safetensors(tiny_bert / "model.safetensors")
    assert any(k.endswith("word_embeddings.weight") for k in header)
    assert all("data_offsets" in v for k, v in header.items() if k != "__metadata__")
    assert json.loads(json.dumps(header))  # plain JSON data


def test_unknown_task_is_config_error():
    from edgekit.sources import check_task

    with pytest.raises(ConfigError, match="unknown task"):
        check_task("summarize")
