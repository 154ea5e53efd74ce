"""Loss-gradient embeddings φ(x) of a policy's action head, the AMF kernel (AMF §2).

    emb = make_embedder(policy, kind="gradient", dim=1024, seed=0, n_draws=4, layers=2)
    phi = emb.embed(batch)          # (B, emb.dim) float32; batch = the policy preprocessor's output
    emb.record()                     # family, kind, seed, draw seed, raw_dim, dim, ... for the run record

φ is the gradient of the policy's own training loss w.r.t. the last weight layers of its action
head, from one forward and one short backward pass (``base.py``), projected by a fixed seeded
Gaussian matrix when raw_dim > dim (``projection.py``). ``kind="last_layer"`` gives the ablation kernel: the mean
last-layer input (``last_layer.py``). What differs per policy family (which layer, which loss,
which pseudo-target) lives in that family's module, ``lerobot_amf.families``.
"""

from __future__ import annotations

from torch import nn

from lerobot_amf.embeddings.base import (
    DEFAULT_DIM,
    DEFAULT_DRAWS,
    DEFAULT_LAYERS,
    DEFAULT_TARGET,
    DRAW_SEED_OFFSET,
    KINDS,
    TARGETS,
    Embedder,
    layer_gradient,
    running_module,
    unwrap_policy,
)
from lerobot_amf.embeddings.last_layer import layer_input_features
from lerobot_amf.embeddings.projection import RandomProjection

__all__ = [
    "DEFAULT_DIM",
    "DEFAULT_DRAWS",
    "DEFAULT_LAYERS",
    "DEFAULT_TARGET",
    "DRAW_SEED_OFFSET",
    "Embedder",
    "KINDS",
    "RandomProjection",
    "TARGETS",
    "layer_gradient",
    "layer_input_features",
    "make_embedder",
    "running_module",
    "unwrap_policy",
]


def make_embedder(
    policy: nn.Module,
    kind: str = "gradient",
    dim: int = DEFAULT_DIM,
    seed: int = 0,
    n_draws: int = DEFAULT_DRAWS,
    layers: int = DEFAULT_LAYERS,
    **family_kwargs,
) -> Embedder:
    """The embedder of ``policy``'s family (``lerobot_amf.families``; a peft wrapper is looked through).

    kind: ``KINDS`` — "gradient" (the AMF kernel: the training-loss gradient at the batch's expert
    action, or at the policy's own sample with ``embed(batch, target="self")``),
    "self_gradient" (always the policy's own sample) or "last_layer" (features-only ablation).
    dim: projected dimension (identity when the raw gradient is no larger). seed: projection
    seed; the (noise, timestep) draws use seed + DRAW_SEED_OFFSET. n_draws: draws averaged per
    state. layers: weight layers of the action head differentiated, counted from the output.
    family_kwargs go to the family's embedder (diffusion/flow: ``target_steps`` of the
    pseudo-target; act: ``pseudo_noise``).
    """
    from lerobot_amf.families import family_of  # the families build on this package's machinery

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return family_of(policy).embedder(unwrap_policy(policy), kind=kind, dim=dim, seed=seed, n_draws=n_draws,
                                      layers=layers, **family_kwargs)
