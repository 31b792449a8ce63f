"""The ANN index over the catalogue's candidate embeddings (FAISS, inner product on unit vectors).

Chosen by measurement (docs/journal.md, this 2-core machine): exact inner-product search answers
one query in 2.0-2.5 ms at H&M's 105k articles and 16-24 ms at 1M, so it is used only up to
`EXACT_MAX_ARTICLES`. Above that an inverted-file index (IVF-Flat, about sqrt(n) lists, enough of them
probed to scan ~30k vectors) answers in under a millisecond at recall@100 >= 0.95 against exact
(105k: 0.54 ms, 0.968; 1M: 0.75 ms, 0.961). HNSW (255 s to build at 1M here, 0.77 recall at efSearch
512 on clustered vectors) stays available as `kind="hnsw"`. Index and article-id map are saved together
in one file, written atomically.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

EXACT_MAX_ARTICLES = 50_000
IVF_PROBES = 32  # at least this many lists probed
IVF_SCANNED = 30_000  # ...and enough lists to scan about this many vectors (recall >= 0.95, benchmarks)
SINGLE_THREAD_BELOW = 32  # queries: OpenMP start-up costs more than it saves for a few queries
HNSW_NEIGHBOURS = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 512  # recall@100 >= 0.95 against exact on clustered vectors (benchmarks)


def _as_matrix(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.atleast_2d(x), dtype=np.float32)


def exact_search(catalog: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, positions) of the k highest inner products, computed exactly."""
    index = faiss.IndexFlatIP(catalog.shape[1])
    index.add(_as_matrix(catalog))
    return index.search(_as_matrix(queries), min(k, len(catalog)))


def ivf_probes(lists: int, vectors: int) -> int:
    """Lists to probe: 32, or more where lists are small (105k articles: 92 of 324 lists, recall@100 0.97
    vs 0.84 with 32), so that about `IVF_SCANNED` vectors are compared."""
    per_list = max(1.0, vectors / max(lists, 1))
    return int(min(lists, max(IVF_PROBES, np.ceil(IVF_SCANNED / per_list))))


def build_faiss(embeddings: np.ndarray, kind: str = "auto") -> faiss.Index:
    """`exact` (IndexFlatIP), `ivf` (IndexIVFFlat), `hnsw` (IndexHNSWFlat) or `auto` (by catalogue size)."""
    if kind == "auto":
        kind = "exact" if len(embeddings) <= EXACT_MAX_ARTICLES else "ivf"
    dim = embeddings.shape[1]
    if kind == "exact":
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        lists = max(
            1, min(int(np.sqrt(len(embeddings))), len(embeddings) // 39)
        )  # faiss: >= 39 points a list
        index = faiss.index_factory(dim, f"IVF{lists},Flat", faiss.METRIC_INNER_PRODUCT)  # an IndexIVFFlat
        index.train(_as_matrix(embeddings))
        index.nprobe = ivf_probes(lists, len(embeddings))
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        raise ValueError(f"unknown index kind {kind!r}; use auto, exact, ivf or hnsw")
    index.add(_as_matrix(embeddings))
    return index


@dataclass
class ArticleIndex:
    """A FAISS index and the article id of each of its rows."""

    index: faiss.Index
    article_ids: np.ndarray  # dtype str, row i of the index is article_ids[i]

    @property
    def kind(self) -> str:
        if isinstance(self.index, faiss.IndexHNSWFlat):
            return "hnsw"
        return "ivf" if isinstance(self.index, faiss.IndexIVFFlat) else "exact"

    @classmethod
    def build(cls, embeddings: np.ndarray, article_ids: list[str], kind: str = "auto") -> ArticleIndex:
        if len(embeddings) != len(article_ids):
            raise ValueError(f"{len(embeddings)} embeddings for {len(article_ids)} article ids")
        return cls(build_faiss(embeddings, kind), np.asarray(article_ids, dtype=str))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """(scores [n, k], article ids per query), best first; short lists drop FAISS's -1 padding."""
        queries = _as_matrix(queries)
        threads = faiss.omp_get_max_threads()
        if len(queries) < SINGLE_THREAD_BELOW:
            faiss.omp_set_num_threads(1)
        try:
            scores, rows = self.index.search(queries, min(k, self.index.ntotal))
        finally:
            faiss.omp_set_num_threads(threads)
        ids = [[str(self.article_ids[r]) for r in row if r >= 0] for row in rows]
        return scores, ids

    def save(self, path: str | Path) -> Path:
        """One .npz holding the serialised index and the id map; written to a temporary file and renamed."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        buffer = io.BytesIO()
        np.savez(buffer, index=faiss.serialize_index(self.index), article_ids=self.article_ids)
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ArticleIndex:
        with np.load(path, allow_pickle=False) as data:
            index = faiss.deserialize_index(data["index"])
            ids = data["article_ids"]
        if isinstance(index, faiss.IndexHNSWFlat):
            index.hnsw.efSearch = HNSW_EF_SEARCH
        if isinstance(index, faiss.IndexIVFFlat):
            index.nprobe = ivf_probes(index.nlist, index.ntotal)
        return cls(index, ids)


def measure(index: ArticleIndex, queries: np.ndarray, k: int, single: int = 200) -> dict[str, float]:
    """Latency of one query at a time (median, p99 over `single` queries) and per query in one batch."""
    queries = _as_matrix(queries)
    times = []
    for q in queries[:single]:
        started = time.perf_counter()
        index.search(q[None, :], k)
        times.append(time.perf_counter() - started)
    started = time.perf_counter()
    index.search(queries, k)
    batched = (time.perf_counter() - started) / len(queries)
    return {
        "single_query_ms_median": round(float(np.median(times)) * 1e3, 3),
        "single_query_ms_p99": round(float(np.percentile(times, 99)) * 1e3, 3),
        "batched_ms_per_query": round(batched * 1e3, 4),
    }


def recall_vs_exact(approx: list[list[str]], exact: list[list[str]]) -> float:
    """Share of the exact top-k that the approximate search also returns."""
    return float(np.mean([len(set(a) & set(e)) / max(1, len(e)) for a, e in zip(approx, exact, strict=True)]))
