"""What the round loop needs to know about an env type's tasks, in one interface.

The task pool, the names the policy sees (one-hot order, language instructions), the suites,
and how to build an env for exactly one task belong to the env type, not to the loop: the
Metaworld state env (``mw_state``) and LIBERO (``libero``) each provide a ``TaskCatalog``,
found through ``task_catalog(env_cfg)``. A LIBERO run therefore never imports Metaworld.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable, Sequence

from lerobot_amf.errors import AMFInputError


@dataclass(frozen=True)
class TaskVocabulary:
    """How the pool's tasks are named to the policy and in the datasets.

    one_hot: the fixed one-hot order of the env's task-conditioning input (None: the policy
    reads the language instruction instead); instructions: task -> dataset task string;
    task_of_instruction: the reverse, for pool tasks only (demos of other tasks are ignored).
    """

    one_hot: tuple[str, ...] | None
    instructions: dict[str, str]
    task_of_instruction: dict[str, str] = field(default_factory=dict)

    def task_of_episode(self, meta, episode: int) -> str | None:
        """The pool task of ``episode`` in a dataset's metadata (None: outside the pool)."""
        return self.task_of_instruction.get(meta.episodes[episode]["tasks"][0])

    def episodes_by_task(self, meta) -> dict[str, list[int]]:
        """Pool task -> its episode indices in a dataset's metadata (episodes of other tasks left out)."""
        out: dict[str, list[int]] = {}
        for ep in range(meta.total_episodes):
            task = self.task_of_episode(meta, ep)
            if task is not None:
                out.setdefault(task, []).append(ep)
        return out


class TaskCatalog(abc.ABC):
    """An env type's tasks: names, pool parsing, instructions, suites, one-task env configs."""

    env_type: str
    simulator = True  # False: nothing to roll out or evaluate in (tasks recorded on a real robot)

    @abc.abstractmethod
    def all_tasks(self) -> list[str]:
        """Every task name of this env type."""

    @abc.abstractmethod
    def parse_pool(self, spec: str | Sequence[str]) -> list[str]:
        """A pool from a comma-separated string or a list: names stripped of spaces, order kept,
        repeats dropped; an empty pool or an unknown name is an ``AMFInputError`` naming it."""

    @abc.abstractmethod
    def instruction(self, task: str) -> str:
        """The language instruction (the dataset's task string) of ``task``."""

    def instruction_collisions(self, pool: Sequence[str]) -> dict[str, list[str]]:
        """Instructions shared by several tasks of ``pool``, each with its tasks in pool order:
        demos and routing could not tell them apart."""
        by_instruction: dict[str, list[str]] = {}
        for task in pool:
            by_instruction.setdefault(self.instruction(task), []).append(task)
        return {k: v for k, v in by_instruction.items() if len(v) > 1}

    def one_hot_vocabulary(self) -> tuple[str, ...] | None:
        """The fixed task order of a one-hot conditioning input; None for language-conditioned envs."""
        return None

    @abc.abstractmethod
    def suite_of(self, task: str) -> str:
        """The suite (or difficulty group) ``task`` belongs to: per-suite partitions and tables."""

    @abc.abstractmethod
    def env_for(self, env_cfg, task: str):
        """An env config whose ``make_env`` builds exactly ``task``."""

    def make_envs(self, env_cfg, n_envs: int) -> dict:
        """The vector envs of a config from ``env_for``, as LeRobot's ``make_env`` returns them
        (``{suite: {task id: vector env}}``); synchronous: the simulator steps in this process."""
        from lerobot.envs.factory import make_env

        return make_env(env_cfg, n_envs=n_envs, use_async_envs=False)

    @abc.abstractmethod
    def default_pool(self, env_cfg) -> list[str]:
        """The pool when ``--amf.tasks`` is not given: the env config's own task list."""

    def run_pool(self, tasks: str | Sequence[str] | None, env_cfg) -> list[str]:
        """A run's pool: ``--amf.tasks`` when given, else the env config's own tasks, parsed."""
        return self.parse_pool(tasks if tasks is not None else self.default_pool(env_cfg))

    def policy_features(self, env_cfg) -> dict:
        """What a policy receives from this env and sends back, after LeRobot's env processors
        (key -> ``PolicyFeature``): what a checkpoint must fit."""
        from lerobot.envs.utils import env_to_policy_features

        return env_to_policy_features(env_cfg)

    def protocol(self, env_cfg) -> dict:
        """Evaluation-protocol fields specific to this env (max steps, init states, image size)."""
        return {}

    def vocabulary(self, pool: list[str]) -> TaskVocabulary:
        instructions = {t: self.instruction(t) for t in self.all_tasks()}
        pool_set = set(pool)
        return TaskVocabulary(self.one_hot_vocabulary(), instructions,
                              {v: k for k, v in instructions.items() if k in pool_set})


class RecordedTasks(TaskCatalog):
    """Tasks named by their instruction strings, with no simulator: a real robot's (``--env.type=recorded``,
    ``--env.task`` the instructions, comma-separated), or those of recorded demos (``lerobot-amf-plan``
    on a language-conditioned policy, ``instructions`` the dataset's). Nothing can be rolled out in it,
    so ``env_for`` refuses."""

    env_type = "recorded"
    simulator = False

    def __init__(self, instructions: Sequence[str] | None = None):
        self.tasks = None if instructions is None else list(dict.fromkeys(instructions))

    def all_tasks(self) -> list[str]:
        return list(self.tasks or [])

    def parse_pool(self, spec: str | Sequence[str]) -> list[str]:
        pool = split_task_list(spec)
        unknown = [t for t in pool if self.tasks is not None and t not in self.tasks]
        if not pool or unknown:
            raise AMFInputError(f"Task(s) {', '.join(map(repr, unknown)) or '(none)'} are not among the recorded "
                                f"tasks: {', '.join(map(repr, self.tasks or [])) or '(none given)'}.")
        return pool

    def instruction(self, task: str) -> str:
        return task

    def suite_of(self, task: str) -> str:
        return "recorded"

    def env_for(self, env_cfg, task: str):
        raise AMFInputError("Recorded tasks have no simulator to build an env for.")

    def default_pool(self, env_cfg) -> list[str]:
        return split_task_list(env_cfg.task) if env_cfg is not None and self.tasks is None else self.all_tasks()

    def policy_features(self, env_cfg) -> dict:
        return {}  # no env: the policy's own features are what its demos must fit

    def protocol(self, env_cfg) -> dict:
        return {"evaluated": "nothing (no simulator)"}

    def vocabulary(self, pool: list[str]) -> TaskVocabulary:
        return TaskVocabulary(None, {t: t for t in pool}, {t: t for t in pool})


def split_task_list(spec: str | Sequence[str]) -> list[str]:
    """Comma-separated string or list -> names stripped of spaces, order kept, repeats dropped."""
    names = [t.strip() for t in spec.split(",")] if isinstance(spec, str) else [str(t).strip() for t in spec]
    return list(dict.fromkeys(n for n in names if n))


_CATALOGS: dict[str, Callable[[], TaskCatalog]] = {}


def register_catalog(env_type: str):
    """Class decorator: ``task_catalog`` builds this catalogue for ``--env.type=<env_type>``."""

    def wrap(cls):
        _CATALOGS[env_type] = cls
        cls.env_type = env_type
        return cls

    return wrap


def task_catalog(env_cfg_or_type) -> TaskCatalog:
    """The catalogue of an env config (or env type name)."""
    env_type = env_cfg_or_type if isinstance(env_cfg_or_type, str) else env_cfg_or_type.type
    if env_type not in _CATALOGS:
        _import_catalog(env_type)
    if env_type not in _CATALOGS:
        raise AMFInputError(f"No task catalogue for --env.type={env_type}. Allowed: {', '.join(known_env_types())}.")
    return _CATALOGS[env_type]()


def known_env_types() -> list[str]:
    return sorted({*_CATALOGS, *_LAZY})


# Catalogues whose module is imported only when asked for (their simulators are optional extras).
_LAZY = {"libero": "lerobot_amf.envs.libero"}


def _import_catalog(env_type: str) -> None:
    import importlib

    module = _LAZY.get(env_type)
    if module is None:
        return
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise AMFInputError(f"--env.type={env_type} needs its simulator: pip install 'lerobot-amf[{env_type}]' "
                            f"({type(err).__name__}: {err}).") from None
