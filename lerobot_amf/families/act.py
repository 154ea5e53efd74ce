"""LeRobot's ``ACTPolicy``: its loss-gradient embedding (L1 loss, sub-gradient), distillation
teacher (the decoder's own chunk), LoRA targets and head. No likelihood surrogate yet (ACT's
L1 loss is not a density): the amf strategy lets each demo inform its own task only.

Embedding. Last layer: ``policy.model.action_head`` (``nn.Linear(dim_model, A)``), applied at each of
the S = ``chunk_size`` decoder positions; the decoder runs sequence-first, so only the head is
differentiated. The policy runs in eval mode, so the VAE encoder is skipped and the latent is zero
(ACT's inference path): ŷ (B, S, A) is the policy's own action chunk. The loss of a state is
LeRobot 0.6.1's ``ACTPolicy.forward`` L1 term for a batch of that state alone (the KL term does not
touch the action head), so φ is the gradient of the training loss:

    L = Σ_{t,a} m_t |y*_{t,a} − ŷ_{t,a}| / N,   dL/dŷ = m_t sign(ŷ − y*) / N,   N = max(1, A·Σ_t m_t),

the mean over the valid (unpadded) entries, with the sub-gradient sign(0) = 0 (what autograd
uses). In a batch, ``forward`` divides by the batch's valid count, i.e. weighs each state's L by
its share of the valid steps; a state's embedding does not depend on the rest of its batch.

Targets y* (``Embedder.embed(batch, target=...)``):
- ``"expert"``: the dataset action chunk ``batch["action"]`` (B, S, A), m_t = 0 on the steps
  ``batch["action_is_pad"]`` (B, S) marks (all m_t = 1 without it);
- ``"self"`` (with y* = ŷ the L1 sub-gradient is identically zero, so the own prediction cannot
  be used as is): y*_k = ŷ + ``pseudo_noise`` · ξ_k for K = ``n_draws`` fixed seeded
  ξ_k ~ N(0, I) (S, A), the same for every state, averaged over k; no padding mask (the target
  is a full chunk). Then sign(ŷ − y*_k) = −sign(ξ_k) whatever ``pseudo_noise`` > 0 is: the
  embedding is Σ_t s_t ⊗ [h_t, 1] with fixed random signs s_t = −mean_k sign(ξ_k,t), a fixed
  random linear read-out of the decoder features, which is what the L1 geometry gives around
  the policy's own action.
"""

from __future__ import annotations

import torch
from lerobot.utils.constants import ACTION, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE
from torch import nn

from lerobot_amf.embeddings.base import Embedder, running_module
from lerobot_amf.families.base import PolicyFamily, mean_over_valid_entries, register_family

Tensor = torch.Tensor

__all__ = ["ACTEmbedder", "ACTFamily"]


def action_head_layers(policy: nn.Module) -> list[nn.Module]:
    return [running_module(policy.model.action_head)]


def prepare_batch(policy: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Observations in the layout ``ACT.forward`` expects (last step if a time axis is given)."""
    cfg = policy.config
    out = {}
    if OBS_STATE in batch:
        s = batch[OBS_STATE]
        out[OBS_STATE] = s[:, -1] if s.ndim == 3 else s
    if cfg.env_state_feature:
        e = batch[OBS_ENV_STATE]
        out[OBS_ENV_STATE] = e[:, -1] if e.ndim == 3 else e
    if cfg.image_features:
        out[OBS_IMAGES] = [batch[k][:, -1] if batch[k].ndim == 5 else batch[k] for k in cfg.image_features]
    if OBS_STATE not in out:  # ACT reads the device off observation.state
        ref = out.get(OBS_ENV_STATE, out.get(OBS_IMAGES, [None])[0])
        out[OBS_STATE] = torch.zeros(ref.shape[0], 0, device=ref.device)
    return out


class ACTEmbedder(Embedder):
    family = "act"
    loss_name = "l1_subgradient"

    def __init__(self, policy: nn.Module, pseudo_noise: float = 0.1, **kernel):
        if not pseudo_noise > 0:
            raise ValueError("pseudo_noise must be positive")
        super().__init__(policy, **kernel)
        cfg = self.policy.config
        self.config = cfg
        self.chunk_size = int(cfg.chunk_size)
        self.action_dim = int(cfg.action_feature.shape[0])
        self.pseudo_noise = float(pseudo_noise)
        gen = self.draw_generator()
        self.xi = torch.randn((self.n_draws, self.chunk_size, self.action_dim), generator=gen)  # (K, S, A)

    head_layers = staticmethod(action_head_layers)

    def prepare_batch(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return prepare_batch(self.policy, batch)

    def _row_losses(self, batch: dict[str, Tensor], target: str) -> tuple[Tensor, int]:
        y_hat, _ = self.policy.model(self.prepare_batch(batch))  # (B, S, A)
        if target == "expert":
            y = batch[ACTION].to(y_hat.dtype)
            if y.shape != y_hat.shape:
                raise ValueError(f"action has shape {tuple(y.shape)}, the policy predicts {tuple(y_hat.shape)}")
            return mean_over_valid_entries((y_hat - y).abs(), batch.get("action_is_pad")), 1
        xi = self.xi.to(y_hat.device, y_hat.dtype)  # (K, S, A)
        y_star = y_hat.detach().unsqueeze(1) + self.pseudo_noise * xi.unsqueeze(0)  # (B, K, S, A)
        # the draws share one forward pass: their mean loss has the mean of their gradients
        return (y_hat.unsqueeze(1) - y_star).abs().mean(dim=(2, 3)).mean(dim=1), 1

    def record(self) -> dict:
        return {**super().record(), "pseudo_noise": self.pseudo_noise}


def decoded_action_chunk(policy: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """The decoder's own action chunk (normalised) for a preprocessed batch (the distillation
    teacher; the policy is in eval mode there, so the latent is zero)."""
    actions, _ = policy.model(prepare_batch(policy, batch))
    return actions


@register_family
class ACTFamily(PolicyFamily):
    types = ("act",)
    embedder_class = ACTEmbedder
    # The action head and the decoder's feed-forward and attention output projections.
    lora_targets = r"model\.(action_head|decoder\..*\.(linear1|linear2|out_proj))"
    head_module = "model.action_head"

    def embedder(self, policy: nn.Module, target_steps: int | None = None, **kwargs) -> ACTEmbedder:
        """``target_steps`` (denoising steps of a pseudo-target) does not apply: ACT predicts its
        chunk in one pass, and its pseudo-target is the demo's action or a perturbed prediction."""
        return ACTEmbedder(policy, **kwargs)

    teacher_action_chunk = staticmethod(decoded_action_chunk)
