"""Routed policies (``isolation/routing.py``) on real LeRobot diffusion policies and peft adapters:
training one partition leaves the others and the base bit-identical, routing by the observation's
task, each partition's own outputs, save/load reproducing actions exactly."""

import json

import pytest
import torch

from conftest import diffusion_batch
from isolation_fixtures import POOL, routed, snapshot, tiny_policy
from lerobot_amf.trust import UntrustedFileError
from lerobot_amf.envs.metaworld_state import task_description
from lerobot_amf.isolation import load_routed_policy


@pytest.mark.parametrize("mode", ["lora", "head"])
def test_training_one_partition_leaves_the_others_and_the_base_bit_identical(mode):
    policy = routed(mode)
    before = snapshot(policy)
    policy.activate("drawer-close-v3")
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=1e-2, weight_decay=0.1)
    for step in range(3):
        loss, _ = policy.forward(diffusion_batch(b=4, seed=step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = snapshot(policy)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "the active partition did not train"
    # only the active partition's tensors moved: the other partitions and the base are bit-identical
    assert all(".drawer-close-v3." in k for k in changed), sorted(changed)[:5]


def test_routing_activates_the_partition_of_the_observation_task():
    policy = routed("lora")
    batch = diffusion_batch(b=2)
    obs = {k: v[:, -1] for k, v in batch.items() if k.startswith("observation.")}
    for task in ["window-open-v3", "reach-v3"]:
        policy.reset()
        policy.select_action({**obs, "task": [task_description(task)] * 2})
        assert policy.active == task
    policy.select_action({**obs, "task": ["drawer-close-v3", "drawer-close-v3"]})  # task names work too
    assert policy.active == "drawer-close-v3"
    with pytest.raises(ValueError, match="several partitions"):
        policy.select_action({**obs, "task": [task_description("reach-v3"), task_description("window-open-v3")]})
    with pytest.raises(ValueError, match="Cannot route"):
        policy.select_action({**obs, "task": ["push the puck"] * 2})


def test_routed_policy_outputs_are_its_partitions_own():
    """A partition whose head copy was changed acts differently; the others act as the base."""
    policy, base = routed("head"), tiny_policy()
    with torch.no_grad():
        for p in policy._heads().copies["window-open-v3"].parameters():
            p.add_(0.5)
    batch = diffusion_batch(b=2)

    def chunk(model, task):
        model.reset()
        torch.manual_seed(7)
        inputs = {k: v[:, -1] for k, v in batch.items() if k.startswith("observation.")}
        if task is not None:
            inputs["task"] = [task] * 2
        return model.select_action(inputs)

    assert torch.equal(chunk(policy, "reach-v3"), chunk(base, None))
    assert not torch.allclose(chunk(policy, "window-open-v3"), chunk(base, None))


@pytest.mark.parametrize("mode", ["lora", "head"])
def test_save_load_round_trip_reproduces_actions_exactly(tmp_path, mode):
    policy = routed(mode, tmp_path)
    policy.activate("reach-v3")
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=1e-2)
    for step in range(2):
        loss, _ = policy.forward(diffusion_batch(b=4, seed=step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    policy.save(tmp_path / "routed_model")
    with pytest.raises(UntrustedFileError, match="outside routed_model/: not read on a routing map's word"):
        load_routed_policy(tmp_path / "routed_model")  # a local base elsewhere: only when the caller names it
    loaded, preprocessor, _ = load_routed_policy(tmp_path / "routed_model", base_path=policy.base_ref["pretrained_path"])
    assert preprocessor is None  # none was saved with it here; runs save theirs
    obs = {k: v[:, -1] for k, v in diffusion_batch(b=2).items() if k.startswith("observation.")}
    for task in POOL:
        outs = []
        for model in (policy, loaded):
            model.eval()
            model.reset()
            torch.manual_seed(3)
            outs.append(model.select_action({**obs, "task": [task] * 2}))
        assert torch.equal(outs[0], outs[1]), task
    assert json.loads((tmp_path / "routed_model" / "routing.json").read_text())["base"]["pretrained_path"] == \
        str(tmp_path / "base")
