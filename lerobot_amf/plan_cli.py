"""``lerobot-amf-plan``: which tasks should the next demos be for? The answer without a loop.

    lerobot-amf-plan --policy.path=<checkpoint or Hub repo> --amf.demos=6 \\
        [--dataset.repo_id=<demos in hand> --dataset.root=<folder>] [--amf.tasks=a,b,c] \\
        [--amf.target_weights='{"a": 2}'] [--env.type=mw_state|libero ... for rollouts and evaluation]

It ranks the pool for the next ``--amf.demos`` demos with amf, and shows beside it what uniform,
least_demonstrated and, where they can run, rebalancing (the policy's pretraining counts are known),
lowest_success and amf_eval (an env to evaluate in) would pick, with why: amf's gains and ESS, the
demos in hand, success where measured. Output: a table on the console, ``amf_plan.json`` and
``amf_plan.png`` in ``--output_dir``.

It calls the strategies the round loop calls, on the context the loop builds
(``selection.base.round_context``): for the same policy, demos, seed and round, amf picks what the
loop's amf picks. Without ``--env.type`` nothing is rolled out or evaluated (a real robot, no
simulator): the tasks are named by ``--amf.catalog=<env type>`` (``mw_state``: the one-hot order of
its policies) or, for a language-conditioned policy, by the instruction strings of the demos in hand.
"""


import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lerobot import envs
from lerobot.configs.default import DatasetConfig
from lerobot.configs.policies import PreTrainedConfig
from rich.console import Console
from rich.table import Table

from lerobot_amf.configs import check_new_output_dir, check_seed, wrap
from lerobot_amf.errors import AMFInputError
from lerobot_amf.eval_cli import PolicyFromPath
from lerobot_amf.selection.config import AMFSelectionConfig

PLAN_FILENAME, PLOT_FILENAME = "amf_plan.json", "amf_plan.png"
FORMAT = "lerobot_amf.plan/1"
COMPARED = ("uniform", "least_demonstrated", "rebalancing", "lowest_success", "amf_eval")


@dataclass
class AMFPlanConfig:
    demos: int = 4  # the next k demos to plan for
    # Task pool, comma-separated (default: the env's tasks, else the tasks of the demos in hand).
    tasks: str | None = None
    target_weights: dict[str, float] | None = None  # mu(c) over the pool (default uniform)
    # Without --env.type: the env type whose task names and task encoding the policy uses (e.g.
    # mw_state); unset: the instruction strings of the demos in hand (language-conditioned policies).
    catalog: str | None = None
    # With --env.type: evaluate the policy on every pool task first (lowest_success, amf_eval, the
    # success column); false: rollouts for amf's fallback only.
    evaluate: bool = True
    eval_episodes: int = 10
    eval_batch_size: int = 10
    eval_seed: int = 1_000_000
    # The round the plan stands for (the loop seeds each round's choice by --seed and the round).
    round_index: int = 0
    base_path: str | None = None  # routed checkpoints: the base to use instead of routing.json's
    selection: AMFSelectionConfig = field(default_factory=AMFSelectionConfig)

    def validate(self) -> None:
        if self.demos < 1:
            raise AMFInputError(f"amf.demos={self.demos}: must be at least 1.")
        if self.eval_episodes < 1 or self.eval_batch_size < 1:
            raise AMFInputError(f"amf.eval_episodes={self.eval_episodes}, amf.eval_batch_size={self.eval_batch_size}: "
                                "both must be at least 1.")
        if self.round_index < 0:
            raise AMFInputError(f"amf.round_index={self.round_index}: must be >= 0.")
        self.selection.validate()


@dataclass
class AMFPlanPipelineConfig(PolicyFromPath):
    env: envs.EnvConfig | None = None  # a simulator: rollouts and evaluation (none: a real robot)
    dataset: DatasetConfig | None = None  # the demos in hand (repo id, and root for a local folder)
    amf: AMFPlanConfig = field(default_factory=AMFPlanConfig)
    policy: PreTrainedConfig | None = None  # filled from --policy.path, as lerobot-eval does
    output_dir: Path | None = None
    seed: int = 1000  # lerobot-train's default: a run's seed gives its plan
    rename_map: dict[str, str] = field(default_factory=dict)


def demos_in_hand(cfg: AMFPlanPipelineConfig):
    """(DatasetRef, metadata) of ``--dataset.*``, its path templates checked; (None, None) without one."""
    if cfg.dataset is None or not cfg.dataset.repo_id:
        return None, None
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    from lerobot_amf.data import DatasetRef
    from lerobot_amf.trust import check_dataset_copy

    root = Path(cfg.dataset.root) if cfg.dataset.root else None
    if root is not None and not (root / "meta" / "info.json").exists():
        raise AMFInputError(f"--dataset.root={root}: no LeRobot dataset there (no meta/info.json).")
    try:
        meta = LeRobotDatasetMetadata(cfg.dataset.repo_id, root=root)
    except Exception as err:  # a repo that is not there, or not a LeRobot dataset
        raise AMFInputError(f"--dataset.repo_id={cfg.dataset.repo_id}: cannot be read as a LeRobot dataset "
                            f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}).") from None
    check_dataset_copy(meta, cfg.dataset.repo_id)
    return DatasetRef(cfg.dataset.repo_id, Path(meta.root)), meta


def catalog_of(cfg: AMFPlanPipelineConfig, meta, policy_cfg):
    """The task catalogue: the env's, ``--amf.catalog``'s, or the demos' own instruction strings."""
    from lerobot_amf.envs.tasks import RecordedTasks, task_catalog

    if cfg.env is not None:
        return task_catalog(cfg.env)
    if cfg.amf.catalog is not None:
        return task_catalog(cfg.amf.catalog)
    if "observation.environment_state" in (policy_cfg.input_features or {}):
        raise AMFInputError("This policy reads an environment-state input (a one-hot task code, for one): name how its "
                            "tasks are encoded with --amf.catalog=<env type> (e.g. mw_state), or give --env.type.")
    if meta is None:
        raise AMFInputError("Without --env.type or --amf.catalog the tasks are those of the demos in hand: "
                            "give --dataset.repo_id (and --dataset.root).")
    return RecordedTasks([meta.tasks.index[i] for i in range(len(meta.tasks))])


def plan(cfg: AMFPlanPipelineConfig) -> dict:
    """The plan: each strategy's picks for the next ``amf.demos`` demos, and why."""
    from lerobot_amf.eval_cli import check_routable, evaluate_pool, load_policy
    from lerobot_amf.evaluation import eval_protocol
    from lerobot_amf.pretrain import pretrain_demos_ref, read_pretrain_record
    from lerobot_amf.selection import make_strategy
    from lerobot_amf.selection.base import normalised_target_weights, round_context

    cfg.amf.validate()
    ref, meta = demos_in_hand(cfg)
    loaded = load_policy(cfg)
    catalog = catalog_of(cfg, meta, loaded.policy.config)
    pool = catalog.run_pool(cfg.amf.tasks, cfg.env) if (cfg.env is not None or cfg.amf.tasks) \
        else catalog.all_tasks()
    weights = normalised_target_weights(cfg.amf.target_weights, pool)
    vocabulary = catalog.vocabulary(pool)
    counts = {t: 0 for t in pool}
    for task, episodes in (vocabulary.episodes_by_task(meta) if meta is not None else {}).items():
        counts[task] = len(episodes)
    record = read_pretrain_record(Path(cfg.policy_path)) if Path(cfg.policy_path).is_dir() else None
    pretrain_counts = {t: record["demos_per_task"].get(t, 0) for t in pool} if record else None
    success = None
    if cfg.env is not None and cfg.amf.evaluate and cfg.amf.selection.simulator:
        check_routable(loaded.policy, catalog, pool)
        success = evaluate_pool(loaded, cfg.env, pool, cfg.amf, catalog)["per_task"]
    env_cfg = cfg.env if cfg.amf.selection.simulator else None

    def context():  # each strategy its own: the same random numbers as the loop's round
        return round_context(
            round_index=cfg.amf.round_index, seed=cfg.seed, pool=pool, target_weights=weights, counts=counts,
            capacity={t: None for t in pool}, pretrain_counts=pretrain_counts, success=success,
            policy=loaded.policy, preprocessor=loaded.preprocessor, postprocessor=loaded.postprocessor,
            env_cfg=env_cfg, demo_dataset=ref if meta is not None and meta.total_episodes else None,
            pretrain_dataset=pretrain_demos_ref(Path(cfg.policy_path), record) if record else None,
            vocabulary=vocabulary)

    chosen = make_strategy("amf", cfg.amf.selection).select(context(), cfg.amf.demos)
    compared, skipped = {}, {}
    for name in COMPARED:
        why = unavailable(name, pretrain_counts, success)
        if why:
            skipped[name] = why
            continue
        sel = make_strategy(name, cfg.amf.selection).select(context(), cfg.amf.demos)
        compared[name] = {"tasks": sel.tasks, "per_task": dict(Counter(sel.tasks)), "reason": sel.reason}
    details = chosen.details
    return {
        "format": FORMAT,
        "model": {**loaded.info, "pretraining_demos_known": record is not None},
        "demos_in_hand": None if ref is None else {"repo_id": ref.repo_id, "episodes": int(meta.total_episodes)},
        "pool": pool, "target_weights": weights, "demos": cfg.amf.demos, "seed": cfg.seed,
        "round_index": cfg.amf.round_index,
        "simulator": env_cfg is not None,
        "eval_protocol": eval_protocol(cfg.amf, cfg.env, loaded.policy.config) if success is not None else None,
        "per_task": {t: {"demos_in_hand": counts[t], "pretraining_demos": None if pretrain_counts is None
                         else pretrain_counts[t], "success": None if success is None else success[t],
                         "amf_gain": chosen.scores.get(t), "ess": details.get("ess", {}).get(t),
                         "amf_picks": chosen.tasks.count(t)} for t in pool},
        "amf": {"tasks": chosen.tasks, "per_task": dict(Counter(chosen.tasks)), "reason": chosen.reason,
                "scores": chosen.scores, "details": details},
        "compared": compared,
        "not_compared": skipped,
    }


def unavailable(name: str, pretrain_counts, success) -> str | None:
    """Why strategy ``name`` cannot be shown in this plan (None: it can)."""
    if name == "rebalancing" and pretrain_counts is None:
        return "needs the policy's pretraining demos per task (unknown for this checkpoint)"
    if name in ("lowest_success", "amf_eval") and success is None:
        return "needs an evaluation of every task (--env.type with --amf.evaluate=true)"
    return None


def print_plan(result: dict, console: Console | None = None) -> None:
    """Two tables: what is known per task, then each strategy's picks (amf first) and why."""
    console = console or Console()
    state = Table(title=f"What the plan knows per task ({'simulator' if result['simulator'] else 'no simulator'})")
    state.add_column("task", overflow="fold")
    for label in ("demos in hand", "pretraining demos", "success now", "amf gain (nats)", "ESS"):
        state.add_column(label, justify="right")
    for task, row in result["per_task"].items():
        s = row["success"]
        state.add_row(task, str(row["demos_in_hand"]),
                      "unknown" if row["pretraining_demos"] is None else str(row["pretraining_demos"]),
                      "-" if s is None else f"{s['successes']}/{s['episodes']}",
                      "-" if row["amf_gain"] is None else f"{row['amf_gain']:.4f}",
                      "-" if row["ess"] is None else f"{row['ess']:.1f}")
    console.print(state)
    picks = Table(title=f"The next {result['demos']} demos, per strategy")
    picks.add_column("strategy")
    picks.add_column("demos per task", overflow="fold")
    picks.add_column("why", overflow="fold")
    for name, entry in {"amf": result["amf"], **result["compared"]}.items():
        picks.add_row(name, ", ".join(f"{t} x{k}" for t, k in entry["per_task"].items()), entry["reason"],
                      style="bold" if name == "amf" else None)
    for name, why in result["not_compared"].items():
        picks.add_row(name, "not shown", why, style="dim")
    console.print(picks)


def plot_plan(result: dict, path: Path) -> None:
    """Demos per task for amf and each baseline shown, side by side; success where measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = result["pool"]
    columns = {"amf": result["amf"]["per_task"], **{n: c["per_task"] for n, c in result["compared"].items()}}
    x = np.arange(len(tasks))
    width = 0.8 / len(columns)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(tasks) + 2), 4.2))
    for j, (name, per_task) in enumerate(columns.items()):
        ax.bar(x + (j - (len(columns) - 1) / 2) * width, [per_task.get(t, 0) for t in tasks], width=width,
               label=name, color=f"C{j}")
    ax.set_xticks(x)
    ax.set_xticklabels(tasks, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel(f"demos of the next {result['demos']}")
    measured = [result["per_task"][t]["success"] for t in tasks]
    if all(m is not None for m in measured):
        twin = ax.twinx()
        twin.plot(x, [m["success_rate"] for m in measured], "k.", label="success now")
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("success now (black dots)")
    ax.legend(fontsize=7)
    ax.set_title(f"lerobot-amf-plan: {'simulator' if result['simulator'] else 'no simulator'}, "
                 f"{result['model']['variant']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@wrap()
def amf_plan(cfg: AMFPlanPipelineConfig) -> dict:
    if cfg.output_dir is None:
        now = dt.datetime.now()
        cfg.output_dir = Path("outputs/plan") / f"{now:%Y-%m-%d}" / f"{now:%H-%M-%S}_amf_plan"
    out = Path(cfg.output_dir)
    check_new_output_dir(out)
    check_seed("--seed", cfg.seed)
    result = plan(cfg)
    from lerobot_amf.atomic import write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    plot_plan(result, out / PLOT_FILENAME)
    write_json_atomic(out / PLAN_FILENAME, result, indent=2)
    print_plan(result)
    Console().print(f"Plan: {out / PLAN_FILENAME} | plot: {out / PLOT_FILENAME}")
    return result


def main() -> None:
    from lerobot_amf.configs import cli_main

    cli_main("lerobot-amf-plan", amf_plan)


if __name__ == "__main__":
    main()
