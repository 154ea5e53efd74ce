"""Does amf reach a target success with fewer demos than uniform? The multi-seed study.

Every cell is one run of ``python -m lerobot_amf.train`` (the embedded default recipe with the
study's pool, allocation, budget and evaluation) for one (setting, seed, strategy, isolation):

* settings: ``skewed`` (4 covered tasks with 10 pretraining demos each, 4 under-covered with 1
  each) and ``balanced`` (the same 8 tasks, 5 pretraining demos each, about the same total);
* each seed pretrains its own generalist, shared by every strategy and isolation of that seed
  (the CLI caches it by config + seed), so strategies are compared in pairs on the same
  generalist and on the same evaluation seeds;
* budget 16 demos = 4 rounds x 4, 20 evaluation episodes per task on fixed seeds.

    python -m benchmarks.sample_efficiency --pilot        # once: which tasks can be "covered"
    python -m benchmarks.sample_efficiency                # every planned cell; resumes, skips done
    python -m benchmarks.sample_efficiency --max-cells 2  # two cells now, the rest another day
    python -m benchmarks.sample_efficiency --jobs 2       # two seeds at a time, one core each
    python -m benchmarks.sample_efficiency --summary-only # rebuild the summary from the cell files
    python -m benchmarks.sample_efficiency --dry-run      # the cells it would run and the files, nothing run

A run lives in ``benchmarks/runs/sample_efficiency/<cell>`` (not committed) and is continued
with ``--resume=true`` when it stopped. A finished cell's compact result is written atomically
to ``benchmarks/results/sample_efficiency/<setting>__seed<k>__<strategy>__<isolation>.json``
(committed); a cell whose file says ``complete`` is skipped. A cell whose run fails is recorded
in the same file as ``failed`` with the CLI's last line and retried next time. The summary
``benchmarks/results/sample_efficiency.json`` (with its ``headline``) and the figures next to it
are rebuilt from whatever cell files exist, and say ``partial`` until every planned cell of the
whole study is done (``--seeds``, ``--strategies`` ... choose what runs now, never what is planned).

``--jobs N`` runs N seeds at once (a seed's cells stay in one queue, in order, since they share the
seed's generalist); each run then gets ``cpus // N`` torch threads and its output goes to
``<runs>/<cell>.log``, with a progress line per running cell every two minutes. Every cell records the
thread count it ran with; a seed's cells should all use the same one (``--threads``).

``--smoke`` runs the same mechanics on a tiny policy, 2 tasks, 1 seed, 2 rounds (minutes); it
needs ``--results-dir`` so that its numbers never land among the committed results.

This module holds the study's definition (plan, settings, seeds, strategies, flags), its pilot and
its CLI; running cells is ``study_runner``'s, the summary ``study_summary``'s, the statistics
``study_stats``'s, shared with the studies after this one.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

from benchmarks.common import RECIPE, RESULTS_DIR, ROOT, RUNS_DIR, add_output_args, dry_run, read_json, write_json
from benchmarks.study_runner import (Cell, Study, add_cell_args, cells_to_run, merge_flags, portable,
                                     pretrained_only_args, refresh_cells, run_or_resume, run_study)
from benchmarks.study_summary import write_summary

RESULTS = RESULTS_DIR
RUNS = RUNS_DIR / "sample_efficiency"
SUMMARY_NAME = "sample_efficiency"
PILOT_NAME = "sample_efficiency_pilot.json"

# amf ablations: name -> the CLI flags that switch one part of amf off (edit here when a flag is
# renamed). A flag the CLI does not know fails the cell with the CLI's one-line error; the
# failure is recorded and the study moves on.
ABLATIONS = {
    "amf_self_gradient_kernel": ["--amf.selection.kernel=self_gradient"],  # the old kernel
    "amf_no_importance_weights": ["--amf.selection.importance_weights=false"],
}
STRATEGIES = {
    "uniform": ["--amf.strategy=uniform"],
    "random": ["--amf.strategy=random"],
    "rebalancing": ["--amf.strategy=rebalancing"],  # privileged: knows the pretraining counts
    "amf": ["--amf.strategy=amf"],
    **{name: ["--amf.strategy=amf", *flags] for name, flags in ABLATIONS.items()},
}
ISOLATIONS = {
    "shared_replay": ["--amf.isolation=shared_replay", "--amf.replay_fraction=0.5"],
    # per-task adapters, the routed policy is the one evaluated (no single-model export)
    "lora": ["--amf.isolation=lora", "--amf.partitions=per_task", "--amf.export=none"],
}
# The planned cells: (setting, isolation, strategies, how many of the seeds).
PLAN = (
    ("skewed", "shared_replay", ("uniform", "amf", "rebalancing", "random"), 5),  # the headline pair first
    ("skewed", "shared_replay", tuple(ABLATIONS), 3),
    ("skewed", "lora", ("uniform", "amf"), 3),
    ("balanced", "shared_replay", ("uniform", "amf"), 3),
)
SETTINGS = ("skewed", "balanced")
SEEDS = (1, 2, 3, 4, 5)
# Which comparisons are paired per seed (a - b), in every (setting, isolation) where both exist.
COMPARISONS = (("amf", "uniform"), ("amf", "rebalancing"), ("random", "uniform"), ("rebalancing", "uniform"),
               *((name, "uniform") for name in ABLATIONS), *(("amf", name) for name in ABLATIONS))

# The study's sizes (on top of the recipe) and the pilot's candidates.
COVERED_DEMOS, UNDER_COVERED_DEMOS, BALANCED_DEMOS = 10, 1, 5
STUDY_ARGS = ["--amf.rounds=4", "--amf.demos_per_round=4", "--amf.eval_episodes=20", "--amf.eval_batch_size=10"]
PILOT_TASKS = ("window-open-v3", "window-close-v3", "drawer-close-v3", "drawer-open-v3", "button-press-topdown-v3",
               "button-press-v3", "door-open-v3", "plate-slide-v3", "handle-press-v3", "faucet-open-v3",
               "faucet-close-v3", "coffee-button-v3")
PILOT_DEMOS, PILOT_THRESHOLD, PILOT_SEED = 10, 0.6, 0
# --smoke: a tiny policy and problem (the shape of common.TINY_ARGS, the tests' tiny configuration).
SMOKE_ARGS = ["--policy.down_dims=[16,32]", "--policy.diffusion_step_embed_dim=16", "--policy.num_inference_steps=3",
              "--policy.scheduler_warmup_steps=2", "--env.episode_length=40", "--amf.rounds=2",
              "--amf.demos_per_round=2", "--amf.steps_per_round=6", "--amf.eval_episodes=2",
              "--amf.eval_batch_size=2", "--amf.pretrain.steps=6", "--batch_size=8"]
SMOKE_TASKS = (["reach-v3"], ["drawer-close-v3"])  # covered, under-covered
SMOKE_DEMOS = (2, 1, 2)  # covered, under-covered, balanced


# ----------------------------------------------------------------------------------------------
# The study: its settings, its plan and its headline.


class SampleEfficiencyStudy(Study):
    """This study on the runner's ``Study``: settings ``skewed`` and ``balanced``, the plan's seeds."""

    name, title = SUMMARY_NAME, "Sample-efficiency study"
    strategies, isolations, comparisons, plan_seeds = STRATEGIES, ISOLATIONS, COMPARISONS, SEEDS
    isolation_comparisons = (("lora", "shared_replay"),)

    def allocation(self, setting: str) -> dict[str, int]:
        covered, under, balanced = SMOKE_DEMOS if self.smoke else (COVERED_DEMOS, UNDER_COVERED_DEMOS, BALANCED_DEMOS)
        if setting == "balanced":
            return {t: balanced for t in self.pool}
        return {**{t: covered for t in self.covered}, **{t: under for t in self.under_covered}}

    def under_covered_in(self, setting: str) -> list[str]:
        return list(self.under_covered) if setting == "skewed" else []

    def base_args(self) -> list[str]:
        return merge_flags([f"--config_path={RECIPE.as_posix()}"], STUDY_ARGS, SMOKE_ARGS if self.smoke else [])

    def planned_cells(self) -> list[Cell]:
        return planned_cells(self.planned_seeds())

    def headline(self, settings: dict, partial: bool) -> dict:
        return headline(settings, partial)


def planned_cells(seeds) -> list[Cell]:
    """Every cell of the plan, seed-major (the first seeds finish every setting first)."""
    cells = []
    for i, seed in enumerate(seeds):
        for setting, isolation, strategies, n_seeds in PLAN:
            if i < n_seeds:
                cells += [Cell(setting, seed, s, isolation) for s in strategies]
    return cells


def headline(settings: dict, partial: bool) -> dict:
    """The study's numbers: the skewed single-model pair first, then LoRA, rebalancing, balanced."""
    def group(setting, isolation):
        return settings.get(setting, {}).get("isolations", {}).get(isolation, {})

    def paired(setting, isolation, key):
        entry = group(setting, isolation).get("paired", {}).get(key)
        return None if entry is None else {k: entry[k] for k in ("mean", "ci95", "sign_test_p", "seeds")}

    main = group("skewed", "shared_replay").get("strategies", {})
    seeds = {}
    for setting, body in settings.items():
        seeds[setting] = sorted({s for g in body["isolations"].values() for st in g["strategies"].values()
                                 for s in st["seeds"]})
    final = {}
    if main:
        first = next(iter(main.values()))["pretrained_success"]
        final["pretrained"] = {"mean_over_seeds": first["mean_over_seeds"], **_rate_ci(first["pooled"])}
    for name, st in main.items():
        final[name] = {"mean_over_seeds": st["final_success"]["mean_over_seeds"],
                       **_rate_ci(st["final_success"]["pooled"]), "seeds": len(st["seeds"])}
    hold = group("skewed", "shared_replay").get("amf_demos_to_hold_uniform_final")
    return {
        "seeds": seeds,
        "under_covered_share": {name: st["under_covered_share"]["overall"] for name, st in main.items()
                                if "under_covered_share" in st},
        "final_success": final,
        "paired_amf_minus_uniform": {iso: paired("skewed", iso, "amf_minus_uniform") for iso in ISOLATIONS},
        "amf_share_of_budget_to_hold_uniform_final": None if hold is None else {
            "median": hold["share_of_budget_median"], "range": hold["share_of_budget_range"],
            "seeds_reached": hold["seeds_reached"], "seeds": len(hold["seeds"])},
        "amf_minus_rebalancing": paired("skewed", "shared_replay", "amf_minus_rebalancing"),
        "balanced_amf_minus_uniform": paired("balanced", "shared_replay", "amf_minus_uniform"),
        "partial": partial,
    }


def _rate_ci(entry: dict) -> dict:
    return {"pooled": entry["success_rate"], "ci95": entry["ci95"], "episodes": entry["episodes"]}


# ----------------------------------------------------------------------------------------------
# The pilot: which tasks does a generalist learn with ~10 demos each?


def choose_tasks(rates: dict[str, float], threshold: float, n_covered: int, n_under: int) -> dict:
    """Pilot: the covered tasks (learned to >= threshold with ~10 demos) and the under-covered ones.

    Tasks ranked by success (ties: the candidates' order). With at least n_covered + n_under
    tasks above the threshold they are dealt alternately (best to covered, next to under-covered,
    ...), so both groups are learnable and of similar difficulty; otherwise covered = the best
    n_covered above the threshold and under-covered = the next best (whatever their success).
    """
    ranked = sorted(rates, key=lambda t: -rates[t])  # stable: ties keep the candidates' order
    eligible = [t for t in ranked if rates[t] >= threshold]
    if len(eligible) < n_covered:
        return {"covered": None, "under_covered": None,
                "why": f"only {len(eligible)} task(s) reached {threshold}: {eligible}; need {n_covered}"}
    if len(eligible) >= n_covered + n_under:
        top = eligible[: n_covered + n_under]
        covered, under = top[0::2][:n_covered], top[1::2][:n_under]
        rule = "alternate over the best tasks above the threshold"
    else:
        covered = eligible[:n_covered]
        under = [t for t in ranked if t not in covered][:n_under]
        rule = "covered: best above the threshold; under-covered: the next best"
    return {"covered": covered, "under_covered": under, "why": rule}


def pilot_demos(study: SampleEfficiencyStudy) -> int:
    return SMOKE_DEMOS[0] if study.smoke else PILOT_DEMOS


def pilot_args(study: SampleEfficiencyStudy, tasks: list[str], steps: int | None) -> tuple[list[str], int]:
    """The pilot's CLI flags (without --output_dir) and its pretraining steps."""
    n_demos, n_covered, n_under = pilot_demos(study), len(study.covered), len(study.under_covered)
    if steps is None:  # the study's pretraining steps per pretraining demo, on the pilot's demos
        study_steps = 6 if study.smoke else json.loads((ROOT / RECIPE).read_text())["amf"]["pretrain"]["steps"]
        covered, under, _ = SMOKE_DEMOS if study.smoke else (COVERED_DEMOS, UNDER_COVERED_DEMOS, BALANCED_DEMOS)
        steps = max(1, round(study_steps * n_demos * len(tasks) / (n_covered * covered + n_under * under)))
    return pretrained_only_args(study.base_args(), tasks, {t: n_demos for t in tasks}, steps, PILOT_SEED), steps


def run_pilot(study: SampleEfficiencyStudy, tasks: list[str], steps: int | None, threshold: float) -> dict:
    """Pretrain one balanced generalist on ``tasks`` and read its per-task success.

    The CLI has no "pretrain only" mode, so the pilot is a run of one round of one demo with no
    fine-tuning steps; only its pretrained evaluation is read.
    """
    n_demos, n_covered, n_under = pilot_demos(study), len(study.covered), len(study.under_covered)
    args, steps = pilot_args(study, tasks, steps)
    run_dir = study.runs_dir / "pilot"
    start = time.perf_counter()
    code, last_line = run_or_resume(args, run_dir, study.env())
    seconds = time.perf_counter() - start
    if code != 0:
        sys.exit(f"sample_efficiency --pilot: the run failed (exit {code}): {portable(last_line, study)}")
    report = json.loads((run_dir / "amf_report.json").read_text())
    per_task = report["pretrained"]["per_task"]
    rates = {t: per_task[t]["success_rate"] for t in tasks}
    result = {
        "benchmark": "sample_efficiency_pilot",
        "what": f"one generalist pretrained on {n_demos} demos of each candidate task, evaluated per task",
        "cli_args": args, "pretrain_steps": steps, "seed": PILOT_SEED, "threshold": threshold,
        "eval_protocol": report["eval_protocol"],
        "per_task": per_task,
        "chosen": choose_tasks(rates, threshold, n_covered, n_under),
        "wall_seconds_measured": round(seconds, 1),
    }
    write_json(study.results_dir / PILOT_NAME, portable(result, study))
    for t in sorted(tasks, key=lambda t: -rates[t]):
        print(f"{t:>28}: {rates[t]:.2f} {per_task[t]['ci95']}", flush=True)
    print(f"[pilot] chosen: {result['chosen']}", flush=True)
    return result


# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sample_efficiency", description=__doc__.splitlines()[0])
    p.add_argument("--pilot", action="store_true", help="pretrain one balanced generalist on --pilot-tasks and "
                   "choose the covered / under-covered tasks")
    p.add_argument("--pilot-tasks", nargs="+", default=None)
    p.add_argument("--pilot-steps", type=int, default=None,
                   help="pretraining steps of the pilot (default: the study's steps per pretraining demo)")
    p.add_argument("--pilot-threshold", type=float, default=PILOT_THRESHOLD)
    p.add_argument("--covered", nargs="+", default=None, help="default: the pilot's choice")
    p.add_argument("--under-covered", nargs="+", default=None, help="default: the pilot's choice")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help=f"default: {list(SEEDS)}")
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    p.add_argument("--strategies", nargs="+", choices=list(STRATEGIES), default=list(STRATEGIES))
    p.add_argument("--isolations", nargs="+", choices=list(ISOLATIONS), default=list(ISOLATIONS))
    add_cell_args(p)
    p.add_argument("--refresh", action="store_true",
                   help="first rewrite the complete cell files from their run directories (new fields)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 2 tasks, 1 seed (with --smoke, --runs-dir "
                   "defaults to <results-dir>/runs; needs --results-dir)")
    add_output_args(p, RUNS)
    return p


def main(argv=None) -> None:
    p = build_parser()
    args = p.parse_args(argv)
    if args.smoke and args.results_dir is None:
        p.error("--smoke needs --results-dir (smoke numbers are never written among the committed results)")
    results_dir = (args.results_dir or RESULTS).resolve()
    runs_dir = (args.runs_dir or (results_dir / "runs" if args.smoke else RUNS)).resolve()
    seeds = tuple(args.seeds or ((SEEDS[0],) if args.smoke else SEEDS))
    if args.smoke:
        covered, under = args.covered or SMOKE_TASKS[0], args.under_covered or SMOKE_TASKS[1]
    elif args.pilot:
        covered = args.covered or [f"covered_{i}" for i in range(4)]  # the pilot reads only how many
        under = args.under_covered or [f"under_covered_{i}" for i in range(4)]
    else:
        chosen = (read_json(results_dir / PILOT_NAME) or {}).get("chosen", {})
        covered, under = args.covered or chosen.get("covered"), args.under_covered or chosen.get("under_covered")
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, not {args.jobs}")
    threads = args.threads or (max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None)
    study = SampleEfficiencyStudy(tuple(covered or ()), tuple(under or ()), seeds, results_dir, runs_dir,
                                  smoke=args.smoke, threads=threads)
    if args.pilot:
        tasks = args.pilot_tasks or ([*SMOKE_TASKS[0], *SMOKE_TASKS[1]] if args.smoke else list(PILOT_TASKS))
        if args.dry_run:
            return dry_run("sample_efficiency", {
                "pilot": shlex.join([*pilot_args(study, tasks, args.pilot_steps)[0],
                                     f"--output_dir={study.runs_dir / 'pilot'}"]),
                "environment": f"HF_LEROBOT_HOME={study.env()['HF_LEROBOT_HOME']}",
                "results": study.results_dir / PILOT_NAME})
        run_pilot(study, tasks, args.pilot_steps, args.pilot_threshold)
        return
    if args.refresh and not args.dry_run:
        print(f"[study] refreshed {refresh_cells(study)} cell file(s) from their runs", flush=True)
    cells = []
    if not args.summary_only:
        if not covered or not under:
            p.error(f"no covered / under-covered tasks: run --pilot first (writes {PILOT_NAME}) "
                    "or pass --covered and --under-covered")
        cells = [c for c in planned_cells(seeds) if c.setting in args.settings and c.strategy in args.strategies
                 and c.isolation in args.isolations]
    if args.dry_run:
        return dry_run_study(study, cells, args)
    if not args.summary_only:
        run_study(study, cells, args.max_cells, args.jobs)
    summary = write_summary(study)
    print(json.dumps(summary["headline"], indent=2), flush=True)


def dry_run_study(study: Study, cells: list[Cell], args, name: str = SUMMARY_NAME) -> None:
    """What ``main`` would run and write: each selected cell (done, or its CLI flags), the files."""
    todo = set(cells_to_run(study, cells))
    now = len(todo) if args.max_cells is None else min(len(todo), args.max_cells)
    dry_run(name, {
        "covered": ", ".join(study.covered) or "-", "under-covered": ", ".join(study.under_covered) or "-",
        "seeds": " ".join(map(str, study.seeds)),
        "refresh": "the complete cell files from their runs" if getattr(args, "refresh", False) else "no",
        f"cells ({len(cells) - len(todo)} of {len(cells)} selected done, {now} to run now, "
        f"{args.jobs} seed(s) at a time, torch threads {study.threads or 'default'})": [
            f"{c.name}: " + (shlex.join([*c.args(study), f"--output_dir={study.runs_dir / c.name}"]) if c in todo
                             else "done") for c in cells],
        "run directories": study.runs_dir,
        "cell files": study.cells_dir,
        "summary": [study.results_dir / f"{name}{suffix}" for suffix in
                    (".json", ".md", "_success_vs_demos.png", "_under_covered_share.png", "_paired.png")],
    })


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("[study] stopped; run the same command again to resume (finished cells are kept)")
