"""Byte-level BPE tokenizers for the zoo, trained offline with the `tokenizers` library.

A tokenizer is named like "bpe4k-a": vocabulary size and training corpus ("a" = stdlib train,
"t" = thirdparty train). Every one round-trips text (ByteLevel decoder) and uses a single
special token, EOS, also as BOS and PAD.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["EOS", "TOKENIZERS", "encode_docs", "encode_stream", "train_tokenizer"]

EOS = "<|endoftext|>"
# name -> (vocabulary size, corpus)
TOKENIZERS: dict[str, tuple[int, str]] = {
    "bpe4k-a": (4096, "stdlib"),
    "bpe2k-a": (2048, "stdlib"),
    "bpe3k-a": (3072, "stdlib"),
    "bpe2k-t": (2048, "thirdparty"),
    "bpe4k-t": (4096, "thirdparty"),
    "bpe1k-a": (1024, "stdlib"),
}


def train_tokenizer(texts: Sequence[str], vocab: int, ctx: int = 128) -> Any:
    """A byte-level BPE tokenizer as a transformers PreTrainedTokenizerFast (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(list(texts), trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=[EOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS,
                                   pad_token=EOS, model_max_length=ctx)


def encode_docs(tok: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, no special tokens."""
    if not texts:
        return []
    return [e.ids for e in tok.backend_tokenizer.encode_batch(list(texts),
                                                              add_special_tokens=False)]


def encode_stream(tok: Any, texts: Sequence[str]) -> np.ndarray:
    """Texts as one int32 stream, each preceded by EOS (the document separator)."""
    eos = tok.eos_token_id
    parts = [np.asarray([eos] + ids, dtype=np.int32) for ids in encode_docs(tok, texts)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
