"""The state-only Metaworld env (``envs/metaworld_state.py``): the 50-task vocabulary, observations
with the task's one-hot, seeding, truncation, task-name errors, and LeRobot's ``make_env`` building it
(also the task string its vector env gives LeRobot to route by)."""

import dataclasses

import numpy as np
import pytest
from lerobot.envs.factory import make_env

from lerobot_amf.envs.metaworld_state import (
    METAWORLD_TASKS,
    MetaworldStateEnv,
    MetaworldStateEnvConfig,
    parse_task_list,
    task_description,
)
from lerobot_amf.errors import AMFInputError


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


def test_env_config_rejects_unknown_task():
    with pytest.raises(AMFInputError, match="Unknown Metaworld task"):
        dataclasses.replace(MetaworldStateEnvConfig(), task="not-a-task").gym_kwargs


def test_mw_state_vector_env_gives_lerobot_the_task_to_route_by():
    from lerobot.envs.utils import add_envs_task

    from lerobot_amf.envs.metaworld_state import MetaworldStateEnvConfig
    from lerobot_amf.evaluation import task_vec_env

    with task_vec_env(MetaworldStateEnvConfig(task="drawer-close-v3", episode_length=5), "drawer-close-v3", 2) as vec:
        obs = add_envs_task(vec, {})
    assert obs["task"] == [task_description("drawer-close-v3")] * 2
