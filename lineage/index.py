"""The FAISS index of registered signatures. The only module that imports faiss.

Ids are the store's model ids, vectors are float32 signatures (see `signatures`); metadata
(names, roles) lives in the store, not here. The index is persisted atomically (write to a temp
file, fsync, rename), and searched on the GPU when faiss was built with GPU support and one is
present.

Two representations, chosen by size (`IndexConfig.exact_max`):

- **exact** (n <= exact_max, 2048): `IndexIDMap2(IndexFlatIP(dim))` over the raw signatures.
  Scores are exact inner products and `reconstruct` returns the stored vector. A registry of
  teachers and references is this size. Flat search over raw 6272-dim vectors is memory
  bound (25 KB per vector per query): ~1 ms at 1024 vectors, ~7 ms at 4096, ~17 ms at 8192
  on the development machine (`benchmarks/index.py --sweep`), hence the threshold.
- **compact** (above): 1e6 raw signatures would take 25 GB, and a flat scan of 1e5 takes
  ~0.1 s. Vectors are mapped by a fixed, seeded random orthonormal projection to `proj_dim`
  (256) dimensions, scaled by sqrt(dim / proj_dim) so that projected inner products are
  unbiased estimates of the raw ones (Johnson-Lindenstrauss: for unit vectors the error has
  sd ~ 1/sqrt(proj_dim) = 0.06). Two structures share one coarse quantizer (~4 sqrt(n) lists):
  - the *store*: an inverted file with 8-bit scalar codes (`IndexIVFScalarQuantizer`, 256
    bytes a vector, an id hashtable). It is the record: `reconstruct`, `stored`, removal by
    id and re-clustering read it, and its decoded vectors define the index's scores;
  - the *scanner*: an inverted file with 4-bit fast-scan PQ codes over pairs of dimensions
    (`IndexIVFPQFastScan`, 64 bytes a vector, SIMD look-up tables), searched over `nprobe`
    lists (default a quarter of them) for `rerank` candidates, which are then scored exactly
    against the store's codes. A search therefore returns the store's own top-k whenever the
    true top-k are among the candidates.
  The re-rank reads a decoded, id-sorted float32 copy of the store (1 KB a vector), rebuilt
  once on the first search (0.3 s at 1e5, 5.2-5.7 s at 1e6: `benchmarks/index.py --n N`,
  its `first_search_ms`) and then kept current by each change: an upsert appends its rows'
  decoded codes, a removal marks rows dead (`_rows_add`, `_rows_remove`). Re-clustering,
  sparse ids or a quarter of the rows dead drop it for a rebuild. The first search after a
  10-vector upsert: 1.5 ms at 1e5 and 4.9 ms at 1e6, against 274 ms at 1e5 when every
  change dropped the copy (same benchmark, `first_search_after_upsert_ms`).
  The projection is data-independent, so switching needs no fitting and later vectors land in
  the same space. Both inverted files remove by id, so upserts stay in place. When the index
  has grown so that its list count is half what its size calls for, the lists are
  re-clustered from the stored codes; an emptied compact index becomes exact. A compact index
  is saved as one file holding both structures (`_MAGIC`); an older file with the store alone
  gets its scanner rebuilt on load.

Concurrency: any number of threads may search at once; `upsert` and `remove` wait for the
searches in flight and hold the index alone (`rwlock.RWLock`), because faiss does not
support a search during an add or a removal. `save` writes a consistent snapshot.

What compact mode gives up, measured (`benchmarks/index.py`, synthetic signatures in
families): scores are estimates, so the order *within* a family of near-identical models is
partly lost (exact search in the projected space keeps ~28% of the raw top-10), while the
family itself is found. The scan is still linear in n (a quarter of the codes, 64 bytes
each): 1e6 vectors take ~4 ms a query on one core; 1e7 would need a graph or more lists.
Candidates compared over the same projected vectors: IVF-SQ8 alone needed nprobe 1024 (16 ms
at 1e6) for recall 0.95, because a query unrelated to every stored family has noise-level
neighbours spread over many lists; HNSW32 reached only 0.72 recall@10 at 1e5 at efSearch 128
on this nearly isotropic data and cannot remove vectors, which upserts need; IVF-PQ32 stayed
near 0.5; fast-scan PQ with d/4 sub-quantizers and the same re-rank gave 0.94 at 1e5 where
d/2 gave 0.98.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lineage.errors import InvalidArgumentError, StoreError
from lineage.faults import crash_point
from lineage.rwlock import RWLock

__all__ = ["IndexConfig", "SignatureIndex", "nlist_for"]

#: a compact index's file: this, then two (little-endian u64 length, faiss bytes) records,
#: the store and the scanner (an exact index is a plain faiss file)
_MAGIC = b"LINEAGE-INDEX-2\n"


@dataclass(frozen=True)
class IndexConfig:
    """How a `SignatureIndex` represents its vectors (see the module docstring)."""

    exact_max: int = 2048  # at most this many vectors: exact flat search over raw vectors
    proj_dim: int = 256  # compact mode: projected dimension (no projection if dim <= this)
    nprobe: int | None = None  # compact mode: lists scanned per query (None: a quarter)
    rerank: int = 1000  # compact mode: candidates scored exactly against the stored codes
    seed: int = 20240917  # compact mode: the projection's seed


def nlist_for(n: int) -> int:
    """Inverted lists for n vectors: the power of two nearest 4 * sqrt(n), >= 39 points each."""
    target = 2 ** round(math.log2(max(1.0, 4.0 * math.sqrt(n))))
    cap = max(1, n // 39)  # faiss's k-means wants >= 39 points per centroid
    while target > cap and target > 1:
        target //= 2
    return int(min(target, 1 << 16))


class SignatureIndex:
    """Inner-product index keyed by int64 ids."""

    def __init__(self, dim: int, path: str | Path | None = None, *,
                 config: IndexConfig | None = None) -> None:
        import faiss

        self.dim = int(dim)
        self.config = config or IndexConfig()
        self.path = Path(path) if path is not None else None
        self._gpu: Any = None
        self._fast: Any = None  # compact mode: the fast-scan candidate scanner
        self._rows: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None
        self._ybuf: np.ndarray | None = None  # the copy's rows, with room to append
        self._dead = 0  # rows of the copy whose ids were removed
        # searches share the index; a change (upsert, remove) has it alone: faiss is safe for
        # concurrent searches but not for a search during an add or a removal
        self._lock = RWLock()
        self._lazy = threading.Lock()  # the caches a search builds (re-rank copy, GPU copy)
        if self.path is not None and self.path.exists():
            idx, fast = self._read(self.path)
            if idx.d != self.dim:
                raise StoreError(f"index {self.path} has dim {idx.d}, expected {self.dim}")
            self._raw = idx  # keep the owner alive: the downcast view shares its memory
            self._index: Any = faiss.downcast_index(idx)
            if self.compact:
                if fast is None or fast.ntotal != idx.ntotal:  # older file: store alone
                    fast = self._build_fast(*self._projected())
                self._fast = fast
        else:
            self._index = self._new_exact()

    @staticmethod
    def _read(path: Path) -> tuple[Any, Any]:
        """(index, scanner or None) from a file written by `save` (or by faiss alone)."""
        import faiss

        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                head = f.read(len(_MAGIC))
                if head != _MAGIC:
                    return faiss.read_index(str(path)), None
                parts = []
                for _ in range(2):
                    n = int.from_bytes(f.read(8), "little")
                    if n > size - f.tell():  # a length the file cannot hold: never read it
                        raise RuntimeError("truncated")
                    blob = f.read(n)
                    if len(blob) != n:
                        raise RuntimeError("truncated")
                    parts.append(faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8)))
        except (RuntimeError, OSError) as e:
            raise StoreError(f"cannot read index {path}: {e}") from None
        fast = parts[1]
        fast.this.disown()  # hand ownership to the downcast view, which outlives this frame
        view = faiss.downcast_index(fast)
        view.this.own(True)
        return parts[0], view

    # -- representation ----------------------------------------------------------------------

    @property
    def compact(self) -> bool:
        """True in compact mode (projected, inverted file), False in exact mode."""
        import faiss

        return not isinstance(self._index, faiss.IndexIDMap2)

    @property
    def mode(self) -> str:
        return "compact" if self.compact else "exact"

    def _new_exact(self) -> Any:
        import faiss

        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _ivf(self) -> Any:
        import faiss

        return faiss.extract_index_ivf(self._index)

    def _proj_dim(self) -> int:
        return min(self.dim, self.config.proj_dim)

    def _scale(self) -> float:
        """Projected inner products are scaled by this (squared norm factor) vs raw ones."""
        return self.dim / self._proj_dim()

    def _new_ivf(self, n: int) -> Any:
        import faiss

        d = self._proj_dim()
        quant = faiss.IndexFlatIP(d)
        ivf = faiss.IndexIVFScalarQuantizer(quant, d, nlist_for(n),
                                            faiss.ScalarQuantizer.QT_8bit,
                                            faiss.METRIC_INNER_PRODUCT, False)
        ivf.cp.niter = 10
        ivf.cp.max_points_per_centroid = 64  # train on at most 64 * nlist points
        ivf.cp.spherical = True
        ivf.cp.seed = self.config.seed
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct by arbitrary id
        quant.this.disown()  # the inverted file owns its quantizer
        ivf.own_fields = True
        return ivf

    def _build_fast(self, ids: np.ndarray, y: np.ndarray) -> Any:
        """The scanner over projected vectors y [n, d] under ids, on the store's lists.

        4-bit PQ over pairs of dimensions (single dimensions when d is odd): 64 bytes a
        vector at d = 256. Its coarse quantizer is a copy of the store's, so both agree on
        which list a vector is in.
        """
        import faiss

        ivf = self._ivf()
        d = ivf.d
        quant = faiss.clone_index(ivf.quantizer)
        m = d // 2 if d % 2 == 0 else d
        fast = faiss.IndexIVFPQFastScan(quant, d, ivf.nlist, m, 4, faiss.METRIC_INNER_PRODUCT)
        quant.this.disown()
        fast.own_fields = True
        fast.pq.cp.seed = self.config.seed
        fast.train(np.ascontiguousarray(y, dtype=np.float32))  # the PQ only: lists are trained
        if len(ids):
            fast.add_with_ids(np.ascontiguousarray(y, dtype=np.float32),
                              np.ascontiguousarray(ids, dtype=np.int64))
        return fast

    def _nprobe(self) -> int:
        nlist = int(self._ivf().nlist)
        want = self.config.nprobe if self.config.nprobe is not None else nlist // 4
        return max(1, min(nlist, int(want)))

    def _projection(self, a: np.ndarray | None = None) -> Any:
        """The projection as a faiss LinearTransform: the seeded one, or a copy of matrix a."""
        import faiss

        d = self._proj_dim()
        if a is None:
            rr = faiss.RandomRotationMatrix(self.dim, d)
            rr.init(self.config.seed)  # orthonormal rows (QR of a seeded Gaussian matrix)
            a = faiss.vector_to_array(rr.A) * np.float32(math.sqrt(self.dim / d))
        lt = faiss.LinearTransform(self.dim, d, False)
        faiss.copy_array_to_vector(np.ascontiguousarray(a, dtype=np.float32), lt.A)
        lt.is_orthonormal = True  # up to the scale; `reconstruct` divides it out
        lt.is_trained = True
        return lt

    def _wrap(self, ivf: Any, proj: Any) -> Any:
        import faiss

        if proj is None:
            return ivf
        pre = faiss.IndexPreTransform(proj, ivf)
        proj.this.disown()  # one python object owns the whole tree
        ivf.this.disown()
        pre.own_fields = True
        return pre

    def _to_compact(self, ids: np.ndarray, x: np.ndarray) -> None:
        """Replace the whole index by a compact one holding raw vectors x [n, dim] under ids."""
        ivf = self._new_ivf(len(ids))
        proj = self._projection() if self._proj_dim() < self.dim else None
        index = self._wrap(ivf, proj)
        index.train(x)
        index.add_with_ids(x, ids)
        self._set(index)
        self._fast = self._build_fast(ids, self._project(x))

    def _recluster(self) -> None:
        """Re-cluster a compact index for its current size, from its stored projected vectors."""
        ids, y = self._projected()
        ivf = self._new_ivf(len(ids))
        ivf.train(y)
        ivf.add_with_ids(y, ids)
        import faiss

        proj = None
        if isinstance(self._index, faiss.IndexPreTransform):
            old = faiss.downcast_VectorTransform(self._index.chain.at(0))
            proj = self._projection(faiss.vector_to_array(old.A))
        self._set(self._wrap(ivf, proj))
        self._fast = self._build_fast(ids, y)

    def _set(self, index: Any) -> None:
        self._index = index
        self._raw = index
        self._gpu = None
        self._fast = None
        self._rows = None

    def _projected(self, vectors: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Compact mode: (ids [n] int64, projected vectors [n, proj_dim] float32).

        With vectors=False the second array is empty (the ids alone, nothing decoded).
        """
        import faiss

        ids, codes = self._contents(codes=vectors)
        ivf = self._ivf()
        if not vectors:
            return ids, np.zeros((0, ivf.d), np.float32)
        sq = faiss.downcast_index(ivf).sq  # no residuals: codes decode on their own
        return ids, (sq.decode(codes) if len(ids) else np.zeros((0, ivf.d), np.float32))

    def _contents(self, codes: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Compact mode: the store's (ids [n] int64, codes [n, code_size] uint8), list order."""
        import faiss

        ivf = self._ivf()
        inv = ivf.invlists
        cs = inv.code_size
        ids, out = [np.zeros(0, np.int64)], [np.zeros((0, cs), np.uint8)]
        for lst in range(ivf.nlist):
            m = inv.list_size(lst)
            if m:
                ids.append(faiss.rev_swig_ptr(inv.get_ids(lst), m).astype(np.int64))
                if codes:
                    out.append(faiss.rev_swig_ptr(inv.get_codes(lst), m * cs).reshape(m, cs)
                               .copy())
        return np.concatenate(ids), np.concatenate(out)

    def _store_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(ids [n] int64 sorted, their decoded store vectors [n, d] float32, row table).

        The re-rank's copy of the store, rebuilt after any change: decoding the candidates
        one by one through the id hashtable cost 4x the scan. The row table maps an id to its
        row directly when ids are dense (store ids are), else it is None and rows are found
        by binary search.
        """
        with self._lazy:
            if self._rows is None:
                self._rows = self._build_rows()
            return self._rows

    def _build_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        ids, y = self._projected()
        o = np.argsort(ids, kind="stable")
        ids, y = ids[o], np.ascontiguousarray(y[o])
        table = None
        self._ybuf, self._dead = None, 0
        if ids.size and ids[0] >= 0 and ids[-1] < 4 * ids.size + 1024:
            table = np.full(int(ids[-1]) + 1, -1, dtype=np.int64)
            table[ids] = np.arange(ids.size)
            # room to append what later upserts add (see `_rows_add`)
            self._ybuf = np.empty((ids.size + ids.size // 4 + 64, y.shape[1]), np.float32)
            self._ybuf[: ids.size] = y
            y = self._ybuf[: ids.size]
        return ids, y, table

    def _rows_add(self, i: np.ndarray, xp: np.ndarray) -> None:
        """Keep the re-rank copy current after an add (called with the write lock held).

        i: ids just added (none present before: `_upsert` removed them first); xp: their
        projected vectors. Their store rows are the scalar quantizer's decode of its encode,
        exactly what `_projected` would read back. Only the row-table form is kept up to
        date; otherwise (or when removals have left a quarter of the rows dead) the copy is
        dropped and the next search rebuilds it.
        """
        import faiss

        rows = self._rows
        if rows is None or i.size == 0:
            return
        sid, y, table = rows
        n = y.shape[0]
        if table is None or self._ybuf is None or i.min() < 0 \
                or i.max() >= 4 * (n + i.size) + 1024 or self._dead * 4 > n:
            self._rows = None
            return
        sq = faiss.downcast_index(self._ivf()).sq
        dec = sq.decode(sq.compute_codes(np.ascontiguousarray(xp, dtype=np.float32)))
        if n + i.size > self._ybuf.shape[0]:
            grown = np.empty((n + i.size + (n + i.size) // 4 + 64, y.shape[1]), np.float32)
            grown[:n] = y
            self._ybuf = grown
        self._ybuf[n:n + i.size] = dec
        if i.max() >= table.size:
            bigger = np.full(max(int(i.max()) + 1, table.size + table.size // 4), -1, np.int64)
            bigger[: table.size] = table
            table = bigger
        table[i] = np.arange(n, n + i.size)
        # sid is read only on the binary-search path, which a table never takes
        self._rows = (sid, self._ybuf[: n + i.size], table)

    def _rows_remove(self, i: np.ndarray) -> None:
        """Mark removed ids' rows dead in the re-rank copy (write lock held)."""
        rows = self._rows
        if rows is None:
            return
        _, _, table = rows
        if table is None:
            self._rows = None
            return
        inside = i[(i >= 0) & (i < table.size)]
        self._dead += int((table[inside] >= 0).sum())
        table[inside] = -1

    # -- public API --------------------------------------------------------------------------

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """Vectors [q, dim] mapped into the space the index searches, float32.

        [q, proj_dim] (the scaled projection) in compact mode with a projection, else unchanged.
        Exact search over `stored()` with these gives the answers the index approximates.
        """
        with self._lock.read():
            return self._project(vectors)

    def _project(self, vectors: np.ndarray) -> np.ndarray:
        import faiss

        x = self._check(vectors)
        if isinstance(self._index, faiss.IndexPreTransform):
            return np.asarray(faiss.downcast_VectorTransform(self._index.chain.at(0)).apply(x))
        return x

    def stored(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids [n] int64, stored vectors [n, d] float32) in the space the index searches."""
        with self._lock.read():
            return self._stored()

    def _stored(self) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        if self.compact:
            return self._projected()
        flat = faiss.downcast_index(self._index.index)
        x = faiss.vector_to_array(flat.codes).view(np.float32).reshape(len(self), self.dim)
        return faiss.vector_to_array(self._index.id_map).astype(np.int64), x


    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        """All ids, int64 [n]."""
        with self._lock.read():
            return self._ids()

    def _ids(self) -> np.ndarray:
        import faiss

        if self.compact:
            return self._projected(vectors=False)[0]
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
        i = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).ravel())
        if i.size != x.shape[0]:
            raise InvalidArgumentError("ids and vectors differ in count")
        if np.unique(i).size != i.size:
            raise InvalidArgumentError("ids are not unique")
        with self._lock.write():
            self._upsert(i, x)

    def _upsert(self, i: np.ndarray, x: np.ndarray) -> None:
        self._remove(i)
        self._gpu = None
        if not self.compact and len(self) + len(i) > self.config.exact_max:
            import faiss

            n0 = len(self)
            flat = faiss.downcast_index(self._index.index)
            old = faiss.vector_to_array(flat.codes).view(np.float32)
            old_ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
            self._to_compact(np.concatenate([old_ids, i]),
                             np.concatenate([old.reshape(n0, self.dim), x]))
            return
        self._index.add_with_ids(x, i)
        if self.compact:
            xp = self._project(x)
            self._fast.add_with_ids(xp, i)
            if nlist_for(len(self)) >= 2 * self._ivf().nlist:
                self._recluster()  # new codes: the copy is dropped (`_set`)
            else:
                self._rows_add(i, xp)

    def remove(self, ids: np.ndarray) -> int:
        """Remove ids (absent ones are ignored); returns how many were removed."""
        i = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).ravel())
        with self._lock.write():
            return self._remove(i)

    def _remove(self, i: np.ndarray) -> int:
        import faiss

        if i.size == 0 or len(self) == 0:
            return 0
        self._gpu = None
        # (the inverted file's id hashtable removes only with an IDSelectorArray)
        n = int(self._index.remove_ids(faiss.IDSelectorArray(i.size, faiss.swig_ptr(i))))
        if self.compact:
            self._fast.remove_ids(faiss.IDSelectorArray(i.size, faiss.swig_ptr(i)))
            self._rows_remove(i)
            if len(self) == 0:
                self._set(self._new_exact())
        else:
            self._rows = None
        return n

    def reconstruct(self, id_: int) -> np.ndarray:
        """The stored vector [dim] float32 for an id.

        Exact in exact mode. In compact mode only the projection survives, so this returns the
        stored vector's component in the projection's subspace (an approximation).
        """
        try:
            with self._lock.read():
                v = np.asarray(self._index.reconstruct(int(id_)), dtype=np.float32)
        except RuntimeError:
            raise StoreError(f"id {id_} is not in the index") from None
        return v / np.float32(self._scale()) if self.compact else v

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product. query [q, dim] -> (scores [q, k] float32, ids [q, k] int64).

        Missing results (k > size, or too few vectors in the probed lists) have id -1, as in
        faiss. Exact mode returns exact inner products; compact mode returns the projected
        estimates of them (see the module docstring) from an approximate search.
        """
        q = self._check(query)
        if k < 1:
            raise InvalidArgumentError("k must be >= 1", field="k")
        with self._lock.read():
            return self._search_one_thread(q, min(int(k), max(1, len(self))))

    def _search_one_thread(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if q.shape[0] > 1:
            return self._search(q, k)
        # One query gains nothing from OpenMP, and the idle team it wakes spins on the other
        # cores: under concurrent single-query load (the server) one thread is much faster.
        import faiss

        prev = faiss.omp_get_max_threads()  # per calling thread
        faiss.omp_set_num_threads(1)
        try:
            return self._search(q, k)
        finally:
            faiss.omp_set_num_threads(prev)

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        searcher = self._searcher()
        if not self.compact or searcher is not self._index:
            return searcher.search(q, k)  # exact, or the store itself on a GPU
        import faiss

        qp = np.ascontiguousarray(self._project(q))
        fast = self._fast
        fast.nprobe = self._nprobe()
        r = max(k, min(self.config.rerank, len(self)))
        _, cand = fast.search(qp, r)
        sid, y, table = self._store_rows()
        # an id the copy lacks (changed under a concurrent search) counts as no candidate
        if table is not None:
            live = (cand >= 0) & (cand < table.size)
            rows = np.where(live, table[np.where(live, cand, 0)], -1)
        else:
            pos = np.minimum(np.searchsorted(sid, cand), max(sid.size - 1, 0))
            rows = np.where((cand >= 0) & (sid.size > 0) & (sid[pos] == cand), pos, -1)
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        # one C++ call for the batch (GIL released): exact scores against the store's codes
        sc = np.empty(rows.shape, dtype=np.float32)
        faiss.fvec_inner_products_by_idx(faiss.swig_ptr(sc), faiss.swig_ptr(qp),
                                         faiss.swig_ptr(y), faiss.swig_ptr(rows),
                                         y.shape[1], rows.shape[0], rows.shape[1])
        top = np.argpartition(-sc, k - 1, axis=1)[:, :k] if r > k else \
            np.broadcast_to(np.arange(r), (len(q), r))
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sc, top, 1), axis=1,
                                                 kind="stable"), 1)
        D = np.take_along_axis(sc, top, 1)
        I = np.take_along_axis(cand, top, 1)
        gone = ~np.isfinite(D)
        D[gone], I[gone] = -np.finfo(np.float32).max, -1
        return np.ascontiguousarray(D), np.ascontiguousarray(I)

    def _searcher(self) -> Any:
        import faiss

        if len(self) <= 10_000 or not hasattr(faiss, "get_num_gpus") \
                or faiss.get_num_gpus() == 0:
            return self._index
        with self._lazy:
            if self._gpu is None:  # copied once per change, not once per search
                # on a GPU the store is scanned directly at the scanner's nprobe (not
                # measured: the lent GPU machine had no faiss)
                self._ivf().nprobe = self._nprobe()
                self._gpu = faiss.index_cpu_to_all_gpus(self._index)
            return self._gpu

    def save(self) -> None:
        """Atomically write the index to `path` (temp file in the same dir, fsync, rename)."""

        if self.path is None:
            raise StoreError("index has no path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".index.", suffix=".tmp")
        os.close(fd)
        try:
            with self._lock.read():  # a consistent snapshot: no change while it is written
                self._write(tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            crash_point("index.save.before_replace")
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _write(self, tmp: str) -> None:
        import faiss

        if self.compact:
            with open(tmp, "wb") as f:
                f.write(_MAGIC)
                for part in (self._index, self._fast):
                    blob = faiss.serialize_index(part)
                    f.write(int(blob.size).to_bytes(8, "little"))
                    f.write(blob.tobytes())
        else:
            faiss.write_index(self._index, tmp)
