"""The model size table, as data: one entry per size, nothing derived here.

Shapes and learning rates are Pythia's (EleutherAI/pythia models/*.yml); the tiny sizes
exist so the embedded default config trains on a 2-core CPU in minutes. A suite config
may add its own sizes under `sizes:` with the same fields.
"""

from __future__ import annotations

ARCHS = ("gpt-neox", "llama", "palm")  # block designs a size can be built with (models/build.py)

# init: "small" = GPT-NeoX small_init + wang_init on output layers (70m..2.8b);
#       "normal" = normal(0.02) + scaled_normal on output layers (6.9b, 12b).
# model_parallel only matters for vocabulary padding (multiple of 128 x mp), as in GPT-NeoX.
SIZES: dict[str, dict] = {
    "14m": dict(layers=6, d_model=128, heads=4, ffn=512, lr=1e-3, min_lr=1e-4, init="small", model_parallel=1),
    "31m": dict(layers=6, d_model=256, heads=8, ffn=1024, lr=1e-3, min_lr=1e-4, init="small", model_parallel=1),
    "70m": dict(layers=6, d_model=512, heads=8, ffn=2048, lr=1e-3, min_lr=1e-4, init="small", model_parallel=1),
    "160m": dict(layers=12, d_model=768, heads=12, ffn=3072, lr=6e-4, min_lr=6e-5, init="small", model_parallel=1),
    "410m": dict(layers=24, d_model=1024, heads=16, ffn=4096, lr=3e-4, min_lr=3e-5, init="small", model_parallel=1),
    "1b": dict(layers=16, d_model=2048, heads=8, ffn=8192, lr=3e-4, min_lr=3e-5, init="small", model_parallel=1),
    "1.4b": dict(layers=24, d_model=2048, heads=16, ffn=8192, lr=2e-4, min_lr=2e-5, init="small", model_parallel=1),
    "2.8b": dict(layers=32, d_model=2560, heads=32, ffn=10240, lr=1.6e-4, min_lr=1.6e-5, init="small",
                 model_parallel=1),
    "6.9b": dict(layers=32, d_model=4096, heads=32, ffn=16384, lr=1.2e-4, min_lr=1.2e-5, init="normal",
                 model_parallel=2),
    "12b": dict(layers=36, d_model=5120, heads=40, ffn=20480, lr=1.2e-4, min_lr=1.2e-5, init="normal",
                model_parallel=4),
    # Tiny sizes for the embedded default config (CPU, minutes).
    "nano": dict(layers=2, d_model=64, heads=4, ffn=256, lr=1e-3, min_lr=1e-4, init="small", model_parallel=1),
    "micro": dict(layers=3, d_model=128, heads=4, ffn=512, lr=1e-3, min_lr=1e-4, init="small", model_parallel=1),
}

# The GPT-NeoX-20B tokenizer's size (50,254 BPE entries + added tokens); Pythia pads it per size.
NEOX_TOKENIZER_SIZE = 50277


def padded_vocab_size(tokenizer_size: int, model_parallel: int = 1) -> int:
    """GPT-NeoX pads the vocabulary to a multiple of 128 x model-parallel size."""
    multiple = 128 * model_parallel
    return -(-tokenizer_size // multiple) * multiple
