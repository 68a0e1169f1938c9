"""Token substitutions applied to every training batch of an intervention model.

`gender_swap` is Pythia's intervention (PYTHIA.md §4): male pronoun tokens become their female
counterparts, in inputs and labels alike. The pairs are given as token strings, so the map is
derived from whichever tokenizer the suite uses; with GPT-NeoX-20B's it gives Pythia's ids
('ĠHe' 754 -> 'ĠShe' 1500, ...). Pairs whose tokens the tokenizer lacks are skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from pythia_repro.errors import PythiaReproError

# (from, to) token strings; 'Ġ' is the byte-level BPE's leading space.
GENDER_SWAP = (
    ("ĠHe", "ĠShe"),
    ("ĠHis", "ĠHer"),
    ("His", "Her"),
    ("He", "She"),
    ("Ġhis", "Ġher"),
    ("Ġhe", "Ġshe"),
    ("Ġhim", "Ġher"),
    ("his", "her"),
    ("him", "her"),
    ("he", "she"),
)
SUBSTITUTIONS = {"gender_swap": GENDER_SWAP}


def substitution_map(name: str, tokenizer: Tokenizer | str | Path) -> dict[int, int]:
    """{from_id: to_id} of substitution `name` in `tokenizer` (a Tokenizer or a tokenizer.json)."""
    if name not in SUBSTITUTIONS:
        raise PythiaReproError(f"unknown substitution {name!r}; known: {sorted(SUBSTITUTIONS)}")
    if not isinstance(tokenizer, Tokenizer):
        tokenizer = Tokenizer.from_file(str(tokenizer))
    table = {}
    for src, dst in SUBSTITUTIONS[name]:
        src_id, dst_id = tokenizer.token_to_id(src), tokenizer.token_to_id(dst)
        if src_id is not None and dst_id is not None:
            table[src_id] = dst_id
    return table


class Substitution:
    """Applies a {from: to} id map to token arrays with one table lookup."""

    def __init__(self, table: dict[int, int], vocab_size: int) -> None:
        self.table = dict(table)
        self._lookup = np.arange(vocab_size, dtype=np.int64)
        for src, dst in self.table.items():
            self._lookup[src] = dst

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        return self._lookup[tokens]
