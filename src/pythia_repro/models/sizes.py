"""The model size table, as data: one row per size, plus what derives from a row.

Shapes and learning rates are Pythia's (EleutherAI/pythia models/*.yml); the tiny sizes
exist so the embedded default config trains on a 2-core CPU in minutes. A suite config
may add its own sizes under `sizes:` with the same fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

ARCHS = ("gpt-neox", "llama", "palm")  # block designs a size can be built with (models/build.py)

# The GPT-NeoX-20B tokenizer's size (50,254 BPE entries + added tokens); Pythia pads it per size.
NEOX_TOKENIZER_SIZE = 50277


def padded_vocab_size(tokenizer_size: int, model_parallel: int = 1) -> int:
    """GPT-NeoX pads the vocabulary to a multiple of 128 x model-parallel size."""
    multiple = 128 * model_parallel
    return -(-tokenizer_size // multiple) * multiple


@dataclass(frozen=True)
class Shape:
    """One size. init: "small" = GPT-NeoX small_init + wang_init on output layers (70m..2.8b);
    "normal" = normal(0.02) + scaled normal on output layers (6.9b, 12b). model_parallel only
    matters for vocabulary padding (a multiple of 128 x mp), as in GPT-NeoX."""

    layers: int
    d_model: int
    heads: int
    ffn: int
    lr: float = 1e-3
    min_lr: float = 1e-4
    init: str = "small"
    model_parallel: int = 1

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    def padded_vocab(self, tokenizer_size: int) -> int:
        return padded_vocab_size(tokenizer_size, self.model_parallel)

    def approx_parameters(self, tokenizer_size: int) -> int:
        """A torch-free GPT-NeoX-shaped count (untied embeddings, 12d² + 13d per layer) of the
        padded vocabulary: what memory requests need, within 1% of the published counts."""
        d = self.d_model
        return 2 * self.padded_vocab(tokenizer_size) * d + self.layers * (12 * d * d + 13 * d)

    def as_dict(self) -> dict:
        return asdict(self)


SIZES: dict[str, Shape] = {
    "14m": Shape(layers=6, d_model=128, heads=4, ffn=512, lr=1e-3, min_lr=1e-4),
    "31m": Shape(layers=6, d_model=256, heads=8, ffn=1024, lr=1e-3, min_lr=1e-4),
    "70m": Shape(layers=6, d_model=512, heads=8, ffn=2048, lr=1e-3, min_lr=1e-4),
    "160m": Shape(layers=12, d_model=768, heads=12, ffn=3072, lr=6e-4, min_lr=6e-5),
    "410m": Shape(layers=24, d_model=1024, heads=16, ffn=4096, lr=3e-4, min_lr=3e-5),
    "1b": Shape(layers=16, d_model=2048, heads=8, ffn=8192, lr=3e-4, min_lr=3e-5),
    "1.4b": Shape(layers=24, d_model=2048, heads=16, ffn=8192, lr=2e-4, min_lr=2e-5),
    "2.8b": Shape(layers=32, d_model=2560, heads=32, ffn=10240, lr=1.6e-4, min_lr=1.6e-5),
    "6.9b": Shape(layers=32, d_model=4096, heads=32, ffn=16384, lr=1.2e-4, min_lr=1.2e-5, init="normal",
                  model_parallel=2),
    "12b": Shape(layers=36, d_model=5120, heads=40, ffn=20480, lr=1.2e-4, min_lr=1.2e-5, init="normal",
                 model_parallel=4),
    # Tiny sizes for the embedded default config (CPU, minutes).
    "nano": Shape(layers=2, d_model=64, heads=4, ffn=256, lr=1e-3, min_lr=1e-4),
    "micro": Shape(layers=3, d_model=128, heads=4, ffn=512, lr=1e-3, min_lr=1e-4),
}
