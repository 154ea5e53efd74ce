"""Tiny routed LeRobot diffusion policies over a three-task Metaworld pool, shared by the routing,
export and LoRA-target tests."""

import torch
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

from conftest import features
from lerobot_amf.envs.metaworld_state import MetaworldCatalog
from lerobot_amf.isolation import RoutedPolicy, make_partitions

POOL = ["reach-v3", "drawer-close-v3", "window-open-v3"]


def tiny_policy(tmp_path=None) -> DiffusionPolicy:
    torch.manual_seed(0)
    cfg = DiffusionConfig(**features(), down_dims=(16, 32), diffusion_step_embed_dim=16, n_obs_steps=2, horizon=16,
                          n_action_steps=8, noise_scheduler_type="DDIM", num_inference_steps=3, device="cpu")
    policy = DiffusionPolicy(cfg)
    if tmp_path is not None:  # a real base checkpoint to reference
        policy.save_pretrained(tmp_path / "base")
        policy.config.pretrained_path = str(tmp_path / "base")
    else:
        policy.config.pretrained_path = "base"
    return policy


def routed(mode: str, tmp_path=None, scheme: str = "per_task") -> RoutedPolicy:
    return RoutedPolicy(tiny_policy(tmp_path), make_partitions(scheme, POOL), mode,
                        MetaworldCatalog().vocabulary(POOL).task_of_instruction)


def snapshot(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
