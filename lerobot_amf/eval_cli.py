"""``lerobot-amf-eval``: evaluate a checkpoint per task and per suite, and say what was evaluated.

    lerobot-amf-eval --policy.path=<folder or Hub repo> --env.type=libero \\
        --env.task=libero_spatial,libero_10/3 --amf.eval_episodes=10 [--output_dir=...]

(any env type with a task catalogue: ``libero``, ``mw_state``).
``--policy.path`` is a plain LeRobot checkpoint (``pretrained_model/``, a Hub repo; loaded as
``lerobot-eval`` loads it) or a ``routed_model/`` folder or repo (``routing.json``: a frozen base
checkpoint + one adapter or head copy per partition, routed by the observation's task string);
a run pushed with ``--amf.push_to_hub`` keeps its routed model at ``<repo id>/routed_model``.
``--env.task`` is the pool (LIBERO: suite names, ``<suite>/<task id>`` or ``<suite>/<task name>``).
Each task gets its own LeRobot vector env and LeRobot's ``eval_policy`` rollouts, seeded
``eval_seed, eval_seed + 1, ...`` (the same for every task): ``evaluation.evaluate_tasks``. The report
(``<output_dir>/amf_eval_report.json``) holds the protocol, what the model is (single model, or
per-partition with the partitions and the partition each task was routed to), and success per
task, per suite and pooled, with Wilson 95% intervals, in the structure of ``amf_report.json``'s
eval entries; the same table is printed.
"""


import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from lerobot import envs
from lerobot.configs import parser
from lerobot.configs.policies import PreTrainedConfig
from rich.console import Console
from rich.table import Table

from lerobot_amf.configs import MAX_EVAL_SEED, check_new_output_dir, check_seed, wrap
from lerobot_amf.errors import AMFInputError
from lerobot_amf.envs.tasks import task_catalog
from lerobot_amf.evaluation import (PER_PARTITION, SINGLE_MODEL, eval_protocol, evaluate_tasks, format_success,
                                    per_suite, pooled)
from lerobot_amf.isolation.routing import ROUTING_FILENAME, RoutedPolicy
from lerobot_amf.trust import check_finite_processors, local_checkpoint, user_policy_values, user_tokenizer

REPORT_FILENAME = "amf_eval_report.json"
FORMAT = "lerobot_amf.eval/1"
WHAT_IT_DOES_NOT_SHOW = ("Success rates over {n} episodes per task in simulation, with these initial states and "
                         "seeds; they do not show performance on other initial states, other tasks, or real robots.")


@dataclass
class AMFEvalConfig:
    # Episodes per task, vectorised envs per task, first seed (episode e uses eval_seed + e).
    eval_episodes: int = 10
    eval_batch_size: int = 10
    eval_seed: int = 1_000_000
    # Routed checkpoints: use this base checkpoint instead of the one recorded in routing.json.
    base_path: str | None = None

    def validate(self) -> None:
        if self.eval_episodes < 1 or self.eval_batch_size < 1:
            raise AMFInputError(f"amf.eval_episodes={self.eval_episodes}, amf.eval_batch_size={self.eval_batch_size}: "
                                "both must be at least 1.")
        check_seed("amf.eval_seed", self.eval_seed, MAX_EVAL_SEED)


class PolicyFromPath:
    """A CLI config whose ``policy`` is read from ``--policy.path`` (and ``--policy.*`` overrides), as
    ``lerobot-eval`` reads it: ``policy_path`` and ``policy_overrides`` after parsing."""

    def __post_init__(self) -> None:
        self.policy_path = parser.get_path_arg("policy")
        self.policy_overrides = parser.get_cli_overrides("policy")

    @classmethod
    def __get_path_fields__(cls) -> list[str]:
        return ["policy"]


@dataclass
class AMFEvalPipelineConfig(PolicyFromPath):
    env: envs.EnvConfig
    amf: AMFEvalConfig = field(default_factory=AMFEvalConfig)
    policy: PreTrainedConfig | None = None  # filled from --policy.path
    output_dir: Path | None = None
    rename_map: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadedPolicy:
    policy: object
    preprocessor: object
    postprocessor: object
    info: dict  # what the report says about the model


def routed_checkpoint(path: str) -> Path | None:
    """The local folder of a routed checkpoint at ``path``; None for a plain one.

    ``path`` is a folder, a Hub repo id (its root holds ``routing.json``, or a plain checkpoint),
    or ``<repo id>/<folder>`` for a routed checkpoint inside a repo — ``<repo id>/routed_model``
    for a run pushed with ``--amf.push_to_hub``, which keeps the plain model at the root. Only
    that folder's files are downloaded.
    """
    local = Path(path)
    if local.is_dir():
        return local if (local / ROUTING_FILENAME).exists() else None
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    parts = path.strip("/").split("/")
    repo_id, folder = "/".join(parts[:2]), "/".join(parts[2:])
    routing = f"{folder}/{ROUTING_FILENAME}" if folder else ROUTING_FILENAME
    try:
        hf_hub_download(repo_id, routing)
    except LocalEntryNotFoundError:  # (a subclass of EntryNotFoundError)
        raise AMFInputError(f"--policy.path={path}: no such folder, and the Hub repo is not in the local cache while "
                            "offline (HF_HUB_OFFLINE=1 or no network): download it first (hf download "
                            f"{repo_id}) or go online.") from None
    except EntryNotFoundError:
        if folder:
            raise AMFInputError(f"--policy.path={path}: the Hub repo {repo_id} has no {routing} (a routed checkpoint "
                                f"folder); a plain checkpoint is loaded by the repo id alone.") from None
        return None
    except RepositoryNotFoundError:
        raise AMFInputError(f"--policy.path={path}: no such folder, and no Hub repo {repo_id} (or no access to it).") \
            from None
    except HFValidationError:
        raise AMFInputError(f"--policy.path={path}: no such folder, and not a Hub repo id.") from None
    if not folder:
        return Path(snapshot_download(repo_id))
    return Path(snapshot_download(repo_id, allow_patterns=[f"{folder}/*"])) / folder


def load_policy(cfg) -> LoadedPolicy:
    """The policy at ``--policy.path`` with its processors, on ``--policy.device`` (``cfg``: the eval or
    plan CLI's config; without an env, the checkpoint's own features)."""
    from lerobot.policies.factory import make_policy, make_pre_post_processors
    from lerobot.utils.device_utils import get_safe_torch_device

    if not cfg.policy_path:
        raise AMFInputError("This command needs --policy.path: a LeRobot checkpoint (folder or Hub repo) or a "
                            "routed_model/ folder (or <repo id>/routed_model).")
    user = user_policy_values(cfg.policy_overrides)
    routed_dir = routed_checkpoint(cfg.policy_path)
    if routed_dir is not None:
        from lerobot_amf.isolation.routing import load_opened_routed_policy, open_routed_model

        with user_tokenizer(user.get("vlm_model_name")):
            opened = open_routed_model(routed_dir, cfg.amf.base_path, user)
        record, base = opened.record, opened.base
        try:
            device = PreTrainedConfig.from_pretrained(base, cli_overrides=cfg.policy_overrides).device
        except (FileNotFoundError, OSError) as err:
            raise AMFInputError(f"The routed checkpoint's base {base} cannot be loaded ({type(err).__name__}); "
                                "pass --amf.base_path=<base checkpoint folder or Hub repo>.") from None
        device = str(get_safe_torch_device(device))
        with user_tokenizer(user.get("vlm_model_name")):
            policy, pre, post = load_opened_routed_policy(opened, device=device)
        if pre is None:
            raise AMFInputError(f"--policy.path={cfg.policy_path}: no processors saved next to {ROUTING_FILENAME}.")
        info = {"variant": PER_PARTITION, "path": str(cfg.policy_path), "type": record["base"]["type"],
                "isolation": record["mode"], "partitions": record["partitions"]["groups"],
                "partition_scheme": record["partitions"]["scheme"], "base_checkpoint": base}
        check_finite_processors((pre, post), f"--policy.path={cfg.policy_path}")
        return LoadedPolicy(policy, pre, post, info)
    local = str(local_checkpoint(cfg.policy_path, user_values=user))  # a Hub repo: its checked snapshot
    cfg.policy = PreTrainedConfig.from_pretrained(local, cli_overrides=cfg.policy_overrides)
    cfg.policy.pretrained_path = local
    if cfg.env is None:  # no env to take features from (lerobot-amf-plan for a real robot): the checkpoint's own
        from lerobot.policies.factory import get_policy_class

        policy = get_policy_class(cfg.policy.type).from_pretrained(local, config=cfg.policy)
    else:
        policy = make_policy(cfg.policy, env_cfg=cfg.env, rename_map=cfg.rename_map)
    policy.eval()
    with user_tokenizer(user.get("vlm_model_name")):
        pre, post = make_pre_post_processors(
            policy_cfg=cfg.policy, pretrained_path=local,
            preprocessor_overrides={"device_processor": {"device": str(policy.config.device)},
                                    "rename_observations_processor": {"rename_map": cfg.rename_map}})
    info = {"variant": SINGLE_MODEL, "path": str(cfg.policy_path), "type": cfg.policy.type}
    check_finite_processors((pre, post), f"--policy.path={cfg.policy_path}")
    return LoadedPolicy(policy, pre, post, info)


def check_routable(policy, catalog, tasks: list[str]) -> None:
    """A routed policy must route every evaluated task's instruction to one of its partitions."""
    if not isinstance(policy, RoutedPolicy):
        return
    unroutable = []
    for task in tasks:
        try:
            policy.route({"task": [catalog.instruction(task)]})
        except ValueError:
            unroutable.append(task)
    if unroutable:
        raise AMFInputError(f"The routed policy has no partition for task(s) {', '.join(unroutable)}. "
                            f"Its partitions: {policy.partitions.describe()}.")


def evaluate_pool(loaded: LoadedPolicy, env_cfg, tasks: list[str], amf_cfg, catalog) -> dict:
    """Per task, per suite and pooled success (``evaluation.evaluate_tasks``, one task at a time);
    for a routed policy also the partition each task ran on (the one active after its rollouts)."""
    per_task, routed_to = {}, {}
    for task in tasks:
        per_task.update(evaluate_tasks(loaded.policy, loaded.preprocessor, loaded.postprocessor, env_cfg, [task],
                                       amf_cfg)["per_task"])
        if isinstance(loaded.policy, RoutedPolicy):
            routed_to[task] = loaded.policy.active
        logging.info(f"{task}: {per_task[task]['successes']}/{per_task[task]['episodes']}")
    result = {"per_task": per_task, "per_suite": per_suite(per_task, catalog.suite_of),
              "overall": pooled(per_task, tasks), "variant": loaded.info["variant"]}
    if routed_to:
        result["routed_to_partition"] = routed_to
    return result


def build_report(cfg: AMFEvalPipelineConfig, loaded: LoadedPolicy, tasks: list[str], result: dict) -> dict:
    return {
        "format": FORMAT,
        "model": loaded.info,
        "env": {"type": cfg.env.type, "task": cfg.env.task, "pool": tasks},
        "eval_protocol": eval_protocol(cfg.amf, cfg.env, loaded.policy.config),
        "eval": result,
        "not_shown": WHAT_IT_DOES_NOT_SHOW.format(n=cfg.amf.eval_episodes),
    }


def print_report(report: dict, console: Console | None = None) -> None:
    console = console or Console()
    ev, model = report["eval"], report["model"]
    table = Table(title=f"Success per task (Wilson 95%) — {model['variant']} {model['type']} from {model['path']}")
    table.add_column("task", overflow="fold")  # LIBERO task names are long: show them whole
    table.add_column("suite")
    table.add_column("success", justify="right")
    table.add_column("episodes", justify="right")
    suite_of = {t: s for s, entry in ev["per_suite"].items() for t in entry["tasks"]}
    for task, entry in ev["per_task"].items():
        table.add_row(task, suite_of[task], format_success(entry), str(entry["episodes"]))
    for suite, entry in ev["per_suite"].items():
        table.add_row(f"{suite} (pooled)", suite, format_success(entry), str(entry["episodes"]), style="bold")
    table.add_row("all tasks (pooled)", "", format_success(ev["overall"]), str(ev["overall"]["episodes"]), style="bold")
    console.print(table)
    proto = report["eval_protocol"]
    what = model["variant"]
    if model["variant"] == PER_PARTITION:
        what += f" ({model['isolation']}, {len(model['partitions'])} partitions: {model['partition_scheme']})"
    console.print(f"model: {what} | eval: {proto['episodes_per_task']} episodes/task, seeds {proto['seeds']}, "
                  f"max steps {proto['max_steps']}, initial states: {proto.get('initial_states', 'env default')}, "
                  f"{proto['interval']} intervals")
    console.print(report["not_shown"])


@wrap()
def amf_eval(cfg: AMFEvalPipelineConfig) -> dict:
    catalog = task_catalog(cfg.env)
    tasks = catalog.default_pool(cfg.env)
    cfg.amf.validate()
    if cfg.output_dir is None:
        now = dt.datetime.now()
        cfg.output_dir = Path("outputs/eval") / f"{now:%Y-%m-%d}" / f"{now:%H-%M-%S}_amf_{cfg.env.type}"
    check_new_output_dir(cfg.output_dir)
    path = Path(cfg.output_dir) / REPORT_FILENAME
    loaded = load_policy(cfg)
    check_routable(loaded.policy, catalog, tasks)
    result = evaluate_pool(loaded, cfg.env, tasks, cfg.amf, catalog)
    report = build_report(cfg, loaded, tasks, result)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print_report(report)
    return report


def main() -> None:
    from lerobot_amf.configs import cli_main

    cli_main("lerobot-amf-eval", amf_eval)


if __name__ == "__main__":
    main()
