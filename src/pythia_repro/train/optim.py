"""Adam as GPT-NeoX v1.0 ran it: decoupled weight decay, none on biases and norm parameters.

GPT-NeoX (`megatron/model/utils.py: get_params_for_weight_decay_optimization`) exempts every
parameter of a LayerNorm/RMSNorm module and every `bias`; embeddings and all other matrices decay.
Its optimizer is FusedAdam in AdamW mode, i.e. `torch.optim.AdamW`.

Every suite uses it, LLaMA- and PaLM-style ones too. LLaMA trained with AdamW (0.9, 0.95), weight
decay 0.1 and clipping 1.0: the defaults here. PaLM trained with Adafactor without factorisation
(Chowdhery et al. 2022, Section 5), which is Adam with beta1 0.9, a step-dependent beta2
(1 - k^-0.8), update clipping and "parameter scaling" (each update times the weight's RMS); we
keep AdamW, which that reduces to in practice, and fold the parameter scaling into the PaLM size
rows' peak lr (1e-2 / sqrt(d), the RMS of its fan-in-initialised kernels; models/sizes.py).
PaLM's dynamic weight decay lr² is not reproduced: the suite's constant `weight_decay` applies.
"""

from __future__ import annotations

import torch


def _is_norm(module: torch.nn.Module) -> bool:
    # LayerNorm, GPT-NeoX/Llama RMSNorm, Cohere's LayerNorm: all norm classes say so in their name.
    return isinstance(module, torch.nn.LayerNorm) or "Norm" in type(module).__name__


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """[decayed, not decayed] parameter groups (one group when weight decay is off, as GPT-NeoX)."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        norm = _is_norm(module)
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue  # tied embeddings appear under two modules
            seen.add(id(param))
            (no_decay if norm or name == "bias" or weight_decay == 0 else decay).append(param)
    if weight_decay == 0:
        return [{"params": no_decay, "weight_decay": 0.0}]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, training, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with the suite's betas/eps/weight decay (a TrainingSection); lr is set by the schedule."""
    kwargs = {}
    if device.type == "cuda":
        kwargs["fused"] = True  # one kernel per step, like GPT-NeoX's FusedAdam
    return torch.optim.AdamW(
        param_groups(model, training.weight_decay),
        lr=0.0,
        betas=(training.adam_beta1, training.adam_beta2),
        eps=training.adam_eps,
        **kwargs,
    )
