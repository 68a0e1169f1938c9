"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The official GPT-NeoX-20B tokenizer.json, present beside this project's checkouts (CI too);
# a user's machine has none, so tests that need the real ids skip without it.
NEOX_TOKENIZER = REPO.parent / "shared" / "assets" / "20B_tokenizer.json"

# Nothing in the tests may reach the Hugging Face Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def neox_tokenizer_path() -> Path:
    if not NEOX_TOKENIZER.is_file():
        pytest.skip(f"GPT-NeoX-20B tokenizer not found at {NEOX_TOKENIZER}")
    return NEOX_TOKENIZER


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
