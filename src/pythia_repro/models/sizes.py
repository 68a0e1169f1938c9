"""The model size table, as data: one row per size, plus what derives from a row.

Shapes and learning rates are Pythia's (EleutherAI/pythia models/*.yml), LLaMA's (Touvron et al.
2023, Table 2) and PaLM's (Chowdhery et al. 2022, Table 1), each row citing its source; the tiny
sizes exist so the embedded default config trains on a 2-core CPU in minutes. A suite config
may add its own sizes under `sizes:` with the same fields.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

ARCHS = ("gpt-neox", "llama", "palm")  # block designs a size can be built with (models/build.py)

# The GPT-NeoX-20B tokenizer's size (50,254 BPE entries + added tokens); Pythia pads it per size.
NEOX_TOKENIZER_SIZE = 50277


def swiglu_width(ffn: int, multiple_of: int = 64) -> int:
    """LLaMA's rule (facebookresearch/llama model.py, FeedForward): SwiGLU has three matrices
    instead of two, so its hidden width is int(2/3 x ffn) of a GELU MLP's `ffn`, rounded up to
    `multiple_of` for efficient kernels (LLaMA: 256; our own sizes: 64)."""
    return -(-(2 * ffn // 3) // multiple_of) * multiple_of


def padded_vocab_size(tokenizer_size: int, model_parallel: int = 1) -> int:
    """GPT-NeoX pads the vocabulary to a multiple of 128 x model-parallel size."""
    multiple = 128 * model_parallel
    return -(-tokenizer_size // multiple) * multiple


@dataclass(frozen=True)
class Shape:
    """One size. init: "small" = GPT-NeoX small_init + wang_init on output layers (70m..2.8b);
    "normal" = normal(0.02) + scaled normal on output layers (6.9b, 12b); "palm" = PaLM's
    fan-in normal(1/sqrt(d_in)) kernels and normal(1) embeddings (models/build.py). model_parallel
    only matters for vocabulary padding (a multiple of 128 x mp), as in GPT-NeoX.

    `ffn` is the GELU MLP's width (gpt-neox); the llama and palm blocks' SwiGLU width is
    `swiglu_ffn`, which defaults to `swiglu_width(ffn)`. `head_dim` defaults to d_model / heads;
    PaLM-540B's 48 heads of 256 are narrower than its d_model.
    """

    layers: int
    d_model: int
    heads: int
    ffn: int
    lr: float = 1e-3
    min_lr: float = 1e-4
    init: str = "small"
    model_parallel: int = 1
    head_dim: int | None = None
    swiglu_ffn: int | None = None

    def __post_init__(self) -> None:
        # Derived once here (as litgpt's Config does), so every reader sees plain ints.
        if self.head_dim is None:
            object.__setattr__(self, "head_dim", self.d_model // self.heads)
        if self.swiglu_ffn is None:
            object.__setattr__(self, "swiglu_ffn", swiglu_width(self.ffn))

    def padded_vocab(self, tokenizer_size: int) -> int:
        return padded_vocab_size(tokenizer_size, self.model_parallel)

    def approx_parameters(self, tokenizer_size: int, arch: str = "gpt-neox") -> int:
        """A torch-free count of the padded vocabulary's model, what memory requests need: within
        1% for GPT-NeoX (untied embeddings, 12d² + 13d per layer), exact for the llama block
        (untied, 4 attention matrices, SwiGLU, 2 RMSNorms) and the palm block (shared embeddings,
        multi-query attention: one key and one value head, SwiGLU, one bias-free LayerNorm)."""
        d, v, f = self.d_model, self.padded_vocab(tokenizer_size), self.swiglu_ffn
        inner = self.heads * self.head_dim
        if arch == "llama":
            return 2 * v * d + self.layers * (4 * d * inner + 3 * d * f + 2 * d) + d
        if arch == "palm":
            return v * d + self.layers * (2 * d * inner + 2 * d * self.head_dim + 3 * d * f + d) + d
        return 2 * v * d + self.layers * (12 * d * d + 13 * d)

    def as_dict(self) -> dict:
        return asdict(self)


# LLaMA (Touvron et al. 2023) and PaLM (Chowdhery et al. 2022) vocabularies, unpadded; both are
# multiples of 128, so GPT-NeoX's padding leaves them as they are.
LLAMA_VOCAB = 32000
PALM_VOCAB = 256000

SIZES: dict[str, Shape] = {
    # Pythia (EleutherAI/pythia models/*.yml).
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
    # micro's peak lr is 5x Pythia-70m's (small models take larger rates, as GPT-3's table does):
    # at 1e-3 it learns no occupation -> pronoun link in the default 256 steps, at 5e-3 it does.
    "micro": Shape(layers=3, d_model=128, heads=4, ffn=512, lr=5e-3, min_lr=5e-4),
    # LLaMA (Touvron et al. 2023, Table 2; min lr 10% of the peak, Section 2.3). SwiGLU width:
    # LLaMA's code's 2/3 x 4d rounded up to multiple_of=256 (11008, 13824, 17920, 22016). With
    # LLAMA_VOCAB (untied) the counts are 6,738,415,616 / 13,015,864,320 / 32,528,943,616 /
    # 65,285,660,672: the paper's 6.7B, 13.0B, 32.5B round them, its 65.2B truncates 65.29B.
    # The paper does not state its init; these take GPT-NeoX's "normal" (0.02), as Pythia's 6.9b
    # and 12b do.
    "llama-7b": Shape(layers=32, d_model=4096, heads=32, ffn=4 * 4096, lr=3e-4, min_lr=3e-5, init="normal",
                      swiglu_ffn=swiglu_width(4 * 4096, 256)),
    "llama-13b": Shape(layers=40, d_model=5120, heads=40, ffn=4 * 5120, lr=3e-4, min_lr=3e-5, init="normal",
                       swiglu_ffn=swiglu_width(4 * 5120, 256)),
    "llama-33b": Shape(layers=60, d_model=6656, heads=52, ffn=4 * 6656, lr=1.5e-4, min_lr=1.5e-5, init="normal",
                       swiglu_ffn=swiglu_width(4 * 6656, 256)),
    "llama-65b": Shape(layers=80, d_model=8192, heads=64, ffn=4 * 8192, lr=1.5e-4, min_lr=1.5e-5, init="normal",
                       swiglu_ffn=swiglu_width(4 * 8192, 256)),
    "llama-tiny": Shape(layers=2, d_model=64, heads=4, ffn=4 * 64, lr=1e-3, min_lr=1e-4,
                        swiglu_ffn=swiglu_width(4 * 64, 256)),  # the same rules at d 64, for tests
    # PaLM (Chowdhery et al. 2022, Table 1 and Section 2): head dim 256, SwiGLU of width 4d (no
    # 2/3 rule), multi-query attention, shared embeddings, no biases (build.py's palm block).
    # With PALM_VOCAB the counts are 8,632,012,800 / 62,495,662,080 / 540,356,474,880: Table 1's
    # 8.63B and 62.50B round them, its 540.35B truncates 540.356B. lr: PaLM's 1e-2 (then 1/sqrt(step), no floor:
    # training.lr_schedule palm) is Adafactor's, whose parameter scaling multiplies each update by
    # the weight's RMS, 1/sqrt(d) for these fan-in-initialised kernels; with AdamW (train/optim.py
    # says why) the same step size is 1e-2 / sqrt(d_model).
    "palm-8b": Shape(layers=32, d_model=4096, heads=16, ffn=4 * 4096, lr=1e-2 / math.sqrt(4096), min_lr=0.0,
                     init="palm", head_dim=256, swiglu_ffn=4 * 4096),
    "palm-62b": Shape(layers=64, d_model=8192, heads=32, ffn=4 * 8192, lr=1e-2 / math.sqrt(8192), min_lr=0.0,
                      init="palm", head_dim=256, swiglu_ffn=4 * 8192),
    "palm-540b": Shape(layers=118, d_model=18432, heads=48, ffn=4 * 18432, lr=1e-2 / math.sqrt(18432), min_lr=0.0,
                       init="palm", head_dim=256, swiglu_ffn=4 * 18432),
    # For tests: 4 heads of 32 (128) wider than d_model 64, as PaLM-540B's 48 x 256 are narrower.
    "palm-tiny": Shape(layers=2, d_model=64, heads=4, ffn=4 * 64, lr=1e-2 / math.sqrt(64), min_lr=0.0,
                       init="palm", head_dim=32, swiglu_ffn=4 * 64),
}
