"""The policy-family registry and what each family owns, on real tiny LeRobot policies."""

from __future__ import annotations

import pytest
import torch
from lerobot.policies.act.configuration_act import ACTConfig
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
from peft import LoraConfig, get_peft_model

from conftest import ENV, STATE, diffusion_batch, features
from lerobot_amf.families import make_embedder
from lerobot_amf.families import base as families_base
from lerobot_amf.families import PolicyFamily, family_of, register_family, supported_types
from lerobot_amf.families.act import ACTEmbedder, ACTFamily
from lerobot_amf.families.diffusion import DiffusionEmbedder, DiffusionFamily
from lerobot_amf.families.flow import FlowEmbedder, FlowFamily
from lerobot_amf.envs.metaworld_state import MetaworldCatalog
from lerobot_amf.isolation import RoutedPolicy, make_partitions
from lerobot_amf.isolation.export import teacher_of


def tiny_diffusion() -> DiffusionPolicy:
    torch.manual_seed(0)
    return DiffusionPolicy(DiffusionConfig(**features(), down_dims=(16, 32), diffusion_step_embed_dim=16, n_obs_steps=2,
                                           horizon=16, n_action_steps=8, noise_scheduler_type="DDIM",
                                           num_inference_steps=3, device="cpu"))


def tiny_act() -> ACTPolicy:
    torch.manual_seed(0)
    return ACTPolicy(ACTConfig(**features(), chunk_size=10, n_action_steps=10, dim_model=32, n_heads=2,
                               dim_feedforward=64, n_encoder_layers=1, n_decoder_layers=1, device="cpu"))


def test_registry_resolves_every_supported_type_and_rejects_others_with_the_list():
    expected = {"diffusion": DiffusionFamily, "act": ACTFamily, "smolvla": FlowFamily, "pi0": FlowFamily,
                "pi05": FlowFamily}
    assert set(supported_types()) == set(expected)
    for name, cls in expected.items():
        family = family_of(name)
        assert isinstance(family, cls) and name in family.types
        assert issubclass(family.embedder_class, {DiffusionFamily: DiffusionEmbedder, ACTFamily: ACTEmbedder,
                                                  FlowFamily: FlowEmbedder}[cls])
    assert family_of("pi0") is family_of("smolvla")  # one family object serves the three flow heads
    with pytest.raises(ValueError) as err:
        family_of("vqbet")
    assert "vqbet" in str(err.value)
    for name in expected:
        assert name in str(err.value)


def test_family_of_a_policy_looks_through_peft_and_finds_its_last_layer():
    policy = tiny_diffusion()
    family = family_of(policy)
    assert isinstance(family, DiffusionFamily)
    assert family.embedder_class.head_layers(policy)[-1] is policy.diffusion.unet.final_conv[1]
    assert family.embedder_class.head_layers(policy)[-2] is policy.diffusion.unet.final_conv[0].block[0]
    wrapped = get_peft_model(policy, LoraConfig(target_modules=family.lora_targets, r=2))
    assert family_of(wrapped) is family
    assert isinstance(make_embedder(wrapped, n_draws=1), DiffusionEmbedder)
    act = tiny_act()
    assert family_of(act).embedder_class.head_layers(act)[-1] is act.model.action_head
    assert act.get_submodule(family_of(act).head_module) is act.model.action_head


def test_a_new_family_is_one_registered_class(monkeypatch):
    monkeypatch.setattr(families_base, "_REGISTRY", dict(families_base._REGISTRY))  # restored after the test

    class Dummy(PolicyFamily):
        types = ("amf_test_dummy",)
        head_module = "head"

    register_family(Dummy)
    assert isinstance(family_of("amf_test_dummy"), Dummy)
    assert family_of("amf_test_dummy").loglik is None and family_of("amf_test_dummy").teacher_action_chunk is None
    with pytest.raises(ValueError, match="already served"):
        register_family(Dummy)


def test_diffusion_loglik_is_per_sample_seeded_and_ignores_padded_steps():
    policy = tiny_diffusion()
    loglik = family_of(policy).loglik
    batch = diffusion_batch(b=4, seed=3)
    batch["action_is_pad"][1, 10:] = True
    ll = loglik(policy, batch, 3, 7)
    assert ll.shape == (4,) and torch.isfinite(ll).all() and (ll < 0).all()
    assert torch.equal(ll, loglik(policy, batch, 3, 7))  # common random numbers
    assert not torch.allclose(ll, loglik(policy, batch, 3, 8))
    alone = loglik(policy, {k: v[2:3] for k, v in batch.items()}, 3, 7)
    assert torch.allclose(alone[0], ll[2], rtol=1e-5)
    # the padding mask enters the loss of the padded demo only
    unmasked = loglik(policy, {**batch, "action_is_pad": torch.zeros_like(batch["action_is_pad"])}, 3, 7)
    assert not torch.allclose(unmasked[1], ll[1]) and torch.equal(unmasked[[0, 2, 3]], ll[[0, 2, 3]])


def test_teachers_are_the_policys_own_action_chunks():
    policy = tiny_diffusion().eval()
    batch = diffusion_batch(b=2)
    torch.manual_seed(4)
    chunk = teacher_of(policy)(policy, batch)
    torch.manual_seed(4)
    with torch.no_grad():
        cond = policy.diffusion._prepare_global_conditioning({STATE: batch[STATE], ENV: batch[ENV]})
        own = policy.diffusion.conditional_sample(2, global_cond=cond)
    assert chunk.shape == (2, 16, 4) and torch.equal(chunk, own)
    act = tiny_act().eval()
    obs = {STATE: batch[STATE][:, -1], ENV: batch[ENV][:, -1]}
    with torch.no_grad():
        assert torch.equal(teacher_of(act)(act, obs), act.model(obs)[0])


def test_under_head_copies_the_embedder_differentiates_the_active_copy():
    policy = tiny_diffusion()
    policy.config.pretrained_path = "base"
    pool = ["reach-v3", "drawer-close-v3"]
    routed = RoutedPolicy(policy, make_partitions("per_task", pool), "head", MetaworldCatalog().vocabulary(pool).task_of_instruction)
    emb = make_embedder(routed.policy, n_draws=1, layers=2)
    copies = routed._heads().copies
    with routed.serving("drawer-close-v3") as acting:
        assert acting is routed.policy and routed.active == "drawer-close-v3"
        assert emb.layers() == [copies["drawer-close-v3"][0].block[0], copies["drawer-close-v3"][1]]
        phi = emb.embed(diffusion_batch(b=2))
    assert routed.active == "reach-v3" and emb.layers()[-1] is copies["reach-v3"][1]
    with torch.no_grad():
        copies["drawer-close-v3"][1].bias.add_(1.0)  # the copy that ran, not the original, shapes φ
    with routed.serving("drawer-close-v3"):
        assert not torch.allclose(emb.embed(diffusion_batch(b=2)), phi)


@pytest.mark.parametrize("scheduler", ["DDPM", "DDIM"])
def test_the_embedders_ddim_scheduler_is_what_from_config_makes_without_importing_every_scheduler(scheduler):
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler

    from lerobot_amf.families.diffusion import ddim_scheduler_like

    policy = DiffusionPolicy(DiffusionConfig(**features(), down_dims=(16, 32), noise_scheduler_type=scheduler,
                                             beta_schedule="squaredcos_cap_v2", prediction_type="sample",
                                             clip_sample_range=0.5, device="cpu", push_to_hub=False))
    source = policy.diffusion.noise_scheduler.config
    direct, searched = ddim_scheduler_like(source), DDIMScheduler.from_config(dict(source))
    public = lambda s: {k: v for k, v in dict(s.config).items() if not k.startswith("_")}  # noqa: E731
    assert public(direct) == public(searched)
    assert public(direct)["prediction_type"] == "sample" and public(direct)["clip_sample_range"] == 0.5
    torch.testing.assert_close(direct.alphas_cumprod, searched.alphas_cumprod, rtol=0, atol=0)
    direct.set_timesteps(10), searched.set_timesteps(10)
    assert torch.equal(direct.timesteps, searched.timesteps)
