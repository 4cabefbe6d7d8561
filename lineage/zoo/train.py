"""Training, sampling and evaluation loops for the zoo's tiny models (CPU, seeded).

- `train_lm`: next-token cross-entropy on random windows of a token stream, or, given a
  teacher, KL(teacher || student) on the teacher's full next-token distribution (logit KD);
- `sample`: batched ancestral sampling at a temperature with the KV cache (hand loop);
- `bits_per_char`: loss in bits per character, comparable across tokenizers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["bits_per_char", "sample", "train_lm"]


def train_lm(model: Any, stream: np.ndarray, *, tokens: int, seed: int, lr: float = 3e-3,
             batch: int = 16, teacher: Any = None,
             log: Callable[[str], None] | None = None) -> dict[str, float]:
    """Train on about `tokens` tokens drawn as random windows of `stream`; returns stats."""
    import torch
    import torch.nn.functional as F

    ctx = model.config.max_position_embeddings
    steps = max(1, tokens // (batch * ctx))
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": other, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))
    warm = max(1, steps // 20)

    def lr_at(s: int) -> float:
        return min(1.0, (s + 1) / warm) * (0.1 + 0.45 * (1 + math.cos(math.pi * s / steps)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    hi = len(stream) - ctx - 1
    if hi <= 0:
        raise ValueError("training stream shorter than the context")
    model.train()
    t0 = time.monotonic()
    ema = float("nan")
    for step in range(steps):
        starts = rng.integers(0, hi, size=batch)
        xb = torch.from_numpy(np.stack([stream[s: s + ctx + 1] for s in starts]).astype(np.int64))
        inp = xb[:, :-1]
        logits = model(input_ids=inp, attention_mask=torch.ones_like(inp)).logits.float()
        flat = logits.reshape(-1, logits.shape[-1])
        if teacher is None:
            loss = F.cross_entropy(flat, xb[:, 1:].reshape(-1))
        else:
            with torch.no_grad():
                tl = teacher(input_ids=inp, attention_mask=torch.ones_like(inp)).logits.float()
            loss = F.kl_div(F.log_softmax(flat, -1), F.log_softmax(tl.reshape(flat.shape), -1),
                            log_target=True, reduction="batchmean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        v = float(loss.detach())
        ema = v if math.isnan(ema) else 0.95 * ema + 0.05 * v
        if log and steps >= 4 and step % max(1, steps // 4) == 0:
            log(f"  step {step}/{steps} loss {ema:.3f}")
    model.eval()
    dt = time.monotonic() - t0
    return {"steps": steps, "tokens": steps * batch * ctx, "final_loss": round(ema, 4),
            "seconds": round(dt, 2), "tokens_per_s": round(steps * batch * ctx / max(dt, 1e-9))}


def sample(model: Any, prompts: np.ndarray, *, new_tokens: int, seed: int,
           batch: int = 256, temperature: float = 1.0) -> np.ndarray:
    """Samples at `temperature` (no top-k/top-p) continuing equal-length `prompts` [N, P].

    Returns [N, P + new_tokens] token ids, prompts included."""
    import inspect

    import torch

    gen = torch.Generator().manual_seed(seed)
    # transformers 5.x renamed `past_key_values` to `cache`; use whichever forward() takes
    ck = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(prompts), batch):
            x = torch.from_numpy(prompts[i: i + batch].astype(np.int64))
            res = model(input_ids=x, use_cache=True)
            past, seq = getattr(res, ck), [x]
            logits = res.logits[:, -1].float() / temperature
            for _ in range(new_tokens):
                nxt = _draw(logits, gen)
                seq.append(nxt)
                res = model(input_ids=nxt, use_cache=True, **{ck: past})
                past, logits = getattr(res, ck), res.logits[:, -1].float() / temperature
            out.append(torch.cat(seq, 1).numpy().astype(np.int32))
    return np.concatenate(out)


def _draw(logits: Any, gen: Any) -> Any:
    """One draw per row from softmax(logits) by inverse CDF (much cheaper than torch.multinomial)."""
    import torch

    cdf = torch.softmax(logits, -1).cumsum(-1)
    u = torch.rand((logits.shape[0], 1), generator=gen) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).clamp_max(logits.shape[-1] - 1)


def bits_per_char(model: Any, tok: Any, texts: Sequence[str], batch: int = 64) -> float:
    """Bits per character of `texts`, each scored after EOS and truncated to the context."""
    import torch
    import torch.nn.functional as F

    from .tok import encode_docs

    ctx = model.config.max_position_embeddings
    eos = tok.eos_token_id
    docs = [ids[: ctx - 1] for ids in encode_docs(tok, texts)]
    docs = [d for d in docs if d]
    chars = sum(len(tok.decode(d)) for d in docs)
    docs.sort(key=len)
    nll = 0.0
    with torch.inference_mode():
        for i in range(0, len(docs), batch):
            chunk = docs[i: i + batch]
            n = max(map(len, chunk)) + 1
            x = torch.full((len(chunk), n), eos, dtype=torch.long)
            y = torch.full((len(chunk), n - 1), -100, dtype=torch.long)
            for j, d in enumerate(chunk):
                x[j, 1: len(d) + 1] = torch.tensor(d)
                y[j, : len(d)] = torch.tensor(d)
            logits = model(input_ids=x[:, :-1]).logits.float()
            nll += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                         ignore_index=-100, reduction="sum"))
    return nll / max(chars, 1) / math.log(2)
