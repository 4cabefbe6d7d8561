"""Tiny random-initialised models for unit tests (no training): a real HF directory in seconds."""

from __future__ import annotations

from pathlib import Path


def make_tiny_model(out: Path, *, seed: int = 0, arch: str = "llama", vocab: int = 300,
                    text: str | None = None, sliding_window: int | None = None) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM,
                              PreTrainedTokenizerFast)

    torch.manual_seed(seed)
    corpus = text or ("Return the value of the given key. This function computes the sum of "
                      "the list and returns a new object. Raise an error if the file is "
                      "missing. ") * 50
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([corpus], trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", bos_token="<|endoftext|>")
    V = tok.get_vocab_size()
    if arch == "llama":
        cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=2,
                          max_position_embeddings=128, eos_token_id=0, pad_token_id=0,
                          bos_token_id=0)
        model = LlamaForCausalLM(cfg)
    elif arch in ("mistral", "qwen2"):
        import transformers

        name = {"mistral": "Mistral", "qwen2": "Qwen2"}[arch]
        cfg = getattr(transformers, f"{name}Config")(
            vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
            eos_token_id=0, pad_token_id=0, bos_token_id=0,
            **({"sliding_window": sliding_window} if sliding_window else {}))
        model = getattr(transformers, f"{name}ForCausalLM")(cfg)
    elif arch == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=2, n_positions=128,
                         eos_token_id=0, pad_token_id=0, bos_token_id=0)
        model = GPT2LMHeadModel(cfg)
    else:
        cfg = GPTNeoXConfig(vocab_size=V, hidden_size=32, intermediate_size=64,
                            num_hidden_layers=1, num_attention_heads=2,
                            max_position_embeddings=128, eos_token_id=0, pad_token_id=0,
                            bos_token_id=0)
        model = GPTNeoXForCausalLM(cfg)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)
    return out
