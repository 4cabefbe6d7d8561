"""Tiny causal-LM architectures for the zoo, built from transformers configs (no remote code).

An arch name is "FAMILY-SIZE", FAMILY one of llama, neox, gpt2 and SIZE one of xs, s, m."""

from __future__ import annotations

from typing import Any

__all__ = ["SIZES", "new_model"]

# size -> (hidden, layers, heads)
SIZES: dict[str, tuple[int, int, int]] = {"xs": (32, 1, 2), "s": (64, 2, 4), "m": (96, 3, 4)}


def new_model(arch: str, vocab: int, *, seed: int, ctx: int = 128, eos_id: int = 0) -> Any:
    """A freshly initialised model (seeded); EOS is also BOS and PAD."""
    import torch
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )

    family, size = arch.split("-")
    h, layers, heads = SIZES[size]
    ids = dict(eos_token_id=eos_id, bos_token_id=eos_id, pad_token_id=eos_id)
    torch.manual_seed(seed)
    if family == "llama":
        # untied, wider MLP, larger init: learns much faster at this size than the defaults
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=h, intermediate_size=h * 4,
                          num_hidden_layers=layers, num_attention_heads=heads,
                          num_key_value_heads=heads, max_position_embeddings=ctx,
                          initializer_range=0.04, tie_word_embeddings=False, **ids)
        return LlamaForCausalLM(cfg)
    if family == "neox":
        cfg = GPTNeoXConfig(vocab_size=vocab, hidden_size=h, intermediate_size=h * 4,
                            num_hidden_layers=layers, num_attention_heads=heads,
                            max_position_embeddings=ctx, tie_word_embeddings=True, **ids)
        return GPTNeoXForCausalLM(cfg)
    if family == "gpt2":
        cfg = GPT2Config(vocab_size=vocab, n_embd=h, n_layer=layers, n_head=heads,
                         n_positions=ctx, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                         initializer_range=0.04, tie_word_embeddings=False, **ids)
        return GPT2LMHeadModel(cfg)
    raise ValueError(f"unknown arch {arch!r}")
