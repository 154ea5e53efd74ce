"""Features-only kernel for the ablation (docs/method.md, "Ablation kernels"): φ(x) = mean over
draws and chunk positions of h, the input to the action head's last layer (the same forward pass
as the gradient embedding, so the same draws and pseudo-targets; only the reduction differs).
Select it with ``families.make_embedder(policy, kind="last_layer")``.
"""

from __future__ import annotations

import torch
from torch import nn

Tensor = torch.Tensor

__all__ = ["layer_input_features"]


def layer_input_features(layer: nn.Module, x: Tensor) -> Tensor:
    """x, the input of a Conv1d (N, C, T) or a Linear (N, ..., C) -> (N, C), mean over positions."""
    base = getattr(layer, "base_layer", layer)
    if isinstance(base, nn.Conv1d):
        return x.float().mean(dim=2)
    return x.float().reshape(x.shape[0], -1, x.shape[-1]).mean(dim=1)
