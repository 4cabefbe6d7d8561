"""The FAISS index of registered signatures. The only module that imports faiss.

An `IndexIDMap2` over `IndexFlatIP`: ids are the store's model ids, vectors are float32
signatures (see `signatures`). Metadata (names, roles) lives in the store, not here. The index
is persisted atomically (write to a temp file, fsync, rename), and searched on the GPU when
faiss was built with GPU support and one is present.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lineage.errors import InvalidArgumentError, StoreError
from lineage.faults import crash_point

__all__ = ["SignatureIndex"]


class SignatureIndex:
    """Inner-product index keyed by int64 ids."""

    def __init__(self, dim: int, path: str | Path | None = None) -> None:
        import faiss

        self.dim = int(dim)
        self.path = Path(path) if path is not None else None
        if self.path is not None and self.path.exists():
            try:
                idx = faiss.read_index(str(self.path))
            except RuntimeError as e:
                raise StoreError(f"cannot read index {self.path}: {e}") from None
            if idx.d != self.dim:
                raise StoreError(f"index {self.path} has dim {idx.d}, expected {self.dim}")
            self._raw = idx  # keep the owner alive: the downcast view shares its memory
            self._index: Any = faiss.downcast_index(idx)
        else:
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        """All ids, int64 [n]."""
        import faiss

        return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InvalidArgumentError(
                f"signature has shape {x.shape}, expected (*, {self.dim})", field="vector"
            )
        if not np.isfinite(x).all():
            raise InvalidArgumentError("signature contains NaN or inf", field="vector")
        return x

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add or replace vectors [n, dim] float32 under int64 ids [n]."""
        x = self._check(vectors)
        i = np.asarray(ids, dtype=np.int64).ravel()
        if i.size != x.shape[0]:
            raise InvalidArgumentError("ids and vectors differ in count")
        self.remove(i)
        self._index.add_with_ids(x, i)

    def remove(self, ids: np.ndarray) -> int:
        import faiss

        i = np.asarray(ids, dtype=np.int64).ravel()
        return int(self._index.remove_ids(faiss.IDSelectorArray(i.size, faiss.swig_ptr(i))))

    def reconstruct(self, id_: int) -> np.ndarray:
        try:
            return np.asarray(self._index.reconstruct(int(id_)), dtype=np.float32)
        except RuntimeError:
            raise StoreError(f"id {id_} is not in the index") from None

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product. query [q, dim] -> (scores [q, k] float32, ids [q, k] int64).

        Missing results (k > size) have id -1 and score -inf, as in faiss.
        """
        q = self._check(query)
        if k < 1:
            raise InvalidArgumentError("k must be >= 1", field="k")
        k = min(int(k), max(1, len(self)))
        D, I = self._searcher().search(q, k)
        return D, I

    def _searcher(self) -> Any:
        import faiss

        if hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0 and len(self) > 10_000:
            return faiss.index_cpu_to_all_gpus(self._index)
        return self._index

    def save(self) -> None:
        """Atomically write the index to `path` (temp file in the same dir, fsync, rename)."""
        import faiss

        if self.path is None:
            raise StoreError("index has no path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".index.", suffix=".tmp")
        os.close(fd)
        try:
            faiss.write_index(self._index, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            crash_point("index.save.before_replace")
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
