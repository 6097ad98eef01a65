"""Tiny random decoders for every model family (edgekit.families), each with a real tokenizer (no download).

Weights are random but larger than the default init (so next-token distributions
are peaked and the gate's KL means something); tokenizers are byte-level BPE
vocabularies trained here, one with GPT-2 splitting (tests.builders) and one with
Qwen2's own pre-tokenizer regex and NFC normalizer.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.builders import CHAT_TEMPLATE, CORPUS, make_bpe_tokenizer, save_tiny_decoder

QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def make_qwen2_tokenizer(folder: Path, vocab_size: int = 600) -> int:
    """A Qwen2-style tokenizer: NFC, the Qwen2 split regex, byte-level BPE without its own regex."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS + ["12345 67890 3.14 2024", "don't I'm we'll"], trainer=trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "unk_token": None, "model_max_length": 256, "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {
            str(i): {"content": c, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
            for i, c in enumerate(specials)
        },
    }, indent=2))
    return tok.get_vocab_size()


# One tiny model per family the registry (edgekit.families) holds, and variants: each name's family and the
# config settings beyond the shape every tiny decoder shares (tests.builders.save_tiny_decoder); see test_archs.py.
TINY: dict[str, tuple[str, dict]] = {
    "llama": ("llama", dict(rms_norm_eps=1e-5, rope_theta=10000.0)),
    # Llama 3.1-style rope scaling: exercises the generated rope_freqs tensor
    "llama3": ("llama", dict(rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16})),
    "mistral": ("mistral", dict(rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=None)),
    "qwen2": ("qwen2", dict(rms_norm_eps=1e-6, rope_theta=1000000.0, use_sliding_window=False)),
    "qwen3": ("qwen3", dict(head_dim=32, rms_norm_eps=1e-6, rope_theta=1000000.0, use_sliding_window=False)),
    "gemma": ("gemma", dict(head_dim=32, rms_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh",
                            hidden_activation="gelu_pytorch_tanh")),
    "phi3": ("phi3", dict(rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=None,
                          original_max_position_embeddings=256)),
    # a sliding window shorter than the tests' sequences, sliding and global layers (every third global),
    # a local rope base of their own and linear rope scaling on the global layers (Gemma 3 4B+): each of
    # these moves the logits far past the tests' bounds when an exporter gets it wrong
    "gemma3_text": ("gemma3_text", dict(
        num_hidden_layers=3, head_dim=32, rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh",
        rope_theta=1000000.0, rope_local_base_freq=20000.0, rope_scaling={"rope_type": "linear", "factor": 2.0},
        sliding_window=8, query_pre_attn_scalar=32,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"])),
}
ARCHS = tuple(TINY)


def make_tiny(folder: Path, arch: str, *, seed: int = 0, qwen2_tokenizer: bool = False) -> Path:
    """A 2-layer (Gemma 3: 3-layer) random decoder of ``arch`` (see TINY) saved as safetensors with its tokenizer."""
    if arch not in TINY:
        raise ValueError(arch)
    model_type, settings = TINY[arch]
    vocab = make_qwen2_tokenizer(folder) if qwen2_tokenizer else make_bpe_tokenizer(folder)
    return save_tiny_decoder(folder, model_type, vocab, seed=seed, init_all=True, **settings)


def make_tiny_spm_llama(folder: Path, *, seed: int = 0) -> Path:
    """A tiny random Llama with a SentencePiece BPE tokenizer (byte fallback) trained here, saved the way
    Llama 2 / TinyLlama ship it: tokenizer.model, tokenizer.json and add_bos_token in tokenizer_config.json."""
    import sentencepiece as spm
    import torch
    import transformers

    work = folder.parent / f".{folder.name}-spm"
    work.mkdir(parents=True, exist_ok=True)
    (work / "corpus.txt").write_text("\n".join(CORPUS))
    spm.SentencePieceTrainer.train(
        input=str(work / "corpus.txt"), model_prefix=str(work / "sp"), vocab_size=700, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2,
    )
    tok = transformers.LlamaTokenizerFast(vocab_file=str(work / "sp.model"), legacy=False)
    tok.save_pretrained(folder)
    (folder / "tokenizer.model").write_bytes((work / "sp.model").read_bytes())
    config = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.08)
    model.save_pretrained(folder, safe_serialization=True)
    return folder
