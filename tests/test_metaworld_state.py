"""The state-only Metaworld env (``envs/metaworld_state.py``): the 50-task vocabulary, observations
with the task's one-hot, seeding, truncation, task-name errors, LeRobot's ``make_env`` building it,
the task string LeRobot's rollout gives the policy to route by, and stock ``lerobot-eval`` on it."""

import dataclasses
from pathlib import Path

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


def test_an_env_from_the_kept_benchmark_is_the_env_a_fresh_benchmark_makes():
    """Metaworld's MT1 benchmark is built once per task (it resets a throwaway env 50 times): an env
    made from the kept one starts, steps and leaves NumPy's global state exactly as one made after
    building it afresh."""
    from lerobot_amf.envs.metaworld_state import metaworld_task

    def episode():
        env = MetaworldStateEnv(["window-open-v3"], episode_length=5)
        before = np.random.get_state()[1].copy()
        first, _ = env.reset(seed=3)
        steps = [env.step(np.full(4, 0.3, dtype=np.float32))[0]["agent_pos"] for _ in range(3)]
        np.testing.assert_array_equal(np.random.get_state()[1], before)
        return np.stack([first["agent_pos"], *steps])

    metaworld_task.cache_clear()
    fresh = episode()
    assert metaworld_task.cache_info().misses == 1
    kept = episode()
    assert metaworld_task.cache_info().hits >= 1 and metaworld_task("window-open-v3") is metaworld_task("window-open-v3")
    np.testing.assert_array_equal(fresh, kept)


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


def test_lerobot_rollout_gives_the_policy_the_task_to_route_by():
    """LeRobot's rollout adds ``observation["task"] = list(env.call("task_description"))``: through
    our one-task vector env (``evaluation.task_vec_env``) and the env's own processors, each sub-env's
    instruction reaches the policy at every step, beside the state and the task's one-hot."""
    import torch
    from lerobot.envs.factory import make_env_pre_post_processors
    from lerobot.scripts.lerobot_eval import rollout

    from lerobot_amf.evaluation import task_vec_env

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.seen = []

        def reset(self):
            pass

        def select_action(self, batch):
            self.seen.append(batch)
            return torch.zeros(len(batch["task"]), 4)

    cfg = MetaworldStateEnvConfig(task="reach-v3,drawer-close-v3", episode_length=3)
    env_pre, env_post = make_env_pre_post_processors(cfg, policy_cfg=None)
    policy = Recorder()
    with task_vec_env(cfg, "drawer-close-v3", 2) as vec:
        out = rollout(vec, policy, env_pre, env_post, lambda b: b, lambda a: a, seeds=[0, 1])
    assert out["action"].shape == (2, 3, 4) and len(policy.seen) == 3
    for batch in policy.seen:
        assert batch["task"] == [task_description("drawer-close-v3")] * 2
        assert tuple(batch["observation.state"].shape) == (2, 39)
        one_hot = batch["observation.environment_state"]
        assert [METAWORLD_TASKS[int(i)] for i in one_hot.argmax(dim=1)] == ["drawer-close-v3"] * 2


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random diffusion policy for mw_state (39-dim state, 50-dim one-hot, 4-dim action)."""
    import torch
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    out = tmp_path_factory.mktemp("mw_state_ckpt")
    torch.manual_seed(0)
    cfg = DiffusionConfig(n_obs_steps=2, horizon=8, n_action_steps=4, down_dims=(16, 32), kernel_size=3,
                          diffusion_step_embed_dim=16, n_groups=4, num_train_timesteps=10, num_inference_steps=2,
                          device="cpu", push_to_hub=False)
    policy = make_policy(cfg, env_cfg=MetaworldStateEnvConfig(task="reach-v3"))
    unit = {"mean": torch.zeros(39), "std": torch.ones(39), "min": -torch.ones(39), "max": torch.ones(39)}
    stats = {"observation.state": unit, "action": {k: v[:4] for k, v in unit.items()}}
    pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    for part in (policy, pre, post):
        part.save_pretrained(out)
    return out


@pytest.mark.slow
def test_stock_lerobot_eval_runs_mw_state_headless_with_async_envs(tiny_checkpoint, tmp_path):
    """Stock ``lerobot-eval`` (its default asynchronous vector env, batch 2) finds ``mw_state`` through
    ``--env.discover_packages_path=lerobot_amf``, renders its videos headless without MUJOCO_GL set
    (importing the env sets egl), and reports both episodes."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}
    proc = subprocess.run(
        [sys.executable, "-m", "lerobot.scripts.lerobot_eval", f"--policy.path={tiny_checkpoint}",
         "--env.type=mw_state", "--env.task=reach-v3,drawer-close-v3", "--env.episode_length=5",
         "--env.discover_packages_path=lerobot_amf", "--eval.n_episodes=2", "--eval.batch_size=2",
         "--policy.device=cpu", f"--output_dir={tmp_path / 'eval'}"],
        capture_output=True, text=True, env={**env, "HF_HUB_OFFLINE": "1"}, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "async=True" in proc.stderr
    assert "rendering unavailable" not in proc.stderr  # real frames in the videos
    info = json.loads((tmp_path / "eval" / "eval_info.json").read_text())
    assert info["overall"]["n_episodes"] == 2 and "pc_success" in info["overall"]
    assert len(info["overall"]["video_paths"]) == 2
    assert all(Path(p).stat().st_size > 0 for p in info["overall"]["video_paths"])
