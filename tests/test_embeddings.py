"""Loss-gradient embeddings (docs/method.md, "Kernel: loss-gradient embeddings"): closed form vs
autograd of the policy's own training loss (``policy.forward``) on real tiny LeRobot policies
(diffusion, ACT), with and without padded action steps, and on flow-matching stand-ins for pi0 /
pi05, whose real policies run here only on the meta device (the real SmolVLA's is in
test_smolvla.py); the seeded JL projection."""

from __future__ import annotations

import dataclasses
import math
from unittest import mock

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
from lerobot.policies.diffusion import modeling_diffusion
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

from conftest import ACTION, ENV, STATE, diffusion_batch, features
from lerobot_amf.embeddings.kinds import DEFAULT_DIM, DEFAULT_DRAWS, DEFAULT_LAYERS
from lerobot_amf.embeddings.projection import RandomProjection
from lerobot_amf.families import family_of, kernel_embedder, make_embedder
from lerobot_amf.families.act import ACTEmbedder
from lerobot_amf.families.diffusion import DiffusionEmbedder
from lerobot_amf.families.flow import FlowEmbedder
from lerobot_amf.selection.config import AMFSelectionConfig

TOKENS, TOKEN_MASK = "observation.language.tokens", "observation.language.attention_mask"
REL_TOL = 1e-5


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


# ---- projection ----------------------------------------------------------------------------
def test_projection_deterministic_seeded_and_sized():
    x = torch.randn(5, 300)
    p0, p0b, p1 = RandomProjection(300, 64, seed=0), RandomProjection(300, 64, seed=0), RandomProjection(300, 64, seed=1)
    assert p0.dim == 64 and p0(x).shape == (5, 64)
    assert torch.equal(p0(x), p0b(x))
    assert not torch.allclose(p0(x), p1(x))
    assert p0.seed == 0 and p1.record()["projection_seed"] == 1
    ident = RandomProjection(40, 64, seed=3)
    y = torch.randn(2, 40)
    assert ident.identity and ident.dim == 40 and torch.equal(ident(y), y)
    with pytest.raises(ValueError):
        p0(torch.randn(2, 299))


def test_projection_preserves_inner_products():
    torch.manual_seed(0)
    x = torch.randn(12, 3000)
    proj = RandomProjection(3000, 1024, seed=7)
    px = proj(x)
    gram, pgram = x @ x.T, px @ px.T
    norms = x.norm(dim=1)
    # relative to |x||y|: the JL error has std ~ sqrt(2/d) ≈ 0.044 here
    err = (pgram - gram).abs() / torch.outer(norms, norms)
    assert err.max() < 0.25, err.max()
    ratio = px.norm(dim=1) / norms
    assert ((ratio > 0.85) & (ratio < 1.15)).all(), ratio


# ---- diffusion -----------------------------------------------------------------------------
def tiny_diffusion(scheduler: str, prediction: str, mask_padding: bool = False) -> DiffusionPolicy:
    torch.manual_seed(0)
    cfg = DiffusionConfig(
        **features(),
        down_dims=(16, 32),
        diffusion_step_embed_dim=16,
        n_obs_steps=2,
        horizon=16,
        n_action_steps=8,
        noise_scheduler_type=scheduler,
        prediction_type=prediction,
        num_inference_steps=3 if scheduler == "DDIM" else None,
        do_mask_loss_for_padding=mask_padding,
        device="cpu",
    )
    return DiffusionPolicy(cfg)


class _GivenDraws:
    """``torch`` as ``DiffusionModel.compute_loss`` sees it, except that its one ``torch.randn``
    (the noise) and ``torch.randint`` (the timesteps) return the given draw."""

    def __init__(self, eps: torch.Tensor, timesteps: torch.Tensor):
        self.eps, self.timesteps = eps, timesteps

    def randn(self, shape, device=None, **_):
        return self.eps.to(device).expand(shape).clone()

    def randint(self, low=0, high=None, size=None, device=None, **_):
        return self.timesteps.to(device).expand(size).clone()

    def __getattr__(self, name):
        return getattr(torch, name)


def diffusion_autograd(policy: DiffusionPolicy, emb: DiffusionEmbedder, state: dict, target: str) -> torch.Tensor:
    """Autograd of (1/K) Σ_k ½·``policy.forward(state)`` -- LeRobot's own training loss, its padding
    mask and normalisation included -- for one state w.r.t. the embedder's layers, with the k-th
    of the embedder's (noise, timestep) draws in place of compute_loss's random one; target "self":
    the action is the policy's own sample held fixed, nothing padded."""
    if target == "self":
        state = {**state, ACTION: emb.pseudo_target(state).detach(),
                 "action_is_pad": torch.zeros_like(state["action_is_pad"])}
    policy.eval()
    policy.zero_grad()
    losses = []
    for k in range(emb.n_draws):
        with mock.patch.object(modeling_diffusion, "torch", _GivenDraws(emb.eps[k : k + 1], emb.timesteps[k : k + 1])):
            losses.append(0.5 * policy.forward(state)[0])
    torch.stack(losses).mean().backward()
    return torch.cat([g for layer in emb.layers() for g in (layer.weight.grad.flatten(), layer.bias.grad)])


@pytest.mark.parametrize("scheduler, prediction, target, target_steps, layers, mask_padding", [
    ("DDPM", "epsilon", "self", None, 1, False), ("DDIM", "sample", "self", 1, 1, False),
    ("DDIM", "epsilon", "expert", 1, 3, False), ("DDPM", "sample", "expert", 1, 2, False),
    ("DDPM", "epsilon", "expert", 1, 2, True), ("DDIM", "sample", "self", 1, 1, True)])
def test_diffusion_closed_form_matches_autograd(scheduler, prediction, target, target_steps, layers, mask_padding):
    policy = tiny_diffusion(scheduler, prediction, mask_padding)
    emb = make_embedder(policy, dim=4096, seed=3, n_draws=3, layers=layers, target_steps=target_steps)
    assert isinstance(emb, DiffusionEmbedder)
    unet = policy.diffusion.unet
    expected_layers = [unet.up_modules[-1][1].conv2.block[0], unet.final_conv[0].block[0], unet.final_conv[1]]
    assert emb.layers() == expected_layers[-layers:]
    assert emb.raw_dim == sum(p.numel() for layer in emb.layers() for p in layer.parameters())
    assert emb.dim == emb.raw_dim  # identity projection
    batch = diffusion_batch()
    batch["action_is_pad"][0, 10:] = True  # padded steps: masked only where the policy masks them
    batch["action_is_pad"][2, 5:] = True
    phi = emb.embed(batch, target=target)
    assert phi.shape == (3, emb.raw_dim)
    for i in range(3):
        ref = diffusion_autograd(policy, emb, {k: v[i : i + 1] for k, v in batch.items()}, target)
        assert ref.norm() > 0
        assert rel_err(phi[i], ref) < REL_TOL, (scheduler, prediction, i, rel_err(phi[i], ref))
    # different states, different embeddings
    assert rel_err(phi[0], phi[1]) > 1e-3
    unpadded = emb.embed({**batch, "action_is_pad": torch.zeros_like(batch["action_is_pad"])}, target=target)
    assert torch.equal(unpadded[1], phi[1])
    assert torch.equal(unpadded[0], phi[0]) is not (mask_padding and target == "expert")


def test_diffusion_expert_target_is_the_batch_action_and_the_kinds_default():
    policy = tiny_diffusion("DDIM", "epsilon")
    batch = diffusion_batch()
    emb = make_embedder(policy, n_draws=2)
    assert torch.equal(emb.embed(batch), emb.embed(batch, target="expert"))
    assert not torch.allclose(emb.embed(batch, target="expert"), emb.embed(batch, target="self"))
    moved = {**batch, ACTION: batch[ACTION] + 0.5}
    assert not torch.allclose(emb.embed(moved), emb.embed(batch))  # the expert's action enters φ
    old = make_embedder(policy, kind="self_gradient", n_draws=2)
    assert torch.equal(old.embed(batch), old.embed(moved))  # the old kernel ignores it
    assert torch.allclose(old.embed(batch), emb.embed(batch, target="self"))
    with pytest.raises(ValueError, match="expert action"):
        emb.embed({k: v for k, v in batch.items() if k != ACTION})


def test_an_embedder_built_by_hand_is_the_kernel_amf_selects_with():
    # one kernel for selection and for clustered partitions; make_embedder's defaults are the strategy's
    sel = AMFSelectionConfig()
    assert (DEFAULT_DIM, DEFAULT_DRAWS, None) == (sel.embedding_dim, sel.n_draws, sel.kernel_layers)
    assert family_of("diffusion").kernel_layers == DEFAULT_LAYERS  # unset: the family's measured default
    policy = tiny_diffusion("DDIM", "epsilon")
    amf = kernel_embedder(policy, sel)
    by_hand = make_embedder(policy, target_steps=sel.pseudo_target_steps)
    assert amf.n_layers == 2 and amf.record() == by_hand.record()
    batch = diffusion_batch()
    assert torch.equal(amf.embed(batch), by_hand.embed(batch))
    other = kernel_embedder(policy, dataclasses.replace(sel, kernel_layers=1, n_draws=2, embedding_dim=16))
    assert (other.n_layers, other.n_draws, other.dim) == (1, 2, 16)


def test_diffusion_pseudo_target_is_the_policys_own_sample():
    policy = tiny_diffusion("DDIM", "epsilon")
    emb = make_embedder(policy, n_draws=2)
    batch = diffusion_batch(b=2)
    a_star = emb.pseudo_target(batch)
    noise = emb.target_noise.expand(2, -1, -1).contiguous()
    with torch.no_grad():
        gc = policy.diffusion._prepare_global_conditioning({STATE: batch[STATE], ENV: batch[ENV]})
        own = policy.diffusion.conditional_sample(2, global_cond=gc, noise=noise)
    assert torch.allclose(a_star, own, atol=1e-6)


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
def test_diffusion_one_step_pseudo_target_starts_at_alpha_bar_0_2(prediction):
    # The amf default: one DDIM step from the fixed noise read as x_t0, ᾱ_t0 the first below 0.2
    # (not diffusers' "leading" single step at t = 0, which returns the noise itself).
    policy = tiny_diffusion("DDIM", prediction)
    emb = make_embedder(policy, n_draws=1, target_steps=1)
    alpha_bar = policy.diffusion.noise_scheduler.alphas_cumprod
    (t0,) = emb.target_timesteps
    assert alpha_bar[t0] < 0.2 <= alpha_bar[t0 - 1]
    batch = diffusion_batch(b=2)
    z = emb.target_noise.expand(2, -1, -1)
    with torch.no_grad():
        gc = policy.diffusion._prepare_global_conditioning({STATE: batch[STATE], ENV: batch[ENV]})
        out = policy.diffusion.unet(z, torch.full((2,), t0), global_cond=gc)
    x0 = (z - (1 - alpha_bar[t0]).sqrt() * out) / alpha_bar[t0].sqrt() if prediction == "epsilon" else out
    assert torch.allclose(emb.pseudo_target(batch), x0.clamp(-1, 1), atol=1e-5)
    two = make_embedder(policy, n_draws=1, target_steps=2).target_timesteps
    assert two[0] == t0 and 0 <= two[1] < t0
    assert emb.record()["pseudo_target"] == f"ddim_eta0_from_fixed_noise_timesteps_{t0}"


def test_diffusion_embedding_is_per_state_and_accepts_single_observations():
    policy = tiny_diffusion("DDPM", "epsilon")
    emb = make_embedder(policy, dim=32, seed=0, n_draws=2, layers=2)
    batch = diffusion_batch(b=3)
    phi = emb.embed(batch)
    assert phi.shape == (3, 32) and emb.projection.matrix is not None  # raw 1364 -> 32
    alone = emb.embed({k: v[1:2] for k, v in batch.items()})
    assert torch.allclose(alone[0], phi[1], rtol=1e-4, atol=1e-6)
    # (B, D) observations are repeated n_obs_steps times, like the policy's queue at reset
    flat = {STATE: batch[STATE][:, -1], ENV: batch[ENV][:, -1]}
    rep = {STATE: batch[STATE][:, -1:].repeat(1, 2, 1), ENV: batch[ENV][:, -1:].repeat(1, 2, 1)}
    assert torch.allclose(emb.embed(flat, target="self"), emb.embed(rep, target="self"), atol=1e-6)
    # another seed: other draws and another projection
    assert not torch.allclose(make_embedder(policy, dim=32, seed=1, n_draws=2, layers=2).embed(batch), phi)
    assert emb.record()["seed"] == 0 and emb.record()["dim"] == 32


# ---- ACT -----------------------------------------------------------------------------------
def tiny_act(use_vae: bool) -> ACTPolicy:
    torch.manual_seed(0)
    cfg = ACTConfig(
        **features(),
        chunk_size=10,
        n_action_steps=10,
        dim_model=32,
        n_heads=2,
        dim_feedforward=64,
        n_encoder_layers=1,
        n_decoder_layers=1,
        latent_dim=8,
        use_vae=use_vae,
        device="cpu",
    )
    return ACTPolicy(cfg)


def act_batch(b=3, seed=2):
    g = torch.Generator().manual_seed(seed)
    pad = torch.zeros(b, 10, dtype=torch.bool)
    pad[0, 7:] = True
    pad[2, 4:] = True
    return {
        STATE: torch.randn(b, 39, generator=g),
        ENV: torch.randn(b, 50, generator=g),
        ACTION: torch.randn(b, 10, 4, generator=g),
        "action_is_pad": pad,
    }


@pytest.mark.parametrize("mode", ["expert", "self"])
def test_act_closed_form_matches_autograd(mode):
    policy = tiny_act(use_vae=False)
    emb = make_embedder(policy, seed=5, n_draws=3, layers=2, pseudo_noise=0.05)
    assert emb.layers() == [policy.model.action_head]  # the decoder runs sequence-first: head only
    assert isinstance(emb, ACTEmbedder)
    assert emb.raw_dim == 4 * 32 + 4
    batch = act_batch()
    phi = emb.embed(batch, target=mode)
    layer = policy.model.action_head
    policy.eval()
    for i in range(3):
        state = {k: v[i : i + 1] for k, v in batch.items()}
        policy.zero_grad()
        if mode == "expert":
            loss, _ = policy.forward(state)  # LeRobot's own masked L1 loss
        else:
            y_hat = policy.model(state)[0]
            targets = y_hat.detach() + 0.05 * emb.xi.unsqueeze(1)  # (K, 1, S, A)
            loss = torch.stack([F.l1_loss(y_hat, targets[k]) for k in range(emb.n_draws)]).mean()
        loss.backward()
        ref = torch.cat([layer.weight.grad.flatten(), layer.bias.grad])
        assert ref.norm() > 0
        assert rel_err(phi[i], ref) < REL_TOL, (mode, i, rel_err(phi[i], ref))
    if mode == "expert":  # padding changes the embedding
        unpadded = emb.embed({**batch, "action_is_pad": torch.zeros(3, 10, dtype=torch.bool)})
        assert torch.allclose(unpadded[1], phi[1]) and not torch.allclose(unpadded[0], phi[0])


def test_act_targets_and_eval_restoration():
    policy = tiny_act(use_vae=True)
    policy.train()
    emb = make_embedder(policy, dim=64, seed=0, n_draws=2)
    batch = act_batch()
    no_action = {STATE: batch[STATE], ENV: batch[ENV]}
    a, b = emb.embed(no_action, target="self"), emb.embed(no_action, target="self")
    assert torch.equal(a, b)  # eval mode inside: no VAE sampling, no dropout
    assert policy.training and policy.model.decoder.training  # flags restored
    assert all(p.requires_grad for p in policy.parameters())  # frozen only during the pass
    assert not torch.allclose(emb.embed(batch), a)
    with pytest.raises(ValueError, match="action"):
        emb.embed(no_action)


def test_last_layer_kind_is_mean_head_input():
    policy = tiny_act(use_vae=False)
    emb = make_embedder(policy, kind="last_layer")
    batch = act_batch()
    phi = emb.embed(batch)
    assert phi.shape == (3, 32) and emb.raw_dim == 32
    policy.eval()
    with torch.no_grad():
        y_hat = policy.model({STATE: batch[STATE], ENV: batch[ENV]})[0]
    head = policy.model.action_head
    # the head is affine, so it maps the mean input to the mean output
    assert torch.allclose(phi @ head.weight.T + head.bias, y_hat.mean(dim=1), atol=1e-5)
    diff = make_embedder(tiny_diffusion("DDIM", "sample"), kind="last_layer", n_draws=2)
    assert diff.embed(diffusion_batch()).shape == (3, 16)


# ---- flow matching: stand-ins for pi0 / pi05 (LeRobot builds them at >= 4B parameters only) ----
class _TinyExpert(nn.Module):
    """A small action expert with LeRobot's flow-matching forward/sample_actions convention."""

    def __init__(self, config, with_state: bool, width=24, vocab=11):
        super().__init__()
        self.config = config
        self.with_state = with_state
        self.lang = nn.Embedding(vocab, width)
        self.img = nn.Linear(3 * 4 * 4, width)
        self.state_proj = nn.Linear(config.max_state_dim, width)
        self.action_in_proj = nn.Linear(config.max_action_dim, width)
        self.action_time_mlp_in = nn.Linear(2 * width, width)
        self.body = nn.Sequential(nn.SiLU(), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.action_out_proj = nn.Linear(width, config.max_action_dim)

    def _split(self, args):
        if self.with_state:
            state, *rest = args
            return state, rest
        return None, list(args)

    def _expert(self, images, img_masks, tokens, masks, state, x_t, time):
        m = masks.float().unsqueeze(-1)
        ctx = (self.lang(tokens) * m).sum(1) / m.sum(1)
        for img, im in zip(images, img_masks, strict=True):
            ctx = ctx + self.img(img.flatten(1)) * im.float().unsqueeze(-1)
        if state is not None:
            ctx = ctx + self.state_proj(state)
        w = self.action_in_proj.out_features
        freq = torch.exp(-torch.arange(w // 2, dtype=torch.float32) / (w // 2) * math.log(100.0))
        temb = torch.cat([torch.sin(time[:, None] * freq), torch.cos(time[:, None] * freq)], dim=-1)
        a = self.action_in_proj(x_t)
        hid = self.action_time_mlp_in(torch.cat([a, temb[:, None].expand_as(a)], dim=-1)) + ctx[:, None]
        return self.body(hid)

    def forward(self, images, img_masks, tokens, masks, *args, noise=None, time=None):
        state, (actions,) = self._split(args)
        t = time[:, None, None]
        x_t = t * noise + (1 - t) * actions
        u_t = noise - actions
        v_t = self.action_out_proj(self._expert(images, img_masks, tokens, masks, state, x_t, time))
        return F.mse_loss(u_t, v_t, reduction="none")

    @torch.no_grad()
    def sample_actions(self, images, img_masks, tokens, masks, *args, noise=None, num_steps=None):
        state, _ = self._split(args)
        num_steps = num_steps or self.config.num_inference_steps
        dt = -1.0 / num_steps
        x_t = noise
        for step in range(num_steps):
            time = torch.full((x_t.shape[0],), 1.0 + step * dt)
            x_t = x_t + dt * self.action_out_proj(self._expert(images, img_masks, tokens, masks, state, x_t, time))
        return x_t


class _StandInConfig:
    chunk_size = 6
    max_action_dim = 8
    max_state_dim = 10
    num_inference_steps = 4
    time_sampling_beta_alpha = 1.5
    time_sampling_beta_beta = 1.0
    time_sampling_scale = 0.999
    time_sampling_offset = 0.001
    adapt_to_pi_aloha = False
    output_features = {ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(3,))}


def _pad(x, n):
    return F.pad(x, (0, n - x.shape[-1]))


def _images(batch):
    img = batch["observation.images.cam"]
    return [img * 2 - 1], [torch.ones(img.shape[0], dtype=torch.bool)]


class _Pi0StandIn(nn.Module):
    name = "pi0"

    def __init__(self):
        super().__init__()
        self.config = _StandInConfig()
        self.model = _TinyExpert(self.config, with_state=True)

    def _preprocess_images(self, batch):
        return _images(batch)

    def prepare_state(self, batch):
        return _pad(batch[STATE], self.config.max_state_dim)


class _Pi05StandIn(nn.Module):
    name = "pi05"

    def __init__(self):
        super().__init__()
        self.config = _StandInConfig()
        self.model = _TinyExpert(self.config, with_state=False)

    def _preprocess_images(self, batch):
        return _images(batch)


# SmolVLA itself is tested for real (tests/test_smolvla.py); pi0 / pi05 exist only at their real
# sizes (test_the_flow_embedder_fits_lerobots_own_pi0_and_pi05_on_the_meta_device).
STAND_INS = {"pi0": _Pi0StandIn, "pi05": _Pi05StandIn}


def flow_batch(b=3, seed=4):
    g = torch.Generator().manual_seed(seed)
    masks = torch.ones(b, 5, dtype=torch.bool)
    masks[0, 3:] = False
    pad = torch.zeros(b, 6, dtype=torch.bool)
    pad[1, 4:] = True  # pi0 / pi05 train on padded steps too (their forward does not mask them)
    return {
        "action_is_pad": pad,
        STATE: torch.randn(b, 5, generator=g),
        "observation.images.cam": torch.rand(b, 3, 4, 4, generator=g),
        TOKENS: torch.randint(0, 11, (b, 5), generator=g),
        TOKEN_MASK: masks,
        ACTION: torch.randn(b, 6, 3, generator=g),
    }


def flow_inputs(policy, batch):
    """The model inputs as each family's policy builds them (written out independently)."""
    imgs, im = policy._preprocess_images(batch)
    inputs = (imgs, im, batch[TOKENS], batch[TOKEN_MASK])
    return inputs if policy.name == "pi05" else (*inputs, policy.prepare_state(batch))


@pytest.mark.parametrize("target", ["expert", "self"])
@pytest.mark.parametrize("family", ["pi0", "pi05"])
def test_flow_closed_form_matches_autograd(family, target):
    torch.manual_seed(0)
    policy = STAND_INS[family]()
    emb = make_embedder(policy, dim=2048, seed=2, n_draws=3)
    assert isinstance(emb, FlowEmbedder) and emb.family == family
    a_dim, width = 3, 24
    assert emb.raw_dim == a_dim * width + a_dim
    batch = flow_batch()
    phi = emb.embed(batch, target=target)
    assert phi.shape == (3, emb.raw_dim)
    layer = policy.model.action_out_proj
    for i in range(3):
        state = {k: v[i : i + 1] for k, v in batch.items()}
        a_star = F.pad(state[ACTION], (0, 5)) if target == "expert" else emb.pseudo_target(state).detach()
        inputs = flow_inputs(policy, state)
        policy.zero_grad()
        losses = [
            0.5 * policy.model(*inputs, a_star, noise=emb.noise[k : k + 1], time=emb.times[k : k + 1])[..., :a_dim].mean()
            for k in range(emb.n_draws)
        ]
        torch.stack(losses).mean().backward()
        assert layer.weight.grad[a_dim:].abs().max() == 0  # padded dims are outside the loss
        ref = torch.cat([layer.weight.grad[:a_dim].flatten(), layer.bias.grad[:a_dim]])
        assert ref.norm() > 0
        assert rel_err(phi[i], ref) < REL_TOL, (family, i, rel_err(phi[i], ref))


def test_flow_pseudo_target_is_the_policys_own_estimate():
    torch.manual_seed(0)
    policy = _Pi0StandIn()
    batch = flow_batch()
    inputs = flow_inputs(policy, batch)

    def own(steps):
        noise = FlowEmbedder(policy).target_noise.expand(3, -1, -1)
        out = policy.model.sample_actions(*inputs, noise=noise, num_steps=steps)
        out[..., 3:] = 0
        return out

    one = FlowEmbedder(policy).pseudo_target(batch)  # default: one-step estimate
    assert torch.allclose(one, own(1), atol=1e-6)
    assert torch.allclose(FlowEmbedder(policy, target_steps=4).pseudo_target(batch), own(4), atol=1e-5)
    assert torch.allclose(FlowEmbedder(policy, target_steps=None).pseudo_target(batch), own(None), atol=1e-6)
    times = FlowEmbedder(policy, n_draws=64).times
    assert times.min() >= 0.001 and times.max() <= 1.0 and times.std() > 0.1


@pytest.mark.parametrize("family", ["pi0", "pi05"])
def test_the_flow_embedder_fits_lerobots_own_pi0_and_pi05_on_the_meta_device(family):
    """LeRobot's real ``PI0Policy`` / ``PI05Policy`` (its own Gemma, the smallest variants it runs:
    4B parameters) built on the meta device, so no memory and no weights: the embedder finds their
    inputs, expert layers and output projection and runs both targets through them. Shapes only;
    the numbers are checked on the stand-ins above."""
    if family == "pi0":
        from lerobot.policies.pi0.configuration_pi0 import PI0Config as Config
        from lerobot.policies.pi0.modeling_pi0 import PI0Policy as Policy
    else:
        from lerobot.policies.pi05.configuration_pi05 import PI05Config as Config
        from lerobot.policies.pi05.modeling_pi05 import PI05Policy as Policy
    image = "observation.images.image"
    cfg = Config(input_features={image: PolicyFeature(FeatureType.VISUAL, (3, 224, 224)),
                                 STATE: PolicyFeature(FeatureType.STATE, (8,))},
                 output_features={ACTION: PolicyFeature(FeatureType.ACTION, (7,))},
                 device="cpu", dtype="float32", chunk_size=4, n_action_steps=4, num_inference_steps=2)
    cfg.device = "meta"
    with torch.device("meta"):
        policy = Policy(cfg)
        batch = {image: torch.rand(2, 3, 224, 224), STATE: torch.randn(2, 8),
                 TOKENS: torch.zeros(2, 10, dtype=torch.long), TOKEN_MASK: torch.ones(2, 10, dtype=torch.bool),
                 ACTION: torch.randn(2, 4, 7), "action_is_pad": torch.zeros(2, 4, dtype=torch.bool)}
        emb = make_embedder(policy, n_draws=2, layers=2)
        assert emb.layers() == [policy.model.paligemma_with_expert.gemma_expert.model.layers[-1].mlp.down_proj,
                                policy.model.action_out_proj]
        for target in ("expert", "self"):
            assert emb.raw(batch, target=target).shape == (2, emb.raw_dim)


# ---- dispatch ------------------------------------------------------------------------------
def test_make_embedder_rejects_unknown_families_and_kinds():
    class VQBeTLike(nn.Module):
        name = "vqbet"

    with pytest.raises(ValueError) as err:
        make_embedder(VQBeTLike())
    for fam in ("diffusion", "act", "smolvla", "pi0", "pi05"):
        assert fam in str(err.value)
    with pytest.raises(ValueError, match="kind"):
        make_embedder(_Pi05StandIn(), kind="hessian")


def test_image_observations_diffusion_and_act():
    torch.manual_seed(0)
    img_key = "observation.images.cam"
    feats = features()
    feats["input_features"][img_key] = PolicyFeature(type=FeatureType.VISUAL, shape=(3, 32, 32))
    g = torch.Generator().manual_seed(9)
    imgs = torch.rand(2, 2, 3, 32, 32, generator=g)
    batch = {STATE: torch.randn(2, 2, 39, generator=g), ENV: torch.randn(2, 2, 50, generator=g), img_key: imgs}
    diff = DiffusionPolicy(
        DiffusionConfig(
            **feats, down_dims=(16, 32), diffusion_step_embed_dim=16, n_obs_steps=2, horizon=16,
            n_action_steps=8, crop_shape=None, pretrained_backbone_weights=None, use_group_norm=True,
            use_separate_rgb_encoder_per_camera=False, noise_scheduler_type="DDIM", num_inference_steps=2, device="cpu",
        )
    )
    emb = make_embedder(diff, n_draws=2)
    phi = emb.embed(batch, target="self")
    assert phi.shape == (2, emb.dim) and torch.isfinite(phi).all()
    assert torch.allclose(emb.embed({k: v[1:] for k, v in batch.items()}, target="self")[0], phi[1], rtol=1e-4, atol=1e-6)
    act = ACTPolicy(
        ACTConfig(
            **feats, chunk_size=10, n_action_steps=10, dim_model=32, n_heads=2, dim_feedforward=64,
            n_encoder_layers=1, n_decoder_layers=1, pretrained_backbone_weights=None, device="cpu",
        )
    )
    single = {STATE: batch[STATE][:, -1], ENV: batch[ENV][:, -1], img_key: imgs[:, -1]}
    a_emb = make_embedder(act, dim=64, n_draws=2)
    a_phi = a_emb.embed(single, target="self")
    assert a_phi.shape == (2, 64) and torch.isfinite(a_phi).all()
    assert torch.allclose(a_emb.embed(batch, target="self"), a_phi)  # a time axis is reduced to its last step
