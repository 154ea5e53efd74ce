"""What the project needs to know about one LeRobot policy family, behind one interface.

A family is one class registered for the LeRobot policy types it serves (``register_family``),
in one module next to its embedder — the way LeRobot pairs ``configuration_X`` / ``modeling_X``
and peft registers a tuner with ``register_peft_method``. Adding a family is one new file in
``lerobot_amf/families/`` and one import line in its ``__init__``.

Optional capabilities are ``None`` on families that do not have them (``loglik``: the strategy
then lets each demo inform its own task only; ``teacher_action_chunk``: distillation is refused
with a clear error and ``--amf.export=merge`` suggested).
"""

from __future__ import annotations

import contextlib
from typing import Callable, ClassVar

import torch
from torch import nn

from lerobot_amf.embeddings.base import Embedder
from lerobot_amf.embeddings.kinds import DEFAULT_LAYERS

Tensor = torch.Tensor

__all__ = ["PolicyFamily", "mean_over_real_steps", "mean_over_steps", "mean_over_valid_entries", "register_family",
           "registered_families"]


def mean_over_steps(err: Tensor, is_pad: Tensor | None) -> Tensor:
    """(N, T) per-step errors of action chunks -> (N,): the mean over the steps that are not padding
    (``is_pad`` (N, T) True, LeRobot's ``action_is_pad``; at least one step counted), the plain mean
    when ``is_pad`` is None."""
    if is_pad is None:
        return err.mean(-1)
    keep = (~is_pad.bool()).to(err.dtype)
    return (err * keep).sum(-1) / keep.sum(-1).clamp(min=1)


def mean_over_real_steps(err: Tensor, batch: dict[str, Tensor]) -> Tensor:
    """``mean_over_steps`` with the batch's own ``action_is_pad``, as the likelihood surrogates
    average a chunk's loss."""
    return mean_over_steps(err, batch.get("action_is_pad"))


def mean_over_valid_entries(err: Tensor, is_pad: Tensor | None) -> Tensor:
    """(N, T, A) per-entry losses -> (N,): each row's sum over its valid (step, dim) entries divided
    by their number (at least 1), padded steps (``is_pad`` (N, T) True) left out; the plain mean
    when ``is_pad`` is None. This is LeRobot 0.6.1's masked normalisation of a training loss
    (``ACTPolicy.forward``, ``DiffusionModel.compute_loss``, ``SmolVLAPolicy.forward``:
    ``sum(loss·mask) / max(1, valid steps · A)``) for a batch of one state, so that the gradient of
    a row is the gradient of the training loss of that state alone. Every valid step has all A
    entries, so it is ``mean_over_steps`` of the per-step means."""
    return mean_over_steps(err.mean(-1), is_pad)


class PolicyFamily:
    """One family of LeRobot policies (e.g. diffusion; the flow heads smolvla / pi0 / pi05).

    types: the LeRobot policy type names (``policy.config.type`` / ``policy.name``) it serves.
    embedder_class: its ``Embedder`` subclass (loss-gradient embedding of its action head).
    lora_targets: peft target-module regex for ``--amf.isolation=lora`` when the user passes no
        ``--peft.target_modules``; None = LeRobot's own default for the policy.
    head_module: dotted name of the module copied per partition for ``--amf.isolation=head``.
    kernel_layers: the weight layers the amf kernel differentiates when
        ``--amf.selection.kernel_layers`` is not set (counted from the output; chosen by measurement).
    loglik(policy, batch, n_draws, seed) -> (B,) float32 CPU: a per-sample log-likelihood
        surrogate of the batch's action chunks, for the importance weights (docs/method.md,
        "Importance weights and effective sample size"); None when the family has none.
    teacher_action_chunk(policy, batch) -> (B, horizon, A): the policy's own action chunk for a
        preprocessed batch, the distillation target; None where no teacher is built.
    observations_encoded_once(policy): a context in which ``loglik`` calls on one batch of frames
        (the same observation tensors, e.g. conditioned on several instructions) encode the
        observations once; the default does nothing.
    """

    types: ClassVar[tuple[str, ...]] = ()
    embedder_class: ClassVar[type[Embedder]]
    lora_targets: ClassVar[str | None] = None
    head_module: ClassVar[str]
    kernel_layers: ClassVar[int] = DEFAULT_LAYERS
    loglik: Callable[..., Tensor] | None = None
    teacher_action_chunk: Callable[..., Tensor] | None = None

    @property
    def name(self) -> str:
        return self.types[0]

    def observations_encoded_once(self, policy: nn.Module):
        return contextlib.nullcontext()

    def embedder(self, policy: nn.Module, **kwargs) -> Embedder:
        """The family's embedder for ``policy`` (kwargs: ``Embedder`` arguments and the family's own)."""
        return self.embedder_class(policy, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(types={self.types})"


_REGISTRY: dict[str, PolicyFamily] = {}


def register_family(cls: type[PolicyFamily]) -> type[PolicyFamily]:
    """Class decorator: serve ``cls.types`` with one instance of ``cls``."""
    if not cls.types:
        raise ValueError(f"{cls.__name__} names no LeRobot policy types")
    family = cls()
    for policy_type in cls.types:
        if policy_type in _REGISTRY:
            raise ValueError(f"policy type {policy_type!r} is already served by {_REGISTRY[policy_type]!r}")
        _REGISTRY[policy_type] = family
    return cls


def registered_families() -> dict[str, PolicyFamily]:
    """Policy type -> family, in registration order (a copy)."""
    return dict(_REGISTRY)
