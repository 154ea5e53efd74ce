"""Per-task evaluation in the simulator, with Wilson 95% intervals.

Rollouts are LeRobot's own (``lerobot.scripts.lerobot_eval.eval_policy``) on one vector env
per task built by LeRobot's ``make_env`` from the env's one-task config
(``TaskCatalog.env_for``, ``TaskCatalog.make_envs``); results per task, per suite and pooled;
initial states are seeded ``eval_seed, eval_seed+1, ...`` for every task, every round and every
strategy (common random numbers), and never overlap the seeds demos are recorded from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math

import torch
from lerobot.envs.factory import make_env_pre_post_processors
from lerobot.envs.utils import close_envs
from lerobot.processor.pipeline import ObservationProcessorStep
from lerobot.scripts.lerobot_eval import eval_policy

from lerobot_amf.envs.tasks import task_catalog
from lerobot_amf.errors import AMFInputError
from lerobot_amf.features import resized_images


# What an evaluation is of: the one plain model, or the routed per-partition policy.
SINGLE_MODEL = "single model"
PER_PARTITION = "per-partition"


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarise(successes: int, n: int) -> dict:
    lo, hi = wilson_interval(successes, n)
    return {"successes": successes, "episodes": n, "success_rate": successes / n if n else None,
            "ci95": [round(lo, 4), round(hi, 4)]}


def first_episodes(per_task: dict[str, dict] | None, k: int | None) -> dict[str, dict] | None:
    """An evaluation as if only its first ``k`` episodes per task had run (the first ``k`` seeds
    from ``amf.eval_seed``; None: all of it): what a strategy that reads evaluations sees when a
    team can afford ``k`` evaluation episodes per task and round (``--amf.selection_eval_episodes``)."""
    if per_task is None or k is None:
        return per_task
    out = {}
    for task, entry in per_task.items():
        outcomes = entry.get("per_episode_success")
        if outcomes is None:  # an evaluation recorded before outcomes were kept per episode
            if entry["episodes"] > k:
                raise AMFInputError(f"amf.selection_eval_episodes={k}: this run's evaluations of {task} kept no "
                                    "per-episode outcomes; resume without it, or start a new --output_dir.")
            out[task] = entry
            continue
        kept = outcomes[:k]
        out[task] = {**summarise(sum(kept), len(kept)), "per_episode_success": kept}
    return out


def format_success(entry: dict | None, counts: bool = False) -> str:
    """``summarise``'s entry as "0.70 [0.40, 0.89]" (with ``counts``: "... (7/10)"); "-" for none."""
    if entry is None:
        return "-"
    lo, hi = entry["ci95"]
    text = f"{entry['success_rate']:.2f} [{lo:.2f}, {hi:.2f}]"
    return f"{text} ({entry['successes']}/{entry['episodes']})" if counts else text


def eval_protocol(amf_cfg, env_cfg, policy_cfg=None) -> dict:
    """What an evaluation ran (``amf_cfg``: the train, eval or plan CLI's ``--amf`` section); with
    ``policy_cfg``, also the cameras resized to the policy's size."""
    catalog = task_catalog(env_cfg)
    if not catalog.simulator:  # a real robot's recorded tasks: nothing is evaluated
        return {"episodes_per_task": 0, "seeds": "-", "max_steps": None, "env": env_cfg.type,
                "success": "not evaluated (no simulator)", "interval": "-", **catalog.protocol(env_cfg)}
    protocol = {
        "episodes_per_task": amf_cfg.eval_episodes,
        "seeds": f"{amf_cfg.eval_seed}..{amf_cfg.eval_seed + amf_cfg.eval_episodes - 1} (same for every task and round)",
        **({"final_episodes_per_task": final,
            "final_seeds": f"{amf_cfg.eval_seed}..{amf_cfg.eval_seed + final - 1} (last round)"}
           if (final := getattr(amf_cfg, "final_eval_episodes", None)) is not None else {}),
        **({"episodes_read_by_selection": f"the first {k} per task (lowest_success, amf_eval)"}
           if (k := getattr(amf_cfg, "selection_eval_episodes", None)) is not None else {}),
        "max_steps": getattr(env_cfg, "episode_length", None),
        "env": env_cfg.type,
        "success": "environment's success flag at any step",
        "interval": "Wilson 95%",
        **catalog.protocol(env_cfg),
    }
    sizes = resized_images(catalog.policy_features(env_cfg), policy_cfg) if policy_cfg else {}
    if sizes:
        protocol["images_resized_to"] = {key: list(size) for key, size in sizes.items()}
    return protocol


def episodes_label(protocol: dict) -> str:
    """"20" or "20 (50 in the last round)": the episodes per task an evaluation protocol ran."""
    final = protocol.get("final_episodes_per_task")
    return f"{protocol['episodes_per_task']}" + (f" ({final} in the last round)" if final is not None else "")


@dataclasses.dataclass
class ResizeImages(ObservationProcessorStep):
    """Cameras resized (bilinear, antialiased) to the size the policy was trained at."""

    sizes: dict[str, tuple[int, int]]  # observation key -> (height, width)

    def observation(self, observation):
        out = dict(observation)
        for key, size in self.sizes.items():
            if key in out and tuple(out[key].shape[-2:]) != tuple(size):
                out[key] = torch.nn.functional.interpolate(out[key], size=size, mode="bilinear",
                                                           antialias=True, align_corners=False)
        return out

    def transform_features(self, features):
        return {kind: {key: (dataclasses.replace(f, shape=(f.shape[0], *self.sizes[key])) if key in self.sizes else f)
                       for key, f in group.items()} for kind, group in features.items()}


def env_processors(env_cfg, policy_cfg):
    """LeRobot's env pre/post-processors for ``env_cfg`` (``EnvConfig.get_env_processors``), plus
    ``ResizeImages`` for cameras the env renders at another size than the policy reads and does
    not resize itself (a LIBERO env config rendering 360x360, LeRobot's default, for a policy
    trained on ``lerobot/libero``'s 256x256 frames: the policy would otherwise see another scale,
    or fail in an encoder built for its own size)."""
    env_pre, env_post = make_env_pre_post_processors(env_cfg=env_cfg, policy_cfg=policy_cfg)
    sizes = resized_images(task_catalog(env_cfg).policy_features(env_cfg), policy_cfg)
    if sizes:
        env_pre.steps = [*env_pre.steps, ResizeImages(sizes)]
    return env_pre, env_post


@contextlib.contextmanager
def task_vec_env(env_cfg, task: str, n_envs: int):
    """LeRobot's ``make_env`` vector env for one task of ``env_cfg`` (``TaskCatalog.make_envs``),
    closed on exit."""
    catalog = task_catalog(env_cfg)
    envs = catalog.make_envs(catalog.env_for(env_cfg, task), n_envs)
    try:
        yield next(iter(next(iter(envs.values())).values()))
    finally:
        close_envs(envs)


def evaluate_tasks(policy, preprocessor, postprocessor, env_cfg, tasks, amf_cfg, episodes: int | None = None) -> dict:
    """Success per task, per suite and pooled over the given tasks, of ``policy``, over ``episodes``
    per task (default ``amf_cfg.eval_episodes``) from seed ``amf_cfg.eval_seed``."""
    env_pre, env_post = env_processors(env_cfg, policy.config)
    episodes = amf_cfg.eval_episodes if episodes is None else episodes
    per_task = {}
    for task in tasks:
        n_envs = min(amf_cfg.eval_batch_size, episodes)
        with task_vec_env(env_cfg, task, n_envs) as vec, torch.no_grad():
            info = eval_policy(
                vec, policy, env_pre, env_post, preprocessor, postprocessor,
                n_episodes=episodes, start_seed=amf_cfg.eval_seed,
            )
        outcomes = [int(bool(ep["success"])) for ep in sorted(info["per_episode"], key=lambda ep: ep["seed"])]
        per_task[task] = {**summarise(sum(outcomes), len(outcomes)), "per_episode_success": outcomes}
    return {"per_task": per_task, "per_suite": per_suite(per_task, task_catalog(env_cfg).suite_of),
            "overall": pooled(per_task, tasks)}


def per_suite(per_task: dict, suite_of) -> dict:
    """Success pooled per suite (``suite_of``: task -> suite)."""
    suites: dict[str, list[str]] = {}
    for task in per_task:
        suites.setdefault(suite_of(task), []).append(task)
    return {suite: pooled(per_task, tasks) for suite, tasks in suites.items()}


def pooled(per_task: dict, tasks) -> dict:
    """Success pooled over ``tasks`` (equal episodes per task: the mean of per-task rates)."""
    tasks = [t for t in tasks if t in per_task]
    s = sum(per_task[t]["successes"] for t in tasks)
    n = sum(per_task[t]["episodes"] for t in tasks)
    return {**summarise(s, n), "tasks": list(tasks)}
