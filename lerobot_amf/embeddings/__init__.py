"""Loss-gradient embeddings φ(x) of a policy's action head, the AMF kernel (AMF §2).

    emb = make_embedder(policy, kind="gradient", dim=2048, seed=0, n_draws=4)
    phi = emb.embed(batch)          # (B, emb.dim) float32; batch = the policy preprocessor's output
    emb.record()                     # family, kind, seed, draw seed, raw_dim, dim, ... for the run record

φ is the gradient of the policy's own training loss w.r.t. its last layer, in closed form from
one forward pass (``base.py``), with the policy's own action as pseudo-target, projected by a
fixed seeded Gaussian matrix when raw_dim > dim (``projection.py``). ``kind="last_layer"`` gives
the ablation kernel: the mean last-layer input (``last_layer.py``).
"""

from __future__ import annotations

from torch import nn

from lerobot_amf.embeddings.act import ACTEmbedder
from lerobot_amf.embeddings.base import DRAW_SEED_OFFSET, KINDS, Embedder, linear_head_gradient, unwrap_policy
from lerobot_amf.embeddings.diffusion import DiffusionEmbedder
from lerobot_amf.embeddings.flow import FLOW_FAMILIES, FlowEmbedder, flow_gradient
from lerobot_amf.embeddings.last_layer import last_layer_features
from lerobot_amf.embeddings.projection import RandomProjection

__all__ = [
    "ACTEmbedder",
    "DRAW_SEED_OFFSET",
    "DiffusionEmbedder",
    "Embedder",
    "FlowEmbedder",
    "KINDS",
    "RandomProjection",
    "SUPPORTED_FAMILIES",
    "flow_gradient",
    "last_layer_features",
    "linear_head_gradient",
    "make_embedder",
]

SUPPORTED_FAMILIES = ("diffusion", "act", *FLOW_FAMILIES)


def make_embedder(
    policy: nn.Module,
    kind: str = "gradient",
    dim: int = 2048,
    seed: int = 0,
    n_draws: int = 4,
    **family_kwargs,
) -> Embedder:
    """The embedder for ``policy``'s family, from its LeRobot ``name`` ("diffusion", "act",
    "smolvla", "pi0", "pi05"; a peft wrapper is looked through).

    kind: "gradient" (the AMF kernel) or "last_layer" (features-only ablation). dim: projected
    dimension (identity when the raw gradient is no larger). seed: projection seed; the
    (noise, timestep) draws use seed + DRAW_SEED_OFFSET. n_draws: draws averaged per state.
    family_kwargs go to the family's embedder (diffusion/flow: ``target_steps``; act:
    ``pseudo_target``, ``pseudo_noise``).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    base = unwrap_policy(policy)
    name = getattr(base, "name", None)
    common = dict(kind=kind, dim=dim, seed=seed, n_draws=n_draws)
    if name == "diffusion":
        return DiffusionEmbedder(base, **common, **family_kwargs)
    if name == "act":
        return ACTEmbedder(base, **common, **family_kwargs)
    if name in FLOW_FAMILIES:
        return FlowEmbedder(base, family=name, **common, **family_kwargs)
    raise ValueError(
        f"no loss-gradient embedding for policy {type(base).__name__} (name={name!r}); "
        f"supported LeRobot policy families: {', '.join(SUPPORTED_FAMILIES)}"
    )
