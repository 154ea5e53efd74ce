"""One module per LeRobot policy family, found through one registry keyed by the policy type.

    family = family_of(policy)            # or family_of("diffusion"); a peft wrapper is looked through
    emb = make_embedder(policy, kind="gradient", dim=1024, seed=0, n_draws=4, layers=2)
    phi = emb.embed(batch)                # (B, emb.dim) float32; batch = the policy preprocessor's output
    kernel_embedder(policy, cfg.amf.selection)                   # the kernel as --amf.selection.* sets it
    family.loglik, family.teacher_action_chunk                   # None where the family has none
    family.lora_targets, family.head_module                      # what --amf.isolation=lora|head touch

Each family module (``diffusion.py``, ``act.py``, ``flow.py`` for smolvla / pi0 / pi05) owns its
last layer, embedder, likelihood surrogate, distillation teacher, LoRA targets and head module,
and registers itself with ``@register_family``; adding a family is one new module imported below.
"""

from __future__ import annotations

from torch import nn

from lerobot_amf.embeddings.base import Embedder, unwrap_policy
from lerobot_amf.embeddings.kinds import DEFAULT_DIM, DEFAULT_DRAWS
from lerobot_amf.families import act, diffusion, flow  # noqa: F401  (each registers its family)
from lerobot_amf.families.base import PolicyFamily, register_family, registered_families

__all__ = ["PolicyFamily", "family_of", "kernel_embedder", "make_embedder", "policy_type", "register_family",
           "supported_types"]


def policy_type(policy: nn.Module) -> str | None:
    """The LeRobot policy type (``name``) of ``policy``, looking through a peft wrapper."""
    return getattr(unwrap_policy(policy), "name", None)


def supported_types() -> tuple[str, ...]:
    return tuple(registered_families())


def family_of(policy_or_type: nn.Module | str) -> PolicyFamily:
    """The family serving a policy (or a policy type name); a clear error for unsupported ones."""
    name = policy_or_type if isinstance(policy_or_type, str) else policy_type(policy_or_type)
    family = registered_families().get(name)
    if family is None:
        what = name if isinstance(policy_or_type, str) else f"{type(unwrap_policy(policy_or_type)).__name__} (type {name!r})"
        raise ValueError(f"Unsupported policy {what}: lerobot_amf supports the LeRobot policy types "
                         f"{', '.join(supported_types())}.")
    return family


def make_embedder(
    policy: nn.Module,
    kind: str = "gradient",
    dim: int = DEFAULT_DIM,
    seed: int = 0,
    n_draws: int = DEFAULT_DRAWS,
    layers: int | None = None,
    **family_kwargs,
) -> Embedder:
    """The loss-gradient embedder of ``policy``'s family (a peft wrapper is looked through).

    kind: ``embeddings.kinds.KINDS`` — "gradient" (the amf kernel: the training-loss gradient at
    the batch's expert action, or at the policy's own sample with ``embed(batch, target="self")``),
    "self_gradient" (always the policy's own sample) or "last_layer" (features-only ablation).
    dim: projected dimension (identity when the raw gradient is no larger). seed: projection
    seed; the (noise, timestep) draws use seed + DRAW_SEED_OFFSET. n_draws: draws averaged per
    state. layers: weight layers of the action head differentiated, counted from the output
    (None: the family's ``kernel_layers``, chosen by measurement).
    family_kwargs go to the family's embedder (diffusion/flow: ``target_steps`` of the
    pseudo-target; act: ``pseudo_noise``).
    """
    family = family_of(policy)
    return family.embedder(unwrap_policy(policy), kind=kind, dim=dim, seed=seed, n_draws=n_draws,
                           layers=family.kernel_layers if layers is None else layers, **family_kwargs)


def kernel_embedder(policy: nn.Module, sel) -> Embedder:
    """The amf kernel as ``--amf.selection.*`` (an ``AMFSelectionConfig``) sets it, for a plain
    LeRobot policy (a routed one: pass its acting policy). One home, so clustered partitions
    group tasks by the kernel amf selects with."""
    return make_embedder(policy, kind=sel.kernel, dim=sel.embedding_dim, seed=sel.projection_seed,
                         n_draws=sel.n_draws, layers=sel.kernel_layers, target_steps=sel.pseudo_target_steps)
