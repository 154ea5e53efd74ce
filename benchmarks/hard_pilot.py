"""The hard setting's pilot: which tasks does a skewed generalist still fail, and which does it know?

The earlier study's "skewed" setting skewed demo counts, not competence (every strategy ended at
90-94 %). Before a strategy cell of the hard study runs, this pilot measures, for the 12 tasks
that 10 demos teach (``sample_efficiency_pilot.json``: success >= 0.8 with 10 demos each), what a
*skewed* generalist knows of each task when it had 1 pretraining demo of it and when it had 10:

* the 12 tasks are split in two halves by a seeded permutation (not by any list order);
* allocation ``A``: the first half under-covered (1 demo each), the second covered (10 each);
  allocation ``B``: the halves swapped. So every task is measured once under-covered and once
  covered, each time in a 66-demo skewed generalist (seed 0, the study's pretraining steps per
  demo), evaluated 20 episodes per task on the fixed evaluation seeds;
* the criteria of the hard setting (written here, checked by code, never loosened after
  strategy results) are read off both: under-covered and weak (success <= 0.4 with 1 demo),
  covered but weak (success <= 0.6 with 10 demos), under-covered but strong (>= 0.8 with 1 demo);
* allocation ``C``, the confirmation, is then built by rule from A and B: every task whose
  success with 1 demo is weak or strong (counts and competence disagree either way) is
  under-covered, the rest covered; C is run the same way and the criteria are read off C
  itself, the generalist the study would use.

Each allocation is one CLI run (one round of one demo, no fine-tuning: only its pretrained
evaluation is read), resumable, with its result written to
``benchmarks/results/hard_pilot/<allocation>.json`` (the commit it ran at included) as it
finishes; ``benchmarks/results/hard_pilot.json`` summarises what exists and says ``partial``
until both allocations are done. It proposes a setting; the study fixes it.

    python -m benchmarks.hard_pilot                 # both allocations (resumes, skips done ones)
    python -m benchmarks.hard_pilot --jobs 2        # side by side, one core each
    python -m benchmarks.hard_pilot --summary-only  # rebuild hard_pilot.json from the cell files
    python -m benchmarks.hard_pilot --dry-run       # what it would run and write
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.common import (RECIPE, RESULTS_DIR, ROOT, RUNS_DIR, add_output_args, dry_run, measured_at_commit,
                               pyplot, read_json, write_json)
from benchmarks.sample_efficiency import COVERED_DEMOS, PILOT_NAME, UNDER_COVERED_DEMOS
from benchmarks.study_runner import Study, portable, pretrained_only_args, run_or_resume

NAME = "hard_pilot"
RUNS = RUNS_DIR / NAME
# The criteria of the hard setting (issue: "AMF where the choice matters").
TEACHABLE = 0.8  # 10 demos teach the task: success >= this in the balanced pilot
UNDER_WEAK, COVERED_WEAK, UNDER_STRONG = 0.4, 0.6, 0.8
NEED_UNDER_WEAK, NEED_COVERED_WEAK, NEED_TASKS = 4, 2, 12
SPLIT_SEED, SEED, EVAL_EPISODES = 0, 0, 20
# The earlier study's pretraining: the recipe's steps for its 4 x 10 + 4 x 1 demos.
STUDY_PRETRAIN_DEMOS = 4 * COVERED_DEMOS + 4 * UNDER_COVERED_DEMOS


def teachable_tasks(results_dir: Path) -> tuple[list[str], dict]:
    """The balanced pilot's tasks at >= TEACHABLE, in its candidates' order, and their rates."""
    pilot = read_json(results_dir / PILOT_NAME)
    if pilot is None:
        sys.exit(f"hard_pilot: {results_dir / PILOT_NAME} is missing: run python -m benchmarks.sample_efficiency --pilot")
    rates = {t: e["success_rate"] for t, e in pilot["per_task"].items()}
    candidates = [t for t in pilot["cli_args"][[a.startswith("--env.task=") for a in pilot["cli_args"]].index(True)]
                  .split("=", 1)[1].split(",")]
    return [t for t in candidates if rates[t] >= TEACHABLE], rates


def allocations(tasks: list[str]) -> dict[str, dict[str, int]]:
    """A: the first half of a seeded permutation under-covered, the rest covered; B: swapped."""
    order = [tasks[i] for i in np.random.default_rng(SPLIT_SEED).permutation(len(tasks))]
    first, second = order[: len(order) // 2], order[len(order) // 2:]
    return {"A": {**{t: UNDER_COVERED_DEMOS for t in first}, **{t: COVERED_DEMOS for t in second}},
            "B": {**{t: COVERED_DEMOS for t in first}, **{t: UNDER_COVERED_DEMOS for t in second}}}


def confirmation_allocation(tasks: list[str], summary: dict) -> dict[str, int]:
    """C: under-covered where 1 demo left the task weak or strong (A and B), covered elsewhere."""
    under = set(summary["under_covered_weak"]) | set(summary["under_covered_strong"])
    return {t: UNDER_COVERED_DEMOS if t in under else COVERED_DEMOS for t in tasks}


def read_off(cell: dict) -> dict:
    """The criteria read off one generalist: which of its tasks meet which."""
    rate = {t: e["success_rate"] for t, e in cell["per_task"].items()}
    under = [t for t, n in cell["demos_per_task"].items() if n == UNDER_COVERED_DEMOS]
    covered = [t for t in cell["demos_per_task"] if t not in under]
    weak_under = [t for t in under if rate[t] <= UNDER_WEAK]
    weak_covered = [t for t in covered if rate[t] <= COVERED_WEAK]
    return {"under_covered": under, "covered": covered, "success": rate,
            "under_covered_weak": weak_under, "under_covered_strong": [t for t in under if rate[t] >= UNDER_STRONG],
            "covered_weak": weak_covered,
            "closest_covered_weak": sorted(covered, key=lambda t: rate[t])[:NEED_COVERED_WEAK],
            "met": {"under_covered_weak": len(weak_under) >= NEED_UNDER_WEAK,
                    "covered_weak": len(weak_covered) >= NEED_COVERED_WEAK}}


def pilot_args(tasks: list[str], allocation: dict[str, int]) -> list[str]:
    """The allocation's pretrained-only run, with the study's pretraining steps per demo."""
    recipe_steps = json.loads((ROOT / RECIPE).read_text())["amf"]["pretrain"]["steps"]
    steps = round(recipe_steps * sum(allocation.values()) / STUDY_PRETRAIN_DEMOS)
    base = [f"--config_path={RECIPE.as_posix()}", f"--amf.eval_episodes={EVAL_EPISODES}", "--amf.eval_batch_size=10"]
    return pretrained_only_args(base, tasks, allocation, steps, SEED)


def run_allocation(name: str, tasks: list[str], allocation: dict[str, int], study: Study, log: Path | None) -> dict:
    cell_file = study.results_dir / NAME / f"{name}.json"
    done = read_json(cell_file)
    if done and done.get("complete"):
        return done
    args, run_dir = pilot_args(tasks, allocation), study.runs_dir / name
    start = time.perf_counter()
    code, last = run_or_resume(args, run_dir, study.env(), log)
    if code != 0:
        result = {"allocation": name, "complete": False, "failed": portable(last, study), "cli_args": args}
    else:
        report = json.loads((run_dir / "amf_report.json").read_text())
        result = {"allocation": name, "complete": True, "demos_per_task": allocation, "cli_args": args,
                  "per_task": report["pretrained"]["per_task"], "eval_protocol": report["eval_protocol"],
                  "measured_at_commit": measured_at_commit(), "threads": study.threads,
                  "wall_seconds": round(time.perf_counter() - start, 1)}
    write_json(cell_file, portable(result, study))
    return result


def summarise(tasks: list[str], balanced: dict, cells: dict[str, dict]) -> dict:
    """Per task: success with 1 and with 10 pretraining demos; the criteria; a proposed setting."""
    per_task = {}
    for task in tasks:
        row = {"balanced_10_demos": balanced[task]}
        for cell in cells.values():
            if cell.get("complete"):
                key = "under_covered_1_demo" if cell["demos_per_task"][task] == UNDER_COVERED_DEMOS else "covered_10_demos"
                row[key] = cell["per_task"][task]["success_rate"]
        per_task[task] = row
    under_weak = [t for t, r in per_task.items() if r.get("under_covered_1_demo", 1) <= UNDER_WEAK]
    covered_weak = [t for t, r in per_task.items() if r.get("covered_10_demos", 1) <= COVERED_WEAK]
    under_strong = [t for t, r in per_task.items() if r.get("under_covered_1_demo", 0) >= UNDER_STRONG]
    partial = not all(c.get("complete") for c in cells.values()) or len(cells) < 2
    return {
        "benchmark": NAME, "partial": partial,
        "what": "two complementary skewed generalists (1 vs 10 pretraining demos per task, 66 demos, seed 0), "
                f"single model, pretrained only, {EVAL_EPISODES} episodes per task on fixed seeds",
        "criteria": {"teachable_with_10_demos": f">= {TEACHABLE} (balanced pilot)",
                     "under_covered_weak": f"1 demo, success <= {UNDER_WEAK}, need >= {NEED_UNDER_WEAK}",
                     "covered_weak": f"10 demos, success <= {COVERED_WEAK}, need >= {NEED_COVERED_WEAK}",
                     "under_covered_strong": f"1 demo, success >= {UNDER_STRONG} (added if any)",
                     "tasks": f">= {NEED_TASKS}"},
        "tasks": tasks, "per_task": per_task,
        "met": {"tasks": len(tasks) >= NEED_TASKS, "under_covered_weak": len(under_weak) >= NEED_UNDER_WEAK,
                "covered_weak": len(covered_weak) >= NEED_COVERED_WEAK},
        "under_covered_weak": under_weak, "covered_weak": covered_weak, "under_covered_strong": under_strong,
        "note": "a proposal from separate generalists: the study's setting is fixed after one pilot of the "
                "chosen allocation itself, before any strategy cell runs",
    }


def plot(summary: dict, path: Path) -> None:
    """Per task: success with 10 demos each (balanced), with 1 and with 10 in a skewed generalist
    (A/B) and in the confirmation C, against the criteria's thresholds."""
    plt = pyplot()
    tasks = summary["tasks"]
    series = [("balanced, 10 demos", [summary["per_task"][t]["balanced_10_demos"] for t in tasks]),
              ("skewed, 1 demo", [summary["per_task"][t].get("under_covered_1_demo") for t in tasks]),
              ("skewed, 10 demos", [summary["per_task"][t].get("covered_10_demos") for t in tasks])]
    confirm = summary.get("confirmation", {})
    if confirm.get("complete"):
        series.append((f"confirmation C ({sum(confirm['demos_per_task'].values())} demos)",
                       [confirm["success"][t] for t in tasks]))
    fig, ax = plt.subplots(figsize=(12, 5))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(tasks))]
        ax.bar(xs, [v if v is not None else 0 for v in values], width, label=label)
    for y, label in ((UNDER_WEAK, "weak with 1 demo"), (COVERED_WEAK, "weak with 10"), (UNDER_STRONG, "strong")):
        ax.axhline(y, color="grey", lw=0.8, ls="--")
        ax.text(len(tasks) - 0.4, y + 0.01, label, fontsize=7, color="grey", ha="right")
    ax.set_xticks(range(len(tasks)), [t.removesuffix("-v3") for t in tasks], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"success ({EVAL_EPISODES} episodes per task)")
    ax.set_ylim(0, 1.08)
    ax.set_title("Hard setting pilot: what a skewed generalist knows with 1 vs 10 pretraining demos"
                 + (" (partial)" if summary["partial"] else ""), fontsize=10)
    ax.legend(fontsize=7, ncol=len(series), loc="upper center", bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hard_pilot", description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1, help="allocations run side by side (default 1)")
    p.add_argument("--summary-only", action="store_true", help="rebuild hard_pilot.json from the cell files")
    add_output_args(p, RUNS)
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    results_dir = (args.results_dir or RESULTS_DIR).resolve()
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    study = Study((), (), (SEED,), results_dir, (args.runs_dir or RUNS).resolve(), threads=threads)
    tasks, balanced = teachable_tasks(results_dir)
    plan = allocations(tasks)
    if args.dry_run:
        return dry_run(NAME, {
            **{f"allocation {n}": shlex.join([*pilot_args(tasks, a), f"--output_dir={study.runs_dir / n}"])
               for n, a in plan.items()},
            "environment": f"HF_LEROBOT_HOME={study.env()['HF_LEROBOT_HOME']}",
            "cell files": [results_dir / NAME / f"{n}.json" for n in plan],
            "summary": [results_dir / f"{NAME}.json", results_dir / f"{NAME}.png"]})
    if not args.summary_only:
        logs = {n: (study.runs_dir / f"{n}.log" if args.jobs > 1 else None) for n in plan}
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda n: run_allocation(n, tasks, plan[n], study, logs[n]), plan))
    cells = {n: c for n in plan if (c := read_json(results_dir / NAME / f"{n}.json")) is not None}
    summary = summarise(tasks, balanced, cells)
    if not summary["partial"]:  # stage 2: the confirmation generalist, built by rule from A and B
        allocation = confirmation_allocation(tasks, summary)
        confirm = read_json(results_dir / NAME / "C.json")
        if not args.summary_only and not (confirm or {}).get("complete"):
            confirm = run_allocation("C", tasks, allocation, study, None)
        summary["confirmation"] = {"demos_per_task": allocation, "complete": bool((confirm or {}).get("complete")),
                                   **(read_off(confirm) if (confirm or {}).get("complete") else {})}
        summary["partial"] = not summary["confirmation"]["complete"]
    write_json(results_dir / f"{NAME}.json", summary)
    plot(summary, results_dir / f"{NAME}.png")
    print(json.dumps({k: summary[k] for k in ("partial", "met", "under_covered_weak", "covered_weak",
                                              "under_covered_strong")}, indent=2), flush=True)


if __name__ == "__main__":
    main()
