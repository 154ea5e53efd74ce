"""LeRobot's ``DiffusionPolicy`` (DDPM or DDIM, ε- or sample-prediction): its loss-gradient
embedding, denoising-loss likelihood surrogate, distillation teacher, LoRA targets and head.

The three share one set of pieces — observations in the model's layout (``prepare_batch``), the
global conditioning (``global_cond``), one denoising prediction on a noised chunk
(``denoise``) and its target (``denoising_target``) — so they compute exactly what training does.

Embedding. Layers: the UNet's weight layers counted from the output — ``final_conv[1]`` (a 1×1
``Conv1d``, C = down_dims[0] -> A), then ``final_conv[0]``'s 5-tap conv, then the last up block's.
The loss of a state is half LeRobot 0.6.1's ``DiffusionModel.compute_loss`` for a batch of that
state alone, with K fixed draws instead of one random one, so φ is the gradient of the training loss:

    L = (1/K) Σ_k ½ · Σ_{t,a} m_t ( ŷ_k − y_k )² / max(1, A·Σ_t m_t),
    ŷ_k = unet( add_noise(a, ε_k, τ_k), τ_k, global_cond ),   y_k = ε_k (epsilon) | a (sample),

with a the frame's own expert action chunk (target "expert"; m_t = 0 on ``action_is_pad`` steps when
the policy's ``do_mask_loss_for_padding`` is set: ``compute_loss`` then divides by the valid entries'
count) or the policy's own sample a* (target "self"; m_t = 1, the plain mean).
Draws: ε_k (horizon, A) ~ N(0, I) and τ_k ~ U{0, …, num_train_timesteps−1}, from a generator
seeded with ``seed + DRAW_SEED_OFFSET``; the same K draws for every state (common random
numbers), so a state's embedding does not depend on the rest of the batch. The noisy sample is
formed with the policy's own scheduler ``add_noise`` and the conditioning with its own
``_prepare_global_conditioning``, as in training.

Pseudo-target a* (target "self") — the policy's own action chunk: deterministic DDIM (η = 0) steps of the
policy's UNet from one fixed seeded noise (shared by all states), with the policy's own betas,
prediction type and clipping:
- ``target_steps=None``: the policy's own sampler. For a DDIM policy this is exactly its
  ``conditional_sample(noise=...)`` (tested); for a DDPM policy, whose sampler injects fresh noise
  of the batch's shape at every step (a state's target would depend on its batch position), the
  DDIM sampler of the same trained model over 10 steps (same marginals, no such noise).
- ``target_steps=k`` (the amf default is k = 1): a truncated DDIM trajectory — the fixed noise
  read as the noisy action at the timestep t₀ where ᾱ first drops below ``TARGET_START_ALPHA_BAR``
  (0.2), then k steps evenly spaced from t₀ to 0. Why not from the top timestep: with a cosine
  schedule ᾱ there is ~1e-7 and one ε-prediction step divides the network's error by √ᾱ (the
  estimate saturates at the clip range), while diffusers' "leading" spacing puts a single step at
  t = 0, which returns the noise itself. At ᾱ = 0.2 the input is still ~90 % noise and the error
  is amplified by at most √5; on the embedded default's trained generalist one such step lands
  as close to the policy's own 10-step sample from the same noise (median relative distance 0.28)
  as two of its 10-step samples from different noises are to each other (0.41).
So a self-target embedding costs 1 + K UNet passes at k = 1 (pseudo-target, then the draws),
an expert-target one K. A pseudo-target read from the draw's own pass would make the
residual vanish identically (the network agrees with itself), so two passes is the floor for a
state-dependent target.
With y = ε the gradient is not zero because a* is the policy's *sample*, not its one-step
prediction: the residual is how far the network's denoising of its own action is from exact.

``embed`` accepts observations with the time axis the dataset gives
(``observation.state`` (B, n_obs_steps, D)) or without it ((B, D), repeated n_obs_steps times as
the policy's queue does at an episode start); images likewise ((B, n_obs_steps, C, H, W) or
(B, C, H, W)); ``action`` (B, horizon, A) is the expert target.

Likelihood surrogate (importance weights): minus the masked denoising loss of the batch's own
action chunks, over seeded common (noise, timestep) draws. Teacher (distillation): the policy's
own sampler, ``conditional_sample``.
"""

from __future__ import annotations

import torch
from lerobot.utils.constants import ACTION, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE
from torch import nn

from lerobot_amf.embeddings.base import Embedder, eval_mode, unwrap_policy, weight_layers
from lerobot_amf.families.base import PolicyFamily, mean_over_real_steps, mean_over_valid_entries, register_family

Tensor = torch.Tensor

__all__ = ["DiffusionEmbedder", "DiffusionFamily"]

DEFAULT_DDPM_TARGET_STEPS = 10
# ᾱ at which a truncated pseudo-target trajectory starts (see the module docstring).
TARGET_START_ALPHA_BAR = 0.2


def _with_time(x: Tensor, n_obs_steps: int, feature_ndim: int, key: str) -> Tensor:
    """(B, n, *feat) as is; (B, *feat) repeated n times along a new axis 1."""
    if x.ndim == feature_ndim + 1:
        return x.unsqueeze(1).expand(x.shape[0], n_obs_steps, *x.shape[1:])
    if x.ndim != feature_ndim + 2:
        raise ValueError(f"{key}: expected {feature_ndim + 1} or {feature_ndim + 2} dims, got {tuple(x.shape)}")
    if x.shape[1] != n_obs_steps:
        raise ValueError(f"{key}: expected {n_obs_steps} observation steps on axis 1, got {tuple(x.shape)}")
    return x


# ---- pieces shared by the embedding, the likelihood surrogate and the teacher -----------------
def unet_layers(policy: nn.Module) -> list[nn.Module]:
    """The UNet's weight layers in forward order (through a ``torch.compile`` wrapper); the
    last is the output 1×1 conv ``final_conv[1]``, the one before it ``final_conv[0]``'s conv."""
    unet = policy.diffusion.unet
    return weight_layers(getattr(unet, "_orig_mod", unet))


def prepare_batch(policy: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Observations in the layout ``DiffusionModel`` expects (images stacked)."""
    cfg = policy.config
    n = int(cfg.n_obs_steps)
    out = {OBS_STATE: _with_time(batch[OBS_STATE], n, 1, OBS_STATE)}
    if cfg.env_state_feature:
        out[OBS_ENV_STATE] = _with_time(batch[OBS_ENV_STATE], n, 1, OBS_ENV_STATE)
    if cfg.image_features:
        imgs = [_with_time(batch[k], n, 3, k) for k in cfg.image_features]
        out[OBS_IMAGES] = torch.stack(imgs, dim=-4)
    return out


def global_cond(policy: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """The UNet's global conditioning (observation features), as in training."""
    return policy.diffusion._prepare_global_conditioning(prepare_batch(policy, batch))


def denoise(policy: nn.Module, clean: Tensor, eps: Tensor, timesteps: Tensor, cond: Tensor) -> Tensor:
    """The UNet's prediction on ``clean`` action chunks noised with ``eps`` at ``timesteps``."""
    model = policy.diffusion
    return model.unet(model.noise_scheduler.add_noise(clean, eps, timesteps), timesteps, global_cond=cond)


def denoising_target(policy: nn.Module, clean: Tensor, eps: Tensor) -> Tensor:
    """What the UNet is trained to predict: the noise (ε-prediction) or the clean chunk."""
    return eps if policy.config.prediction_type == "epsilon" else clean


def num_train_timesteps(policy: nn.Module) -> int:
    return int(policy.diffusion.noise_scheduler.config.num_train_timesteps)


def ddim_scheduler_like(config) -> "DDIMScheduler":  # noqa: F821
    """diffusers' ``DDIMScheduler`` with the settings of the policy's scheduler ``config`` that DDIM
    takes, the others at DDIM's defaults: what ``DDIMScheduler.from_config`` makes, without its
    search of every compatible scheduler class, which imports them all (SciPy included) and
    cost about 1 s the first time a process made an embedder."""
    import inspect

    from diffusers.schedulers.scheduling_ddim import DDIMScheduler

    takes = set(inspect.signature(DDIMScheduler.__init__).parameters) - {"self"}
    return DDIMScheduler(**{k: v for k, v in dict(config).items() if k in takes})


class DiffusionEmbedder(Embedder):
    family = "diffusion"
    loss_name = "half_mse_denoising"

    def __init__(self, policy: nn.Module, target_steps: int | None = None, **kernel):
        super().__init__(policy, **kernel)
        cfg = self.policy.config
        model = self.policy.diffusion
        self.config = cfg
        self.horizon = int(cfg.horizon)
        self.action_dim = int(cfg.action_feature.shape[0])
        self.prediction_type = cfg.prediction_type
        if self.prediction_type not in ("epsilon", "sample"):
            raise ValueError(f"unsupported prediction_type {self.prediction_type!r}")
        sched_cfg = model.noise_scheduler.config
        self.num_train_timesteps = num_train_timesteps(self.policy)
        # A private DDIM scheduler (set_timesteps mutates state) with the policy's own config.
        self.sampler = ddim_scheduler_like(sched_cfg)
        if target_steps is None:
            is_ddim = cfg.noise_scheduler_type == "DDIM"
            self.sampler.set_timesteps(model.num_inference_steps if is_ddim else DEFAULT_DDPM_TARGET_STEPS)
            self.target_timesteps = [int(t) for t in self.sampler.timesteps]
        else:
            if int(target_steps) < 1:
                raise ValueError(f"target_steps must be >= 1, got {target_steps}")
            alpha_bar = self.sampler.alphas_cumprod
            below = torch.nonzero(alpha_bar < TARGET_START_ALPHA_BAR)
            t0 = int(below[0]) if len(below) else self.num_train_timesteps - 1
            k = int(target_steps)
            self.target_timesteps = sorted({round(t0 - i * (t0 + 1) / k) for i in range(k)}, reverse=True)
        self.target_steps = target_steps if target_steps is None else int(target_steps)

        gen = self.draw_generator()
        shape = (self.horizon, self.action_dim)
        self.target_noise = torch.randn(shape, generator=gen)  # (horizon, A)
        self.eps = torch.randn((self.n_draws, *shape), generator=gen)  # (K, horizon, A)
        self.timesteps = torch.randint(0, self.num_train_timesteps, (self.n_draws,), generator=gen)  # (K,)

    head_layers = staticmethod(unet_layers)

    def global_cond(self, batch: dict[str, Tensor]) -> Tensor:
        return global_cond(self.policy, batch)

    def _sample_target(self, global_cond: Tensor) -> Tensor:
        """DDIM (η = 0) along ``target_timesteps``, the update of diffusers' ``DDIMScheduler.step``."""
        unet = self.policy.diffusion.unet
        cfg = self.sampler.config
        alpha_bar = self.sampler.alphas_cumprod
        b = global_cond.shape[0]
        sample = self.target_noise.to(global_cond.device, global_cond.dtype).expand(b, -1, -1).contiguous()
        steps = self.target_timesteps
        for i, t in enumerate(steps):
            out = unet(sample, torch.full((b,), t, dtype=torch.long, device=sample.device), global_cond=global_cond)
            a_t = float(alpha_bar[t])
            a_prev = float(alpha_bar[steps[i + 1]]) if i + 1 < len(steps) else float(self.sampler.final_alpha_cumprod)
            if self.prediction_type == "epsilon":
                x0, eps = (sample - (1 - a_t) ** 0.5 * out) / a_t**0.5, out
            else:
                x0, eps = out, (sample - a_t**0.5 * out) / (1 - a_t) ** 0.5
            if cfg.clip_sample:
                x0 = x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
            sample = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps
        return sample

    @torch.no_grad()
    def pseudo_target(self, batch: dict[str, Tensor], global_cond: Tensor | None = None) -> Tensor:
        """a*: the policy's own action chunk (B, horizon, A) for each state: the loss target where
        no expert action exists (``global_cond``: the batch's, when already computed)."""
        if global_cond is None:
            global_cond = self.global_cond(self._to_device(batch))
        with eval_mode(self.policy):
            return self._sample_target(global_cond)

    def _row_losses(self, batch: dict[str, Tensor], target: str) -> tuple[Tensor, int]:
        gc = self.global_cond(batch)  # (B, G)
        b, k = gc.shape[0], self.n_draws
        is_pad = None
        if target == "expert":
            clean = batch[ACTION].to(gc.dtype)  # (B, T, A), the demo's own chunk
            if clean.shape[1:] != (self.horizon, self.action_dim):
                raise ValueError(f"action has shape {tuple(clean.shape)}, the policy trains on "
                                 f"(B, {self.horizon}, {self.action_dim})")
            if self.config.do_mask_loss_for_padding and "action_is_pad" in batch:
                is_pad = batch["action_is_pad"].repeat(k, 1)  # masked as compute_loss masks it
        else:
            clean = self.pseudo_target(batch, gc)  # (B, T, A)
        dev, dt = clean.device, clean.dtype
        # K draws stacked along the batch, draw-major: row k*B + i is (draw k, state i).
        eps = self.eps.to(dev, dt).repeat_interleave(b, dim=0)  # (K*B, T, A)
        ts = self.timesteps.to(dev).repeat_interleave(b)  # (K*B,)
        clean = clean.repeat(k, 1, 1)
        err = (denoise(self.policy, clean, eps, ts, gc.repeat(k, 1)) - denoising_target(self.policy, clean, eps)) ** 2
        return 0.5 * mean_over_valid_entries(err, is_pad), k  # ½ · compute_loss of the state alone

    def record(self) -> dict:
        return {
            **super().record(),
            "noise_scheduler": self.config.noise_scheduler_type,
            "prediction_type": self.prediction_type,
            "pseudo_target": f"ddim_eta0_from_fixed_noise_timesteps_{'_'.join(map(str, self.target_timesteps))}",
            "timesteps": [int(t) for t in self.timesteps],
        }


# ---- likelihood surrogate and teacher -----------------------------------------------------------
@torch.no_grad()
def denoising_loglik(policy: nn.Module, batch: dict[str, Tensor], n_draws: int, seed: int) -> Tensor:
    """Per-sample ELBO surrogate log π(a | s): minus the denoising loss of the batch's action
    chunks (``action_is_pad`` steps masked out), averaged over ``n_draws`` (noise, timestep)
    draws that are the same for every call with the same seed (common random numbers, so
    task-to-task differences are not noise). One draw is one noise chunk and one timestep
    shared by the whole batch."""
    policy = unwrap_policy(policy)
    gen = torch.Generator().manual_seed(seed)
    with eval_mode(policy):
        cond = global_cond(policy, batch)
        actions = batch[ACTION]
        total = torch.zeros(actions.shape[0])
        for _ in range(n_draws):
            eps = torch.randn(actions.shape[1:], generator=gen).expand_as(actions).to(actions.device)
            t = int(torch.randint(0, num_train_timesteps(policy), (1,), generator=gen))
            ts = torch.full((actions.shape[0],), t, dtype=torch.long, device=actions.device)
            pred = denoise(policy, actions, eps, ts, cond)
            err = ((pred - denoising_target(policy, actions, eps)) ** 2).mean(dim=-1)
            total += mean_over_real_steps(err, batch).cpu()
    return -total / n_draws


def sampled_action_chunk(policy: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """The policy's own full-horizon action chunk (normalised) from its sampler, for the
    observations of a preprocessed batch (the distillation teacher)."""
    cond = global_cond(policy, batch)
    return policy.diffusion.conditional_sample(cond.shape[0], global_cond=cond)


@register_family
class DiffusionFamily(PolicyFamily):
    types = ("diffusion",)
    embedder_class = DiffusionEmbedder
    # The UNet noise predictor is diffusion's action head: its convolutions, FiLM encoders and output.
    lora_targets = r"diffusion\.unet\..*(cond_encoder\.1|conv[12]\.block\.0|final_conv\.0\.block\.0|final_conv\.1)"
    head_module = "diffusion.unet.final_conv"

    loglik = staticmethod(denoising_loglik)
    teacher_action_chunk = staticmethod(sampled_action_chunk)
