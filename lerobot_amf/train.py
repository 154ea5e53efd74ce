"""``lerobot-amf-train``: LeRobot's training CLI plus ``--amf.*``, run as rounds of

    select tasks -> pull demos -> fine-tune -> evaluate -> record (ledger, report, plots)

in three plain steps: ``setup_run`` (check everything, load the generalist, open the ledger),
``run_round`` (once per round) and ``finish_run``. All processes select (amf splits its
embedding pass across them); the main one records and pulls; all train.
The run directory is the only state: ``amf_ledger.jsonl`` (append-only), ``demos/`` (the
LeRobotDataset of fine-tuning demos), ``checkpoints/round_XX`` (LeRobot checkpoints; ``last``
points at the newest), ``amf_report.json`` and the plots.
"""

import contextlib
import dataclasses
import hashlib
import sys
from collections import Counter
from pathlib import Path

import draccus
from lerobot.configs import parser
from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.factory import get_policy_class, make_policy, make_pre_post_processors
from lerobot.utils.random_utils import set_seed
from lerobot.utils.constants import CHECKPOINTS_DIR, LAST_CHECKPOINT_LINK

from rich.console import Console

from lerobot_amf.configs import AMFTrainPipelineConfig, cli_main, missing_policy_path, wrap
from lerobot_amf.atomic import atomic_dir, new_dir_atomic, symlink_atomic
from lerobot_amf.data import (DatasetRef, check_demo_records, episodes_stats, open_dataset, repair_demo_dataset,
                              write_demos)
from lerobot_amf.envs.metaworld_state import MetaworldStateEnvConfig
from lerobot_amf.envs.tasks import TaskCatalog, TaskVocabulary, task_catalog
from lerobot_amf.errors import AMFInputError
from lerobot_amf.evaluation import eval_protocol, evaluate_tasks, first_episodes
from lerobot_amf.features import feature_mismatches
from lerobot_amf.isolation.modes import Isolation, make_isolation, plan_partitions
from lerobot_amf.isolation.partitions import Partitions
from lerobot_amf.ledger import Ledger, LedgerState, same_lerobot_release, software
from lerobot_amf.locks import exclusive
from lerobot_amf.publish import PushError, base_origin, check_push_ready, push_run
from lerobot_amf.phases import phase
from lerobot_amf.pretrain import (cached_eval_path, ensure_pretrained, pretrain_demos_ref, read_cached_eval,
                                  read_pretrain_record, write_cached_eval)
from lerobot_amf.report import REPORT_FILENAME, print_final_comparison, print_round_table, write_report
from lerobot_amf.selection import Selection, Strategy, make_strategy
from lerobot_amf.selection.base import normalised_target_weights, round_context
from lerobot_amf.selection.progress import Evaluated, stalled_tasks
from lerobot_amf.sources import DemoSource, WaitingForDemos, make_source
from lerobot_amf.tracking import RoundLogger, start_tracking
from lerobot_amf.trust import check_finite_processors, user_policy_values, user_tokenizer

console = Console(stderr=True)


@dataclasses.dataclass
class RunPlan:
    """Everything decided (and checked) before anything is written."""

    pool: list[str]
    target_weights: dict[str, float]  # mu(c) over the pool, sums to 1; tasks left out of a map weigh 0
    budget: int
    rounds: list[int]  # demos to pull in each round
    vocabulary: TaskVocabulary  # how the pool's tasks are named to the policy and in datasets
    partitions: Partitions | None  # None: clustered, decided from the pretrained policy in make_isolation


def plan_run(cfg: AMFTrainPipelineConfig, source: DemoSource, catalog: TaskCatalog) -> RunPlan:
    amf = cfg.amf
    pool = catalog.run_pool(amf.tasks, cfg.env)
    twins = list(catalog.instruction_collisions(pool).values())
    if twins:  # their demos and their routing could not be told apart
        raise AMFInputError(f"Tasks with the same instruction cannot share a pool: {'; '.join(map(' = '.join, twins))}. "
                            "Keep one of each.")
    source.validate_pool(pool)
    weights = normalised_target_weights(amf.target_weights, pool)
    budget = amf.total_budget()
    if budget > amf.rounds * amf.demos_per_round:
        raise AMFInputError(
            f"amf.budget={budget} cannot be spent in amf.rounds={amf.rounds} x "
            f"amf.demos_per_round={amf.demos_per_round} = {amf.rounds * amf.demos_per_round} demos."
        )
    check_capacity(source, pool, budget, set())
    per_round, left = [], budget
    while left > 0:
        per_round.append(min(amf.demos_per_round, left))
        left -= per_round[-1]
    return RunPlan(pool, weights, budget, per_round, catalog.vocabulary(pool), plan_partitions(cfg, pool, catalog))


def check_capacity(source: DemoSource, pool: list[str], budget: int, exclude: set[str]) -> None:
    """The source must still hold ``budget`` demos of the pool that are not in ``exclude``."""
    capacities = [source.remaining(t, exclude) for t in pool]
    if all(c is not None for c in capacities) and sum(capacities) < budget:
        left_out = f", not counting the {len(exclude)} pretraining demos" if exclude else ""
        raise AMFInputError(
            f"amf.budget={budget} demos exceeds what source {source.name!r} can give for the pool{left_out} "
            f"({sum(capacities)} demos: {dict(zip(pool, capacities))})."
        )


def make_processors(cfg, policy, stats=None):
    """The checkpoint's processors; with ``stats``, its normaliser re-fitted to those stats."""
    pre_over = {"device_processor": {"device": cfg.policy.device or "cpu"}}
    post_over = {}
    if stats is not None:
        features = {**policy.config.input_features, **policy.config.output_features}
        pre_over["normalizer_processor"] = {"stats": stats, "features": features,
                                            "norm_map": policy.config.normalization_mapping}
        post_over["unnormalizer_processor"] = {"stats": stats, "features": policy.config.output_features,
                                               "norm_map": policy.config.normalization_mapping}
    processors = make_pre_post_processors(
        policy_cfg=policy.config, pretrained_path=str(cfg.policy.pretrained_path),
        preprocessor_overrides=pre_over, postprocessor_overrides=post_over,
    )
    check_finite_processors(processors, f"The processors of {cfg.policy.pretrained_path}"
                            + (" with the source's statistics" if stats is not None else ""))
    return processors


def round_seed(seed: int | None, r: int, step: str) -> int:
    """The seed of one step of round ``r`` (stable across processes, restarts and Python runs)."""
    digest = hashlib.sha256(f"{seed or 0}/{r}/{step}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def round_dir(output_dir: Path, r: int) -> Path:
    return Path(output_dir) / CHECKPOINTS_DIR / f"round_{r:02d}"


def make_accelerator(cfg):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    return Accelerator(
        step_scheduler_with_optimizer=False,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        cpu=cfg.policy.device == "cpu",
    )


@dataclasses.dataclass
class Run:
    """What ``setup_run`` decided and built, used by every round. The ledger holds the rest."""

    cfg: AMFTrainPipelineConfig
    accelerator: object
    plan: RunPlan
    source: DemoSource
    strategy: Strategy
    ledger: Ledger
    isolation: Isolation
    preprocessor: object
    postprocessor: object
    pretrain_counts: dict[str, int] | None  # demos per task the generalist was trained on (None: unknown)
    pretrain_demos: DatasetRef | None  # those demos, when kept with the checkpoint
    pretrain_demo_ids: frozenset[str]  # their ids: never pulled again for fine-tuning
    demos: DatasetRef  # the run's dataset of fine-tuning demos
    start_round: int
    tracking: RoundLogger | None = None  # W&B (--wandb.enable=true), main process only

    @property
    def output_dir(self) -> Path:
        return Path(self.cfg.output_dir)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def simulated(self) -> bool:
        """A simulator to evaluate and roll out in (not ``--env.type=recorded``)."""
        return task_catalog(self.cfg.env).simulator

    def taken(self, state: LedgerState) -> set[str]:
        """Demo ids no pull may give again: the run's fine-tuning demos and the generalist's pretraining ones."""
        return state.demo_ids | self.pretrain_demo_ids


def setup_run(cfg: AMFTrainPipelineConfig, accelerator=None, held: contextlib.ExitStack | None = None) -> Run:
    """Check the whole configuration, then load (or pretrain) the generalist and open the ledger.

    Every check that can fail on user input runs before the first write. ``held``: where the run
    directory's lock is kept (the caller releases it when the run ends).
    """
    if cfg.env is None:
        cfg.env = MetaworldStateEnvConfig()
    cfg.validate()
    accelerator = accelerator or make_accelerator(cfg)
    if cfg.seed is not None:
        set_seed(cfg.seed, accelerator=accelerator)
    output_dir = Path(cfg.output_dir)
    catalog = task_catalog(cfg.env)
    source = make_source(cfg.amf, cfg.env, seed=cfg.seed or 0, catalog=catalog, output_dir=output_dir)
    plan = plan_run(cfg, source, catalog)
    strategy = make_strategy(cfg.amf.strategy, cfg.amf.selection)
    if cfg.amf.learning_progress_demos is not None and not catalog.simulator:
        raise AMFInputError(f"amf.learning_progress_demos={cfg.amf.learning_progress_demos} reads each round's "
                            f"evaluation; --env.type={cfg.env.type} has no simulator: leave it unset.")
    if cfg.amf.push_to_hub:  # no token / offline / a bad repo id fail now, not after hours of rounds
        check_push_ready(cfg.amf.repo_id)
    if held is not None and accelerator.is_main_process:  # one run per directory, from here to its end
        held.enter_context(exclusive(output_dir, "Run directory"))

    # The generalist to start from: --policy.path, or the embedded default's cached pretraining.
    if cfg.policy.pretrained_path is None:
        pretrain_source = make_source(cfg.amf, cfg.env, seed=cfg.seed, catalog=catalog, role="pretrain")
        cfg.policy.pretrained_path = ensure_pretrained(cfg, plan.pool, accelerator, pretrain_source)
        # its features are its pretraining demos' (saved with it), not the env config's raw ones
        saved = PreTrainedConfig.from_pretrained(cfg.policy.pretrained_path)
        cfg.policy.input_features, cfg.policy.output_features = saved.input_features, saved.output_features
    # a local base is recorded absolute (a push from elsewhere still finds it), a Hub one by repo id
    base_path, base_repo_id = base_origin(cfg.policy.pretrained_path)
    cfg.policy.pretrained_path = Path(base_path)
    pretrain_record = read_pretrain_record(cfg.policy.pretrained_path)
    pretrain_counts = pretrain_record["demos_per_task"] if pretrain_record else None
    pretrain_demo_ids = frozenset(pretrain_record.get("demo_ids", []) if pretrain_record else [])
    if pretrain_demo_ids:
        check_capacity(source, plan.pool, plan.budget, set(pretrain_demo_ids))
    strategy.check_inputs(pretrain_counts, cfg.policy.pretrained_path)

    ledger = Ledger(output_dir)
    if cfg.resume:
        check_same_run(ledger, plan, strategy.name, cfg, source)
        check_demo_records(ledger.state().episodes, plan.pool)  # before anything in the run directory changes
    start_round = ledger.state().rounds_done
    if catalog.simulator:
        policy = make_policy(cfg.policy, env_cfg=cfg.env)
        check_policy_fits_env(policy.config, cfg.env)
    else:  # no env to take features from: the checkpoint's own (its demos are checked against them)
        policy = get_policy_class(cfg.policy.type).from_pretrained(cfg.policy.pretrained_path, config=cfg.policy)
    source.check_features(policy.config)  # a Hub dataset's frames are what the policy trains on
    with user_tokenizer(user_policy_values(parser.get_cli_overrides("policy")).get("vlm_model_name")):
        preprocessor, postprocessor = make_processors(cfg, policy, source.stats() if cfg.amf.normalization == "source"
                                                      else None)
    pretrain_demos = pretrain_demos_ref(cfg.policy.pretrained_path, pretrain_record)
    isolation = make_isolation(cfg, policy, plan, preprocessor, pretrain_demos)
    if start_round:  # resume: the weights the last finished round saved
        isolation.resume(round_dir(output_dir, start_round - 1))
    run = Run(cfg, accelerator, plan, source, strategy, ledger, isolation, preprocessor, postprocessor,
              pretrain_counts, pretrain_demos, pretrain_demo_ids,
              DatasetRef(cfg.dataset.repo_id, output_dir / "demos"), start_round)
    if run.main and not cfg.resume:
        # The run directory appears with its ledger's first line or not at all: a stop before the
        # rename leaves only <output_dir>.tmp, which the next start discards.
        with new_dir_atomic(output_dir) as starting:
            Ledger(starting).append(
                "run_start",
                config=draccus.encode(cfg),
                pool=plan.pool,
                target_weights=plan.target_weights,
                budget=plan.budget,
                demos_per_round=plan.rounds,
                strategy=strategy.name,
                seed=cfg.seed,
                source=source.describe(),
                model={**isolation.describe(), "policy_type": cfg.policy.type,
                       "pretrained_path": str(cfg.policy.pretrained_path), "base_repo_id": base_repo_id},
                pretrain_counts=pretrain_counts,
                eval_protocol=eval_protocol(cfg.amf, cfg.env, policy.config),
                software=software(),
            )
    if run.main:  # the run directory exists now: W&B writes under it (and finds its run there on resume)
        run.tracking = start_tracking(cfg)
    if run.main:  # a stop while demos were being written: back to exactly what the ledger records
        repaired = repair_demo_dataset(run.demos.root, ledger.state().episodes, run.demos.repo_id)
        if repaired.changed:
            console.print(f"Resuming after a stop, the demo dataset was repaired ({repaired}).")
    accelerator.wait_for_everyone()
    if run.main and not catalog.simulator:
        console.print(f"--env.type={cfg.env.type}: no simulator, so nothing is evaluated; selection reads the demos only.")
    elif run.main and not any(r["round"] == -1 for r in ledger.records("eval")):
        console.rule("Evaluating the pretrained policy")
        result = cached_pretrained_eval(cfg, policy, preprocessor, postprocessor, plan.pool)
        ledger.append("eval", round=-1, variant="pretrained", **result)
        if run.tracking is not None:
            run.tracking.log_pretrained({"pretrained": {**result, "variant": "pretrained"}})
    isolation.prepare(accelerator)
    return run


def check_policy_fits_env(policy_cfg, env_cfg) -> None:
    """The checkpoint's features must be the env's, or ones the policy pads / resizes to (a one-hot
    over another task vocabulary, or another robot's state, would fail deep inside the first rollout)."""
    env = task_catalog(env_cfg).policy_features(env_cfg)
    problems = feature_mismatches(env, policy_cfg, f"--env.type={env_cfg.type}", images=False)
    if problems:
        raise AMFInputError(f"--policy.path={policy_cfg.pretrained_path} does not fit --env.type={env_cfg.type}: "
                            f"{'; '.join(problems)} (another task vocabulary or robot?).")


def check_same_run(ledger: Ledger, plan: RunPlan, strategy: str, cfg, source: DemoSource) -> None:
    """``--resume=true`` continues the run in the directory: it must be asked for with the same
    pool, strategy, seed, budget, isolation and source (name, repo id, revision, rename map: a
    demo id names its revision, so another one would pull the same episodes again under new ids);
    else its ledger would mix two runs."""
    start = next(ledger.records("run_start"), None)
    if start is None:
        raise AMFInputError(f"--resume=true: {ledger.path} has no run_start record; it is not a lerobot-amf run.")
    asked = {"pool": plan.pool, "strategy": strategy, "seed": cfg.seed, "budget": plan.budget,
             "isolation": cfg.amf.isolation, **{f"source.{k}": v for k, v in source.describe().items()}}
    recorded = {**{k: start.get(k) for k in ("pool", "strategy", "seed", "budget")},
                "isolation": start.get("model", {}).get("mode"),
                **{f"source.{k}": v for k, v in (start.get("source") or {}).items()}}
    for key, value in asked.items():
        if recorded.get(key) != value:
            raise AMFInputError(f"--resume=true: {cfg.output_dir} was run with {key}={recorded.get(key)}, not {value}: "
                                f"resume with the same settings, or choose a new --output_dir.")
    ran_on, now = (start.get("software") or {}).get("lerobot"), software()["lerobot"]
    if ran_on is not None and not same_lerobot_release(ran_on, now):
        raise AMFInputError(f"--resume=true: {cfg.output_dir} was run on LeRobot {ran_on}, this is LeRobot {now}: its "
                            f"rounds would not be comparable. Resume with LeRobot {ran_on}, or start a new --output_dir.")


def select_tasks(run: Run, r: int, state: LedgerState, held_back: dict[str, dict],
                 success: dict[str, dict] | None) -> Selection:
    """Every process calls the strategy (amf shards its embedding pass across them and gathers;
    the choice is deterministic, so all agree). ``held_back``: tasks it may not pick this round;
    ``success``: the latest evaluation as strategies see it (``evaluation_seen``)."""
    plan = run.plan
    with phase("selecting"), run.isolation.selection_policy(run.accelerator) as selection_policy:
        ctx = round_context(
            round_index=r, seed=run.cfg.seed, pool=plan.pool, target_weights=plan.target_weights,
            counts={t: state.counts.get(t, 0) for t in plan.pool},
            capacity={t: 0 if t in held_back else run.source.remaining(t, run.taken(state)) for t in plan.pool},
            pretrain_counts=run.pretrain_counts,
            success=success,
            policy=selection_policy, preprocessor=run.preprocessor,
            postprocessor=run.postprocessor, env_cfg=run.cfg.env if run.simulated else None,
            accelerator=run.accelerator,
            demo_dataset=run.demos if state.episodes else None,
            pretrain_dataset=run.pretrain_demos,
            vocabulary=plan.vocabulary,
        )
        return run.strategy.select(ctx, plan.rounds[r])


def evaluation_seen(run: Run, state: LedgerState) -> dict[str, dict] | None:
    """The latest evaluation as a strategy sees it: its first ``amf.selection_eval_episodes`` per task."""
    return first_episodes(state.latest_success(), run.cfg.amf.selection_eval_episodes)


def stalled_held_back(run: Run, state: LedgerState) -> dict[str, dict]:
    """Tasks learning progress holds back this round (``selection.progress``): none when it is off,
    or when every task of the pool is stalled."""
    amf = run.cfg.amf
    if amf.learning_progress_demos is None:
        return {}
    history = [Evaluated(state.demos_after(r), first_episodes(rec["per_task"], amf.selection_eval_episodes))
               for r, rec in sorted(state.evals.items())]
    stalled = {t: v for t, v in stalled_tasks(history, amf.learning_progress_demos,
                                              amf.learning_progress_min_gain).items() if t in run.plan.pool}
    return {} if set(run.plan.pool) <= set(stalled) else stalled


def evaluation_episodes_read(reads: bool, success: dict[str, dict] | None) -> int:
    """Evaluation episodes a selection read (on a robot, episodes someone ran for it): all those of
    the evaluation it was given, where it (or learning progress) reads one; none otherwise."""
    return sum(e["episodes"] for e in success.values()) if reads and success else 0


def pull_and_record(run: Run, r: int, tasks: list[str], state: LedgerState) -> None:
    """Main process: pull the selected demos, write them, record them (data.write_demos: the
    ledger line is the commit point, so a stop anywhere neither loses nor repeats a demo)."""
    new_demos = []
    with phase("pulling"):
        pulls = run.source.check_round(dict(Counter(tasks)), run.taken(state))
        for task, k in pulls.items():
            with console.status(f"Pulling {k} demo(s) of {task} from {run.source.name}"):
                new_demos += run.source.pull(task, k, run.taken(state))
    note = run.source.round_record()
    write_demos(run.demos.repo_id, run.demos.root, run.source.fps, run.source.features(), new_demos,
                record=lambda records: run.ledger.append("demos_pulled", round=r, demos=records, **note))


def run_round(run: Run, r: int) -> None:
    """One round: select -> pull -> fine-tune -> save -> evaluate -> record."""
    cfg, accelerator, isolation = run.cfg, run.accelerator, run.isolation
    state = run.ledger.state()
    # A selection already recorded for this round (the run stopped before its demos were) is
    # pulled as recorded, not made again.
    recorded = state.selections.get(r)
    held_back, seen = stalled_held_back(run, state), evaluation_seen(run, state)
    selection = None if recorded is not None or r in state.pulled_rounds \
        else select_tasks(run, r, state, held_back, seen)
    if run.main:
        console.rule(f"Round {r + 1}/{len(run.plan.rounds)} — strategy {run.strategy.name}")
        if selection is not None:
            reads = run.strategy.reads_evaluation or cfg.amf.learning_progress_demos is not None
            read = evaluation_episodes_read(reads, seen)
            run.ledger.append("selection", round=r, tasks=selection.tasks, scores=selection.scores,
                              details=selection.details, reason=selection.reason, evaluation_episodes_read=read,
                              **({"held_back": held_back} if cfg.amf.learning_progress_demos is not None else {}))
            if held_back:
                console.print(f"Held back (no learning progress over their last "
                              f"{cfg.amf.learning_progress_demos} demo(s)): {', '.join(held_back)}")
            console.print(f"Selected: {dict(Counter(selection.tasks))}  ({selection.reason})")
        if r not in state.pulled_rounds:
            tasks = selection.tasks if selection is not None else recorded["tasks"]
            run.source.announce(r, tasks, run.output_dir)  # a collection request, for a source filled by people
            pull_and_record(run, r, tasks, state)
    accelerator.wait_for_everyone()

    state = run.ledger.state()
    new_tasks = sorted({d["task"] for rec in run.ledger.records("demos_pulled") if rec["round"] == r
                        for d in rec["demos"]})
    if cfg.amf.normalization == "demos":
        run.preprocessor, run.postprocessor = make_processors(
            cfg, accelerator.unwrap_model(isolation.module),
            episodes_stats(open_dataset(cfg, run.demos, what="demo dataset")))
    desc = f"Fine-tuning round {r + 1}/{len(run.plan.rounds)}"
    # Each round's random numbers (batch order, diffusion noise) come from (seed, round) alone,
    # not from whatever ran before in the process: a resumed round trains as the first try would.
    set_seed(round_seed(cfg.seed, r, "train"), accelerator=accelerator)
    with phase("training"):
        metrics = isolation.train(run.demos, accelerator, run.preprocessor, state.episodes, new_tasks, desc=desc)
        exported = isolation.export(run.demos, run.preprocessor, state.episodes) if run.main else None
    if run.main:
        if exported is not None:
            metrics = {**metrics, "export": exported}
        ckpt = round_dir(run.output_dir, r)
        with phase("saving_checkpoint"), atomic_dir(ckpt) as partial:  # `last` only ever points at a whole one
            saved = isolation.save(partial, cfg.amf.steps_per_round * (r + 1), accelerator, run.preprocessor,
                                   run.postprocessor)
        saved = ckpt / saved.relative_to(partial)
        symlink_atomic(ckpt.parent / LAST_CHECKPOINT_LINK, ckpt.name)
        run.ledger.append("train", round=r, metrics=metrics)
        set_seed(round_seed(cfg.seed, r, "eval"))  # the policy's sampling noise during rollouts
        with phase("evaluating") if run.simulated else contextlib.nullcontext():
            episodes = cfg.amf.episodes_in_round(r, len(run.plan.rounds))
            results = isolation.evaluate(accelerator, run.preprocessor, run.postprocessor, cfg.env, episodes) \
                if run.simulated else []
            for variant, result in results:
                run.ledger.append("eval", round=r, variant=variant, **result)
        run.ledger.append("round_end", round=r, demos_per_task={t: state.counts.get(t, 0) for t in run.plan.pool},
                          checkpoint=str(saved))
        report = write_report(run.output_dir)
        if run.tracking is not None:
            run.tracking.log_round(report, r, run.output_dir, ckpt)
        if r < len(run.plan.rounds) - 1:
            print_round_table(report, Console())
    accelerator.wait_for_everyone()


def finish_run(run: Run) -> dict | None:
    """Main process: close the ledger, write the final report, print the tables."""
    report = None
    if run.main:
        if not any(True for _ in run.ledger.records("run_end")):
            run.ledger.append("run_end")
        report = write_report(run.output_dir)
        out = Console()
        print_round_table(report, out)
        print_final_comparison(report, out)
        last = run.output_dir / CHECKPOINTS_DIR / LAST_CHECKPOINT_LINK
        out.print(f"Report: {run.output_dir / REPORT_FILENAME} | plots: success_vs_demos.png, "
                  f"selections_per_round.png | {run.isolation.outputs(last)}")
        if run.cfg.amf.push_to_hub:
            push(run, out)
        if run.tracking is not None:
            run.tracking.finish()
    run.accelerator.wait_for_everyone()
    return report


def push(run: Run, out: Console) -> None:
    """Push the finished run (``--amf.push_to_hub``); a failed push is reported and loses nothing local."""
    amf = run.cfg.amf
    try:
        pushed = push_run(run.output_dir, amf.repo_id, private=amf.private)
    except PushError as err:
        console.print(f"[red]Push to {amf.repo_id} failed[/red]: {err}")
        return
    run.ledger.append("pushed", repo_id=amf.repo_id, commit=pushed.get("commit_url"), files=pushed.get("files"))
    out.print(f"Pushed to {pushed.get('commit_url') or amf.repo_id}")


@wrap()
def amf_train(cfg: AMFTrainPipelineConfig, accelerator=None):
    with contextlib.ExitStack() as held:
        run = setup_run(cfg, accelerator, held)
        try:
            for r in range(run.start_round, len(run.plan.rounds)):
                run_round(run, r)
        except WaitingForDemos:  # a source filled by people: the run goes on with --resume=true
            if run.tracking is not None:
                run.tracking.finish()
            raise
        return finish_run(run)


def cached_pretrained_eval(cfg, policy, preprocessor, postprocessor, pool) -> dict:
    """Evaluate the pretrained policy; for an embedded-default checkpoint the result is kept in the
    user's cache, keyed by the checkpoint's content (``pretrain.cached_eval_path``)."""
    key = [pool, eval_protocol(cfg.amf, cfg.env), cfg.amf.eval_seed, cfg.amf.normalization]
    kept = cached_eval_path(Path(cfg.policy.pretrained_path), key)  # digests the checkpoint: once
    result = read_cached_eval(kept)
    if result is not None:
        console.print("Pretrained policy's evaluation read from the cache (same checkpoint content, protocol and seeds).")
        return {**result, "cached": True}
    set_seed(round_seed(cfg.seed, -1, "eval"))
    with phase("evaluating"):
        result = evaluate_tasks(policy, preprocessor, postprocessor, cfg.env, pool, cfg.amf)
    write_cached_eval(kept, result)
    return result


def main() -> None:
    cli_main("lerobot-amf-train", train_entry)


def train_entry() -> None:
    """``amf_train`` with its other failures on input as one-line errors (``AMFInputError``), and a source
    filled by people that waits for them: its one line, exit 0."""
    try:
        amf_train()
    except WaitingForDemos as waiting:
        print(f"lerobot-amf-train: {' '.join(str(waiting).split())}", file=sys.stderr)
        sys.exit(0)
    except FileExistsError as err:
        raise AMFInputError(str(err)) from None
    except FileNotFoundError as err:  # LeRobot read a --policy.path that is no folder here as a repo id
        policy_path = parser.get_path_arg("policy")
        if policy_path is None or Path(policy_path).expanduser().exists():
            raise
        raise AMFInputError(missing_policy_path(policy_path, f"the Hub has none: {err}")) from None


if __name__ == "__main__":
    main()
