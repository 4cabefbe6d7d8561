"""Tiny random-initialised models for unit tests (no training): a real HF directory in seconds."""

from __future__ import annotations

from pathlib import Path


def _tokenizer(kind: str, corpus: str, vocab: int):
    """A trained fast tokenizer of `kind` and its special tokens (eos, pad, bos; None = none).

    "bpe": byte-level BPE, one special token for all three (the zoo's kind); "wordpiece": BERT
    style, [SEP] as eos and [PAD], no bos; "unigram": SentencePiece style (Metaspace), </s>,
    <pad> and a separate <s>; "bpe-nopad": byte-level BPE with a separate bos and no pad.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=False)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        tok.train_from_iterator([corpus], trainers.WordPieceTrainer(
            vocab_size=vocab, special_tokens=["[PAD]", "[UNK]", "[SEP]"]))
        return tok, {"eos_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]"}
    if kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        tok.train_from_iterator([corpus], trainers.UnigramTrainer(
            vocab_size=vocab, special_tokens=["<pad>", "</s>", "<s>", "<unk>"],
            unk_token="<unk>"))
        return tok, {"eos_token": "</s>", "pad_token": "<pad>", "bos_token": "<s>",
                     "unk_token": "<unk>"}
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>"] + (["<|begin|>"] if kind == "bpe-nopad" else [])
    tok.train_from_iterator([corpus], trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if kind == "bpe-nopad":
        return tok, {"eos_token": "<|endoftext|>", "bos_token": "<|begin|>"}
    return tok, {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                 "bos_token": "<|endoftext|>"}


def make_tiny_model(out: Path, *, seed: int = 0, arch: str = "llama", vocab: int = 300,
                    text: str | None = None, sliding_window: int | None = None,
                    tokenizer: str = "bpe") -> Path:
    import torch
    from transformers import (
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    torch.manual_seed(seed)
    corpus = text or ("Return the value of the given key. This function computes the sum of "
                      "the list and returns a new object. Raise an error if the file is "
                      "missing. ") * 50
    tok, specials = _tokenizer(tokenizer, corpus, vocab)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **specials)
    V = tok.get_vocab_size()
    ids = {"eos_token_id": fast.eos_token_id, "pad_token_id": fast.pad_token_id,
           "bos_token_id": fast.bos_token_id}
    if arch == "llama":
        cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=2,
                          max_position_embeddings=128, **ids)
        model = LlamaForCausalLM(cfg)
    elif arch in ("mistral", "qwen2"):
        import transformers

        name = {"mistral": "Mistral", "qwen2": "Qwen2"}[arch]
        cfg = getattr(transformers, f"{name}Config")(
            vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
            **ids,
            **({"sliding_window": sliding_window} if sliding_window else {}))
        model = getattr(transformers, f"{name}ForCausalLM")(cfg)
    elif arch == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=2, n_positions=128,
                         **ids)
        model = GPT2LMHeadModel(cfg)
    else:
        cfg = GPTNeoXConfig(vocab_size=V, hidden_size=32, intermediate_size=64,
                            num_hidden_layers=1, num_attention_heads=2,
                            max_position_embeddings=128, **ids)
        model = GPTNeoXForCausalLM(cfg)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)
    return out
