"""Demos from Metaworld's scripted experts (the embedded default's demonstrator).

Demo ``j`` of task ``c`` is the expert run from the initial state seeded by
``hash(namespace, seed, c, j)`` with seeded Gaussian action noise, so the same id always
means the same episode and different ids never repeat one. Runs where the noisy expert fails
are not returned as demos (they are skipped and the next index is tried), the way a human
demonstrator's failed takes are discarded.
"""

from __future__ import annotations

import hashlib

import numpy as np

from lerobot_amf.envs.metaworld_state import (
    ACTION_DIM,
    METAWORLD_TASKS,
    STATE_DIM,
    MetaworldStateEnv,
    expert_policy,
    task_description,
)
from lerobot_amf.sources.base import Demo, DemoSource

MAX_ATTEMPTS_PER_DEMO = 20
EXPERT_MAX_STEPS = 500  # Metaworld's own path length; experts stop at success (30-100 steps)


def demo_features() -> dict[str, dict]:
    return {
        "observation.state": {"dtype": "float32", "shape": (STATE_DIM,), "names": None},
        "observation.environment_state": {
            "dtype": "float32",
            "shape": (len(METAWORLD_TASKS),),
            "names": None,
        },
        "action": {"dtype": "float32", "shape": (ACTION_DIM,), "names": None},
    }


def stable_seed(*parts) -> int:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class MetaworldExpertSource(DemoSource):
    name = "metaworld_expert"

    def __init__(
        self,
        seed: int = 0,
        action_noise: float = 0.1,
        episode_length: int = EXPERT_MAX_STEPS,
        demos_per_task: int | None = None,
        namespace: str = "finetune",
    ):
        self.seed = seed
        self.action_noise = action_noise
        self.episode_length = episode_length
        self.demos_per_task = demos_per_task
        self.namespace = namespace
        self._envs: dict[str, MetaworldStateEnv] = {}

    def tasks(self) -> list[str]:
        return list(METAWORLD_TASKS)

    @property
    def fps(self) -> int:
        return 80

    def features(self) -> dict[str, dict]:
        return demo_features()

    def describe(self) -> dict:
        return {"name": self.name, "action_noise": self.action_noise}

    def cache_key(self) -> dict:
        return {"action_noise": self.action_noise}

    def demo_id(self, task: str, index: int) -> str:
        return f"metaworld_expert/{self.namespace}/seed{self.seed}/{task}/{index}"

    def remaining(self, task: str, exclude: set[str]) -> int | None:
        if self.demos_per_task is None:
            return None
        taken = sum(1 for j in range(self.demos_per_task) if self.demo_id(task, j) in exclude)
        return self.demos_per_task - taken

    def pull(self, task: str, k: int, exclude: set[str]) -> list[Demo]:
        self.validate_pool([task])
        left = self.remaining(task, exclude)
        if left is not None and k > left:
            raise ValueError(
                f"Source {self.name!r} has {left} demo(s) of {task!r} left, {k} were asked for."
            )
        demos, index = [], 0
        while len(demos) < k:
            if self.demos_per_task is not None and index >= self.demos_per_task:
                raise RuntimeError(f"Source {self.name!r} ran out of demos of {task!r}.")
            demo_id = self.demo_id(task, index)
            if demo_id not in exclude:
                demos.append(self._record(task, index, demo_id))
            index += 1
        return demos

    def _record(self, task: str, index: int, demo_id: str) -> Demo:
        env = self._envs.get(task)
        if env is None:
            env = self._envs[task] = MetaworldStateEnv([task], episode_length=self.episode_length)
        policy = expert_policy(task)
        for attempt in range(MAX_ATTEMPTS_PER_DEMO):
            seed = stable_seed(self.namespace, self.seed, task, index, attempt)
            rng = np.random.default_rng(seed)
            obs, _ = env.reset(seed=seed)
            states, env_states, actions = [], [], []
            success = False
            for _ in range(self.episode_length):
                action = policy.get_action(env.raw_state()).astype(np.float32)
                action = action + rng.normal(0.0, self.action_noise, size=action.shape).astype(np.float32)
                action = np.clip(action, -1.0, 1.0)
                states.append(obs["agent_pos"])
                env_states.append(obs["environment_state"])
                actions.append(action)
                obs, _, success, truncated, _ = env.step(action)
                if success or truncated:
                    break
            if success:
                frames = {
                    "observation.state": np.stack(states).astype(np.float32),
                    "observation.environment_state": np.stack(env_states).astype(np.float32),
                    "action": np.stack(actions).astype(np.float32),
                }
                info = {"seed": seed, "attempt": attempt, "length": len(actions)}
                return Demo(demo_id, task, task_description(task), frames, info)
        raise RuntimeError(
            f"The scripted expert failed {MAX_ATTEMPTS_PER_DEMO} times in a row on {task!r} "
            f"with action_noise={self.action_noise}; lower the noise."
        )
