"""Local Hugging Face backend: a model directory on disk, batched, on CUDA when present.

Loading goes through `safety.check_model_dir` first, then transformers with safetensors only and
`trust_remote_code=False`. Generation is a hand-written KV-cache loop so that sampling takes an
explicit seed (a `torch.Generator`) and can return top-k logprobs.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from lineage.backends.base import MAX_TOP_LOGPROBS, AccessMode, Sample, Usage
from lineage.backends.safety import check_model_dir
from lineage.errors import InvalidArgumentError, ModelLoadError

__all__ = ["LocalHFBackend", "weights_sha256"]

_LOAD_LOCK = threading.Lock()
MAX_BATCH_TOKENS = 16_384
#: the shared-prefix pass on a GPU: bigger batches keep its matrix units busy (a 1B model's
#: repeated KV cache at this size is ~9 GB in bf16)
MAX_BATCH_TOKENS_CUDA = 65_536
#: the tree pass keeps logits for every position of a group: its token budget shrinks with
#: the vocabulary so that the logits stay under this many elements (1 GiB of float32 on the
#: CPU; 4 GiB of bf16 on a GPU, where 65,536 tokens x a 32k vocabulary still fit). The
#: float32 softmax over the continuations' last positions adds up to twice that on a GPU.
MAX_LOGITS = 1 << 28
MAX_LOGITS_CUDA = 1 << 31
#: at most this many temperatures per `score_tempered` call
MAX_TEMPERATURES = 8
_WORDCH = re.compile(r"[A-Za-z0-9_]")
MAX_SAMPLES_PER_PROMPT = 64
MAX_SAMPLE_ROWS = 512
MAX_SAMPLE_TOKENS = 65_536
#: loaded weights kept for reuse by later opens of the same directory (same weights hash):
#: a server that scans the same local suspect again skips the load. Bounded by total
#: parameter bytes; a model larger than the budget is never kept. 0 disables the cache.
MODEL_CACHE_BYTES = int(os.environ.get("LINEAGE_MODEL_CACHE_BYTES", str(1 << 30)))
#: attention kernels for the shared-prefix continuation pass on CUDA, where each of ~10^4 rows
#: has a few query tokens against a short cache. The fused kernels tile queries by 64 or more:
#: on an H200 cuDNN's flash kernel spent 39% of the GPU time there (benchmarks/gpu.py
#: --profile). "math" = plain matmul + softmax; "efficient", "default" (torch's choice).
CONT_SDPA = os.environ.get("LINEAGE_CONT_SDPA", "math")


def _cont_attention(dev: Any) -> Any:
    """The SDPA kernel choice for the continuation pass (a no-op off CUDA)."""
    if not str(dev).startswith("cuda") or CONT_SDPA == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if CONT_SDPA == "efficient":
        return sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
    return sdpa_kernel([SDPBackend.MATH])


class _Loaded:
    """Loaded (model, tokenizer) pairs keyed by (path, weights sha256, device), LRU by bytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, str, str], tuple[Any, Any, int]] = OrderedDict()

    def get(self, key: tuple[str, str, str]) -> tuple[Any, Any] | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[0], hit[1]

    def put(self, key: tuple[str, str, str], model: Any, tokenizer: Any, budget: int) -> None:
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        if size > budget:
            return
        with self._lock:
            self._items[key] = (model, tokenizer, size)
            self._items.move_to_end(key)
            while sum(v[2] for v in self._items.values()) > budget:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


LOADED = _Loaded()
_HF: tuple[Any, Any] | None = None


class _Masks:
    """Word-boundary masks by (path, weights sha256), so reopening a model skips decoding its
    whole vocabulary again (one decode per token: ~1 s for a 150k vocabulary). LRU, bounded."""

    def __init__(self, size: int = 32) -> None:
        self._d: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Any:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
            return self._d.get(key)

    def put(self, key: tuple[str, str], mask: Any) -> None:
        with self._lock:
            self._d[key] = mask
            self._d.move_to_end(key)
            while len(self._d) > self._size:
                self._d.popitem(last=False)


_BOUNDARY = _Masks()


def _transformers() -> tuple[Any, Any]:
    """transformers' Auto classes, imported once under a lock: its lazy module is not safe to
    import from several threads at once (a second thread can see a half-initialised module
    and fail with ImportError, which a server's first concurrent scans would hit)."""
    global _HF
    with _LOAD_LOCK:
        if _HF is None:
            from transformers import (  # noqa: F401
                AutoModelForCausalLM,
                AutoTokenizer,
                DynamicCache,
                cache_utils,
            )
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
            _HF = (AutoModelForCausalLM, AutoTokenizer)
        return _HF


#: model types whose attention takes a custom 4D mask and whose positions come only from
#: position_ids (no ALiBi, no mask-derived positions); each is checked against the per-sequence
#: path in tests/test_backends.py
TREE_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2", "gpt_neox", "gpt2"})


def _transformers_version() -> tuple[int, int]:
    """(major, minor) of the installed transformers; (0, 0) if unreadable."""
    import transformers

    try:
        major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    except ValueError:
        return (0, 0)
    return (major, minor)


def _dtype_kw(dtype: Any) -> dict[str, Any]:
    """from_pretrained's dtype argument: `dtype` since transformers 4.56, `torch_dtype` before."""
    v = _transformers_version()
    return {"dtype": dtype} if v >= (4, 56) or v == (0, 0) else {"torch_dtype": dtype}


def weights_sha256(path: Path) -> str:
    """sha256 over the model's safetensors files, in name order."""
    h = hashlib.sha256()
    for f in sorted(Path(path).glob("*.safetensors")):
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class LocalHFBackend:
    """A local model with full access: logits, logprobs and text."""

    capabilities = frozenset(AccessMode)

    def __init__(self, path: str | Path, *, device: str | None = None,
                 max_queries: int | None = None) -> None:
        import torch

        AutoModelForCausalLM, AutoTokenizer = _transformers()
        self.path = Path(path).resolve()
        cfg = check_model_dir(self.path)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        sha = weights_sha256(self.path)
        key = (str(self.path), sha, self.device)
        hit = LOADED.get(key) if MODEL_CACHE_BYTES > 0 else None
        if hit is not None:
            self.model, self.tokenizer = hit
        else:
            with _LOAD_LOCK:  # transformers' loading is not thread-safe (meta tensors)
                self._load(AutoModelForCausalLM, AutoTokenizer, dtype)
            self.model.eval()
            if MODEL_CACHE_BYTES > 0:
                LOADED.put(key, self.model, self.tokenizer, MODEL_CACHE_BYTES)
        # transformers 5 renamed past_key_values to cache; accept both
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_len = int(cfg.get("max_position_embeddings") or cfg.get("n_positions") or 512)
        self.identity = {
            "kind": "local",
            "path": str(self.path),
            "sha256": sha,
            "model_type": str(cfg.get("model_type", "")),
        }
        self.usage = Usage(max_queries=max_queries)
        self._boundary_mask: Any = _BOUNDARY.get((str(self.path), sha))
        self._boundary_key = (str(self.path), sha)
        # prefix sharing needs a cache object whose rows can be repeated (transformers'
        # Cache); logits_to_keep (when the model takes it) skips the prompt's unused logits
        from transformers import cache_utils

        self._shared_ok = hasattr(cache_utils.Cache, "reorder_cache")
        # one pass per prompt with all its continuations laid out after it under a tree mask
        # (`_tree_logprobs`), for architectures whose positions come from position_ids alone
        # and whose transformers takes a custom 4D mask as given (5.x's masking_utils)
        self._tree = (_transformers_version() >= (5, 0)
                      and self.identity["model_type"] in TREE_MODEL_TYPES)
        # a custom mask replaces a sliding window: rows whose prompt and continuation could
        # reach past the window take the cache path, which keeps the model's own masking
        window = cfg.get("sliding_window")
        uses_window = cfg.get("use_sliding_window", self.identity["model_type"] == "mistral")
        self._window = int(window) if window and uses_window else None
        self._keep_last = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def _load(self, auto_model: Any, auto_tok: Any, dtype: Any) -> None:
        AutoModelForCausalLM, AutoTokenizer = auto_model, auto_tok
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.path, trust_remote_code=False, local_files_only=True
            )
            self.model = AutoModelForCausalLM.from_pretrained(
                self.path, trust_remote_code=False, local_files_only=True,
                use_safetensors=True, **_dtype_kw(dtype),
            )
        except (OSError, ValueError, KeyError) as e:
            raise ModelLoadError(f"cannot load model from {self.path}: {e}") from None
        self.model.to(self.device)

    # -- helpers -----------------------------------------------------------------------------

    def _encode(self, text: str) -> list[int]:
        """Prompt ids, starting with a document-start token: the tokenizer's own BOS if it adds
        one, else its BOS or EOS id (GPT-style models are trained on EOS-separated documents,
        so a prompt without it is out of distribution at its first tokens)."""
        return self._encode_many([text])[0]

    def _encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        """`_encode` of many texts in one tokenizer call (the fast tokenizer batches them)."""
        start = self.tokenizer.bos_token_id
        if start is None:
            start = self.tokenizer.eos_token_id
        out = []
        for ids in self.tokenizer(list(texts), add_special_tokens=True)["input_ids"]:
            ids = list(ids)
            if start is not None and (not ids or ids[0] != start):
                ids.insert(0, start)
            out.append(ids)
        return out

    def _encode_cont(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    @staticmethod
    def _batches(lengths: Sequence[int], budget: int | None = None) -> list[list[int]]:
        """Item indices grouped longest first so each group's rows x longest <= budget
        (MAX_BATCH_TOKENS by default); an item longer than the budget is a group alone."""
        budget = MAX_BATCH_TOKENS if budget is None else budget
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        out: list[list[int]] = []
        cur: list[int] = []
        for i in order:
            if cur and lengths[cur[0]] * (len(cur) + 1) > budget:
                out.append(cur)
                cur = []
            cur.append(i)
        if cur:
            out.append(cur)
        return out

    def _span_logprobs(self, seqs: list[list[int]], starts: list[int],
                       boundary: Any = None, temperatures: Sequence[float] = (1.0,)
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Batched, right-padded forward passes.

        For each sequence returns the summed log-probability of tokens seqs[i][starts[i]:]
        given what precedes them, and (if `boundary`, a bool [V] mask) the log of the mass the
        model puts on boundary tokens right after the sequence's last token. The first is an
        [N, K] array: the span's log-probability under the model's logits divided by each of
        the K `temperatures` (one forward pass for all K); the second is [N].
        """
        import torch

        temps = tuple(float(t) for t in temperatures)
        span = np.zeros((len(seqs), len(temps)))
        bnd = np.zeros(len(seqs))
        pad = self.tokenizer.pad_token_id
        dev = self.device
        mask = boundary.to(dev) if boundary is not None else None
        # the logits ([rows x width x V] float32) and, with a temperature, one scaled copy
        # stay under the logits bound, as in the tree pass
        V = self.model.get_output_embeddings().weight.shape[0]
        cap = MAX_LOGITS_CUDA if str(dev).startswith("cuda") else MAX_LOGITS
        budget = max(1, min(MAX_BATCH_TOKENS,
                            cap // (max(V, 1) * (1 if temps == (1.0,) else 2))))
        for idx in self._batches([len(s) for s in seqs], budget):
            B = len(idx)
            n = np.fromiter((len(seqs[i]) for i in idx), dtype=np.int64, count=B)
            st = np.fromiter((starts[i] for i in idx), dtype=np.int64, count=B)
            width = int(n.max())
            cols = np.arange(width)[None, :]
            real = cols < n[:, None]  # right padding
            ids_np = np.full((B, width), pad, dtype=np.int64)
            ids_np[real] = np.fromiter(chain.from_iterable(seqs[i] for i in idx),
                                       dtype=np.int64, count=int(n.sum()))
            # positions t predicting the span's tokens t + 1: starts - 1 <= t < n - 1
            sel_np = (cols[:, :-1] >= np.maximum(st - 1, 0)[:, None]) \
                & (cols[:, :-1] < (n - 1)[:, None])
            ids = torch.from_numpy(ids_np).to(dev)
            with torch.inference_mode():
                # reduced on the model's device: only [B] numbers come back, not the logits
                logits = self.model(input_ids=ids,
                                    attention_mask=torch.from_numpy(real.astype(np.int64))
                                    .to(dev)).logits.float()
                lse = torch.logsumexp(logits, -1)  # [B, W]
                picked = logits[:, :-1].gather(2, ids[:, 1:, None]).squeeze(-1)
                sel = torch.from_numpy(sel_np).to(dev)
                cols_k = []
                for tau in temps:
                    lse_t = lse if tau == 1.0 else torch.logsumexp(logits / tau, -1)
                    tgt = picked / tau - lse_t[:, :-1]
                    cols_k.append(torch.where(sel, tgt, 0.0).sum(1))
                span[idx] = torch.stack(cols_k, 1).double().cpu().numpy()
                if mask is not None:
                    r = torch.arange(B, device=dev)
                    last = torch.from_numpy(n - 1).to(dev)
                    rows = logits[r, last][:, : mask.shape[0]]
                    bnd[idx] = (torch.logsumexp(rows.masked_fill(~mask, float("-inf")), -1)
                                - lse[r, last]).double().cpu().numpy()
                del logits, lse, tgt, picked
        return span, bnd

    def _fit(self, prompt_ids: list[int], cont_ids: list[int]) -> list[int]:
        """Left-truncate the prompt so prompt+continuation fits the context."""
        room = self.max_len - len(cont_ids)
        if room < 1:
            raise InvalidArgumentError("continuation longer than the model's context")
        return prompt_ids[-room:]

    # -- full access ---------------------------------------------------------------------------

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        """log P(continuation | prompt), nats. Used on registered models; not a suspect query."""
        return [row[0] for row in self.score_tempered(prompts, continuations, (1.0,))]

    def score_tempered(self, prompts: Sequence[str], continuations: Sequence[str],
                       temperatures: Sequence[float]) -> list[list[float]]:
        """log P_tau(continuation | prompt) for each temperature tau: [N][K] nats.

        P_tau is the model with its logits divided by tau (tau < 1 sharpens it onto its
        modes). All K come from one forward pass.
        """
        if len(prompts) != len(continuations):
            raise InvalidArgumentError("prompts and continuations differ in length")
        temps = [float(t) for t in temperatures]
        if not temps or len(temps) > MAX_TEMPERATURES or not all(0.05 <= t <= 5.0 for t in temps):
            raise InvalidArgumentError(
                f"give 1..{MAX_TEMPERATURES} temperatures, each in [0.05, 5]")
        seqs, starts, empty = [], [], []
        for p, c in zip(prompts, continuations):
            cid = self._encode_cont(c)
            pid = self._fit(self._encode(p), cid)
            seqs.append(pid + cid)
            starts.append(len(pid))
            empty.append(not cid)
        span, _ = self._span_logprobs(seqs, starts, temperatures=temps)
        span[np.asarray(empty, dtype=bool)] = 0.0
        return span.tolist()

    def _boundary(self) -> Any:
        """Bool mask over the vocab: tokens whose text starts with a non-word char (or EOS)."""
        import torch

        if self._boundary_mask is None:
            V = self.model.get_output_embeddings().weight.shape[0]
            mask = torch.zeros(V, dtype=torch.bool)
            for t in range(min(V, len(self.tokenizer))):
                s = self.tokenizer.decode([t])
                if not s or not (s[0].isalnum() or s[0] == "_"):
                    mask[t] = True
            mask[len(self.tokenizer):] = False
            if self.tokenizer.eos_token_id is not None:
                mask[self.tokenizer.eos_token_id] = True
            self._boundary_mask = mask
            _BOUNDARY.put(self._boundary_key, mask)
        return self._boundary_mask

    def word_distribution(
        self, prompts: Sequence[str], buckets: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        """P(first word of the continuation == w) for each bucket w, one query per prompt.

        P(w) ~= P(" w" | prompt) * P(next char is not a word char | prompt + " w"), under the
        canonical tokenization of " w" (other tokenizations, and continuations without the
        space or with other whitespace, carry little mass after a prompt that ends in a word).
        Probabilities are rescaled so that a prompt's buckets sum to <= 1.

        Each prompt is run once for all of its buckets' continuations: in one row with them
        under a tree mask (`_tree_logprobs`, the architectures in `TREE_MODEL_TYPES`), else
        with its KV cache shared by them (`_shared_prefix_logprobs`). A prompt too long for
        that (prompt + continuation past the context, so the prompt would be truncated per
        bucket) runs one sequence per bucket.
        """
        self.usage.reserve(len(prompts))
        mask = self._boundary()
        shared: list[tuple[int, list[int], list[list[int]]]] = []
        seqs, starts, meta = [], [], []
        enc: dict[str, list[int]] = {}  # suites share one bucket list: encode each word once
        encoded = self._encode_many(prompts) if prompts else []
        sizes = np.fromiter(map(len, buckets), dtype=np.int64, count=len(buckets))
        offs = np.cumsum(sizes) - sizes  # prompt i's buckets are flat[offs[i]:offs[i] + n]
        for i, (pid_full, ws) in enumerate(zip(encoded, buckets)):
            cids = [enc[w] if w in enc else enc.setdefault(w, self._encode_cont(" " + w))
                    for w in ws]
            if cids and self._shared_ok and all(cids) \
                    and len(pid_full) + max(map(len, cids)) <= self.max_len:
                shared.append((int(offs[i]), pid_full, cids))
                continue
            for j, cid in enumerate(cids):
                pid = self._fit(pid_full, cid)
                seqs.append(pid + cid)
                starts.append(len(pid))
                meta.append(int(offs[i]) + j)
        # (flat bucket index, log P(" w" | prompt), log P(boundary | prompt + " w"))
        got_idx: list[Any] = []
        got_val: list[Any] = []
        if seqs:
            span, bnd = self._span_logprobs(seqs, starts, mask)
            got_idx.append(np.asarray(meta, dtype=np.int64))
            got_val.append(np.stack([span[:, 0], bnd], 1))
        if shared:
            tree = self._tree and (self._window is None or max(
                len(pid) + max(map(len, cids)) for _, pid, cids in shared) <= self._window)
            fn = self._tree_logprobs if tree else self._shared_prefix_logprobs
            idx, val = fn(shared, mask)
            got_idx.append(idx)
            got_val.append(val)
        total = int(sizes.sum())
        flat = np.zeros(total, dtype=np.float64)
        if got_idx:
            idx, val = np.concatenate(got_idx), np.concatenate(got_val).astype(np.float64)
            # a word bucket ends at a boundary; a punctuation bucket is its first char alone
            words = {w: bool(_WORDCH.match(w[:1])) for ws in buckets for w in ws}
            is_word = np.fromiter((words[w] for ws in buckets for w in ws), dtype=bool,
                                  count=total)
            flat[idx] = np.exp(val[:, 0] + np.where(is_word[idx], val[:, 1], 0.0))
        row_of = np.repeat(np.arange(len(buckets)), sizes)
        sums = np.bincount(row_of, weights=flat, minlength=len(buckets))
        flat /= np.maximum(sums, 1.0)[row_of]  # rescale a row only when it sums past 1
        return [flat[o:o + n].tolist() for o, n in zip(offs.tolist(), sizes.tolist())]

    def _tree_logprobs(self, items: list[tuple[int, list[int], list[list[int]]]],
                       boundary: Any) -> tuple[Any, Any]:
        """What `_shared_prefix_logprobs` computes, in one forward pass per group of prompts.

        Each row is a prompt followed by all of its continuations, one after another, with a
        4D mask that lets a prompt token see the prompt before it and a continuation token see
        the prompt and its own continuation's earlier tokens (never another continuation).
        Positions restart after the prompt for each continuation, so every continuation is
        scored exactly as if it followed the prompt alone. Nothing is repeated per
        continuation: no KV cache copies, and attention runs over whole rows, which keeps the
        GPU's fused kernels busy (the cache path gave them one query token per row).
        """
        import torch

        pad = self.tokenizer.pad_token_id
        dev = self.device
        maskf = boundary.to(dev, torch.float32)
        V = boundary.shape[0]
        cuda = str(dev).startswith("cuda")
        budget = min(MAX_BATCH_TOKENS_CUDA if cuda else MAX_BATCH_TOKENS,
                     (MAX_LOGITS_CUDA if cuda else MAX_LOGITS) // max(V, 1))
        rowlen = [len(pid) + sum(map(len, cids)) for _, pid, cids in items]
        dtype = next(self.model.parameters()).dtype
        neg = torch.finfo(dtype).min
        outs: list[Any] = []
        keys: list[Any] = []
        pinned: list[Any] = []  # host buffers of in-flight copies, alive until the final sync

        def put(a: Any) -> Any:
            """To the device without a sync: a copy from pageable memory would wait for the
            GPU to drain, and the next group's preparation would stop overlapping it."""
            t = torch.from_numpy(np.ascontiguousarray(a))
            if not cuda:
                return t
            t = t.pin_memory()
            pinned.append(t)
            return t.to(dev, non_blocking=True)

        for g in self._batches(rowlen, budget):
            P = len(g)
            T = max(rowlen[k] for k in g)
            # every index below is built with numpy over the whole group (no per-token loop)
            n = np.fromiter((len(items[k][1]) for k in g), dtype=np.int64, count=P)
            counts = np.fromiter((len(items[k][2]) for k in g), dtype=np.int64, count=P)
            conts = [c for k in g for c in items[k][2]]
            cl = np.fromiter(map(len, conts), dtype=np.int64, count=len(conts))
            crow = np.repeat(np.arange(P), counts)  # each continuation's row
            first_q = np.cumsum(counts) - counts  # a row's first continuation
            excl = np.cumsum(cl) - cl  # tokens before each continuation, group-wide
            at = n[crow] + excl - excl[first_q][crow]  # each continuation's first column
            tq = np.repeat(np.arange(len(conts)), cl)  # each continuation token's continuation
            k_in = np.arange(int(cl.sum())) - excl[tq]  # its offset in its continuation
            row, col = crow[tq], at[tq] + k_in
            ids = np.full((P, T), pad, dtype=np.int64)
            pos = np.zeros((P, T), dtype=np.int64)
            seg = np.full((P, T), -1, dtype=np.int64)  # -1 pad, 0 prompt, j+1 continuation j
            in_prompt = np.arange(T)[None, :] < n[:, None]
            ids[in_prompt] = np.fromiter(chain.from_iterable(items[k][1] for k in g),
                                         dtype=np.int64, count=int(n.sum()))
            pos[in_prompt] = np.nonzero(in_prompt)[1]
            seg[in_prompt] = 0
            ids[row, col] = np.fromiter(chain.from_iterable(conts), dtype=np.int64,
                                        count=len(tq))
            pos[row, col] = n[row] + k_in
            seg[row, col] = (np.arange(len(conts)) - first_q[crow])[tq] + 1
            # the logits that score each token: the previous column's, or for a
            # continuation's first token the prompt's last
            pred = row * T + np.where(k_in == 0, n[row] - 1, col - 1)
            last = crow * T + at + cl - 1
            keys.append(np.repeat(np.fromiter((items[k][0] for k in g), dtype=np.int64,
                                              count=P), counts)
                        + np.arange(len(conts)) - first_q[crow])
            # a prompt's last logits score the first token of all its continuations: take the
            # normaliser once per distinct position
            upred, inv = np.unique(pred, return_inverse=True)
            ids_d, pos_d, seg_d = put(ids), put(pos), put(seg)
            upred_d, inv_d, pred_d = put(upred), put(inv.reshape(-1)), put(pred)
            tgt_d, tq_d, last_d = put(ids[row, col]), put(tq), put(last)
            with torch.inference_mode():
                t_idx = torch.arange(T, device=dev)
                allowed = (t_idx[None, None, :] <= t_idx[None, :, None]) \
                    & (seg_d[:, None, :] >= 0) & (seg_d[:, :, None] >= 0) \
                    & ((seg_d[:, None, :] == 0) | (seg_d[:, None, :] == seg_d[:, :, None]))
                # additive form (0 where allowed), which eager and SDPA attention both accept;
                # pad rows see only themselves so their softmax stays finite
                allowed |= torch.eye(T, dtype=torch.bool, device=dev)[None]
                att = torch.zeros((P, 1, T, T), dtype=dtype, device=dev)
                att.masked_fill_(~allowed[:, None], neg)
                del allowed
                o = self.model(input_ids=ids_d, attention_mask=att, position_ids=pos_d,
                               use_cache=False)
                flat = o.logits.view(P * T, -1)
                del o, att
                lse = torch.logsumexp(flat[upred_d].float(), -1)
                tok = flat[pred_d, tgt_d].float() - lse[inv_d]
                span = torch.zeros(len(conts), dtype=torch.float32, device=dev)
                span.index_add_(0, tq_d, tok)
                # boundary mass after each continuation: one fused softmax (bf16 in, float32
                # out) and a matrix-vector product, rather than two masked log-sum-exps
                pz = torch.softmax(flat[last_d], -1, dtype=torch.float32)
                del flat
                bnd = torch.log((pz[:, :V] @ maskf).clamp_min(1e-38))
                outs.append(torch.stack([span, bnd], 1))
                del pz
        if not outs:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 2))
        both = torch.cat(outs).double().cpu().numpy()  # the one sync, after every group
        pinned.clear()
        return np.concatenate(keys), both

    def _shared_prefix_logprobs(self, items: list[tuple[int, list[int], list[list[int]]]],
                                boundary: Any) -> tuple[Any, Any]:
        """Span and boundary log-probs of many continuations per prompt, prompt run once.

        items: (flat index of the prompt's first bucket, prompt ids, [continuation ids per
        bucket j]), every continuation non-empty. Returns (flat indices, [n, 2] array of
        log P(cont | prompt) and log P(boundary | prompt + cont)), the same quantities
        `_span_logprobs` computes one sequence at a time.

        Per group of prompts: one left-padded forward pass over the prompts with a KV cache
        (only the last position's logits kept), then the cache rows are repeated once per
        continuation and one forward pass runs all continuations (right-padded) on top of it.
        A continuation's first token is scored by the prompt's last logits, the rest by the
        continuation pass, and the boundary mass by the logits at its last token.
        """
        import torch

        pad = self.tokenizer.pad_token_id
        dev = self.device
        mask = boundary.to(dev)
        # group prompts so the continuation pass (rows x (prompt + continuation) tokens) and
        # the repeated cache stay under MAX_BATCH_TOKENS
        budget = MAX_BATCH_TOKENS_CUDA if str(dev).startswith("cuda") else MAX_BATCH_TOKENS
        groups: list[list[int]] = []
        cur: list[int] = []
        tokens = 0
        for k in sorted(range(len(items)), key=lambda k: -len(items[k][1])):
            _, pid, cids = items[k]
            t = len(cids) * (len(pid) + max(map(len, cids)))
            if cur and tokens + t > budget:
                groups.append(cur)
                cur, tokens = [], 0
            cur.append(k)
            tokens += t
        if cur:
            groups.append(cur)
        spans: list[Any] = []  # per group, kept on the device until the end: no sync per group
        keys: list[int] = []
        for g in groups:
            # host-side tensors built with numpy, not per row: at ~10^5 rows a Python loop of
            # tensor assignments cost more than the GPU's forward passes
            P = len(g)
            plen = np.fromiter((len(items[k][1]) for k in g), dtype=np.int64, count=P)
            width = int(plen.max())
            att_np = np.arange(width)[None, :] >= (width - plen)[:, None]  # left padding
            ids_np = np.full((P, width), pad, dtype=np.int64)
            ids_np[att_np] = np.fromiter(chain.from_iterable(items[k][1] for k in g),
                                         dtype=np.int64, count=int(plen.sum()))
            ids = torch.from_numpy(ids_np)
            att = torch.from_numpy(att_np.astype(np.int64))
            pos = (att.cumsum(-1) - 1).clamp(min=0)
            conts = [c for k in g for c in items[k][2]]
            R = len(conts)
            clen_np = np.fromiter(map(len, conts), dtype=np.int64, count=R)
            L = int(clen_np.max())
            cont_np = np.full((R, L), pad, dtype=np.int64)
            cont_np[np.arange(L)[None, :] < clen_np[:, None]] = np.fromiter(
                chain.from_iterable(conts), dtype=np.int64, count=int(clen_np.sum()))
            cont, clen = torch.from_numpy(cont_np), torch.from_numpy(clen_np)
            src = torch.from_numpy(np.repeat(np.arange(P), [len(items[k][2]) for k in g]))
            keys.extend(items[k][0] + j for k in g for j in range(len(items[k][2])))
            with torch.inference_mode():
                o = self.model(input_ids=ids.to(dev), attention_mask=att.to(dev),
                               position_ids=pos.to(dev), use_cache=True,
                               **self._keep_last)
                past = _cache_of(o)
                if not hasattr(past, "reorder_cache"):  # a legacy tuple (older transformers)
                    from transformers import DynamicCache

                    past = DynamicCache.from_legacy_cache(past)
                first = torch.log_softmax(o.logits[:, -1].float(), -1)  # [P, V]
                past.reorder_cache(src.to(dev))  # one cache row per continuation
                att2 = torch.cat([att[src], torch.ones((R, L), dtype=torch.long)], 1)
                pos2 = pos[src, -1:] + 1 + torch.arange(L)[None, :]
                cont_d, clen_d, src_d = cont.to(dev), clen.to(dev), src.to(dev)
                with _cont_attention(dev):
                    o2 = self.model(input_ids=cont_d, attention_mask=att2.to(dev),
                                    position_ids=pos2.to(dev), use_cache=True,
                                    **{self._cache_kw: past})
                del past
                # reduce on the device: only [R] numbers come back, not [R, L, V] logits
                logits = o2.logits.float()  # [R, L, V]
                span = first[src_d].gather(1, cont_d[:, :1]).squeeze(1)
                if L > 1:
                    lse = torch.logsumexp(logits[:, :-1], -1)  # [R, L-1]
                    nxt = logits[:, :-1].gather(2, cont_d[:, 1:, None]).squeeze(-1) - lse
                    keep = torch.arange(1, L, device=dev)[None, :] < clen_d[:, None]
                    span = span + (nxt * keep).sum(1)
                last = logits[torch.arange(R, device=dev), clen_d - 1]  # [R, V]
                bnd = torch.logsumexp(last[:, : boundary.shape[0]].masked_fill(
                    ~mask, float("-inf")), -1) - torch.logsumexp(last, -1)
                spans.append(torch.stack([span, bnd], 1))
                del o2, logits, last
        if not spans:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 2))
        # the one sync, after every group's passes
        return np.asarray(keys, dtype=np.int64), torch.cat(spans).double().cpu().numpy()

    # -- sampling ----------------------------------------------------------------------------

    def sample(
        self,
        prompts: Sequence[str],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float,
        seed: int,
        top_logprobs: int = 0,
    ) -> list[list[Sample]]:
        import torch

        if not 1 <= n <= MAX_SAMPLES_PER_PROMPT:
            raise InvalidArgumentError(f"n must be in 1..{MAX_SAMPLES_PER_PROMPT}")
        if not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidArgumentError(f"top_logprobs must be in 0..{MAX_TOP_LOGPROBS}")
        if not 0.0 < temperature <= 5.0:
            raise InvalidArgumentError("temperature must be in (0, 5]")
        self.usage.reserve(n * len(prompts))
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        flat = [(i, p) for i, p in enumerate(prompts) for _ in range(n)]
        enc = [self._fit(self._encode(p), [0] * max_new_tokens) for _, p in flat]
        results: list[list[Sample]] = [[] for _ in prompts]
        # KV-cache decoding is step-bound, so sample many rows at once (bounded by tokens)
        per_batch = max(1, min(MAX_SAMPLE_ROWS,
                               MAX_SAMPLE_TOKENS // (max(len(e) for e in enc) + max_new_tokens)))
        for b0 in range(0, len(flat), per_batch):
            chunk = list(range(b0, min(len(flat), b0 + per_batch)))
            samples = self._sample_batch(
                [enc[k] for k in chunk], max_new_tokens, temperature, gen, top_logprobs
            )
            for k, s in zip(chunk, samples):
                results[flat[k][0]].append(s)
                self.usage.add_tokens(s.n_tokens)
        return results

    def _sample_batch(self, enc: list[list[int]], max_new: int, temperature: float,
                      gen: Any, top_k: int) -> list[Sample]:
        import torch

        B = len(enc)
        width = max(len(e) for e in enc)
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        ids = torch.full((B, width), pad, dtype=torch.long)
        att = torch.zeros((B, width), dtype=torch.long)
        for r, e in enumerate(enc):  # left padding
            ids[r, width - len(e):] = torch.tensor(e)
            att[r, width - len(e):] = 1
        pos = (att.cumsum(-1) - 1).clamp(min=0)
        dev = self.device
        out_tok = torch.zeros((B, max_new), dtype=torch.long)
        out_lp = torch.zeros((B, max_new))
        tops: list[list[dict[str, float]]] = [[] for _ in range(B)]
        done = torch.zeros(B, dtype=torch.bool)
        lengths = torch.full((B,), max_new, dtype=torch.long)
        with torch.inference_mode():
            o = self.model(input_ids=ids.to(dev), attention_mask=att.to(dev),
                           position_ids=pos.to(dev), use_cache=True)
            past, logits = _cache_of(o), o.logits[:, -1].float().cpu()
            for t in range(max_new):
                lp = torch.log_softmax(logits, -1)
                probs = torch.softmax(logits / temperature, -1)
                nxt = torch.multinomial(probs, 1, generator=gen).squeeze(1)
                nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
                out_tok[:, t] = nxt
                out_lp[:, t] = lp.gather(1, nxt[:, None]).squeeze(1)
                if top_k:
                    v, ix = lp.topk(top_k, -1)
                    for r in range(B):
                        if not done[r]:
                            tops[r].append({self.tokenizer.decode([int(j)]): float(x)
                                            for x, j in zip(v[r], ix[r])})
                if eos is not None:
                    newly = (~done) & (nxt == eos)
                    lengths = torch.where(newly, torch.full_like(lengths, t + 1), lengths)
                    done |= newly
                if bool(done.all()):
                    break
                att = torch.cat([att, torch.ones((B, 1), dtype=torch.long)], 1)
                pos = pos[:, -1:] + 1
                o = self.model(input_ids=nxt[:, None].to(dev), attention_mask=att.to(dev),
                               position_ids=pos.to(dev), use_cache=True,
                               **{self._cache_kw: past})
                past, logits = _cache_of(o), o.logits[:, -1].float().cpu()
        res = []
        for r in range(B):
            L = int(lengths[r])
            keep = [t for t in range(L) if int(out_tok[r, t]) != eos]  # the stop token is no text
            text = self.tokenizer.decode([int(out_tok[r, t]) for t in keep],
                                         skip_special_tokens=True)
            res.append(Sample(
                text=text,
                n_tokens=L,
                token_logprobs=tuple(float(out_lp[r, t]) for t in keep) if top_k else None,
                top_logprobs=tuple(tops[r][t] for t in keep) if top_k else None,
            ))
        return res


def _cache_of(out: Any) -> Any:
    c = getattr(out, "cache", None)
    return c if c is not None else out.past_key_values


