"""Differential checks of a GGUF artifact against the Hugging Face model it came from."""

from __future__ import annotations

from pathlib import Path

TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say it's fine, but we'd rather you didn't.",
    "def add(a, b):\n    return a + b  # sum\n\nprint(add(2, 40))\n",
    "for (int i = 0; i < n; ++i) { total += values[i] * 3.14159; }",
    "Numbers 0 1 22 333 4444 55555 2024-11-25 1,234,567.89",
    "Café, naïve, façade, Ångström, Übermensch, señor, crème brûlée, Dvořák.",
    "机器学习是人工智能的一个分支。日本語のテキスト。한국어 문장.",
    "Emoji 🦊🚀👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️ ✨",
    "  leading and trailing spaces  \n\n\ttabs\tand\r\nnewlines   ",
    "<|im_start|>user\nHello there!<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>text after end<|im_end|>",
)


def tokenization_mismatches(hf_folder: Path, model) -> list[str]:
    """Texts on which llama.cpp's tokenization of the artifact differs from the Hugging Face tokenizer's."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(hf_folder))
    bad = []
    for text in TEXTS:
        want = hf(text, add_special_tokens=True)["input_ids"]
        got = model.tokenize(text, add_special=True)
        if want != got:
            bad.append(f"{text!r}: HF {want} vs llama.cpp {got}")
    return bad


def greedy_transformers(hf_folder: Path, ids: list[int], n: int) -> list[int]:
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(hf_folder), dtype=torch.float32).eval()
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=None,
                             pad_token_id=0, attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return out[0, len(ids):].tolist()


def greedy_both(hf_folder: Path, model, prompt: str, n: int = 32) -> tuple[list[int], list[int], str, str]:
    """(transformers ids, llama.cpp ids, transformers text, llama.cpp text) of ``n`` greedy tokens, EOS ignored."""
    from transformers import AutoTokenizer

    ids = model.tokenize(prompt)
    ref = greedy_transformers(hf_folder, ids, n)
    res = model.generate_ids(ids, max_tokens=n, ignore_eos=True)
    hf = AutoTokenizer.from_pretrained(str(hf_folder))
    return ref, list(res.token_ids), hf.decode(ref, skip_special_tokens=True), res.text
