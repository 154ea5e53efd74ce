"""Features-only kernel for the ablation in AMF §2: φ(x) = mean over draws and chunk positions of
h, the input to the action head's last layer (the same forward pass as the gradient embedding,
so the same draws and pseudo-targets; only the reduction differs). Select it with
``make_embedder(policy, kind="last_layer")``.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

__all__ = ["last_layer_features"]


def last_layer_features(h: Tensor) -> Tensor:
    """h: (B, K, T, C) last-layer inputs -> (B, C) mean over draws K and positions T."""
    if h.ndim != 4:
        raise ValueError(f"expected h of shape (B, K, T, C), got {tuple(h.shape)}")
    return h.float().mean(dim=(1, 2))
