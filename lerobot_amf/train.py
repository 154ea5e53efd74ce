"""``lerobot-amf-train``: LeRobot's training CLI plus ``--amf.*``, run as rounds of

    select tasks -> pull demos -> fine-tune -> evaluate -> record (ledger, report, plots)

All processes select (amf splits its embedding pass across them); the main one records and
pulls; all train.
The run directory is the only state: ``amf_ledger.jsonl`` (append-only), ``demos/`` (the
LeRobotDataset of fine-tuning demos), ``checkpoints/round_XX`` (LeRobot checkpoints; ``last``
points at the newest), ``amf_report.json`` and the plots.
"""


import dataclasses
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

import draccus
import numpy as np
from lerobot.configs import parser
from lerobot.datasets.factory import make_dataset
from lerobot.policies.factory import make_policy, make_pre_post_processors
from lerobot.utils.import_utils import register_third_party_plugins
from lerobot.utils.random_utils import set_seed
from lerobot.utils.train_utils import update_last_checkpoint
from lerobot.utils.utils import init_logging
from rich.console import Console

from lerobot_amf.configs import ROUTED_MODES, AMFTrainPipelineConfig
from lerobot_amf.data import DatasetRef, episodes_stats, write_demos
from lerobot_amf.envs.metaworld_state import MetaworldStateEnvConfig, task_vocabulary
from lerobot_amf.errors import AMFInputError
from lerobot_amf.evaluation import eval_protocol, evaluate_tasks
from lerobot_amf.isolation.modes import ROUTED_DIR, make_isolation, mean_task_embeddings, plan_partitions
from lerobot_amf.ledger import Ledger
from lerobot_amf.pretrain import ensure_pretrained, pretrain_demos_ref, read_pretrain_record
from lerobot_amf.report import print_final_comparison, print_round_table, write_report
from lerobot_amf.selection import SelectionContext, make_strategy
from lerobot_amf.sources import make_source

console = Console(stderr=True)


@dataclasses.dataclass
class RunPlan:
    """Everything decided (and checked) before anything is written."""

    pool: list[str]
    target_weights: dict[str, float]
    budget: int
    rounds: list[int]  # demos to pull in each round


def plan_run(cfg: AMFTrainPipelineConfig, source) -> RunPlan:
    from lerobot_amf.envs.metaworld_state import parse_task_list

    amf = cfg.amf
    pool = parse_task_list(amf.tasks if amf.tasks is not None else cfg.env.task)
    source.validate_pool(pool)
    weights = amf.target_weights or {t: 1.0 for t in pool}
    unknown = [t for t in weights if t not in pool]
    if unknown:
        raise AMFInputError(f"amf.target_weights names task(s) outside the pool: {', '.join(unknown)}. Pool: {', '.join(pool)}.")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise AMFInputError(f"amf.target_weights={weights}: weights must be >= 0 with a positive sum.")
    total = sum(weights.values())
    weights = {t: weights.get(t, 0.0) / total for t in pool}
    budget = amf.total_budget()
    if budget > amf.rounds * amf.demos_per_round:
        raise AMFInputError(
            f"amf.budget={budget} cannot be spent in amf.rounds={amf.rounds} x "
            f"amf.demos_per_round={amf.demos_per_round} = {amf.rounds * amf.demos_per_round} demos."
        )
    capacities = [source.remaining(t, set()) for t in pool]
    if all(c is not None for c in capacities) and sum(capacities) < budget:
        raise AMFInputError(
            f"amf.budget={budget} demos exceeds what source {source.name!r} can give for the pool "
            f"({sum(capacities)} demos: {dict(zip(pool, capacities))})."
        )
    per_round, left = [], budget
    while left > 0:
        per_round.append(min(amf.demos_per_round, left))
        left -= per_round[-1]
    return RunPlan(pool, weights, budget, per_round)


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
    return make_pre_post_processors(
        policy_cfg=policy.config, pretrained_path=str(cfg.policy.pretrained_path),
        preprocessor_overrides=pre_over, postprocessor_overrides=post_over,
    )


def round_dir(output_dir: Path, r: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"round_{r:02d}"


def make_accelerator(cfg):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    return Accelerator(
        step_scheduler_with_optimizer=False,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        cpu=cfg.policy.device == "cpu",
    )


@parser.wrap()
def amf_train(cfg: AMFTrainPipelineConfig, accelerator=None):
    if cfg.env is None:
        cfg.env = MetaworldStateEnvConfig()
    cfg.validate()
    accelerator = accelerator or make_accelerator(cfg)
    main = accelerator.is_main_process
    if cfg.seed is not None:
        set_seed(cfg.seed, accelerator=accelerator)
    output_dir = Path(cfg.output_dir)
    source = make_source(cfg.amf, cfg.env, seed=cfg.seed or 0)
    plan = plan_run(cfg, source)
    strategy = make_strategy(cfg.amf.strategy, cfg.amf)
    partitions = plan_partitions(cfg, plan.pool)  # bad maps fail here, before anything is written

    # The generalist to start from: --policy.path, or the embedded default's cached pretraining.
    if cfg.policy.pretrained_path is None:
        cfg.policy.pretrained_path = ensure_pretrained(cfg, plan.pool, accelerator)
    pretrain_record = read_pretrain_record(cfg.policy.pretrained_path)
    pretrain_counts = pretrain_record["demos_per_task"] if pretrain_record else None
    if strategy.name == "rebalancing" and pretrain_counts is None:
        raise AMFInputError("amf.strategy=rebalancing needs the pretraining demos per task, unknown for "
                            f"--policy.path={cfg.policy.pretrained_path} (it has no amf_pretrain.json).")

    ledger = Ledger(output_dir)
    state = ledger.state()
    start_round = state.rounds_done
    routed = cfg.amf.isolation in ROUTED_MODES
    # Shared modes continue from the last round's weights; routed modes keep the base frozen and
    # reload the partitions' weights.
    load_from = (round_dir(output_dir, start_round - 1) / "pretrained_model"
                 if start_round and not routed else cfg.policy.pretrained_path)
    policy = make_policy(dataclasses.replace(cfg.policy, pretrained_path=load_from), env_cfg=cfg.env)
    preprocessor, postprocessor = make_processors(cfg, policy)
    vocabulary = task_vocabulary(plan.pool)
    pretrain_ref = pretrain_demos_ref(cfg.policy.pretrained_path, pretrain_record)
    embeddings = (mean_task_embeddings(cfg, policy, preprocessor, pretrain_ref, plan.pool,
                                       vocabulary["task_of_instruction"])
                  if routed and partitions is None else None)
    isolation = make_isolation(cfg, policy, plan, partitions, vocabulary["task_of_instruction"], pretrain_ref,
                               resume_from=round_dir(output_dir, start_round - 1) / ROUTED_DIR
                               if routed and start_round else None, task_embeddings=embeddings)
    if main and not cfg.resume:
        output_dir.mkdir(parents=True, exist_ok=True)
        ledger.append(
            "run_start",
            config=draccus.encode(cfg),
            pool=plan.pool,
            target_weights=plan.target_weights,
            budget=plan.budget,
            demos_per_round=plan.rounds,
            strategy=strategy.name,
            seed=cfg.seed,
            source={"name": source.name, "action_noise": cfg.amf.action_noise},
            model={**isolation.describe(), "policy_type": cfg.policy.type,
                   "pretrained_path": str(cfg.policy.pretrained_path)},
            pretrain_counts=pretrain_counts,
            eval_protocol=eval_protocol(cfg.amf, cfg.env),
        )
    on_disk = count_episodes(output_dir / "demos")
    if main and on_disk != len(state.episodes):
        raise RuntimeError(
            f"{output_dir / 'demos'} holds {on_disk} episodes but the ledger records "
            f"{len(state.episodes)}: the run stopped while writing demos. Move demos/ aside to re-pull them."
        )

    if main and not any(r["round"] == -1 for r in ledger.records("eval")):
        console.rule("Evaluating the pretrained policy")
        result = cached_pretrained_eval(cfg, policy, preprocessor, postprocessor, plan.pool)
        ledger.append("eval", round=-1, variant="pretrained", **result)

    isolation.prepare(accelerator)
    for r in range(start_round, len(plan.rounds)):
        # Every process selects (amf shards its embedding pass across them and gathers; the
        # choice is deterministic, so all agree); only the main process records and pulls.
        state = ledger.state()
        selection = None
        if not [rec for rec in ledger.records("demos_pulled") if rec["round"] == r]:
            with isolation.selection_policy(accelerator) as selection_policy:
                ctx = SelectionContext(
                    round_index=r, pool=plan.pool, target_weights=plan.target_weights,
                    counts={t: state.counts.get(t, 0) for t in plan.pool},
                    capacity={t: source.remaining(t, state.demo_ids) for t in plan.pool},
                    rng=np.random.default_rng([cfg.seed or 0, r]), pretrain_counts=pretrain_counts,
                    policy=selection_policy, preprocessor=preprocessor,
                    postprocessor=postprocessor, env_cfg=cfg.env, accelerator=accelerator,
                    demo_dataset=DatasetRef(cfg.dataset.repo_id, output_dir / "demos") if state.episodes else None,
                    pretrain_dataset=pretrain_ref,
                    plan=vocabulary,
                )
                selection = strategy.select(ctx, plan.rounds[r])
        if main:
            console.rule(f"Round {r + 1}/{len(plan.rounds)} — strategy {strategy.name}")
            if selection is not None:
                ledger.append("selection", round=r, tasks=selection.tasks, scores=selection.scores,
                              details=selection.details, reason=selection.reason)
                console.print(f"Selected: {dict(Counter(selection.tasks))}  ({selection.reason})")
                new_demos = []
                for task, k in Counter(selection.tasks).items():
                    with console.status(f"Pulling {k} demo(s) of {task} from {source.name}"):
                        new_demos += source.pull(task, k, state.demo_ids)
                records = write_demos(cfg.dataset.repo_id, output_dir / "demos", source.fps, source.features(), new_demos)
                ledger.append("demos_pulled", round=r, demos=records)
        accelerator.wait_for_everyone()

        state = ledger.state()
        new_tasks = sorted({d["task"] for rec in ledger.records("demos_pulled") if rec["round"] == r for d in rec["demos"]})
        round_cfg = dataclasses.replace(
            cfg, dataset=dataclasses.replace(cfg.dataset, root=str(output_dir / "demos"), episodes=None)
        )
        if cfg.amf.normalization == "demos":
            preprocessor, postprocessor = make_processors(
                cfg, accelerator.unwrap_model(isolation.module), episodes_stats(make_dataset(round_cfg)))
        metrics = isolation.train(round_cfg, accelerator, preprocessor, state.episodes, new_tasks,
                                  desc=f"Fine-tuning round {r + 1}/{len(plan.rounds)}")
        if main:
            if isolation.routed and isolation.export(round_cfg, preprocessor, state.episodes) is not None:
                metrics = {**metrics, "export": isolation.export_metrics}
            ckpt = round_dir(output_dir, r)
            saved = isolation.save(ckpt, cfg.amf.steps_per_round * (r + 1), accelerator, preprocessor, postprocessor)
            update_last_checkpoint(ckpt)
            ledger.append("train", round=r, metrics=metrics)
            for variant, result in isolation.evaluate(accelerator, preprocessor, postprocessor, cfg.env):
                ledger.append("eval", round=r, variant=variant, **result)
            ledger.append("round_end", round=r, demos_per_task={t: state.counts.get(t, 0) for t in plan.pool},
                          checkpoint=str(saved))
            report = write_report(output_dir)
            if r < len(plan.rounds) - 1:
                print_round_table(report, Console())
        accelerator.wait_for_everyone()

    report = None
    if main:
        if not any(True for _ in ledger.records("run_end")):
            ledger.append("run_end")
        report = write_report(output_dir)
        out = Console()
        print_round_table(report, out)
        print_final_comparison(report, out)
        last = output_dir / "checkpoints" / "last"
        final = (f"routed policy: {last / ROUTED_DIR} (lerobot_amf.isolation.load_routed_policy)"
                 + (f", single model: {last / 'pretrained_model'}" if cfg.amf.export != "none" else "")
                 if cfg.amf.isolation in ROUTED_MODES else f"final checkpoint: {last / 'pretrained_model'}")
        out.print(f"Report: {output_dir / 'amf_report.json'} | plots: success_vs_demos.png, selections_per_round.png | {final}")
    accelerator.wait_for_everyone()
    return report


def count_episodes(root: Path) -> int:
    info = Path(root) / "meta" / "info.json"
    return json.loads(info.read_text())["total_episodes"] if (Path(root) / "data").exists() and info.exists() else 0


def cached_pretrained_eval(cfg, policy, preprocessor, postprocessor, pool) -> dict:
    """Evaluate the pretrained policy; the embedded default's cached checkpoint keeps the result."""
    key = hashlib.sha256(json.dumps([pool, eval_protocol(cfg.amf, cfg.env), cfg.amf.eval_seed,
                                     cfg.amf.normalization], sort_keys=True).encode()).hexdigest()[:12]
    ckpt = Path(cfg.policy.pretrained_path)
    cache = ckpt / f"amf_eval_{key}.json" if read_pretrain_record(ckpt) else None
    if cache is not None and cache.exists():
        result = json.loads(cache.read_text())
        console.print(f"Pretrained policy's evaluation read from {cache.name} (same protocol, same seeds).")
        return {**result, "cached": True}
    result = evaluate_tasks(policy, preprocessor, postprocessor, cfg.env, pool, cfg.amf)
    if cache is not None:
        cache.write_text(json.dumps(result))
    return result


def main() -> None:
    init_logging()
    register_third_party_plugins()
    try:
        amf_train()
    except (AMFInputError, FileExistsError) as err:
        print(f"lerobot-amf-train: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
