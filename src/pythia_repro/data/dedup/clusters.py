"""The merge step: LSH buckets over all shards, verified pairs, union-find clusters, keep file."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from pythia_repro.atomic import atomic_file, write_json
from pythia_repro.data.dedup.files import ShardSignatures, _NpzWriter
from pythia_repro.data.dedup.minhash import _U64, DedupError, DedupParams, candidate_probability

KEEP_FORMAT = "pythia-repro/dedup-keep/1"
EMPTY_POLICY = "documents without words are never duplicates (always kept, never clustered)"

# Within one LSH bucket every document is compared with up to this many previous ones (corpus
# order); buckets up to BUCKET_WINDOW + 1 documents are compared all-pairs. Larger buckets (a
# template repeated with small changes; exact copies are merged before, by signature hash) stay
# linear in size; their members are still linked through chains of similar neighbours.
BUCKET_WINDOW = 128
VERIFY_CHUNK = 1 << 16  # candidate pairs verified per gather (2 x 512 bytes each: <= 64 MB)
BYTES_PER_DOC_PASS = 64  # peak numpy memory of one band pass per document it covers (measured: ~61)

# ----------------------------------------------------------------------------------------------
# Step 2: clusters
# ----------------------------------------------------------------------------------------------
#
# How this runs on the real Pile (~210M documents in 30 shards, where the buckets do not fit in
# memory): nothing here holds more than one LSH band's worth of (hash, document id) at a time.
# The signature files are memory-mapped, so each band is one contiguous (n,) column per shard;
# a band is processed in `partitions` passes, pass p taking the documents whose band hash has
# top bits p (a hash-range partition of that band's bucket file), which holds every bucket
# whole. Each pass is sorted (np.argsort, stable, so corpus order within a bucket), the window
# pairs of each bucket are emitted, pairs already joined in the union-find are dropped, the rest
# are verified by gathering both signatures from the memory-mapped files (512 bytes each), and
# the verified pairs are unioned. Memory: ~64 bytes per document of the partition (measured with
# tracemalloc, bench/bench_dedup.py), plus the union-find array (4 bytes per document below 2^31
# documents: ~0.85 GB for the Pile) and at most 64 MB of gathered signatures; `--max-memory-gb`
# (default 8) sets the partition count, 2 for the Pile's ~210M documents. Disk: the signature
# files, ~650 bytes per document (~140 GB for the Pile; the 512-byte signatures dominate), read
# through the page cache. The same passes could run as separate jobs on a cluster that writes the partition
# files explicitly; they only need the union-find merges to be applied in any order.


class _UnionFind:
    """Vectorised union-find whose roots are the smallest member (= first in corpus order)."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int32 if n < 2**31 - 1 else np.int64)

    def find(self, x: np.ndarray) -> np.ndarray:
        r = self.parent[x]
        while True:
            rr = self.parent[r]
            if np.array_equal(rr, r):
                return r
            r = rr

    def union(self, u: np.ndarray, v: np.ndarray) -> None:
        while len(u):
            ru, rv = self.find(u), self.find(v)
            differ = ru != rv
            if not differ.any():
                return
            u, v, ru, rv = u[differ], v[differ], ru[differ], rv[differ]
            lo, hi = np.minimum(ru, rv), np.maximum(ru, rv)
            np.minimum.at(self.parent, hi, lo)  # hook the later root under the earlier one
            self.parent[u] = self.find(u)  # path compression for the touched documents
            self.parent[v] = self.find(v)

    def roots(self) -> np.ndarray:
        p = self.parent
        while True:
            pp = p[p]
            if np.array_equal(pp, p):
                self.parent = p
                return p
            p = pp


@dataclass
class _Corpus:
    """The shards of the corpus in order, addressed by global document id."""

    shards: list[ShardSignatures]
    offsets: np.ndarray  # (num_shards + 1,) first global id of each shard

    @property
    def size(self) -> int:
        return int(self.offsets[-1])

    def gather(self, attr: str, ids: np.ndarray) -> np.ndarray:
        """Rows `ids` (global) of a per-document array, in the order given."""
        which = np.searchsorted(self.offsets, ids, side="right") - 1
        first = getattr(self.shards[0], attr)
        out = np.empty((len(ids),) + first.shape[1:], dtype=first.dtype)
        for s in np.unique(which):
            sel = np.flatnonzero(which == s)
            local = ids[sel] - self.offsets[s]
            order = np.argsort(local, kind="stable")  # sorted reads from the memory map
            out[sel[order]] = getattr(self.shards[s], attr)[local[order]]
        return out

    def column(self, s: int, band: int | None) -> np.ndarray:
        sh = self.shards[s]
        return sh.sig_hash if band is None else sh.bands[band]


@dataclass
class ClusterResult:
    roots: np.ndarray  # (N,) root (= first document, global id) of each document's cluster
    offsets: np.ndarray
    stats: dict
    keep: np.ndarray = field(init=False)  # (N,) bool: the document is the first of its cluster

    def __post_init__(self) -> None:
        self.keep = self.roots == np.arange(len(self.roots), dtype=self.roots.dtype)


def _partition_keys(corpus: _Corpus, band: int | None, part: int, parts: int, chunk: int = 1 << 22):
    """(keys, global ids) of one hash-range partition of one band, ids ascending.

    Documents without words are left out: they are never duplicates (and would all share a bucket).
    """
    shift = _U64(64 - int(math.log2(parts))) if parts > 1 else None
    keys, ids = [], []
    for s in range(len(corpus.shards)):
        col = corpus.column(s, band)
        n_shingles = corpus.shards[s].n_shingles
        for lo in range(0, len(col), chunk):
            k = np.asarray(col[lo : lo + chunk])
            take = np.asarray(n_shingles[lo : lo + chunk]) > 0
            if shift is not None:
                take &= (k >> shift) == _U64(part)
            sel = np.flatnonzero(take)
            keys.append(k[sel])
            ids.append(sel + lo + corpus.offsets[s])
    if not keys:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    return np.concatenate(keys), np.concatenate(ids)


def _bucket_window_pairs(
    keys: np.ndarray, ids: np.ndarray, window: int, stats: dict
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pairs (earlier, later) of documents in the same bucket at most `window` apart in it.

    Updates `stats` (when it has the keys) with the largest bucket and the buckets over the window.
    """
    order = np.argsort(keys, kind="stable")
    k, d = keys[order], ids[order]
    same = k[1:] == k[:-1]
    if not same.any():
        return
    # Keep only documents in buckets of 2+, then rank each within its bucket.
    multi = np.zeros(len(k), dtype=bool)
    multi[1:] |= same
    multi[:-1] |= same
    k, d = k[multi], d[multi]
    new_bucket = np.ones(len(k), dtype=bool)
    new_bucket[1:] = k[1:] != k[:-1]
    bucket_start = np.flatnonzero(new_bucket)
    sizes = np.diff(np.append(bucket_start, len(k)))
    rank = np.arange(len(k)) - np.repeat(bucket_start, sizes)
    if "largest_bucket" in stats:
        stats["largest_bucket"] = max(stats["largest_bucket"], int(sizes.max()))
        stats["oversized_buckets"] += int((sizes > window + 1).sum())
    by_rank = np.argsort(rank, kind="stable")
    rank_sorted = rank[by_rank]
    for gap in range(1, min(window, int(rank.max())) + 1):
        pos = by_rank[np.searchsorted(rank_sorted, gap) :]  # documents with rank >= gap
        yield d[pos - gap], d[pos]


def find_clusters(
    shards: Sequence[ShardSignatures],
    params: DedupParams,
    max_memory_bytes: int = 8 << 30,
    window: int = BUCKET_WINDOW,
    log: IO[str] | None = None,
) -> ClusterResult:
    """Union-find clusters of verified near-duplicate pairs over all shards (in shard order)."""
    log = log or sys.stderr
    shards = sorted(shards, key=lambda s: s.shard)
    indices = [s.shard for s in shards]
    if len(set(indices)) != len(indices):
        dupes = sorted({i for i in indices if indices.count(i) > 1})
        raise DedupError(f"shard indices {dupes} appear in more than one signature file")
    want = params.as_dict()
    for s in shards:
        if s.meta.get("params") != want:
            raise DedupError(
                f"{s.path}: computed with {s.meta.get('params')}, but the config gives {want}; "
                "recompute the signatures"
            )
    offsets = np.zeros(len(shards) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in shards], out=offsets[1:])
    corpus = _Corpus(list(shards), offsets)
    n = corpus.size
    uf = _UnionFind(n)
    parts = 1  # hash-range partitions per band; a pass holds ~64 bytes per document it covers
    while n * BYTES_PER_DOC_PASS / parts > max_memory_bytes and parts < 1 << 16:
        parts *= 2
    counters = {"candidate_pairs_checked": 0, "pairs_verified_similar": 0, "largest_bucket": 1,
                "oversized_buckets": 0}

    def process(u: np.ndarray, v: np.ndarray) -> None:
        for lo in range(0, len(u), VERIFY_CHUNK):
            cu, cv = u[lo : lo + VERIFY_CHUNK], v[lo : lo + VERIFY_CHUNK]
            todo = uf.find(cu) != uf.find(cv)  # already in one cluster: nothing to learn
            cu, cv = cu[todo], cv[todo]
            if not len(cu):
                continue
            counters["candidate_pairs_checked"] += len(cu)
            matches = (corpus.gather("signatures", cu) == corpus.gather("signatures", cv)).sum(axis=1)
            ok = matches >= params.min_matches
            counters["pairs_verified_similar"] += int(ok.sum())
            uf.union(cu[ok], cv[ok])

    start = time.monotonic()
    # Pass "identical": documents with the same whole-signature hash (exact copies, the bulk of
    # the Pile's duplicates) are chained first, so they never make quadratic work in the bands.
    for band, win in [(None, 1)] + [(b, window) for b in range(params.bands)]:
        for part in range(parts):
            keys, ids = _partition_keys(corpus, band, part, parts)
            for u, v in _bucket_window_pairs(keys, ids, win, counters if band is not None else {}):
                process(u, v)
        name = "identical signatures" if band is None else f"band {band + 1}/{params.bands}"
        print(f"[dedup-clusters] {name}: {counters['candidate_pairs_checked']:,} pairs checked, "
              f"{counters['pairs_verified_similar']:,} similar, {time.monotonic() - start:.1f}s",
              file=log, flush=True)
    roots = uf.roots()
    stats = {**counters, "partitions_per_band": parts, "bucket_window": window}
    return ClusterResult(roots, offsets, stats)


def similar_pairs(shards: Sequence[ShardSignatures], params: DedupParams) -> tuple[np.ndarray, np.ndarray]:
    """Every candidate pair (all pairs within each bucket) whose signatures pass verification.

    For evaluation on small corpora (benchmarks): `find_clusters` skips pairs already joined and
    caps the pairs of very large buckets, so it never enumerates these.
    """
    shards = sorted(shards, key=lambda s: s.shard)
    offsets = np.zeros(len(shards) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in shards], out=offsets[1:])
    corpus = _Corpus(list(shards), offsets)
    found = []
    for band in range(params.bands):
        keys, ids = _partition_keys(corpus, band, 0, 1)
        for u, v in _bucket_window_pairs(keys, ids, len(keys), {}):
            found.append(u * corpus.size + v)
    if not found:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    pairs = np.unique(np.concatenate(found))
    u, v = pairs // max(corpus.size, 1), pairs % max(corpus.size, 1)
    matches = (corpus.gather("signatures", u) == corpus.gather("signatures", v)).sum(axis=1)
    ok = matches >= params.min_matches
    return u[ok], v[ok]


def cluster_report(result: ClusterResult, shards: Sequence[ShardSignatures], params: DedupParams) -> dict:
    shards = sorted(shards, key=lambda s: s.shard)
    keep, roots, offsets = result.keep, result.roots, result.offsets
    sizes = np.bincount(roots, minlength=len(roots)) if len(roots) else np.zeros(0, np.int64)
    dup_sizes = sizes[sizes >= 2]
    per_shard = []
    for i, s in enumerate(shards):
        k = keep[offsets[i] : offsets[i + 1]]
        nb = np.asarray(s.nbytes, dtype=np.int64)
        per_shard.append({
            "shard": s.shard,
            "signatures": s.path,
            "input": s.meta.get("input"),
            "documents_in": len(s),
            "documents_out": int(k.sum()),
            "duplicates_removed": int(len(s) - k.sum()),
            "bytes_in": int(nb.sum()),
            "bytes_out": int(nb[k].sum()),
            "bytes_removed": int(nb[~k].sum()),
            "documents_without_words": int((np.asarray(s.n_shingles) == 0).sum()),
            "malformed_skipped": s.meta.get("read_stats", {}).get("malformed_skipped", 0),
        })
    total = {key: sum(p[key] for p in per_shard) for key in
             ("documents_in", "documents_out", "duplicates_removed", "bytes_in", "bytes_out", "bytes_removed",
              "documents_without_words")}
    return {
        **total,
        "duplicate_clusters": int(len(dup_sizes)),
        "documents_in_duplicate_clusters": int(dup_sizes.sum()),
        "largest_cluster": int(dup_sizes.max()) if len(dup_sizes) else 1 if len(roots) else 0,
        "fraction_documents_removed": total["duplicates_removed"] / max(total["documents_in"], 1),
        "fraction_bytes_removed": total["bytes_removed"] / max(total["bytes_in"], 1),
        "parameters": {**params.as_dict(), "min_matching_positions": params.min_matches,
                       "candidate_probability_at_threshold": round(
                           candidate_probability(params.threshold, params.bands, params.rows), 4),
                       "empty_documents": EMPTY_POLICY, "keep": "first document of each cluster in corpus order"},
        "lsh": result.stats,
        "per_shard": per_shard,
    }


def write_keep(path: str | Path, result: ClusterResult, shards: Sequence[ShardSignatures],
               params: DedupParams) -> None:
    """Per shard: the kept documents' line numbers and byte lengths (what dedup-apply checks)."""
    shards = sorted(shards, key=lambda s: s.shard)
    keep, offsets = result.keep, result.offsets
    meta = {
        "format": KEEP_FORMAT,
        "params": params.as_dict(),
        "shards": [{"shard": s.shard, "input": s.meta.get("input"), "documents": len(s),
                    "kept": int(keep[offsets[i] : offsets[i + 1]].sum())} for i, s in enumerate(shards)],
    }
    with atomic_file(path, "wb") as fh:
        npz = _NpzWriter(fh)
        npz.array("meta", np.array(json.dumps(meta, sort_keys=True)))
        for i, s in enumerate(shards):
            k = np.flatnonzero(keep[offsets[i] : offsets[i + 1]])
            npz.array(f"line_{s.shard}", np.asarray(s.line)[k])
            npz.array(f"nbytes_{s.shard}", np.asarray(s.nbytes)[k])
        npz.close()


def cluster_shards(
    signature_paths: Sequence[str | Path],
    params: DedupParams,
    keep_path: str | Path,
    report_path: str | Path,
    max_memory_bytes: int = 8 << 30,
    log: IO[str] | None = None,
) -> dict:
    shards = [ShardSignatures.load(p) for p in signature_paths]
    start = time.monotonic()
    result = find_clusters(shards, params, max_memory_bytes=max_memory_bytes, log=log)
    report = cluster_report(result, shards, params)
    report["seconds"] = round(time.monotonic() - start, 3)
    write_keep(keep_path, result, shards, params)
    write_json(report_path, report)
    return report

