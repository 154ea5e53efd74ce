import dataclasses

import numpy as np
import pytest
from lerobot.envs.factory import make_env

from lerobot_amf.envs.metaworld_state import (
    METAWORLD_TASKS,
    MetaworldStateEnv,
    MetaworldStateEnvConfig,
    parse_task_list,
)
from lerobot_amf.errors import AMFInputError
from lerobot_amf.sources.metaworld import MetaworldExpertSource


def test_vocabulary_is_all_50_v3_tasks_sorted():
    from lerobot.envs.metaworld import TASK_POLICY_MAPPING

    assert len(METAWORLD_TASKS) == 50
    assert list(METAWORLD_TASKS) == sorted(METAWORLD_TASKS) == sorted(TASK_POLICY_MAPPING)


def test_observation_carries_state_and_task_one_hot():
    env = MetaworldStateEnv(["reach-v3", "drawer-close-v3"], episode_length=10)
    obs, _ = env.reset(seed=1)  # seed 1 -> second task
    assert env.task == "drawer-close-v3"
    assert obs["agent_pos"].shape == (39,)
    assert obs["environment_state"].sum() == 1.0
    assert METAWORLD_TASKS[int(obs["environment_state"].argmax())] == "drawer-close-v3"


def test_seed_fixes_initial_state_and_different_seeds_differ():
    env = MetaworldStateEnv(["reach-v3"], episode_length=10)
    a, _ = env.reset(seed=7)
    b, _ = env.reset(seed=7)
    c, _ = env.reset(seed=8)
    np.testing.assert_array_equal(a["agent_pos"], b["agent_pos"])
    assert not np.allclose(a["agent_pos"], c["agent_pos"])


def test_episode_truncates_at_episode_length():
    env = MetaworldStateEnv(["reach-v3"], episode_length=5)
    env.reset(seed=0)
    for i in range(5):
        _, _, terminated, truncated, _ = env.step(np.zeros(4))
    assert truncated and not terminated


@pytest.mark.parametrize("bad", ["reach-v2", "", "reach-v3,nope-v3"])
def test_bad_task_names_are_rejected_with_allowed_list(bad):
    with pytest.raises(AMFInputError) as err:
        parse_task_list(bad)
    assert ("Allowed" in str(err.value)) or ("empty" in str(err.value))


def test_lerobot_make_env_builds_our_env_from_the_config():
    cfg = MetaworldStateEnvConfig(task="reach-v3,window-open-v3", episode_length=20)
    envs = make_env(cfg, n_envs=2)
    vec = envs["mw_state"][0]
    obs, _ = vec.reset(seed=[10, 11])
    tasks = [METAWORLD_TASKS[int(i)] for i in obs["environment_state"].argmax(axis=1)]
    assert tasks == ["reach-v3", "window-open-v3"]  # seed % n_tasks picks the task
    assert vec.call("_max_episode_steps")[0] == 20
    vec.close()


def test_expert_source_gives_successful_distinct_deterministic_demos():
    src = MetaworldExpertSource(seed=3, action_noise=0.1)
    demos = src.pull("reach-v3", 3, exclude=set())
    assert len({d.demo_id for d in demos}) == 3
    assert all(d.task == "reach-v3" and d.length > 5 for d in demos)
    assert all(d.frames["observation.state"].shape == (d.length, 39) for d in demos)
    # never the same episode twice: excluding what was pulled yields new ids
    more = src.pull("reach-v3", 2, exclude={d.demo_id for d in demos})
    assert not {d.demo_id for d in more} & {d.demo_id for d in demos}
    assert not np.allclose(more[0].frames["observation.state"][0], demos[0].frames["observation.state"][0])
    # the same id is the same episode
    again = MetaworldExpertSource(seed=3, action_noise=0.1).pull("reach-v3", 1, exclude=set())[0]
    assert again.demo_id == demos[0].demo_id
    np.testing.assert_array_equal(again.frames["action"], demos[0].frames["action"])


def test_expert_source_capacity_is_enforced():
    src = MetaworldExpertSource(seed=0, demos_per_task=2)
    first = src.pull("reach-v3", 2, exclude=set())
    assert src.remaining("reach-v3", {d.demo_id for d in first}) == 0
    with pytest.raises(ValueError, match="left"):
        src.pull("reach-v3", 1, exclude={d.demo_id for d in first})


def test_env_config_rejects_unknown_task():
    with pytest.raises(AMFInputError, match="Unknown Metaworld task"):
        dataclasses.replace(MetaworldStateEnvConfig(), task="not-a-task").gym_kwargs
