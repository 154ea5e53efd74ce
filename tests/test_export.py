"""Single-model export of a routed policy (``isolation/export.py``): a merge of one trained
partition is that partition. (The distillation teachers are tested per family in test_families.py.)"""

import pytest
import torch
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

from conftest import diffusion_batch
from isolation_fixtures import routed
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
