"""The amf strategy on real tiny LeRobot parts: diffusion policy, LeRobotDatasets, Metaworld."""

import numpy as np
import pytest
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
from lerobot.policies.factory import make_pre_post_processors

from lerobot_amf.configs import AMFSelectionConfig
from lerobot_amf.data import write_demos
from lerobot_amf.envs.metaworld_state import MetaworldStateEnvConfig
from lerobot_amf.selection import SelectionContext, make_strategy
from lerobot_amf.selection.amf import AMFStrategy
from lerobot_amf.sources.metaworld import MetaworldExpertSource
from lerobot_amf.data import DatasetRef
from lerobot_amf.envs.metaworld_state import MetaworldCatalog

POOL = ["reach-v3", "drawer-close-v3"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("amf")
    src = MetaworldExpertSource(seed=5)
    pre = [d for t in POOL for d in src.pull(t, 2, set())]
    write_demos("local/pre", root / "pre", src.fps, src.features(), pre)
    fine = MetaworldExpertSource(seed=6, namespace="fine").pull("reach-v3", 6, set())
    write_demos("local/fine", root / "fine", src.fps, src.features(), fine)
    torch.manual_seed(0)
    cfg = DiffusionConfig(
        input_features={"observation.state": PolicyFeature(FeatureType.STATE, (39,)),
                        "observation.environment_state": PolicyFeature(FeatureType.ENV, (50,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (4,))},
        down_dims=(16, 32), diffusion_step_embed_dim=16, noise_scheduler_type="DDIM",
        num_inference_steps=3, device="cpu", push_to_hub=False,
    )
    policy = DiffusionPolicy(cfg)
    stats = LeRobotDataset("local/pre", root=root / "pre").meta.stats
    pre_proc, post_proc = make_pre_post_processors(cfg, dataset_stats=stats)
    return root, policy, pre_proc, post_proc


def context(setup, with_d: bool, seed=0):
    root, policy, pre_proc, post_proc = setup
    return SelectionContext(
        round_index=1, pool=POOL, target_weights={t: 0.5 for t in POOL},
        counts={"reach-v3": 6 if with_d else 0, "drawer-close-v3": 0},
        capacity={t: None for t in POOL}, rng=np.random.default_rng(seed),
        policy=policy, preprocessor=pre_proc, postprocessor=post_proc,
        pretrain_dataset=DatasetRef("local/pre", root / "pre"),
        demo_dataset=DatasetRef("local/fine", root / "fine") if with_d else None,
        env_cfg=MetaworldStateEnvConfig(task=",".join(POOL), episode_length=20),
        vocabulary=MetaworldCatalog().vocabulary(POOL),
    )


def test_amf_picks_the_task_the_demos_so_far_do_not_cover(setup):
    # D holds 6 demos of reach and none of drawer-close: the posterior is already tight on
    # reach's states, so the information is in a drawer-close demo.
    sel = make_strategy("amf", AMFSelectionConfig()).select(context(setup, with_d=True), 1)
    assert sel.tasks == ["drawer-close-v3"]
    assert sel.scores["drawer-close-v3"] > sel.scores["reach-v3"]
    before, after = sel.details["variance_before_after"]["drawer-close-v3"]
    assert after < before
    assert set(sel.details["ess"]) == set(POOL) and sel.details["n_demos_in_d"] == 6


def test_amf_is_deterministic_for_a_seed(setup):
    a = make_strategy("amf", AMFSelectionConfig()).select(context(setup, with_d=True, seed=3), 3)
    b = make_strategy("amf", AMFSelectionConfig()).select(context(setup, with_d=True, seed=3), 3)
    assert a.tasks == b.tasks and a.scores == b.scores


def test_collapsed_importance_weights_fall_back_to_policy_rollouts(setup):
    strategy = AMFStrategy(AMFSelectionConfig(ess_threshold=1e9, fallback_rollouts=2, states_per_demo=4))
    sel = strategy.select(context(setup, with_d=False), 2)
    assert sel.details["rollout_fallback"] == sorted(POOL)
    assert "rollout states" in sel.reason
    assert len(sel.tasks) == 2 and set(sel.tasks) <= set(POOL)
    # the rollouts are seeded: the global RNG's state does not change them
    torch.randn(1000)
    again = strategy.select(context(setup, with_d=False), 2)
    assert again.tasks == sel.tasks and again.scores == sel.scores


def test_a_policy_that_does_not_see_the_task_weighs_each_demo_for_its_own_task(setup):
    """Without a one-hot or a language input (LeRobot's diffusion on LIBERO) the likelihood is the same
    for every task: importance weights from it would make every candidate identical and the greedy
    tie would go to the first pool task, reach-v3, the one D already covers."""
    import dataclasses

    ctx = context(setup, with_d=True)
    ctx.vocabulary = dataclasses.replace(ctx.vocabulary, one_hot=None)  # the policy is not told the task
    sel = make_strategy("amf", AMFSelectionConfig()).select(ctx, 1)
    assert sel.details["importance"].startswith("own task only (the policy does not see the task")
    assert sel.details["ess"] == {"reach-v3": 8.0, "drawer-close-v3": 2.0}  # its own demos: 2 + 6 in D, 2
    assert sel.tasks == ["drawer-close-v3"]


def test_without_any_demo_in_hand_amf_starts_with_one_demo_per_task(setup):
    """A --policy.path checkpoint without its pretraining demos, before the first pull (AMF.md: cold start)."""
    import dataclasses

    ctx = dataclasses.replace(context(setup, with_d=False), pretrain_dataset=None)
    sel = make_strategy("amf", AMFSelectionConfig()).select(ctx, 2)
    assert sorted(sel.tasks) == sorted(POOL) and sel.details == {"cold_start": True}
    assert sel.reason.startswith("amf: no demos in hand yet (cold start), so uniform:")
