"""Metaworld v3 with state observations and task conditioning, as a LeRobot env.

LeRobot's own Metaworld env (``--env.type=metaworld``) is pixels-only: a 480x480 camera and a
4-dim ``agent_pos`` (``obs_type="state"`` raises ``NotImplementedError``). This one is
``--env.type=mw_state``, the name checkpoints and reports record; ``EnvConfig.create_envs``'s
default builds it, ``gym.make`` of ``lerobot_amf/MetaworldState-v0`` in a vector env, and its
env processors are the identity (``EnvConfig.get_env_processors``).

Observation (LeRobot names after ``preprocess_observation``):
  * ``observation.state`` — Metaworld's 39-dim state (hand, gripper, objects, goal).
  * ``observation.environment_state`` — one-hot of the task over ``METAWORLD_TASKS``, the
    fixed, sorted list of all 50 Metaworld v3 tasks. Because the vocabulary is a constant of
    the env type, a checkpoint trained on any task subset is evaluated with the same encoding
    by our loop and by stock ``lerobot-eval`` (diffusion policies need this input: they have
    no language channel). LeRobot leaves ENV features un-normalised, so the one-hot reaches the
    network as is.

One env instance can serve several tasks: ``reset(seed=s)`` runs task ``tasks[s % len(tasks)]``
with the seeded initial state ``s``. That is how a single ``lerobot-eval`` vector env (which
seeds its sub-envs with consecutive seeds) covers a comma-separated list of tasks.

Stock ``lerobot-eval`` finds the env with ``--env.discover_packages_path=lerobot_amf`` (importing
the package registers it). Rendering (``lerobot-eval`` records videos): ``MUJOCO_GL`` defaults to
``egl`` (headless) when this module is imported, as for LIBERO; a value set by the user is kept.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_ENV_STATE, OBS_STATE

from lerobot_amf.envs.tasks import TaskCatalog, register_catalog, split_task_list
from lerobot_amf.errors import AMFInputError

# Before Metaworld imports MuJoCo (only in make_metaworld_task_env: nothing imported above does).
os.environ.setdefault("MUJOCO_GL", "egl")

GYM_ID = "lerobot_amf/MetaworldState-v0"
STATE_DIM = 39
RENDER_SIZE = 128
ACTION_DIM = 4

# All Metaworld v3 task names, sorted: the one-hot vocabulary (never reorder).
METAWORLD_TASKS: tuple[str, ...] = (
    "assembly-v3", "basketball-v3", "bin-picking-v3", "box-close-v3", "button-press-topdown-v3",
    "button-press-topdown-wall-v3", "button-press-v3", "button-press-wall-v3", "coffee-button-v3",
    "coffee-pull-v3", "coffee-push-v3", "dial-turn-v3", "disassemble-v3", "door-close-v3",
    "door-lock-v3", "door-open-v3", "door-unlock-v3", "drawer-close-v3", "drawer-open-v3",
    "faucet-close-v3", "faucet-open-v3", "hammer-v3", "hand-insert-v3", "handle-press-side-v3",
    "handle-press-v3", "handle-pull-side-v3", "handle-pull-v3", "lever-pull-v3",
    "peg-insert-side-v3", "peg-unplug-side-v3", "pick-out-of-hole-v3", "pick-place-v3",
    "pick-place-wall-v3", "plate-slide-back-side-v3", "plate-slide-back-v3", "plate-slide-side-v3",
    "plate-slide-v3", "push-back-v3", "push-v3", "push-wall-v3", "reach-v3", "reach-wall-v3",
    "shelf-place-v3", "soccer-v3", "stick-pull-v3", "stick-push-v3", "sweep-into-v3", "sweep-v3",
    "window-close-v3", "window-open-v3",
)
MT10_TASKS: tuple[str, ...] = (
    "reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3", "drawer-close-v3",
    "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "window-close-v3",
)


def parse_task_list(tasks: str | list[str] | tuple[str, ...]) -> list[str]:
    """A Metaworld task pool (see ``MetaworldCatalog.parse_pool``)."""
    return MetaworldCatalog().parse_pool(tasks)


def task_one_hot(task: str) -> np.ndarray:
    vec = np.zeros(len(METAWORLD_TASKS), dtype=np.float32)
    vec[METAWORLD_TASKS.index(task)] = 1.0
    return vec


def task_description(task: str) -> str:
    """The language instruction LeRobot's Metaworld env uses for this task."""
    from lerobot.envs.metaworld import TASK_DESCRIPTIONS

    return TASK_DESCRIPTIONS[task]


def expert_policy(task: str):
    """Metaworld's scripted expert for ``task`` (``metaworld.policies``)."""
    from lerobot.envs.metaworld import TASK_POLICY_MAPPING

    return TASK_POLICY_MAPPING[task]()


@functools.lru_cache(maxsize=None)
def metaworld_task(task: str) -> tuple[type, Any]:
    """Metaworld's MT1 benchmark of ``task`` at seed 0: its env class and its first task. Building
    the benchmark resets a throwaway env 50 times to draw goals (about 0.4 s on 2 cores), with the
    global NumPy state saved and restored, and gives the same task every time; so it is built once
    per task and process. Every vector env (an evaluation's, a rollout fallback's) made one per env:
    four fallback rollouts spent half their time here."""
    import metaworld

    mt1 = metaworld.MT1(task, seed=0)
    return mt1.train_classes[task], mt1.train_tasks[0]


def make_metaworld_task_env(task: str):
    """A raw Metaworld v3 env for ``task`` whose initial state is set by ``seed(s)`` + reset."""
    env_class, first_task = metaworld_task(task)
    env = env_class(render_mode="rgb_array", width=RENDER_SIZE, height=RENDER_SIZE)
    env.set_task(first_task)
    env._freeze_rand_vec = False  # re-sample object/goal positions at each reset ...
    env.seeded_rand_vec = True  # ... from the env's seeded generator, so a seed fixes them
    return env


class MetaworldStateEnv(gym.Env):
    """Gymnasium env over one or more Metaworld v3 tasks with LeRobot-style observations."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(self, tasks: list[str] | str = "reach-v3", episode_length: int = 200):
        super().__init__()
        self.tasks = parse_task_list(tasks)
        self._max_episode_steps = int(episode_length)
        self._envs: dict[str, Any] = {}
        self._render_failed = False
        self.observation_space = spaces.Dict(
            {
                "agent_pos": spaces.Box(-np.inf, np.inf, shape=(STATE_DIM,), dtype=np.float32),
                "environment_state": spaces.Box(0.0, 1.0, shape=(len(METAWORLD_TASKS),), dtype=np.float32),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, shape=(ACTION_DIM,), dtype=np.float32)
        self._set_task(self.tasks[0])

    def _set_task(self, task: str) -> None:
        if task not in self._envs:
            self._envs[task] = make_metaworld_task_env(task)
        self.task = task
        self.task_description = task_description(task)
        self._env = self._envs[task]
        self._one_hot = task_one_hot(task)

    def _obs(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        return {"agent_pos": raw.astype(np.float32), "environment_state": self._one_hot.copy()}

    def reset(self, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._set_task(self.tasks[seed % len(self.tasks)])
            self._env.seed(int(seed))
        raw, _ = self._env.reset()
        self._raw = raw
        self._steps = 0
        return self._obs(raw), {"is_success": False, "task": self.task}

    def step(self, action: np.ndarray):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        raw, reward, _, _, info = self._env.step(action)
        self._raw = raw
        self._steps += 1
        success = bool(info.get("success", 0.0))
        truncated = self._steps >= self._max_episode_steps and not success
        info = {"is_success": success, "task": self.task}
        return self._obs(raw), float(reward), success, truncated, info

    def raw_state(self) -> np.ndarray:
        """Metaworld's own observation vector, the input of its scripted experts."""
        return self._raw

    def render(self) -> np.ndarray:
        """An RGB frame for videos (``lerobot-eval`` records some). Observations never need it:
        without an OpenGL platform (headless machines without EGL) the frame is blank, once
        warned about, so state-based evaluation still runs."""
        if not self._render_failed:
            try:
                return np.flip(self._env.render(), (0, 1)).copy()
            except Exception as err:  # noqa: BLE001 - any GL failure means "no rendering here"
                self._render_failed = True
                warnings.warn(f"Metaworld rendering unavailable ({type(err).__name__}); video frames are blank.")
        return np.zeros((RENDER_SIZE, RENDER_SIZE, 3), dtype=np.uint8)

    def close(self):
        for env in self._envs.values():
            env.close()
        self._envs.clear()


# LeRobot's rollout reads `task` / `task_description` (what language-conditioned and routed policies
# receive) and `_max_episode_steps` through `env.call`; the env truncates itself, so gym.make adds
# no TimeLimit, and no other wrapper is needed.
gym.register(id=GYM_ID, entry_point=MetaworldStateEnv, disable_env_checker=True, order_enforce=False)


@EnvConfig.register_subclass("mw_state")
@dataclass
class MetaworldStateEnvConfig(EnvConfig):
    """``--env.type=mw_state``: Metaworld v3 state env; ``--env.task`` is a comma-separated task list."""

    task: str = ",".join(MT10_TASKS)
    fps: int = 80
    episode_length: int = 200
    features: dict[str, PolicyFeature] = field(
        default_factory=lambda: {
            ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,)),
            "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,)),
            "environment_state": PolicyFeature(type=FeatureType.ENV, shape=(len(METAWORLD_TASKS),)),
        }
    )
    features_map: dict[str, str] = field(
        default_factory=lambda: {
            ACTION: ACTION,
            "agent_pos": OBS_STATE,
            "environment_state": OBS_ENV_STATE,
        }
    )

    @property
    def package_name(self) -> str:
        return "lerobot_amf.envs"

    @property
    def gym_id(self) -> str:
        return GYM_ID

    @property
    def gym_kwargs(self) -> dict:
        return {"tasks": parse_task_list(self.task), "episode_length": self.episode_length}


@register_catalog("mw_state")
class MetaworldCatalog(TaskCatalog):
    """Metaworld v3 tasks: one-hot conditioned, suites = LeRobot's difficulty groups.

    Task names are exact (``reach-v3``): spaces around a name are stripped, any other
    difference (case included) is an unknown name, and the error suggests the right spelling.
    """

    def all_tasks(self) -> list[str]:
        return list(METAWORLD_TASKS)

    def parse_pool(self, spec) -> list[str]:
        names = split_task_list(spec)
        if not names:
            raise AMFInputError("The task pool is empty: give at least one Metaworld v3 task name, e.g. 'reach-v3'.")
        unknown = [n for n in names if n not in METAWORLD_TASKS]
        if unknown:
            by_lower = {t.lower(): t for t in METAWORLD_TASKS}
            hints = [f"{n} (did you mean {by_lower[n.lower()]}?)" if n.lower() in by_lower else n for n in unknown]
            raise AMFInputError(f"Unknown Metaworld task name(s): {', '.join(hints)}. "
                                f"Allowed: {', '.join(METAWORLD_TASKS)}.")
        return names

    def instruction(self, task: str) -> str:
        return task_description(task)

    def one_hot_vocabulary(self) -> tuple[str, ...]:
        return METAWORLD_TASKS

    def suite_of(self, task: str) -> str:
        from lerobot.envs.metaworld import DIFFICULTY_TO_TASKS

        for group, tasks in DIFFICULTY_TO_TASKS.items():
            if task in tasks:
                return group
        raise AMFInputError(f"No Metaworld difficulty group knows task {task!r}; pass a JSON partition map instead.")

    def env_for(self, env_cfg, task: str):
        import dataclasses

        return dataclasses.replace(env_cfg, task=task)

    def default_pool(self, env_cfg) -> list[str]:
        return self.parse_pool(env_cfg.task)

    def protocol(self, env_cfg) -> dict:
        return {"max_steps": env_cfg.episode_length,
                "initial_states": "Metaworld object/goal positions drawn from the episode seed"}
