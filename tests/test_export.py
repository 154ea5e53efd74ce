"""Single-model export of a routed policy (``isolation/export.py``): a merge of one trained
partition is that partition. (The distillation teachers are tested per family in test_families.py.)"""

import pytest
import torch
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

from conftest import diffusion_batch
from isolation_fixtures import POOL, routed
from lerobot_amf.isolation.export import merge


@pytest.mark.parametrize("mode", ["lora", "head"])
def test_merge_of_one_trained_partition_is_that_partition(mode):
    policy = routed(mode)
    policy.activate("window-open-v3")
    with torch.no_grad():
        for p in policy.get_optim_params():
            p.add_(0.05 * torch.randn_like(p))
    single = merge(policy, ["window-open-v3"])
    assert type(single) is DiffusionPolicy
    batch = diffusion_batch(b=3)
    torch.manual_seed(1)
    a, _ = policy.forward(batch)
    torch.manual_seed(1)
    b, _ = single.forward(batch)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_merged_lora_export_saves_and_loads_as_a_plain_lerobot_policy(tmp_path):
    """LeRobot's wrap_with_peft marks the policy config use_peft=True; the export must not carry
    it, or LeRobot's make_policy looks for adapter files when loading the plain model."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import make_policy

    from lerobot_amf.envs.metaworld_state import MetaworldStateEnvConfig

    policy = routed("lora", tmp_path)
    assert policy.policy.config.use_peft  # what LeRobot set on the routed policy's config
    single = merge(policy, ["window-open-v3"])
    single.save_pretrained(tmp_path / "plain")
    config = PreTrainedConfig.from_pretrained(tmp_path / "plain")
    assert config.use_peft is False
    config.pretrained_path = tmp_path / "plain"
    loaded = make_policy(config, env_cfg=MetaworldStateEnvConfig(task=",".join(POOL)))  # as lerobot-eval loads it
    assert type(loaded) is DiffusionPolicy
    assert all(torch.equal(a, b) for a, b in zip(single.state_dict().values(), loaded.state_dict().values()))
