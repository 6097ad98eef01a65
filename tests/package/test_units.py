"""The pure parts: chat strings from templates, the memory plan, the runtime size estimate."""

from __future__ import annotations

import pytest

from edgekit.errors import ConfigError
from edgekit.package.chat import derive_roles, generation_settings
from edgekit.package.memory import plan_memory
from edgekit.package.sizes import FIGURES, MOBILE_PACKAGE_OPS, PER_OPERATOR_BYTES, estimate_runtime_bytes
from edgekit.runtimes.chat import render

LLAMA3 = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
          "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
GEMMA = ("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
         "{% endif %}{% for message in messages %}{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
         "{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] "
         "| trim + '<end_of_turn>\n' }}{% endfor %}"
         "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}")
SMOL = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
        "You are SmolLM<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
        "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SHOUTING = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] | upper }}\n{% endfor %}"


def _build(d, messages, generation=True):
    """What an app does with the strings."""
    out = d["begin"] + ("" if messages[0]["role"] == "system" else d["preamble_without_system"])
    for m in messages:
        out += d["roles"][m["role"]]["prefix"] + m["content"] + d["roles"][m["role"]]["suffix"]
    return out + (d["generation_prompt"] if generation else "")


@pytest.mark.parametrize("template, special, has_system", [
    (LLAMA3, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}, True),
    (GEMMA, {"bos_token": "<bos>", "eos_token": "<eos>"}, False),
    (SMOL, {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}, True),
])
def test_role_strings_rebuild_the_template(template, special, has_system):
    d = derive_roles(template, special)
    assert d["exact"]
    assert ("system" in d["roles"]) == has_system
    convs = [[{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"},
              {"role": "user", "content": "Name three fruits."}]]
    if has_system:
        convs.append([{"role": "system", "content": "Be brief."}, *convs[0]])
    for conv in convs:
        assert _build(d, conv) == render(template, conv, add_generation_prompt=True, **special)


def test_bos_written_by_the_template_is_begin():
    d = derive_roles(LLAMA3, {"bos_token": "<|begin_of_text|>"})
    assert d["begin"] == "<|begin_of_text|>" and not d["roles"]["system"]["prefix"].startswith("<|begin")


def test_template_that_rewrites_contents_is_not_exact():
    d = derive_roles(SHOUTING, {})
    assert not d["exact"] and "rewrites" in d["note"]


def test_generation_settings():
    assert generation_settings({}, ["<|im_end|>"])["temperature"] == 0.0
    g = generation_settings({"do_sample": True, "temperature": 0.7, "top_p": 0.9}, ["</s>"])
    assert (g["temperature"], g["top_p"], g["stop"]) == (0.7, 0.9, ["</s>"]) and "generation_config" in g["source"]


def _plan(**kw):
    base = dict(name="m", kind="decoder", weights=100_000_000, kv_per_position=50_000, trained_context=8192,
                context=None, target=None, budget_bytes=None)
    return plan_memory(**{**base, **kw})


def test_memory_plan():
    m = _plan()
    assert (m.context, m.kv_bytes, m.total_bytes, m.fits) == (4096, 204_800_000, 304_800_000, None)
    m = _plan(target="t", budget_bytes=200_000_000)  # 4096: 304.8 MB, 2048: 202.4 MB, 1024: 151.2 MB
    assert m.fits and m.context == 1024 and m.total_bytes == 100_000_000 + 1024 * 50_000
    with pytest.raises(ConfigError, match=r"weights 100.0 MB \+ KV cache 25.6 MB at context 512 = 125.6 MB"):
        _plan(target="t", budget_bytes=120_000_000)
    with pytest.raises(ConfigError, match="use context=1024 or less"):  # room for 2000 positions
        _plan(target="t", budget_bytes=200_000_000, context=4096)
    with pytest.raises(ConfigError, match="trained for"):
        _plan(context=9000)
    enc = _plan(kind="encoder", trained_context=256)
    assert enc.kv_bytes == 0 and enc.context == 256 and enc.total_bytes == 100_000_000


def test_runtime_estimate_from_published_figures():
    assert MOBILE_PACKAGE_OPS == 111
    assert PER_OPERATOR_BYTES == (2_658_304 - 1_306_224) // 111 == 12_180
    assert estimate_runtime_bytes(0) == FIGURES["baseline"].bytes == 1_595_392
    assert estimate_runtime_bytes(111) < FIGURES["mobile_android_1_13"].bytes  # below the published mobile package
