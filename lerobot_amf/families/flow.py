"""Flow-matching action experts: LeRobot's ``SmolVLAPolicy``, ``PI0Policy`` and ``PI05Policy``.
Their loss-gradient embedding, likelihood surrogate (``flow_matching_loglik``), distillation
teacher (``sampled_action_chunk``) and head module; LoRA targets are LeRobot's own defaults.

The embedding is the gradient of the policy's own training loss for one state, so the loss here
is the one each policy's ``forward`` returns for a batch of that state alone (LeRobot 0.6.1:
``SmolVLAPolicy.forward``, ``PI0Policy.forward``, ``PI05Policy.forward`` around their
``model.forward``), halved and averaged over K fixed (noise, time) draws instead of one random one:

    L = (1/K) Σ_k ½ · Σ_{t, a<A} m_t (v_k − u_k)² / max(1, A · Σ_t m_t),
    x_t = t_k·noise_k + (1 − t_k)·a,   u_k = noise_k − a,   v_k = model's velocity at (x_t, t_k).

A is the real action dim: every one of those ``forward``s truncates its loss to it, so the
padded rows of ``action_out_proj`` are not part of φ. m_t masks ``action_is_pad`` steps where the
policy's ``forward`` does (``FlowPlumbing.masks_padding``: SmolVLA yes, pi0 / pi05 no) and only for
the expert target; otherwise m_t = 1 and the quotient is the plain mean. a is the frame's expert
chunk zero-padded to ``max_action_dim`` (target "expert", as ``prepare_action`` pads it) or the
pseudo-target a* (target "self"). The draws are K = ``n_draws`` noises (chunk, max_action_dim) and
times from the policy's own training time law, seeded with ``seed + DRAW_SEED_OFFSET`` and the
same for every state (common random numbers), so a state's embedding does not depend on its batch.

a* (target "self") is the policy's own action: ``target_steps`` Euler steps of its velocity from one
fixed seeded noise, each through ``model.forward`` with action = noise = x (so x_t = x); the default,
one step, is a* = n₀ − v(n₀, 1). ``target_steps=None`` calls the policy's own
``model.sample_actions(noise=n₀)``. Padded dims of a* are zero, as the training data's are.

Tested against autograd of the policy's own ``forward`` on a real tiny SmolVLA
(``tests/test_smolvla.py``, built offline by ``benchmarks/tiny_smolvla.py``). pi0 / pi05 cannot be
made small: their configs accept only the ``gemma_300m`` / ``gemma_2b`` variants, the vision tower
and 257,152-token vocabulary are fixed, and only ``gemma_2b`` runs (4B parameters). So their numbers
are tested on stand-ins with their loss convention, and LeRobot's own policies only on the meta
device, for shapes (``tests/test_embeddings.py``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from lerobot.utils.constants import ACTION, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE
from torch import nn

from lerobot_amf.embeddings.base import Embedder, capture_io, eval_mode, running_module, unwrap_policy
from lerobot_amf.families.base import PolicyFamily, mean_over_real_steps, mean_over_valid_entries, register_family

Tensor = torch.Tensor

__all__ = ["FLOW_TYPES", "FlowEmbedder", "FlowFamily", "flow_matching_loglik", "sampled_action_chunk",
           "smolvla_images_encoded_once"]


# ---- per-family plumbing -------------------------------------------------------------------
def _smolvla_inputs(policy, batch) -> tuple:
    if getattr(policy.config, "adapt_to_pi_aloha", False):
        batch = dict(batch)
        batch[OBS_STATE] = batch[OBS_STATE].clone()  # _prepare_batch edits the state in place
        batch = policy._prepare_batch(batch)
    images, img_masks = policy.prepare_images(batch)
    state = policy.prepare_state(batch)
    return (images, img_masks, batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK], state)


def _pi0_inputs(policy, batch) -> tuple:
    images, img_masks = policy._preprocess_images(batch)
    state = policy.prepare_state(batch)
    return (images, img_masks, batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK], state)


def _pi05_inputs(policy, batch) -> tuple:
    images, img_masks = policy._preprocess_images(batch)
    return (images, img_masks, batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK])


def _fixed_time(_cfg) -> tuple[float, float, float, float]:
    return (1.5, 1.0, 0.999, 0.001)  # VLAFlowMatching.sample_time


def _config_time(cfg) -> tuple[float, float, float, float]:
    return (
        float(cfg.time_sampling_beta_alpha),
        float(cfg.time_sampling_beta_beta),
        float(cfg.time_sampling_scale),
        float(cfg.time_sampling_offset),
    )


def _expert_layers_at(*path: str) -> Callable[[Any], list]:
    """The action expert's transformer layers, found at ``policy.<path>`` (none where absent)."""
    def layers(policy) -> list:
        module = policy
        for name in path:
            module = getattr(module, name, None)
            if module is None:
                return []
        return list(module)
    return layers


def _smolvla_drawn_losses(model, inputs: tuple, actions: Tensor, noise: Tensor, time: Tensor, k: int) -> Tensor:
    """``model.forward``'s per-element losses on the inputs repeated k times (rows draw-major),
    with the prefix (images, language, state) run through the VLM once instead of k times.

    As ``VLAFlowMatching.sample_actions`` does: the prefix fills a ``transformers.DynamicCache``,
    then the action expert runs through ``denoise_step``, which appends its keys and values to the
    cache and crops them off again. The cache is tiled draw-major with ``batch_select_indices``
    (``batch_repeat_interleave`` would put the k copies of a state next to each other). The prefix
    attends only to itself, so its keys and values are those of the joint forward and the losses
    equal ``model.forward``'s on the repeated inputs to float rounding (tests/test_smolvla.py). The
    prefix carries no gradient: the kernel's layers are the expert's. ``denoise_step`` reads the
    cache only when ``config.use_cache`` is set; without it the repeated forward runs."""
    from lerobot.policies.common.vla_utils import make_att_2d_masks  # imports transformers

    if not getattr(model.config, "use_cache", True):
        return model.forward(*_repeat(inputs, k), _repeat(actions, k), noise=noise, time=time)
    images, img_masks, lang_tokens, lang_masks, state = inputs
    with torch.no_grad():
        embs, pad, att = model.embed_prefix(images, img_masks, lang_tokens, lang_masks, state=state)
        _, cache = model.vlm_with_expert.forward(attention_mask=make_att_2d_masks(pad, att),
                                                 position_ids=torch.cumsum(pad, dim=1) - 1, past_key_values=None,
                                                 inputs_embeds=[embs, None], use_cache=True)
    cache.batch_select_indices(torch.arange(pad.shape[0], device=pad.device).repeat(k))
    actions = _repeat(actions, k)
    t = time[:, None, None]
    v_t = model.denoise_step(prefix_pad_masks=_repeat(pad, k), past_key_values=cache,
                             x_t=t * noise + (1 - t) * actions, timestep=time)
    return F.mse_loss(noise - actions, v_t.float(), reduction="none")


@dataclass(frozen=True)
class FlowPlumbing:
    """What differs between the flow policy types: how each builds its model inputs, draws its
    training times, where its action expert's layers are, and whether its ``forward`` masks padded
    action steps out of the loss (LeRobot 0.6.1: ``SmolVLAPolicy.forward`` does, ``PI0Policy`` /
    ``PI05Policy.forward`` do not). ``drawn_losses``, where known, gives the training losses of k
    draws per state with the observations encoded once (else the model's forward runs on k copies);
    ``observations_encoded_once``, where known, is a context sharing image encodings across calls."""

    inputs: Callable[[Any, dict], tuple]  # model inputs before (actions, noise, time)
    time_distribution: Callable[[Any], tuple[float, float, float, float]]  # alpha, beta, scale, offset
    expert_layers: Callable[[Any], list]  # the action expert's transformer layers, in forward order
    masks_padding: bool
    drawn_losses: Callable[..., Tensor] | None = None  # (model, inputs, actions, noise, time, k)
    observations_encoded_once: Callable[[nn.Module], Any] | None = None


@contextlib.contextmanager
def smolvla_images_encoded_once(policy: nn.Module):
    """SmolVLA resizes and encodes (vision tower and connector) each camera's images inside every
    forward. amf's likelihood pass scores one chunk of frames under every instruction, and only
    the language changes, so within this block the images of the batch last seen are prepared
    and encoded once. Keyed by the identity of the batch's own image tensors, which the block
    holds (an id is not reused while its tensor lives); only the last batch is kept, so memory is
    one chunk's. For no-grad passes: the encoding is shared, not recomputed per graph."""
    p = unwrap_policy(policy)
    vlm = p.model.vlm_with_expert
    prepare, embed = p.prepare_images, vlm.embed_image
    held: dict = {"key": None}

    def prepare_images(batch):
        names = [k for k in p.config.image_features if k in batch]
        names += [f"{k}_padding_mask" for k in names if f"{k}_padding_mask" in batch]
        key = tuple((name, id(batch[name])) for name in names)
        if key != held["key"]:
            held.update(key=key, sources=[batch[name] for name in names], prepared=prepare(batch), encoded={})
        return held["prepared"]

    def embed_image(image):
        if held["key"] is None or not any(image is img for img in held["prepared"][0]):
            return embed(image)
        if id(image) not in held["encoded"]:
            held["encoded"][id(image)] = embed(image)
        return held["encoded"][id(image)]

    p.prepare_images, vlm.embed_image = prepare_images, embed_image
    try:
        yield
    finally:
        del p.prepare_images, vlm.embed_image  # the instance attributes: the class's methods again


FLOW_TYPES: dict[str, FlowPlumbing] = {
    "smolvla": FlowPlumbing(_smolvla_inputs, _fixed_time,
                            _expert_layers_at("model", "vlm_with_expert", "lm_expert", "layers"),
                            masks_padding=True, drawn_losses=_smolvla_drawn_losses,
                            observations_encoded_once=smolvla_images_encoded_once),
    "pi0": FlowPlumbing(_pi0_inputs, _config_time,
                        _expert_layers_at("model", "paligemma_with_expert", "gemma_expert", "model", "layers"),
                        masks_padding=False),
    "pi05": FlowPlumbing(_pi05_inputs, _config_time,
                         _expert_layers_at("model", "paligemma_with_expert", "gemma_expert", "model", "layers"),
                         masks_padding=False),
}


def action_head_layers(policy: nn.Module) -> list[nn.Module]:
    """The flow head's weight layers in forward order: each action-expert layer's MLP output
    projection (``mlp.down_proj``; the expert runs on the action tokens), then ``action_out_proj``.
    ``--amf.selection.kernel_layers=k`` takes the last k: 1 = the output projection alone."""
    spec = FLOW_TYPES.get(getattr(policy, "name", None))
    expert = spec.expert_layers(policy) if spec is not None else []
    downs = [running_module(layer.mlp.down_proj) for layer in expert
             if isinstance(getattr(getattr(layer, "mlp", None), "down_proj", None), nn.Module)]
    return [*downs, running_module(policy.model.action_out_proj)]


def _repeat(x, k: int):
    if isinstance(x, Tensor):
        return x.repeat(k, *([1] * (x.ndim - 1)))
    if isinstance(x, (list, tuple)):
        return type(x)(_repeat(v, k) for v in x)
    return x


def _first_tensor(x) -> Tensor | None:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (list, tuple)):
        for v in x:
            t = _first_tensor(v)
            if t is not None:
                return t
    return None


class FlowEmbedder(Embedder):
    loss_name = "half_mse_flow_matching"

    def __init__(self, policy: nn.Module, family: str | None = None, target_steps: int | None = 1, **kernel):
        base = unwrap_policy(policy)
        family = family or getattr(base, "name", None)
        if family not in FLOW_TYPES:
            raise ValueError(f"unknown flow policy type {family!r}; supported: {sorted(FLOW_TYPES)}")
        if target_steps is not None and int(target_steps) < 1:
            raise ValueError(f"target_steps must be >= 1 or None, got {target_steps}")
        self.spec = FLOW_TYPES[family]
        self.family = family
        cfg = base.config
        self.config = cfg
        self.chunk_size = int(cfg.chunk_size)
        self.max_action_dim = int(cfg.max_action_dim)
        self.action_dim = min(int(cfg.output_features[ACTION].shape[0]), self.max_action_dim)
        self.target_steps = None if target_steps is None else int(target_steps)
        super().__init__(base, **kernel)
        if self.layer.weight.shape[0] != self.max_action_dim:
            raise ValueError(f"action_out_proj has {self.layer.weight.shape[0]} outputs, "
                             f"max_action_dim is {self.max_action_dim}")

        gen = self.draw_generator()
        shape = (self.chunk_size, self.max_action_dim)
        self.target_noise = torch.randn(shape, generator=gen)  # (chunk, Amax)
        self.noise = torch.randn((self.n_draws, *shape), generator=gen)  # (K, chunk, Amax)
        alpha, beta, scale, offset = self.spec.time_distribution(cfg)
        rng = np.random.default_rng(self.draw_seed)
        self.times = torch.from_numpy(rng.beta(alpha, beta, size=self.n_draws) * scale + offset).float()  # (K,)

    @property
    def model(self) -> nn.Module:
        return self.policy.model

    head_layers = staticmethod(action_head_layers)

    @property
    def grad_rows(self) -> int:
        return self.action_dim

    def model_inputs(self, batch: dict[str, Tensor]) -> tuple:
        return self.spec.inputs(self.policy, batch)

    def _velocity(self, inputs: tuple, x: Tensor, t: float) -> Tensor:
        """v(x, t) with x_t = x exactly (action = noise = x)."""
        time = torch.full((x.shape[0],), float(t), dtype=torch.float32, device=x.device)
        with capture_io([self.layer]) as (io,):
            self.model.forward(*inputs, x, noise=x, time=time)
        return io["output"]

    def _sample_target(self, inputs: tuple) -> Tensor:
        ref = _first_tensor(inputs)
        b, dev = ref.shape[0], self.device
        x = self.target_noise.to(dev).expand(b, -1, -1).contiguous()
        if self.target_steps is None:
            x = self.model.sample_actions(*inputs, noise=x).float()
        else:
            dt = -1.0 / self.target_steps
            for step in range(self.target_steps):
                v = self._velocity(inputs, x, 1.0 + step * dt)
                x = x + dt * v.float()
        x = x.clone()
        x[..., self.action_dim :] = 0.0
        return x

    @torch.no_grad()
    def pseudo_target(self, batch: dict[str, Tensor], inputs: tuple | None = None) -> Tensor:
        """a*: the policy's own action chunk (B, chunk, max_action_dim), padded dims zero: the loss
        target where no expert action exists (``inputs``: the batch's ``model_inputs``, when known)."""
        if inputs is None:
            inputs = self.model_inputs(self._to_device(batch))
        with eval_mode(self.policy):
            return self._sample_target(inputs)

    def _row_losses(self, batch: dict[str, Tensor], target: str) -> tuple[Tensor, int]:
        inputs = self.model_inputs(batch)
        is_pad = None
        if target == "expert":
            actions = batch[ACTION].float()  # (B, T, A), padded to max_action_dim as prepare_action does
            if actions.shape[1] != self.chunk_size:
                raise ValueError(f"action has {actions.shape[1]} steps, the policy trains on chunks of {self.chunk_size}")
            actions = F.pad(actions, (0, self.max_action_dim - actions.shape[-1]))
            if self.spec.masks_padding and "action_is_pad" in batch:
                is_pad = batch["action_is_pad"].repeat(self.n_draws, 1)
        else:
            actions = self.pseudo_target(batch, inputs)  # (B, T, Amax), a full chunk: nothing masked
        b, k, dev = actions.shape[0], self.n_draws, actions.device
        # Draw-major stacking: row k*B + i is (draw k, state i).
        noise = self.noise.to(dev).repeat_interleave(b, dim=0)
        time = self.times.to(dev).repeat_interleave(b)
        if self.spec.drawn_losses is not None:
            losses = self.spec.drawn_losses(self.model, inputs, actions, noise, time, k)
        else:
            losses = self.model.forward(*_repeat(inputs, k), actions.repeat(k, 1, 1), noise=noise, time=time)
        return 0.5 * mean_over_valid_entries(losses[..., : self.action_dim].float(), is_pad), k

    def record(self) -> dict:
        return {
            **super().record(),
            "target_steps": self.target_steps,
            "times": [float(t) for t in self.times],
        }


def _real_action_dim(policy) -> int:
    return min(int(policy.config.output_features[ACTION].shape[0]), int(policy.config.max_action_dim))


def flow_matching_loglik(policy: nn.Module, batch: dict[str, Tensor], n_draws: int, seed: int) -> Tensor:
    """Per-sample surrogate log π(a | s): minus the flow-matching loss of the batch's action chunks
    (``model.forward``'s, over the real action dims), averaged over ``n_draws`` (noise chunk, time)
    draws that are the same for every call with the same seed (common random numbers, so
    task-to-task differences are not noise). One draw is one noise chunk and one time, from the
    policy's own training time law, shared by the whole batch. ``action_is_pad`` steps are left out
    for every flow policy, pi0 / pi05 included although they train on them: they repeat the
    episode's last action, so they are not part of the demo whose likelihood this scores."""
    policy = unwrap_policy(policy)
    spec = FLOW_TYPES[policy.name]
    gen = torch.Generator().manual_seed(seed)
    alpha, beta, scale, offset = spec.time_distribution(policy.config)
    times = np.random.default_rng(seed).beta(alpha, beta, size=n_draws) * scale + offset
    a_dim, max_dim = _real_action_dim(policy), int(policy.config.max_action_dim)
    with eval_mode(policy), torch.no_grad():
        inputs = spec.inputs(policy, batch)
        actions = F.pad(batch[ACTION].float(), (0, max_dim - batch[ACTION].shape[-1]))
        total = torch.zeros(actions.shape[0])
        for k in range(n_draws):
            noise = torch.randn(actions.shape[1:], generator=gen).expand_as(actions).to(actions.device)
            time = torch.full((actions.shape[0],), float(times[k]), dtype=torch.float32, device=actions.device)
            err = policy.model.forward(*inputs, actions, noise=noise, time=time)[..., :a_dim].float().mean(-1)
            total += mean_over_real_steps(err, batch).cpu()
    return -total / n_draws


def sampled_action_chunk(policy: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """The policy's own action chunk (normalised, real action dims) from its sampler, for the
    observations of a preprocessed batch (the distillation teacher)."""
    policy = unwrap_policy(policy)
    inputs = FLOW_TYPES[policy.name].inputs(policy, batch)
    return policy.model.sample_actions(*inputs)[..., : _real_action_dim(policy)]


@register_family
class FlowFamily(PolicyFamily):
    types = tuple(FLOW_TYPES)
    embedder_class = FlowEmbedder
    lora_targets = None  # LeRobot's own defaults (the expert's q/v projections and action projections)
    head_module = "model.action_out_proj"
    # The output projection alone: on the tiny SmolVLA the last expert layer's MLP projection
    # added no participation ratio (3.21 -> 3.22) for 37x the raw coordinates
    # (benchmarks/results/flow_kernel_rank.json); --amf.selection.kernel_layers=2 takes it.
    kernel_layers = 1

    loglik = staticmethod(flow_matching_loglik)
    teacher_action_chunk = staticmethod(sampled_action_chunk)

    def observations_encoded_once(self, policy: nn.Module):
        share = FLOW_TYPES[unwrap_policy(policy).name].observations_encoded_once
        return contextlib.nullcontext() if share is None else share(policy)
