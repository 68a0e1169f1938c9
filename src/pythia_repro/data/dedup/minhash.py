"""MinHash signatures of word shingles, vectorised in numpy; parameters and reference definitions.

See pythia_repro.data.dedup for the definitions (words, shingles, documents without words).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from pythia_repro.errors import PythiaReproError

# Changes whenever a change to the hashing would change signatures (old files are then refused).
HASH_SCHEME = "words-chunk64+fmix64/shingle-weighted-sum/affine32-minhash/v1"

# LSH banding: we verify every candidate pair by its signatures, so false-positive candidates
# only cost verification time while false negatives are lost for good. We therefore take the
# most rows per band (fewest spurious candidates) for which a pair exactly at the threshold is
# still a candidate with probability >= CANDIDATE_RECALL. For 0.87 / 128 that is 14 bands x 9
# rows (P = 0.991 at 0.87, 0.998 at 0.90, 0.027 at 0.5); datasketch's default optimum (7 x 18,
# no verification) makes only 45% of the pairs at 0.87 candidates.
CANDIDATE_RECALL = 0.99
BATCH_BYTES = 1 << 19  # text per hashing batch (keeps the numpy temporaries in cache)
BATCH_DOCS = 1024

_U64 = np.uint64
_MASK64 = (1 << 64) - 1
_FMIX1, _FMIX2 = _U64(0xFF51AFD7ED558CCD), _U64(0xC4CEB9FE1A85EC53)
_S33, _S32 = _U64(33), _U64(32)
_BYTE_MASKS = np.array([(1 << (8 * i)) - 1 for i in range(9)], dtype=np.uint64)  # low i bytes


class DedupError(PythiaReproError):
    """A dedup input (signature file, keep file, shard) that is inconsistent; names the file."""


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """P(two documents of this Jaccard similarity share at least one LSH band)."""
    return 1.0 - (1.0 - similarity**rows) ** bands


def lsh_params(threshold: float, num_perm: int, recall: float = CANDIDATE_RECALL) -> tuple[int, int]:
    """(bands, rows): the most rows per band with P(candidate | J = threshold) >= recall."""
    best = (num_perm, 1)
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if candidate_probability(threshold, bands, rows) >= recall:
            best = (bands, rows)
    return best


@dataclass(frozen=True)
class DedupParams:
    threshold: float = 0.87
    num_perm: int = 128
    shingle_words: int = 5
    seed: int = 1
    bands: int = 0  # 0: chosen by lsh_params
    rows: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise PythiaReproError(f"dedup.threshold must be in (0, 1], got {self.threshold}")
        if self.num_perm < 1 or self.shingle_words < 1:
            raise PythiaReproError("dedup.num_perm and dedup.shingle_words must be positive")
        if not self.bands:
            bands, rows = lsh_params(self.threshold, self.num_perm)
            object.__setattr__(self, "bands", bands)
            object.__setattr__(self, "rows", rows)
        if self.bands * self.rows > self.num_perm:
            raise PythiaReproError(f"bands x rows ({self.bands} x {self.rows}) exceeds num_perm {self.num_perm}")

    @property
    def min_matches(self) -> int:
        """Signature positions two documents must share for an estimated Jaccard >= threshold."""
        return math.ceil(self.threshold * self.num_perm - 1e-9)

    def as_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "num_perm": self.num_perm,
            "shingle_words": self.shingle_words,
            "seed": self.seed,
            "bands": self.bands,
            "rows": self.rows,
            "hash_scheme": HASH_SCHEME,
        }


# ----------------------------------------------------------------------------------------------
# Reference definitions (pure Python, for tests and benchmarks)
# ----------------------------------------------------------------------------------------------


def word_shingles(text: str, shingle_words: int) -> set[tuple[str, ...]]:
    """The shingle set of a document, as defined in the module docstring."""
    words = text.split()
    if not words:
        return set()
    if len(words) < shingle_words:
        return {tuple(words)}
    return {tuple(words[i : i + shingle_words]) for i in range(len(words) - shingle_words + 1)}


def jaccard(a: set, b: set) -> float:
    """Exact Jaccard similarity; 0 when either set is empty (documents without words never match)."""
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


# ----------------------------------------------------------------------------------------------
# Hashing
# ----------------------------------------------------------------------------------------------


def _splitmix64(seed: int) -> Iterator[int]:
    x = seed & _MASK64
    while True:
        x = (x + 0x9E3779B97F4A7C15) & _MASK64
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        yield z ^ (z >> 31)


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (an avalanching bijection), in place."""
    h ^= h >> _S33
    h *= _FMIX1
    h ^= h >> _S33
    h *= _FMIX2
    h ^= h >> _S33
    return h


# str.split() whitespace: ASCII \t \n \v \f \r (9-13), \x1c-\x1f (28-31) and space, plus these
# multi-byte ones.
_CONT_0xE2_0x80 = np.zeros(256, dtype=bool)  # U+2000-U+200A, U+2028, U+2029, U+202F
_CONT_0xE2_0x80[list(range(0x80, 0x8B)) + [0xA8, 0xA9, 0xAF]] = True


def _whitespace_mask(u: np.ndarray, ascii_only: bool = False) -> np.ndarray:
    """True at the UTF-8 bytes of `str.isspace()` characters (u must end with 2 ASCII bytes)."""
    ws = u == 0x20
    ws |= (u - np.uint8(9)) <= np.uint8(4)  # uint8 wraps: 9..13
    ws |= (u - np.uint8(28)) <= np.uint8(3)  # 28..31
    if ascii_only:
        return ws
    lead = np.flatnonzero((u == 0xC2) | ((u >= 0xE1) & (u <= 0xE3)))
    if len(lead):
        b0, b1, b2 = u[lead], u[lead + 1], u[lead + 2]
        two = (b0 == 0xC2) & ((b1 == 0x85) | (b1 == 0xA0))  # U+0085, U+00A0
        three = (
            ((b0 == 0xE1) & (b1 == 0x9A) & (b2 == 0x80))  # U+1680
            | ((b0 == 0xE2) & (b1 == 0x80) & _CONT_0xE2_0x80[b2])
            | ((b0 == 0xE2) & (b1 == 0x81) & (b2 == 0x9F))  # U+205F
            | ((b0 == 0xE3) & (b1 == 0x80) & (b2 == 0x80))  # U+3000
        )
        for hits, width in ((lead[two], 2), (lead[three], 3)):
            for j in range(width):
                ws[hits + j] = True
    return ws


@dataclass
class SignatureBatch:
    """MinHash results for documents in order (one row each)."""

    signatures: np.ndarray  # (n, num_perm) uint32; documents without words: all 0xFFFFFFFF
    bands: np.ndarray  # (bands, n) uint64 LSH band hashes
    sig_hash: np.ndarray  # (n,) uint64 hash of the whole signature (finds identical signatures)
    nbytes: np.ndarray  # (n,) uint64 UTF-8 length of the text
    n_shingles: np.ndarray  # (n,) uint32 shingle positions (0: no words)


class MinHasher:
    """Signatures and band hashes of batches of texts; deterministic given the params."""

    def __init__(self, params: DedupParams) -> None:
        self.params = params
        rng = _splitmix64(params.seed)
        self._chunk_mult = next(rng) | 1
        self._len_salt = _U64(next(rng))
        self._pos_mult = np.array([next(rng) | 1 for _ in range(params.shingle_words)], dtype=np.uint64)
        self.perm_a = np.array([(next(rng) >> 32) | 1 for _ in range(params.num_perm)], dtype=np.uint32)
        self.perm_b = np.array([next(rng) >> 32 for _ in range(params.num_perm)], dtype=np.uint32)
        self._band_salt = [_U64(next(rng)) for _ in range(params.bands)]
        self._sig_salt = _U64(next(rng))
        self._band_mult = np.array([next(rng) | 1 for _ in range(params.num_perm)], dtype=np.uint64)
        self._full_mult = np.array([next(rng) | 1 for _ in range(params.num_perm)], dtype=np.uint64)
        self._chunk_pow = np.ones(1, dtype=np.uint64)

    # ----- words -------------------------------------------------------------------------------
    def _word_hashes(self, u: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """hash(word) = fmix64(sum_c chunk_c * Q^c  xor  len * salt) mod 2^64, for all words at once.

        chunk_c is the word's bytes [8c, 8c + 8) as a little-endian uint64, zero-padded; Q is odd.
        Every word's first chunk is one gather from an unaligned 8-byte view of the buffer; only
        words over 8 bytes (about 15% in English text) need more. The length term separates words
        that differ only by trailing NUL bytes. `u` must have 8 bytes of padding after the last word.
        """
        view8 = as_strided(u, shape=(len(u) - 7, 8), strides=(1, 1), writeable=False).view("<u8")[:, 0]
        length = ends - starts
        h = view8[starts]
        h &= _BYTE_MASKS[np.minimum(length, 8)]
        longer = np.flatnonzero(length > 8)
        if len(longer):
            extra = (length[longer] - 1) // 8  # chunks after the first
            offset = np.zeros(len(longer), dtype=np.int64)
            np.cumsum(extra[:-1], out=offset[1:])
            c = np.arange(int(offset[-1] + extra[-1]), dtype=np.int64) - np.repeat(offset, extra) + 1
            if len(self._chunk_pow) <= int(c.max()):
                steps = np.full(max(2 * int(c.max()), 64), self._chunk_mult, dtype=np.uint64)
                steps[0] = 1
                self._chunk_pow = np.cumprod(steps)  # Q^c, wrapping mod 2^64
            chunks = view8[np.repeat(starts[longer], extra) + 8 * c]
            chunks &= _BYTE_MASKS[np.minimum(np.repeat(length[longer], extra) - 8 * c, 8)]
            chunks *= self._chunk_pow[c]
            h[longer] += np.add.reduceat(chunks, offset)
        h ^= length.astype(np.uint64) * self._len_salt
        return _fmix64(h)

    # ----- documents -----------------------------------------------------------------------------
    def batch(self, texts: Sequence[str]) -> SignatureBatch:
        n, k, num_perm = len(texts), self.params.shingle_words, self.params.num_perm
        parts = [t.encode("utf-8", "surrogatepass") for t in texts]
        nbytes = np.fromiter(map(len, parts), dtype=np.uint64, count=n)
        # Documents joined by "\n" (whitespace, so no word spans two), padded for the 8-byte reads.
        u = np.frombuffer(b"\n".join(parts) + b"\n" * 8, dtype=np.uint8)
        doc_start = np.zeros(n, dtype=np.int64)
        if n > 1:
            np.cumsum(nbytes[:-1].astype(np.int64) + 1, out=doc_start[1:])
        ascii_only = all(t.isascii() for t in texts)  # O(1) each in CPython
        edges = np.diff((~_whitespace_mask(u, ascii_only)).view(np.int8), prepend=np.int8(0))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        first_word = np.searchsorted(starts, doc_start)  # first word at or after each document start
        n_words = np.diff(first_word, append=len(starts))
        wh = self._word_hashes(u, starts, ends)

        # Shingle hash at word i: sum_j wh[i + j] * m_j over j < k (valid where i + k <= doc end).
        n_w = len(wh)
        acc = wh * self._pos_mult[0]
        for j in range(1, min(k, n_w)):
            acc[: n_w - j] += wh[j:] * self._pos_mult[j]
        valid = np.ones(n_w, dtype=bool)  # shingle starts: all but each document's last k - 1 words
        end_word = first_word + n_words
        for j in range(1, k):
            pos = end_word - j
            valid[pos[pos >= first_word]] = False
        short = np.flatnonzero((n_words > 0) & (n_words < k))  # one shingle: all their words
        if len(short):
            acc_short = np.zeros(len(short), dtype=np.uint64)
            for j in range(k - 1):
                has = n_words[short] > j
                idx = first_word[short[has]] + j
                acc_short[has] += wh[idx] * self._pos_mult[j]
            acc[first_word[short]] = acc_short
            valid[first_word[short]] = True
        x = (_fmix64(acc[valid]) >> _S32).astype(np.uint32)
        n_shingles = np.where(n_words >= k, n_words - k + 1, np.minimum(n_words, 1)).astype(np.uint32)

        # MinHash, one permutation at a time: a row of all shingles stays in cache and the min
        # per document is a reduceat over contiguous segments.
        has_words = np.flatnonzero(n_shingles)
        seg = np.zeros(len(has_words), dtype=np.int64)
        if len(has_words) > 1:
            np.cumsum(n_shingles[has_words][:-1], out=seg[1:])
        mins = np.empty((num_perm, len(has_words)), dtype=np.uint32)
        if len(has_words):
            row = np.empty_like(x)
            for i in range(num_perm):
                np.multiply(x, self.perm_a[i], out=row)
                row += self.perm_b[i]
                np.minimum.reduceat(row, seg, out=mins[i])
        sig = np.full((n, num_perm), 0xFFFFFFFF, dtype=np.uint32)
        sig[has_words] = mins.T
        bands, sig_hash = self.band_hashes(sig)
        return SignatureBatch(sig, bands, sig_hash, nbytes, n_shingles)

    def band_hashes(self, sig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bands, n) uint64 hashes of each band's `rows` values, and a hash of all values.

        Each is fmix64(salt + sum_j value_j * m_j mod 2^64) with random odd m_j. A collision of
        different values only costs a verification: the signatures decide, never these hashes.
        """
        p = self.params
        weighted = sig.astype(np.uint64)
        weighted *= self._band_mult
        starts = np.arange(0, p.bands * p.rows, p.rows)
        bands = np.add.reduceat(weighted[:, : p.bands * p.rows], starts, axis=1).T.copy()
        bands += np.array(self._band_salt, dtype=np.uint64)[:, None]
        weighted = sig.astype(np.uint64)
        weighted *= self._full_mult
        full = weighted.sum(axis=1, dtype=np.uint64)
        full += self._sig_salt
        return _fmix64(bands), _fmix64(full)

