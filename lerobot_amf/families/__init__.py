"""One module per LeRobot policy family, found through one registry keyed by the policy type.

    family = family_of(policy)            # or family_of("diffusion"); a peft wrapper is looked through
    family.embedder(policy, kind="gradient", dim=1024, seed=0)   # its loss-gradient embedder
    family.loglik, family.teacher_action_chunk                   # None where the family has none
    family.lora_targets, family.head_module                      # what --amf.isolation=lora|head touch

Each family module (``diffusion.py``, ``act.py``, ``flow.py`` for smolvla / pi0 / pi05) owns its
last layer, embedder, likelihood surrogate, distillation teacher, LoRA targets and head module,
and registers itself with ``@register_family``; adding a family is one new module imported below.
"""

from __future__ import annotations

from torch import nn

from lerobot_amf.embeddings.base import unwrap_policy
from lerobot_amf.families import act, diffusion, flow  # noqa: F401  (each registers its family)
from lerobot_amf.families.base import PolicyFamily, register_family, registered_families

__all__ = ["PolicyFamily", "family_of", "policy_type", "register_family", "supported_types"]


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
