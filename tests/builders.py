"""Tiny random Hugging Face models built from a config in the test (no download).

Each builder writes a complete Hugging Face folder: config, safetensors weights and
a real tokenizer (a byte-level BPE or WordPiece vocabulary trained here on a small
corpus), so exporters and runtimes see exactly what they see with real models.
"""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = [
    "The capital of France is Paris, and the capital of Germany is Berlin.",
    "Once upon a time, in a small village at the edge of a forest, there lived an old clockmaker.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "Question: What is 17 multiplied by 3? Answer: 51.",
    "Photosynthesis is the process by which green plants use sunlight to make food.",
    "La tour Eiffel a été construite pour l'Exposition universelle de 1889.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "机器学习是人工智能的一个分支。 🦊 emoji and ünïcödé text.",
    "SELECT customer_id, SUM(amount) FROM orders GROUP BY customer_id;",
    "Roses are red, violets are blue, sugar is sweet, and so are you.",
] * 4

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def make_bpe_tokenizer(folder: Path, vocab_size: int = 512) -> int:
    """A byte-level BPE tokenizer (GPT-2 style) with ChatML special tokens; returns its vocab size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPT2Tokenizer", "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
        "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>", "add_prefix_space": False,
        "model_max_length": 256, "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": {
            str(i): {"content": c, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
            for i, c in enumerate(specials)
        },
    }, indent=2))
    return tok.get_vocab_size()


def make_wordpiece_tokenizer(folder: Path, vocab_size: int = 400) -> int:
    """A BERT-style WordPiece tokenizer ([CLS] ... [SEP]); returns its vocab size."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS, trainer=trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "BertTokenizer", "pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]",
        "sep_token": "[SEP]", "mask_token": "[MASK]", "model_max_length": 128, "do_lower_case": True,
    }))
    return tok.get_vocab_size()


# Settings of the tiny decoders beyond the shape every one shares, per family (rows of edgekit.families).
DECODER_SETTINGS = {
    "llama": dict(rms_norm_eps=1e-5, rope_theta=10000.0),
    "qwen2": dict(rms_norm_eps=1e-6, rope_theta=1000000.0, use_sliding_window=False),
}


def save_tiny_decoder(folder: Path, model_type: str, vocab: int, *, seed: int = 0, safetensors: bool = True,
                      init_all: bool = False, **settings) -> Path:
    """Save a 2-layer random decoder of a registered family (4 query heads, 2 key/value heads unless ``settings``
    say otherwise) in ``folder``, which holds its tokenizer already.

    The family's row says what its tiny model must carry: whether the output layer is the embedding when the
    config does not say (``tied_default``) and, with ``init_all``, how norms apply their weight
    (``norm_plus_one``: weights near 0, else near 1), so that a wrong convention shows in the logits.
    """
    import torch
    import transformers

    from edgekit import families

    family = families.FAMILIES[model_type]
    common = dict(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=2,
        tie_word_embeddings=family.tied_default,
    )
    config = transformers.AutoConfig.for_model(model_type, **{**common, **settings})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # larger random weights than the default init, so distributions are not flat
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.08)
            elif not init_all:
                continue
            elif "norm" in name:  # non-trivial norm weights, so a wrong norm convention shows
                p.uniform_(-0.5, 0.5) if family.norm_plus_one else p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.05)
    model.generation_config.eos_token_id = 2
    model.save_pretrained(folder, safe_serialization=safetensors)
    return folder


def make_tiny_decoder(folder: Path, arch: str = "llama", *, seed: int = 0, safetensors: bool = True, kv_heads: int = 2) -> Path:
    """A 2-layer random decoder (llama or qwen2; 4 query heads, ``kv_heads`` key/value heads) with a real BPE tokenizer."""
    if arch not in DECODER_SETTINGS:
        raise ValueError(arch)
    vocab = make_bpe_tokenizer(folder)
    return save_tiny_decoder(folder, arch, vocab, seed=seed, safetensors=safetensors, num_key_value_heads=kv_heads,
                             **DECODER_SETTINGS[arch])


def make_tiny_bert(folder: Path, *, classifier: bool = False, seed: int = 0) -> Path:
    """A 2-layer random BERT encoder (or a 3-label sequence classifier) with a WordPiece tokenizer."""
    import torch
    import transformers

    vocab = make_wordpiece_tokenizer(folder)
    config = transformers.BertConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=128, type_vocab_size=2,
        **({"num_labels": 3, "id2label": {0: "negative", 1: "neutral", 2: "positive"},
            "label2id": {"negative": 0, "neutral": 1, "positive": 2}} if classifier else {}),
    )
    torch.manual_seed(seed)
    cls = transformers.BertForSequenceClassification if classifier else transformers.BertModel
    model = cls(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    return folder
