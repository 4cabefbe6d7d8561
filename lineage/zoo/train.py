"""Training pieces for the zoo: BPE tokenizers, tiny model configs, and three training loops
(language modelling on text, logit distillation, fine-tuning) on the CPU.

Everything takes an explicit seed. Models are saved as Hugging Face directories with
safetensors weights and a `tokenizer.json`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["train_tokenizer", "new_model", "ModelSpec", "encode_stream", "train_lm", "save",
           "bits_per_char"]

EOS = "<|endoftext|>"


def train_tokenizer(texts: Sequence[str], vocab: int) -> Any:
    """A byte-level BPE tokenizer as a transformers PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=[EOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS,
                                   bos_token=EOS)


@dataclass(frozen=True)
class ModelSpec:
    arch: str  # "llama" | "neox"
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    ctx: int = 128


def new_model(spec: ModelSpec, vocab: int, seed: int) -> Any:
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, hidden_size=spec.hidden, intermediate_size=spec.hidden * 3,
                  num_hidden_layers=spec.layers, num_attention_heads=spec.heads,
                  max_position_embeddings=spec.ctx, eos_token_id=0, bos_token_id=0,
                  pad_token_id=0)
    if spec.arch == "llama":
        return LlamaForCausalLM(LlamaConfig(num_key_value_heads=spec.heads,
                                            tie_word_embeddings=True, **common))
    if spec.arch == "neox":
        return GPTNeoXForCausalLM(GPTNeoXConfig(tie_word_embeddings=True, **common))
    raise ValueError(f"unknown arch {spec.arch!r}")


def encode_stream(tok: Any, texts: Sequence[str]) -> np.ndarray:
    """Concatenate texts, each followed by EOS, as one int32 token stream."""
    ids: list[int] = []
    enc = tok(list(texts), add_special_tokens=False)["input_ids"]
    for e in enc:
        ids += e
        ids.append(tok.eos_token_id)
    return np.asarray(ids, dtype=np.int32)


def _batches(stream: np.ndarray, ctx: int, batch: int, steps: int, rng: np.random.Generator
             ) -> Any:
    import torch

    hi = len(stream) - ctx - 1
    for _ in range(steps):
        starts = rng.integers(0, hi, size=batch)
        x = np.stack([stream[s : s + ctx + 1] for s in starts]).astype(np.int64)
        yield torch.from_numpy(x)


def train_lm(model: Any, stream: np.ndarray, *, tokens: int, seed: int, lr: float = 3e-3,
             batch: int = 16, teacher: Any = None, kd_temp: float = 1.0,
             log: Callable[[str], None] | None = None) -> dict[str, float]:
    """Train on `tokens` tokens of `stream`. With `teacher`, minimise KL(teacher || model) on
    the teacher's full next-token distribution (logit distillation) instead of cross-entropy.
    """
    import torch
    import torch.nn.functional as F

    ctx = model.config.max_position_embeddings - 1
    steps = max(1, tokens // (batch * ctx))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1, s / steps))))
    model.train()
    t0 = time.monotonic()
    loss_v = float("nan")
    for step, xb in enumerate(_batches(stream, ctx, batch, steps, rng)):
        logits = model(input_ids=xb[:, :-1]).logits
        if teacher is None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), xb[:, 1:].reshape(-1))
        else:
            with torch.no_grad():
                tl = teacher(input_ids=xb[:, :-1]).logits / kd_temp
            loss = F.kl_div(F.log_softmax(logits / kd_temp, -1).reshape(-1, logits.shape[-1]),
                            F.log_softmax(tl, -1).reshape(-1, tl.shape[-1]),
                            log_target=True, reduction="batchmean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_v = float(loss.detach())
        if log and step % max(1, steps // 4) == 0:
            log(f"step {step}/{steps} loss {loss_v:.3f}")
    model.eval()
    dt = time.monotonic() - t0
    return {"steps": steps, "final_loss": loss_v, "seconds": dt,
            "tokens_per_s": steps * batch * ctx / max(dt, 1e-9)}


def bits_per_char(model: Any, tok: Any, texts: Sequence[str], max_texts: int = 200) -> float:
    """Bits per character of `texts` under the model (tokenizer-independent)."""
    import torch
    import torch.nn.functional as F

    ctx = model.config.max_position_embeddings
    nll, chars = 0.0, 0
    with torch.inference_mode():
        for t in texts[:max_texts]:
            ids = tok(t, add_special_tokens=False)["input_ids"][: ctx - 1]
            if len(ids) < 2:
                continue
            x = torch.tensor([[tok.eos_token_id] + ids])
            logits = model(input_ids=x[:, :-1]).logits
            nll += float(F.cross_entropy(logits[0], x[0, 1:], reduction="sum"))
            chars += len(tok.decode(ids))
    return nll / max(chars, 1) / math.log(2)


def save(model: Any, tok: Any, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
