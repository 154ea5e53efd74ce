"""Headroom before any strategy: how much could the best allocation of a demo budget beat uniform?

The hard-skew study could not have shown a gain: the best allocation beat uniform by ≈ 2.6 pp
there. The next study's setting is chosen here, on measured per-task learning curves, before any
strategy cell runs (issue "Where choosing tasks pays"):

* two candidate settings of 12 Metaworld v3 tasks, each a pool and a pretraining allocation:
  ``sinks``: 4 strong tasks (10 pretraining demos each), 4 tasks 10 demos teach but never
  demonstrated in pretraining (0), 4 harder tasks never demonstrated (0) that a few demos may not
  fix; ``unseen``: the same 4 strong tasks and 8 teachable tasks never demonstrated, no hard ones;
* per setting and pilot seed (101, 102: no study seed), one uniform run with one demo of every
  task per round for 6 rounds (shared_replay, the study's isolation), evaluated 20 episodes per
  task before the first round and after each: every task's success after d = 0 .. 6 demos;
* per task, the curve averaged over the pilot seeds and made non-decreasing
  (``benchmarks.oracle.monotone``); for budgets of 1, 2 and 3 demos per task, the best allocation
  (``benchmarks.oracle.best_allocation``, at most 6 demos a task) and uniform's, each predicted
  under the additive model. The headroom is their difference in mean success. Cross-fitted too:
  the allocation from one seed's curves, scored on the other seed's (both orders, averaged), so
  that noise the program exploits does not count as headroom; the rule reads the cross-fitted
  figure;
* per task: success before and after 6 demos, and whether 6 demos left it failing (below
  ``STAYS_FAILING``): tasks that demos do not fix;
* learning progress's default (``lerobot_amf.selection.progress``, min gain 0.1): each curve run's
  own evaluations are the history the rule would read in that run, so for N = 1, 2, 3 the pilot
  finds when it would have held each task back. A *false stop* withholds demos that moved the task:
  on that seed its success after all 6 demos is ``LEARNER_GAIN`` or more above its success when
  held back; a *true stop* holds back a task that 6 demos left below ``STAYS_FAILING``; other
  stops (at a plateau) are counted apart. The default is the smallest N with no false stop and at
  least one true stop; with none, it stays off. This rule was written while the first cells ran
  (one round seen); its first version called any stop of a task whose curve rose by
  ``LEARNER_GAIN`` from 0 to 6 demos false, a stop at a plateau included (faucet-open held back at
  0.55 that ended at 0.55). It was changed after the ``sinks`` cells were complete and before the
  ``unseen`` ones were; the summary gives the first version's choice beside it.

The rule, written before any cell ran: the study uses the (setting, budget) with the largest
cross-fitted headroom; the goal is ≥ 8 pp. If none reaches it, the summary says so and names the
largest with its figure. Cells are resumable (a run resumes where it stopped), written as they
finish to ``benchmarks/results/headroom_pilot/<cell>.json`` with the commit they ran at; the
summary says ``partial`` until every cell is done.

    python -m benchmarks.headroom_pilot --dry-run         # the plan, nothing run
    python -m benchmarks.headroom_pilot --jobs 2          # two cells side by side, one thread each
    python -m benchmarks.headroom_pilot --summary-only    # rebuild headroom_pilot.json from the cells
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
from concurrent.futures import ThreadPoolExecutor
from itertools import permutations
from pathlib import Path
from typing import ClassVar

import numpy as np

from benchmarks.common import RECIPE, RESULTS_DIR, ROOT, RUNS_DIR, add_output_args, dry_run, pyplot, read_json, write_json
from benchmarks.oracle import best_allocation, mean_success, monotone, uniform_allocation
from benchmarks.study_runner import Cell, Study, cells_to_run, run_cell

NAME = "headroom_pilot"
RUNS = RUNS_DIR / NAME
SEEDS = (101, 102)  # pilot generalists: no study seed (the study's are 1..)
ROUNDS = 6  # demos per task at the end of a curve run: curves for d = 0 .. ROUNDS
EVAL_EPISODES = 20
BUDGETS_PER_TASK = (1, 2, 3)
HEADROOM_GOAL_PP = 8.0
STAYS_FAILING = 0.3  # success after ROUNDS demos below this: demos did not fix the task
COVERED_DEMOS = 10
LEARNER_GAIN = 0.3  # a curve that rose this much from 0 to ROUNDS demos: demos teach the task
PROGRESS_DEMOS = (1, 2, 3)  # learning progress's N, tried on the curve runs
PROGRESS_MIN_GAIN = 0.1  # its default min gain (lerobot_amf.configs)

STRONG = ("drawer-close-v3", "door-open-v3", "window-close-v3", "button-press-topdown-v3")
TEACHABLE = ("drawer-open-v3", "plate-slide-v3", "faucet-open-v3", "coffee-button-v3")
MORE_TEACHABLE = ("button-press-v3", "handle-press-v3", "window-open-v3", "faucet-close-v3")
HARDER = ("pick-place-v3", "peg-insert-side-v3", "assembly-v3", "basketball-v3")
# setting -> {task: pretraining demos}, in pool order. TEACHABLE and MORE_TEACHABLE: the 12 tasks
# 10 demos teach (sample_efficiency_pilot.json) less the 4 strong ones; HARDER: outside those 12.
SETTINGS: dict[str, dict[str, int]] = {
    "sinks": {**{t: COVERED_DEMOS for t in STRONG}, **{t: 0 for t in (*TEACHABLE, *HARDER)}},
    "unseen": {**{t: COVERED_DEMOS for t in STRONG}, **{t: 0 for t in (*TEACHABLE, *MORE_TEACHABLE)}},
}
RECIPE_PRETRAIN_DEMOS = 44  # the recipe's pretraining steps are for 4 x 10 + 4 x 1 demos


def pretrain_steps(allocation: dict[str, int]) -> int:
    """The recipe's pretraining steps per demo, for this allocation's demos (as the hard pilot did)."""
    recipe_steps = json.loads((ROOT / RECIPE).read_text())["amf"]["pretrain"]["steps"]
    return round(recipe_steps * sum(allocation.values()) / RECIPE_PRETRAIN_DEMOS)


@dataclasses.dataclass(frozen=True)
class CurveRuns(Study):
    """One setting's curve runs: uniform, one demo of every task per round, evaluated every round."""

    setting: str = "sinks"

    name: ClassVar[str] = NAME
    title: ClassVar[str] = "Headroom pilot"
    strategies: ClassVar[dict[str, list[str]]] = {"uniform": ["--amf.strategy=uniform"]}
    isolations: ClassVar[dict[str, list[str]]] = {
        "shared_replay": ["--amf.isolation=shared_replay", "--amf.replay_fraction=0.5"]}

    @classmethod
    def of(cls, setting: str, results_dir: Path, runs_dir: Path, threads: int | None = None) -> CurveRuns:
        allocation = SETTINGS[setting]
        return cls(covered=tuple(t for t, n in allocation.items() if n), under_covered=tuple(
            t for t, n in allocation.items() if not n), seeds=SEEDS, results_dir=results_dir, runs_dir=runs_dir,
            threads=threads, setting=setting)

    def allocation(self, setting: str) -> dict[str, int]:
        return SETTINGS[setting]

    def base_args(self) -> list[str]:
        n = len(SETTINGS[self.setting])
        return [f"--config_path={RECIPE.as_posix()}", f"--amf.rounds={ROUNDS}", f"--amf.demos_per_round={n}",
                f"--amf.eval_episodes={EVAL_EPISODES}", "--amf.eval_batch_size=10",
                f"--amf.pretrain.steps={pretrain_steps(SETTINGS[self.setting])}"]

    def planned_cells(self) -> list[Cell]:
        return [Cell(self.setting, seed, "uniform", "shared_replay") for seed in SEEDS]


def curve_of(cell: dict) -> dict[str, list[float]]:
    """Each task's success after d = 0 .. ROUNDS demos, read off a finished curve run."""
    rate = lambda e: e["successes"] / e["episodes"]  # noqa: E731
    curves = {t: [rate(e)] for t, e in cell["pretrained"].items()}
    for d, r in enumerate(cell["rounds"], start=1):
        if set(r["demos_per_task"].values()) != {d}:
            raise ValueError(f"{cell['cell']}: round {r['round']} gave {r['demos_per_task']}, not {d} demo(s) of "
                             "every task: not a curve run")
        for t, e in r["per_task"].items():
            curves[t].append(rate(e))
    return curves


def headroom(curves_by_seed: list[dict[str, list[float]]], budget: int) -> dict:
    """Uniform's and the best allocation's predicted mean success at ``budget``, on the seeds'
    mean curve (made monotone) and cross-fitted (allocation from one seed, scored on another)."""
    tasks = list(curves_by_seed[0])
    fitted = [{t: monotone(c[t]) for t in tasks} for c in curves_by_seed]
    pooled = {t: monotone(np.mean([c[t] for c in curves_by_seed], axis=0)) for t in tasks}
    uniform = uniform_allocation(tasks, budget)
    best = best_allocation(pooled, budget)
    cross = [mean_success(fitted[b], best_allocation(fitted[a], budget)) - mean_success(fitted[b], uniform)
             for a, b in permutations(range(len(fitted)), 2)]
    return {
        "budget": budget, "uniform_allocation": uniform, "best_allocation": best,
        "uniform_pct": round(100 * mean_success(pooled, uniform), 1),
        "best_pct": round(100 * mean_success(pooled, best), 1),
        "headroom_pp": round(100 * (mean_success(pooled, best) - mean_success(pooled, uniform)), 1),
        "headroom_cross_fitted_pp": round(100 * float(np.mean(cross)), 1) if cross else None,
        "cross_fitted_per_pair_pp": [round(100 * x, 1) for x in cross],
    }


def progress_stops(cells: list[dict], n_demos: int) -> dict:
    """Where learning progress with window ``n_demos`` would have held each task back in the curve
    runs (their own evaluations as its history): false stops (tasks whose curve rose by
    ``LEARNER_GAIN`` or more) and true stops (tasks 6 demos left below ``STAYS_FAILING``)."""
    from lerobot_amf.selection.progress import Evaluated, stalled_tasks

    false, true, plateau, first_rule_false, saved = [], [], [], [], 0
    for cell in cells:
        curves = curve_of(cell)
        evals = [cell["pretrained"], *[r["per_task"] for r in cell["rounds"]]]
        stopped: dict[str, int] = {}
        for d in range(1, len(evals)):  # before the round that would give the (d + 1)-th demo
            history = [Evaluated({t: k for t in curves}, e) for k, e in enumerate(evals[: d + 1])]
            for task in stalled_tasks(history, n_demos, PROGRESS_MIN_GAIN):
                stopped.setdefault(task, d)
        for task, d in stopped.items():
            if d >= ROUNDS:  # after the last demo: nothing held back
                continue
            row = {"seed": cell["seed"], "task": task, "held_back_after_demos": d,
                   "success_then": round(curves[task][d], 3), "success_after_all_demos": round(curves[task][-1], 3)}
            if curves[task][-1] - curves[task][0] >= LEARNER_GAIN:
                first_rule_false.append(row)
            if curves[task][-1] - curves[task][d] >= LEARNER_GAIN:
                false.append(row)
            elif curves[task][-1] < STAYS_FAILING:
                true.append(row)
                saved += ROUNDS - d
            else:
                plateau.append(row)
    return {"false_stops": false, "true_stops": true, "plateau_stops": plateau, "demos_saved_on_true_stops": saved,
            "false_stops_first_rule": first_rule_false}


def progress_default(by_n: dict[int, dict], false: str = "false_stops") -> int | None:
    """The smallest N with no false stop and at least one true stop (None: learning progress stays
    off); ``false="false_stops_first_rule"``: the rule's first version."""
    return next((n for n, r in sorted(by_n.items()) if not r[false] and r["true_stops"]), None)


def summarise(cells: dict[str, dict[str, dict]]) -> dict:
    """Per setting: curves, tasks demos did not fix, headroom per budget; the rule's choice."""
    settings, partial = {}, False
    for setting, allocation in SETTINGS.items():
        done = [c for c in cells.get(setting, {}).values() if c.get("status") == "complete"]
        partial |= len(done) < len(SEEDS)
        if not done:
            settings[setting] = {"pretrain_demos_per_task": allocation, "seeds_done": []}
            continue
        by_seed = [curve_of(c) for c in sorted(done, key=lambda c: c["seed"])]
        tasks = list(allocation)
        mean_curve = {t: [round(float(v), 3) for v in np.mean([c[t] for c in by_seed], axis=0)] for t in tasks}
        settings[setting] = {
            "pretrain_demos_per_task": allocation, "seeds_done": sorted(c["seed"] for c in done),
            "curves_by_seed": {str(c["seed"]): curve_of(c) for c in done},
            "mean_curve": mean_curve,
            "stays_failing": [t for t in tasks if mean_curve[t][-1] < STAYS_FAILING],
            "strong_before_demos": [t for t in tasks if mean_curve[t][0] >= 0.9],
            "budgets": [headroom(by_seed, k * len(tasks)) for k in BUDGETS_PER_TASK],
            "measured_at_commit": sorted({c["measured_at_commit"] for c in done}),
            "eval_protocol": done[0]["report"]["eval_protocol"],
        }
    finished = [c for setting in cells.values() for c in setting.values() if c.get("status") == "complete"]
    by_n = {n: progress_stops(finished, n) for n in PROGRESS_DEMOS}
    rows = [(s, b) for s, v in settings.items() for b in v.get("budgets", [])
            if b["headroom_cross_fitted_pp"] is not None]
    chosen = max(rows, key=lambda sb: sb[1]["headroom_cross_fitted_pp"], default=None)
    return {
        "benchmark": NAME, "partial": partial,
        "what": f"per-task learning curves: uniform runs, one demo of every task per round for {ROUNDS} rounds, "
                f"shared_replay (single model, half of each batch replayed from the pretraining demos), "
                f"{EVAL_EPISODES} episodes per task before the first round and after each, pilot seeds {list(SEEDS)}",
        "model": "additive: a task's success depends on its own demos only; allocations of at most "
                 f"{ROUNDS} demos a task (the curves' range)",
        "rule": f"the (setting, budget) with the largest cross-fitted headroom; goal >= {HEADROOM_GOAL_PP} pp",
        "settings": settings,
        "learning_progress": {
            "min_gain": PROGRESS_MIN_GAIN, "learner_gain": LEARNER_GAIN, "stays_failing": STAYS_FAILING,
            "rule": "the smallest N with no false stop (demos withheld that moved the task by learner_gain) and at "
                    "least one true stop (a task 6 demos left below stays_failing); none: off",
            "by_demos": {str(n): r for n, r in by_n.items()},
            "default_demos": progress_default(by_n) if not partial else None,
            "default_demos_first_rule": progress_default(by_n, "false_stops_first_rule") if not partial else None,
            "final": not partial},
        "chosen": None if chosen is None else {
            "setting": chosen[0], "budget": chosen[1]["budget"],
            "headroom_cross_fitted_pp": chosen[1]["headroom_cross_fitted_pp"],
            "headroom_pp": chosen[1]["headroom_pp"],
            "goal_met": chosen[1]["headroom_cross_fitted_pp"] >= HEADROOM_GOAL_PP,
            "final": not partial},
    }


def plot(summary: dict, path: Path) -> None:
    """Left: each setting's mean learning curve per task (strong, teachable, harder); right:
    predicted headroom per budget, pooled and cross-fitted, against the goal."""
    plt = pyplot()
    done = {s: v for s, v in summary["settings"].items() if "mean_curve" in v}
    fig, axes = plt.subplots(1, len(done) + 1, figsize=(5 * (len(done) + 1), 4.2), squeeze=False)
    colour = {**{t: "tab:green" for t in STRONG}, **{t: "tab:blue" for t in (*TEACHABLE, *MORE_TEACHABLE)},
              **{t: "tab:red" for t in HARDER}}
    for ax, (setting, v) in zip(axes[0], done.items()):
        for t, curve in v["mean_curve"].items():
            ax.plot(range(len(curve)), curve, color=colour.get(t, "grey"), lw=1.2, alpha=0.8)
            ax.text(len(curve) - 1 + 0.05, curve[-1], t.removesuffix("-v3"), fontsize=6, va="center")
        ax.set_xlim(0, ROUNDS + 1.6)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("fine-tuning demos of the task")
        ax.set_ylabel(f"success (mean of seeds {v['seeds_done']}, {EVAL_EPISODES} episodes each)")
        ax.set_title(f"{setting}: green 10 pretraining demos; blue 0 (10 teach it), red 0 (harder)", fontsize=8)
    ax = axes[0][-1]
    labels, pooled, cross = [], [], []
    for setting, v in done.items():
        for b in v["budgets"]:
            labels.append(f"{setting}\n{b['budget']} demos")
            pooled.append(b["headroom_pp"])
            cross.append(b["headroom_cross_fitted_pp"] or 0.0)
    xs = np.arange(len(labels))
    ax.bar(xs - 0.2, pooled, 0.4, label="best - uniform (mean curves)")
    ax.bar(xs + 0.2, cross, 0.4, label="cross-fitted (the rule's figure)")
    ax.axhline(HEADROOM_GOAL_PP, color="grey", ls="--", lw=0.8)
    ax.text(len(labels) - 0.5, HEADROOM_GOAL_PP + 0.3, "goal", fontsize=7, color="grey", ha="right")
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_ylabel("predicted gain over uniform, pp")
    ax.set_title("Headroom per setting and budget" + (" (partial)" if summary["partial"] else ""), fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.headroom_pilot", description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1, help="cells run side by side (default 1)")
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    p.add_argument("--summary-only", action="store_true", help="rebuild headroom_pilot.json from the cell files")
    add_output_args(p, RUNS)
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    results_dir = (args.results_dir or RESULTS_DIR).resolve()
    runs_dir = (args.runs_dir or RUNS).resolve()
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    studies = {s: CurveRuns.of(s, results_dir, runs_dir, threads) for s in args.settings}
    work = [(study, cell) for study in studies.values() for cell in study.planned_cells()]
    if args.dry_run:
        return dry_run(NAME, {
            **{cell.name: shlex.join([*cell.args(study), f"--output_dir={runs_dir / cell.name}"])
               for study, cell in work},
            "environment": f"HF_LEROBOT_HOME={next(iter(studies.values())).env()['HF_LEROBOT_HOME']}",
            "cell files": [results_dir / NAME / f"{cell.name}.json" for _, cell in work],
            "summary": [results_dir / f"{NAME}.json", results_dir / f"{NAME}.png"]})
    if not args.summary_only:
        todo = [(study, cell) for study, cell in work if cells_to_run(study, [cell])]
        print(f"[{NAME}] {len(work) - len(todo)} of {len(work)} cells done, {len(todo)} to run", flush=True)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for result in pool.map(lambda sc: run_cell(sc[1], sc[0], quiet=args.jobs > 1), todo):
                print(f"[{NAME}] {result['cell']}: {result['status']}", flush=True)
    cells = {s: {p.stem: read_json(p) for p in sorted((results_dir / NAME).glob(f"{s}__*.json"))} for s in SETTINGS}
    summary = summarise(cells)
    write_json(results_dir / f"{NAME}.json", summary)
    if any("mean_curve" in v for v in summary["settings"].values()):
        plot(summary, results_dir / f"{NAME}.png")
    print(json.dumps(summary["chosen"], indent=2), flush=True)


if __name__ == "__main__":
    main()
