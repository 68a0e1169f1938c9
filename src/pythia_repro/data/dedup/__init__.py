"""Near-deduplication for the deduped Pile: MinHash + LSH on word shingles, Jaccard >= 0.87.

Three steps, each a CLI verb, so the work spreads over the corpus shards as parallel jobs:

1. `shard_signatures` (per shard): stream the documents, hash their word shingles, compute a
   `num_perm`-value MinHash signature per document and reduce it to LSH band hashes; written
   to a per-shard `.npz` with bounded memory (batches are spooled to disk, then assembled).
2. `find_clusters` (once): group documents by band hash across all shards (sort-based, one band
   at a time, in hash-range partitions when a band does not fit in memory), verify candidate pairs
   by the Jaccard estimate of their signatures, union-find the verified pairs into clusters and
   keep the first document of each cluster in corpus order (shard order, then line order).
3. `apply_keep` (per shard): write the kept documents' original JSON lines, atomically.

Definitions (shared by the tests' brute-force reference, `word_shingles`):

* Words are `str.split()` words (Unicode whitespace), case and punctuation kept.
* Shingles are the sets of `shingle_words` consecutive words; a document with fewer words than
  that has one shingle, all its words; a document with no words has no shingles.
* Documents without words (empty or whitespace-only) are never duplicates: they are always kept
  and never join a cluster. Jaccard(empty, empty) is 0/0, and an empty document has no content
  to repeat; the corpus reader and GPT-NeoX keep empty documents as zero-length items, so the
  deduped variant keeps them too and differs from the standard one only by repeated text
  (datasketch, whose empty MinHashes all collide, would instead drop all but one).

Hashing, vectorised in numpy over a batch of documents: each word is hashed once (its UTF-8
bytes as little-endian 8-byte chunks, combined polynomially, then the MurmurHash3 64-bit
finaliser), with word boundaries found by byte comparisons (matching `str.split()` exactly,
multi-byte Unicode whitespace included); a shingle's hash is a position-weighted sum of its
word hashes, finalised and cut to 32 bits; permutation i is the affine map x -> a_i * x + b_i mod 2^32 with
odd a_i (a bijection of 32-bit values, the scheme datasketch >= 2.0 uses by default). Every
constant comes from `dedup.seed` through splitmix64 in pure Python, so signatures do not depend
on the numpy version.

Modules: `minhash` (parameters, hashing), `files` (signature files, step 1), `clusters`
(step 2), `apply` (step 3); everything public is re-exported here.
"""

from __future__ import annotations

from pythia_repro.data.dedup.apply import apply_keep
from pythia_repro.data.dedup.clusters import (
    BUCKET_WINDOW,
    EMPTY_POLICY,
    KEEP_FORMAT,
    ClusterResult,
    cluster_report,
    cluster_shards,
    find_clusters,
    similar_pairs,
    write_keep,
)
from pythia_repro.data.dedup.files import SIGNATURES_FORMAT, ShardSignatures, shard_signatures
from pythia_repro.data.dedup.minhash import (
    CANDIDATE_RECALL,
    HASH_SCHEME,
    DedupError,
    DedupParams,
    MinHasher,
    SignatureBatch,
    candidate_probability,
    jaccard,
    lsh_params,
    word_shingles,
)

__all__ = [
    "BUCKET_WINDOW", "CANDIDATE_RECALL", "EMPTY_POLICY", "HASH_SCHEME", "KEEP_FORMAT", "SIGNATURES_FORMAT",
    "ClusterResult", "DedupError", "DedupParams", "MinHasher", "ShardSignatures", "SignatureBatch",
    "apply_keep", "candidate_probability", "cluster_report",
    "cluster_shards", "find_clusters", "jaccard", "lsh_params", "shard_signatures", "similar_pairs",
    "word_shingles", "write_keep",
]
