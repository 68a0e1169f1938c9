"""The suite's tokenizer: a given tokenizer.json, one downloaded from the Hub, or a byte-level BPE
trained on the corpus the way GPT-NeoX-20B's was built (NFC, ByteLevel pre-tokenizer/decoder).

Whatever the source, the result is one `tokenizer.json` that `tokenizers.Tokenizer.from_file` and
`transformers.PreTrainedTokenizerFast(tokenizer_file=...)` both load, with `<|endoftext|>` (the EOD
appended after every document) at id 0 and `<|padding|>` at id 1 as in Pythia.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from pythia_repro.atomic import atomic_file, write_text
from pythia_repro.data.corpus import DEFAULT_POLICY, ReadPolicy, ReadStats, iter_documents
from pythia_repro.errors import PythiaReproError

EOD_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|padding|>"
SPECIAL_TOKENS = [EOD_TOKEN, PAD_TOKEN]  # ids 0 and 1, in this order


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load a tokenizer.json; a missing or unreadable file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise PythiaReproError(f"{path}: tokenizer file not found")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
        raise PythiaReproError(f"{path}: not a valid tokenizer.json ({exc})") from None


def eod_id(tokenizer: Tokenizer, source: str = "tokenizer") -> int:
    """Id of `<|endoftext|>`, the end-of-document token GPT-NeoX appends after every document."""
    eod = tokenizer.token_to_id(EOD_TOKEN)
    if eod is None:
        raise PythiaReproError(f"{source}: has no {EOD_TOKEN} token to mark document ends")
    return eod


def new_bpe_tokenizer(split_digits: bool = False) -> Tokenizer:
    """An untrained byte-level BPE laid out like GPT-NeoX-20B's tokenizer.json.

    split_digits: every digit is its own pre-token, so no merge spans two digits and a number
    is its digits, one token each (LLaMA and PaLM). Nothing else changes: the decoder is the same.

    LLaMA's and PaLM's SentencePiece models fall back to UTF-8 byte tokens for characters outside
    their vocabulary; a byte-level BPE needs no option for that, as every text is bytes before any
    merge and the 256 bytes are all in the vocabulary: an unseen character becomes its UTF-8 bytes
    and nothing is ever unknown (tests/data/test_tokenizer_recipes.py shows it).
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level]) if split_digits
        else byte_level
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    return tokenizer


def train_bpe(texts: Iterable[str], vocab_size: int, split_digits: bool = False) -> Tokenizer:
    """Train a byte-level BPE of `vocab_size` entries (specials and the 256 bytes included).

    Streams `texts` (word counts are all it keeps) and is deterministic: the same corpus gives
    the same tokenizer.json. `split_digits`: see `new_bpe_tokenizer`.
    """
    tokenizer = new_bpe_tokenizer(split_digits)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def build_tokenizer(
    tok_config: dict, inputs: Iterable[str | Path], output: str | Path, policy: ReadPolicy = DEFAULT_POLICY
) -> dict:
    """Produce the suite's tokenizer.json at `output` from config['tokenizer']; returns a summary."""
    source = tok_config["source"]
    output = Path(output)
    summary: dict = {"source": source}
    if source == "train":
        stats = ReadStats()
        docs = iter_documents(inputs, policy, stats)
        # A mapping without the key (not from a suite's tokenizer section) is GPT-NeoX's plain BPE.
        tokenizer = train_bpe((doc.text for doc in docs), tok_config["vocab_size"],
                              tok_config.get("split_digits", False))
        write_text(output, tokenizer.to_str(pretty=True))
        summary.update(stats.as_dict())
    elif source in ("file", "hub"):
        if source == "file":
            if "path" not in tok_config:
                raise PythiaReproError("tokenizer.path: required when tokenizer.source is 'file'")
            src = Path(tok_config["path"])
        else:
            from huggingface_hub import hf_hub_download

            src = Path(hf_hub_download(repo_id=tok_config["hub_repo"], filename="tokenizer.json"))
            summary["hub_repo"] = tok_config["hub_repo"]
        tokenizer = load_tokenizer(src)  # validate before publishing
        with atomic_file(output, "wb") as out, open(src, "rb") as fh:
            shutil.copyfileobj(fh, out)
        summary["from"] = str(src)
    else:
        raise PythiaReproError(f"tokenizer.source: unknown source {source!r}")
    eod_id(tokenizer, str(output))
    summary["vocab_size"] = tokenizer.get_vocab_size()
    return summary
