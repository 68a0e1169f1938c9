"""Memorization scores of training sequences (Pythia's case study, PYTHIA.md §4 and §6).

Prompt = a sequence's first k tokens, greedy-decode l tokens, score = fraction equal to the true
tokens k..k+l-1, memorized = (score == 1). Pythia ran `generate(max_length=k+l, min_length=k+l)`;
min_length makes `generate` suppress the EOS id (0 = EOD) at every generated position, so the
decoder here masks the EOD logit everywhere too and a continuation holding an EOD never scores 1.

Why it is fast while giving `generate`'s scores (staged verification, the truth as the draft):

- The prompt pass (k tokens, logits of the last position only) gives the EOD-masked argmax at k.
  Rows whose argmax is the true token are teacher-forced on through chunks of true tokens of
  growing size (1, 2, 4, ...; logits only for the chunk), reusing the KV cache, and a row leaves
  at its first mismatch m: greedy decoding reproduces the truth before m and outputs the pass's
  argmax at m. A row that survives all l targets is memorized. Most rows leave early, so the
  memorized-only mode does little more than the prompt pass for them (generate runs all l steps).
- Full scores: the rows leaving at the same m are decoded greedily from k+m on, as one batch,
  through the cache of their true prefix (a slice of the shared cache), one cached step per
  position with logits of the last position only: a row is decoded once, from its own mismatch
  (only the rest of the chunk it left in is wasted), so the full mode does about generate's token
  work minus generate's overhead. On a CPU that is all it can win (bench/results/memorization.md).

Sharding helpers (`slice_bounds`, `subset_indices`, `merge_slices`) and the output contract
(`write_scores` / `read_scores`: one Parquet row per scored sequence) live here too.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pythia_repro.atomic import atomic_file, write_json
from pythia_repro.progress import Progress

K = L = 32  # Pythia's prompt and continuation lengths
SCORE_COLUMNS = {"index": pa.int64(), "memorized": pa.bool_()}  # plus "score": float32 or float64
SCORE_TYPES = (pa.float32(), pa.float64())


def load_model(model_dir: str | Path, device: str = "cpu", dtype: torch.dtype | str | None = None,
               parallelize: bool = False):
    """An exported HF model directory as an eval-mode causal LM on `device` (dtype as saved if None);
    `parallelize`: its layers split over every visible GPU (accelerate's device_map="auto"), the
    inputs still going to `device`, where the first layers are."""
    import transformers
    from transformers import AutoModelForCausalLM

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not an exported model directory (no config.json)")
    # transformers < 4.56 calls the argument torch_dtype.
    key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    placement = {"device_map": "auto"} if parallelize else {}
    model = AutoModelForCausalLM.from_pretrained(str(path), **{key: dtype if dtype is not None else "auto"},
                                                 **placement)
    return (model if parallelize else model.to(device)).eval()


# ----- scoring ------------------------------------------------------------------------------------


def _check_sequences(sequences: np.ndarray | torch.Tensor, k: int, l: int) -> torch.Tensor:  # noqa: E741
    seqs = torch.as_tensor(np.asarray(sequences) if not torch.is_tensor(sequences) else sequences)
    if seqs.ndim != 2 or seqs.shape[1] < k + l:
        raise ValueError(f"sequences must be (n, >= k + l = {k + l}) token ids, got shape {tuple(seqs.shape)}")
    if k < 1 or l < 1:
        raise ValueError(f"k and l must be positive, got k={k}, l={l}")
    return seqs[:, : k + l].to(torch.long)


def _cache_api(model) -> tuple[str, str]:
    """(forward keyword, output attribute) of the KV cache: transformers 5 renamed past_key_values."""
    params = inspect.signature(model.forward).parameters
    name = "cache" if "cache" in params else "past_key_values"
    return name, name


def _greedy(logits: torch.Tensor, eod_id: int | None) -> torch.Tensor:
    """Argmax over the vocabulary with EOD suppressed, as generate's MinLengthLogitsProcessor does."""
    if eod_id is not None:
        logits = logits.clone()
        logits[..., eod_id] = -math.inf
    return logits.argmax(dim=-1)


def _sub_cache(cache, rows: torch.Tensor, length: int):
    """A new DynamicCache of `rows` (batch indices) of `cache`, its first `length` positions."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(layer.keys[rows, :, :length], layer.values[rows, :, :length])
                                        for layer in cache.layers])


def _forward(model, ids: torch.Tensor, cache, cache_kw: str, cache_attr: str, keep: int):
    """Logits of the last `keep` input positions and the grown cache (a new one when `cache` is None)."""
    kw = {cache_kw: cache} if cache is not None else {}
    out = model(input_ids=ids, use_cache=True, logits_to_keep=keep, **kw)
    return out.logits, getattr(out, cache_attr)


def _greedy_decode(model, cache, cache_kw, cache_attr, first: torch.Tensor, steps: int, eod_id):
    """`first` (B,) and the next `steps` greedy tokens after it, fed one by one through `cache`."""
    out = torch.empty(len(first), steps + 1, dtype=torch.long, device=first.device)
    out[:, 0] = first
    for t in range(steps):
        logits, cache = _forward(model, out[:, t : t + 1], cache, cache_kw, cache_attr, 1)
        out[:, t + 1] = _greedy(logits[:, -1], eod_id)
    return out


@torch.no_grad()
def _score_batch(model, seqs: torch.Tensor, k: int, l: int, memorized_only: bool, eod_id: int | None):  # noqa: E741
    """Staged verification: the prompt pass predicts position k for every row; rows still matching
    the truth are teacher-forced on through a growing chunk of true tokens (1, 2, 4, ...), and every
    row leaves at its first mismatch m (greedy output = truth before m, the pass's argmax at m).
    Full scores decode each leaving group greedily from k+m on, through the cache of its true prefix."""
    device = next(model.parameters()).device
    seqs = seqs.to(device)
    n = len(seqs)
    cache_kw, cache_attr = _cache_api(model)
    truth = seqs[:, k : k + l]
    scores = torch.ones(n, dtype=torch.float32, device=device)
    memorized = torch.zeros(n, dtype=torch.bool, device=device)
    logits, cache = _forward(model, seqs[:, :k], None, cache_kw, cache_attr, 1)
    pred = _greedy(logits, eod_id)  # (B, 1): greedy token at k
    active = torch.arange(n, device=device)  # rows whose greedy output is the truth before `done`
    done, chunk = 0, 1  # targets checked; true tokens fed in the next pass
    while True:
        miss = pred != truth[active, done : done + pred.shape[1]]  # (A, c): targets done .. done+c-1
        left = miss.any(dim=1)
        if left.any():
            m_local = miss.int().argmax(dim=1)
            if not memorized_only:
                for m in torch.unique(m_local[left]).tolist():
                    sel = torch.nonzero(left & (m_local == m)).flatten()
                    rows = active[sel]
                    steps = l - 1 - (done + m)
                    if steps:
                        sub = _sub_cache(cache, sel, k + done + m)
                        gen = _greedy_decode(model, sub, cache_kw, cache_attr, pred[sel, m], steps, eod_id)
                    else:
                        gen = pred[sel, m : m + 1]
                    correct = done + m + (gen == truth[rows, done + m :]).sum(dim=1)
                    scores[rows] = correct.float() / l
            keep = torch.nonzero(~left).flatten()
            active = active[keep]
            if len(active) == 0:
                break
            cache.batch_select_indices(keep)
            pred = pred[keep]
        done += pred.shape[1]
        if done == l:
            memorized[active] = True
            break
        chunk = min(2 * chunk, l - done)
        # Feed the true tokens k+done-1 .. (the last checked target on); read targets done .. done+chunk-1.
        ids = seqs[active, k + done - 1 : k + done - 1 + chunk]
        logits, cache = _forward(model, ids, cache, cache_kw, cache_attr, chunk)
        pred = _greedy(logits, eod_id)
    if memorized_only:
        scores = torch.where(memorized, 1.0, math.nan)
    return scores.float().cpu().numpy(), memorized.cpu().numpy()


def score_sequences(
    model,
    sequences: np.ndarray | torch.Tensor,
    *,
    k: int = K,
    l: int = L,  # noqa: E741 - the paper's name
    batch_size: int = 256,
    memorized_only: bool = False,
    eod_id: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores float32, memorized bool) of each row: greedy continuation of row[:k] vs row[k:k+l].

    Equals `generate_scores` (HF generate with min_length = max_length = k+l). With
    ``memorized_only`` only the teacher-forced pass runs: score 1.0 where memorized, NaN elsewhere.
    ``eod_id`` is the token generate's min_length suppresses (None: suppress nothing).
    """
    seqs = _check_sequences(sequences, k, l)
    scores, memorized = [], []
    for b in range(0, len(seqs), batch_size):
        s, m = _score_batch(model, seqs[b : b + batch_size], k, l, memorized_only, eod_id)
        scores.append(s)
        memorized.append(m)
    if not scores:
        return np.empty(0, np.float32), np.empty(0, bool)
    return np.concatenate(scores).astype(np.float32), np.concatenate(memorized).astype(bool)


@torch.no_grad()
def generate_scores(
    model,
    sequences: np.ndarray | torch.Tensor,
    k: int = K,
    l: int = L,  # noqa: E741
    batch_size: int = 256,
    eod_id: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Pythia's eval_memorization.py approach: HF `generate` greedy, then compare tokens (reference)."""
    seqs = _check_sequences(sequences, k, l)
    device = next(model.parameters()).device
    scores = []
    for b in range(0, len(seqs), batch_size):
        batch = seqs[b : b + batch_size].to(device)
        prompt = batch[:, :k]
        gen = model.generate(
            input_ids=prompt, attention_mask=torch.ones_like(prompt), max_length=k + l, min_length=k + l,
            do_sample=False, eos_token_id=eod_id, pad_token_id=eod_id,
        )
        scores.append((gen[:, k : k + l] == batch[:, k : k + l]).float().mean(dim=1).cpu().numpy())
    s = np.concatenate(scores).astype(np.float32) if scores else np.empty(0, np.float32)
    return s, s == 1.0


# ----- sharding and training order --------------------------------------------------------------


def slice_bounds(n: int, i: int, num_slices: int) -> tuple[int, int]:
    """[start, stop) of slice i (0-based) of `num_slices` contiguous slices covering [0, n)."""
    if num_slices < 1 or not 0 <= i < num_slices:
        raise ValueError(f"slice {i} of {num_slices}: need 0 <= i < num_slices")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return n * i // num_slices, n * (i + 1) // num_slices


def subset_indices(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Sorted int64 indices of a seeded uniform subset of [0, n) of size `limit` (all if None or >= n)."""
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=limit, replace=False)).astype(np.int64)


def _runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of consecutive indices as [start, stop) pairs (sorted unique input)."""
    if len(indices) == 0:
        return []
    breaks = np.nonzero(np.diff(indices) != 1)[0] + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(indices)]])
    return [(int(indices[a]), int(indices[b - 1]) + 1) for a, b in zip(starts, stops, strict=True)]


def read_samples(order, indices: np.ndarray) -> np.ndarray:
    """Samples `indices` (sorted) of `order`: contiguous runs via samples(), so a slice is one read."""
    parts = [order.samples(a, b) for a, b in _runs(indices)]
    return np.concatenate(parts) if parts else np.empty((0, order.seq_length + 1), np.int64)


def score_order(
    model,
    order,
    indices: np.ndarray | Sequence[int],
    *,
    k: int = K,
    l: int = L,  # noqa: E741
    batch_size: int = 256,
    substitution: Callable[[np.ndarray], np.ndarray] | None = None,
    memorized_only: bool = False,
    eod_id: int | None = 0,
    progress: bool = True,
    chunk: int = 16384,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices int64, scores, memorized) of training samples `indices` of `order` (TrainingOrder or
    PreshuffledOrder), read in chunks; `substitution` maps the tokens first, since an intervention
    model is scored on the batches it actually trained on."""
    idx = np.unique(np.asarray(indices, dtype=np.int64))
    if len(idx) and (idx[0] < 0 or idx[-1] >= len(order)):
        raise IndexError(f"training samples out of range: the order holds {len(order):,}")
    scores, memorized = [], []
    with Progress("memorization", total=len(idx), unit="seqs", stream=None) if progress else _Quiet() as p:
        for c in range(0, len(idx), chunk):
            tokens = read_samples(order, idx[c : c + chunk])[:, : k + l]
            if substitution is not None:
                tokens = substitution(tokens)
            for b in range(0, len(tokens), batch_size):
                s, m = score_sequences(model, tokens[b : b + batch_size], k=k, l=l, batch_size=batch_size,
                                       memorized_only=memorized_only, eod_id=eod_id)
                scores.append(s)
                memorized.append(m)
                p.update(len(s))
    if not scores:
        return idx, np.empty(0, np.float32), np.empty(0, bool)
    return idx, np.concatenate(scores), np.concatenate(memorized)


class _Quiet:
    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None


# ----- output contract ----------------------------------------------------------------------------


def write_scores(path: str | Path, indices, scores, memorized) -> None:
    """Write the scores Parquet (index int64, score, memorized bool), atomically, sorted by index."""
    idx = np.asarray(indices, dtype=np.int64)
    sc = np.asarray(scores)
    mem = np.asarray(memorized, dtype=bool)
    if not (len(idx) == len(sc) == len(mem)):
        raise ValueError(f"{path}: index, score and memorized lengths differ ({len(idx)}, {len(sc)}, {len(mem)})")
    if sc.dtype not in (np.float32, np.float64):
        sc = sc.astype(np.float32)
    order = np.argsort(idx, kind="stable")
    if len(idx) and np.any(np.diff(idx[order]) == 0):
        raise ValueError(f"{path}: duplicate training indices")
    table = pa.table({"index": idx[order], "score": sc[order], "memorized": mem[order]})
    with atomic_file(path, "wb") as fh:
        pq.write_table(table, fh)


def read_scores(path: str | Path) -> pa.Table:
    """Read and validate a scores Parquet; wrong or missing columns are an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: scores file not found")
    table = pq.read_table(path)
    schema = table.schema
    for name, typ in SCORE_COLUMNS.items():
        if name not in schema.names or schema.field(name).type != typ:
            got = schema.field(name).type if name in schema.names else "missing"
            raise ValueError(f"{path}: column {name!r} must be {typ}, got {got}")
    if "score" not in schema.names or schema.field("score").type not in SCORE_TYPES:
        got = schema.field("score").type if "score" in schema.names else "missing"
        raise ValueError(f"{path}: column 'score' must be float32 or float64, got {got}")
    return table.select(["index", "score", "memorized"])


def merge_slices(paths: Sequence[str | Path], output: str | Path) -> int:
    """Concatenate slice files into `output` in index order; overlapping slices are an error. Returns rows."""
    tables = [(Path(p), read_scores(p)) for p in paths]
    tables = [t for t in tables if t[1].num_rows]
    tables.sort(key=lambda t: t[1].column("index")[0].as_py())
    prev_path, prev_max = None, None
    for path, t in tables:
        idx = t.column("index").to_numpy()
        if np.any(np.diff(idx) <= 0):
            raise ValueError(f"{path}: indices not strictly increasing")
        if prev_max is not None and idx[0] <= prev_max:
            raise ValueError(f"{path} overlaps {prev_path}: index {idx[0]} <= {prev_max}")
        prev_path, prev_max = path, idx[-1]
    if tables:
        types = {t.schema.field("score").type for _, t in tables}
        target = pa.float64() if pa.float64() in types else pa.float32()
        merged = pa.concat_tables([t.cast(pa.schema([("index", pa.int64()), ("score", target),
                                                     ("memorized", pa.bool_())])) for _, t in tables])
    else:
        merged = pa.table({"index": pa.array([], pa.int64()), "score": pa.array([], pa.float32()),
                           "memorized": pa.array([], pa.bool_())})
    with atomic_file(output, "wb") as fh:
        pq.write_table(merged, fh)
    return merged.num_rows


def write_summary(
    path: str | Path,
    scores_path: str | Path,
    *,
    k: int,
    l: int,  # noqa: E741
    model: str,
    step: int,
    checkpoint: str | Path,
    planted: np.ndarray | None = None,
) -> dict:
    """JSON summary beside a scores file; `planted` (bool per row, in index order) adds split counts."""
    t = read_scores(scores_path)
    mem = t.column("memorized").to_numpy(zero_copy_only=False)
    n = len(mem)
    summary: dict = {
        "scores": str(scores_path), "model": model, "step": int(step), "checkpoint": str(checkpoint),
        "k": k, "l": l, "sequences": n, "memorized": int(mem.sum()),
        "memorized_rate": float(mem.mean()) if n else None,
    }
    if planted is not None:
        planted = np.asarray(planted, dtype=bool)
        if len(planted) != n:
            raise ValueError(f"{scores_path}: {n} rows but {len(planted)} planted flags")
        for name, sel in (("planted", planted), ("other", ~planted)):
            summary[name] = {"sequences": int(sel.sum()), "memorized": int(mem[sel].sum()),
                             "memorized_rate": float(mem[sel].mean()) if sel.any() else None}
    write_json(path, summary)
    return summary
