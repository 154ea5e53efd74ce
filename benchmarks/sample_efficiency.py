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
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.common import (RECIPE, RESULTS_DIR, ROOT, RUNS_DIR, cli_env, dry_run, last_lines, ledger_events,
                               pyplot, read_json, run_cli, write_json)

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
# Statistics: small pure functions (tests/test_benchmark_sample_efficiency.py).


def budget_share(selected: list[str], tasks) -> float | None:
    """Share of the picks in ``selected`` that went to ``tasks`` (None when nothing was picked)."""
    return sum(t in set(tasks) for t in selected) / len(selected) if selected else None


def sign_test_p(diffs) -> float:
    """Two-sided exact sign test of "median difference = 0" (zero differences dropped)."""
    nonzero = [d for d in diffs if d != 0]
    n, k = len(nonzero), sum(d > 0 for d in nonzero)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def pooled_rate(per_task: dict) -> float:
    """Success pooled over tasks: successes / episodes ({task: {successes, episodes}})."""
    from lerobot_amf.evaluation import pooled

    return pooled(per_task, list(per_task))["success_rate"]


def paired_bootstrap_ci(pairs: list[tuple[dict, dict]], n_boot: int = 10_000, seed: int = 0,
                        level: float = 0.95) -> list[float]:
    """Interval of the mean over seeds of (pooled success of a - of b), two-stage bootstrap.

    ``pairs``: one (a_per_task, b_per_task) per seed, each {task: {successes, episodes}}. Stage 1
    resamples seeds with replacement; stage 2 resamples each task's episodes with replacement
    within each drawn seed and arm (binomial on the observed rate).
    """
    tasks = sorted(pairs[0][0])
    arrays = []
    for arm in (0, 1):
        s = np.array([[p[arm][t]["successes"] for t in tasks] for p in pairs], dtype=float)
        n = np.array([[p[arm][t]["episodes"] for t in tasks] for p in pairs], dtype=float)
        arrays.append((s, n))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pairs), size=(n_boot, len(pairs)))
    diff = 0.0
    for sign, (s, n) in zip((1.0, -1.0), arrays):
        draws = rng.binomial(n[idx].astype(np.int64), s[idx] / n[idx])  # (boot, seeds, tasks)
        diff = diff + sign * draws.sum(axis=2) / n[idx].sum(axis=2)
    boot = diff.mean(axis=1)
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(boot, tail)), float(np.percentile(boot, 100 - tail))]


def paired_difference(pairs: dict[int, tuple[dict, dict]], n_boot: int = 10_000) -> dict:
    """a - b in pooled final success, per seed, with its bootstrap interval and sign test."""
    seeds = sorted(pairs)
    diffs = {s: pooled_rate(pairs[s][0]) - pooled_rate(pairs[s][1]) for s in seeds}
    return {
        "mean": float(np.mean(list(diffs.values()))),
        "ci95": paired_bootstrap_ci([pairs[s] for s in seeds], n_boot=n_boot),
        "sign_test_p": sign_test_p(list(diffs.values())),
        "seeds": seeds,
        "per_seed": {str(s): d for s, d in diffs.items()},
    }


def pooled_wilson(per_task_list: list[dict]) -> dict:
    """Successes and episodes pooled over every task of every run, with its Wilson 95% interval."""
    from lerobot_amf.evaluation import summarise

    s = sum(v["successes"] for per_task in per_task_list for v in per_task.values())
    n = sum(v["episodes"] for per_task in per_task_list for v in per_task.values())
    return summarise(s, n)


def mean_curve(curves: list[list[float]]) -> dict:
    """Mean over seeds at each point and its band (mean +- 1 standard error over seeds)."""
    arr = np.array(curves, dtype=float)
    mean = arr.mean(axis=0)
    se = arr.std(axis=0, ddof=1) / np.sqrt(len(arr)) if len(arr) > 1 else np.zeros_like(mean)
    return {"mean": mean.tolist(), "lo": (mean - se).tolist(), "hi": (mean + se).tolist(), "n_seeds": len(arr)}


def first_reach(xs, ys, target: float) -> float | None:
    """Smallest x where the piecewise-linear curve through (xs, ys) reaches ``target`` (None: never)."""
    if ys[0] >= target:
        return float(xs[0])
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if y1 >= target:
            return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0))
    return None


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


# ----------------------------------------------------------------------------------------------
# The study: settings, cells, runs.


@dataclasses.dataclass(frozen=True)
class Study:
    covered: tuple[str, ...]
    under_covered: tuple[str, ...]
    seeds: tuple[int, ...]
    results_dir: Path
    runs_dir: Path
    smoke: bool = False
    threads: int | None = None  # torch threads per run (None: torch's default, every core)

    @property
    def pool(self) -> list[str]:
        return [*self.covered, *self.under_covered]

    def allocation(self, setting: str) -> dict[str, int]:
        covered, under, balanced = SMOKE_DEMOS if self.smoke else (COVERED_DEMOS, UNDER_COVERED_DEMOS, BALANCED_DEMOS)
        if setting == "balanced":
            return {t: balanced for t in self.pool}
        return {**{t: covered for t in self.covered}, **{t: under for t in self.under_covered}}

    def base_args(self) -> list[str]:
        return merge_flags([f"--config_path={RECIPE.as_posix()}"], STUDY_ARGS, SMOKE_ARGS if self.smoke else [])

    @property
    def cells_dir(self) -> Path:
        return self.results_dir / SUMMARY_NAME

    def env(self) -> dict:
        """One LeRobot home for the whole study: the seeds' generalists are cached there."""
        threads = {} if self.threads is None else {"OMP_NUM_THREADS": str(self.threads),
                                                   "MKL_NUM_THREADS": str(self.threads)}
        return cli_env(self.runs_dir / "lerobot_home", **threads)

    def planned_seeds(self) -> tuple[int, ...]:
        """The seeds the summary counts as planned: the whole study's, whatever runs now."""
        return self.seeds if self.smoke else tuple(sorted({*SEEDS, *self.seeds}))


@dataclasses.dataclass(frozen=True)
class Cell:
    setting: str
    seed: int
    strategy: str
    isolation: str

    @property
    def name(self) -> str:
        return f"{self.setting}__seed{self.seed}__{self.strategy}__{self.isolation}"

    def args(self, study: Study) -> list[str]:
        """The CLI flags of this cell (without --output_dir)."""
        return merge_flags(study.base_args(), [f"--env.task={','.join(study.pool)}",
                           f"--amf.pretrain.demos_per_task={json.dumps(study.allocation(self.setting))}",
                           f"--seed={self.seed}"], ISOLATIONS[self.isolation], STRATEGIES[self.strategy])


def merge_flags(*groups: list[str]) -> list[str]:
    """CLI flags, a later ``--key=value`` replacing an earlier one of the same key in its place."""
    flags: dict[str, str] = {}
    for group in groups:
        for flag in group:
            flags[flag.split("=", 1)[0]] = flag
    return list(flags.values())


def planned_cells(seeds) -> list[Cell]:
    """Every cell of the plan, seed-major (the first seeds finish every setting first)."""
    cells = []
    for i, seed in enumerate(seeds):
        for setting, isolation, strategies, n_seeds in PLAN:
            if i < n_seeds:
                cells += [Cell(setting, seed, s, isolation) for s in strategies]
    return cells


def portable(obj, study: Study):
    """``obj`` with this machine's paths replaced: the runs folder by its name in the repository
    (or ``<runs-dir>``), the repository root by ``.`` — results are committed, paths are not."""
    runs = study.runs_dir.relative_to(ROOT).as_posix() if study.runs_dir.is_relative_to(ROOT) else "<runs-dir>"
    text = json.dumps(obj)
    for path, label in ((study.runs_dir, runs), (ROOT, ".")):
        text = text.replace(json.dumps(str(path))[1:-1], label)
    return json.loads(text)


def run_or_resume(args: list[str], run_dir: Path, env: dict, log: Path | None = None) -> tuple[int, str]:
    """Run (or resume) the CLI in ``run_dir``; its progress shows through, or goes to ``log``
    (appended) when several runs share the terminal. (exit code, its last line: its error if it said one)."""
    events = ledger_events(run_dir)
    if "run_end" in events:
        return 0, ""
    if events:
        args = [*args, "--resume=true"]
    elif run_dir.exists():  # stopped before its ledger began: nothing to keep
        shutil.rmtree(run_dir)
    args = [*args, f"--output_dir={run_dir}"]
    print(f"[study] {shlex.join(args)}", flush=True)
    code, lines = run_cli(args, env, log)
    errors = [ln for ln in lines if ln.startswith("lerobot-amf-train: error:")]
    return code, (errors or lines or [""])[-1]


def selection_seconds(run_dir: Path) -> dict[int, float]:
    """Per round, the wall time from the ledger record before the selection to the selection
    record: what choosing the round's tasks cost (in a resumed round it includes the restart)."""
    from lerobot_amf.ledger import Ledger

    out, previous = {}, None
    for rec in Ledger(run_dir).records():
        if rec["event"] == "selection" and previous is not None:
            out[rec["round"]] = round(rec["time"] - previous, 2)
        previous = rec["time"]
    return out


def amf_diagnostics(details: dict) -> dict:
    """What amf's selection record says about its importance weights and noise, per task: the
    effective sample size, the share of a task's weight on its own demos (low = the policy does
    not tell that task from the others), σ², whether rollouts replaced the demos, and how many
    (task, frame) pairs were embedded of the sampled frames x tasks (absent: every pair, before the
    target-mass floor)."""
    share = details.get("importance_share") or {}
    embedded = details.get("embedded_frames")
    return {"ess": details["ess"], "own_importance_share": {t: row.get(t, 0.0) for t, row in share.items()},
            "sigma2": (details.get("noise") or {}).get("sigma2"), "rollout_fallback": details.get("rollout_fallback"),
            "embedded_pairs": None if embedded is None else
            [sum(embedded["per_task"].values()), embedded["sampled"] * len(embedded["per_task"])]}


def refresh_cells(study: Study) -> int:
    """Rewrite every complete cell file from its run directory (where it still exists) with the
    current ``compact_result``: a field added to the cell files reaches cells that ran before."""
    n = 0
    for path in sorted(study.cells_dir.glob("*.json")):
        old = read_json(path)
        run_dir = study.runs_dir / old["cell"]
        if old["status"] != "complete" or not (run_dir / "amf_report.json").exists():
            continue
        cell = Cell(old["setting"], old["seed"], old["strategy"], old["isolation"])
        new = result_of_run(cell, study, run_dir, old["wall_seconds_measured"])
        new.update({k: old[k] for k in ("torch_threads", "cpus") if k in old})
        write_json(path, portable(new, study))
        n += 1
    return n


def result_of_run(cell: Cell, study: Study, run_dir: Path, wall_seconds: float) -> dict:
    """The compact result of a finished run, from its report and its ledger."""
    return compact_result(cell, study, json.loads((run_dir / "amf_report.json").read_text()), wall_seconds,
                          selection_seconds(run_dir))


def compact_result(cell: Cell, study: Study, report: dict, wall_seconds: float,
                   selection_s: dict[int, float] | None = None) -> dict:
    """What the summary needs from a finished run (the run directory keeps everything else)."""
    selection_s = selection_s or {}
    rounds = [{
        "round": r["round"],
        "selected": r["selected"],
        "scores": r["scores"],
        "reason": r["reason"],
        "demos_per_task": r["demos_per_task"],
        "demos_total": r["demos_total"],
        "per_task": {t: {k: v[k] for k in ("successes", "episodes")} for t, v in r["eval"]["per_task"].items()},
        "eval_variant": r["eval"]["variant"],
        "train_seconds": (r["train"] or {}).get("seconds"),
        "selection_seconds": selection_s.get(r["round"]),
        **({"amf": amf_diagnostics(r["details"])} if "ess" in (r.get("details") or {}) else {}),
    } for r in report["rounds"]]
    return {
        "cell": cell.name, "status": "complete", **dataclasses.asdict(cell),
        "setting_spec": {"pool": study.pool, "under_covered": list(study.under_covered) if cell.setting == "skewed"
                         else [], "pretrain_demos_per_task": study.allocation(cell.setting)},
        "cli_args": cell.args(study),
        "report": {k: report[k] for k in ("model", "eval_protocol", "strategy", "seed", "budget", "pool")},
        "pretrained": {t: {k: v[k] for k in ("successes", "episodes")}
                       for t, v in report["pretrained"]["per_task"].items()},
        "rounds": rounds,
        "wall_seconds_measured": round(wall_seconds, 1),
        "torch_threads": study.threads, "cpus": os.cpu_count(),
    }


def run_cell(cell: Cell, study: Study, quiet: bool = False) -> dict:
    """Run or resume one cell; write its result file (complete or failed). ``quiet``: the run's
    output goes to ``<runs>/<cell>.log`` instead of the terminal (the run directory itself must
    not exist before the run makes it)."""
    run_dir = study.runs_dir / cell.name
    timer = run_dir / "study_wall_seconds.json"  # wall time summed over the invocations of this cell
    start = time.perf_counter()
    try:
        code, last_line = run_or_resume(cell.args(study), run_dir, study.env(),
                                        log_path(cell, study) if quiet else None)
    finally:
        total = (read_json(timer) or 0.0) + time.perf_counter() - start
        if run_dir.exists():
            write_json(timer, total)
    path = study.cells_dir / f"{cell.name}.json"
    if code != 0:
        result = {"cell": cell.name, "status": "failed", **dataclasses.asdict(cell), "exit_code": code,
                  "error": last_line, "cli_args": cell.args(study)}
    else:
        result = result_of_run(cell, study, run_dir, total)
    write_json(path, portable(result, study))
    return result


def check_same_args(cell: Cell, study: Study, done: dict) -> None:
    """A finished cell must have been run with the flags the study would use now."""
    if done["cli_args"] != cell.args(study):
        sys.exit(f"sample_efficiency: {cell.name} was run with other flags ({' '.join(done['cli_args'])}); "
                 f"move {study.cells_dir / (cell.name + '.json')} aside or run with the same settings.")


def log_path(cell: Cell, study: Study) -> Path:
    return study.runs_dir / f"{cell.name}.log"


def seed_queues(cells: list[Cell]) -> list[list[Cell]]:
    """The cells grouped by seed, in order: a seed's cells share its generalist, so they run one
    after the other, while different seeds may run side by side."""
    queues: dict[int, list[Cell]] = {}
    for cell in cells:
        queues.setdefault(cell.seed, []).append(cell)
    return list(queues.values())


def cells_to_run(study: Study, cells: list[Cell]) -> list[Cell]:
    """The cells without a complete result file (a complete one must have the flags run now)."""
    todo = []
    for cell in cells:
        done = read_json(study.cells_dir / f"{cell.name}.json")
        if done and done["status"] == "complete":
            check_same_args(cell, study, done)
        else:
            todo.append(cell)
    return todo


def run_study(study: Study, cells: list[Cell], max_cells: int | None, jobs: int = 1) -> None:
    start = time.perf_counter()
    todo = cells_to_run(study, cells)
    print(f"[study] {len(cells) - len(todo)} of {len(cells)} selected cells done, {len(todo)} to run"
          + (f", {jobs} seeds at a time" if jobs > 1 else ""), flush=True)
    lock, started, running = threading.Lock(), [0], {}

    def work(queue: list[Cell]) -> None:
        for cell in queue:
            with lock:
                if max_cells is not None and started[0] >= max_cells:
                    return
                started[0] += 1
                running[cell.name] = log_path(cell, study)
                print(f"[study] cell {started[0]}/{len(todo)}: {cell.name} | elapsed "
                      f"{(time.perf_counter() - start) / 60:.1f} min", flush=True)
            result = run_cell(cell, study, quiet=jobs > 1)
            with lock:
                running.pop(cell.name, None)
                print(f"[study] {cell.name}: {result['status']}"
                      + (f" (exit {result['exit_code']}: {result['error']})" if result["status"] == "failed"
                         else ""), flush=True)
                write_summary(study)

    if jobs == 1:
        for queue in seed_queues(todo):
            work(queue)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(work, queue) for queue in seed_queues(todo)]
            next_beat = time.perf_counter() + 120
            while not all(f.done() for f in futures):
                time.sleep(1)
                if time.perf_counter() >= next_beat:
                    next_beat += 120
                    with lock:
                        for name, log in running.items():
                            tail = last_lines(log.read_bytes()[-2048:]) if log.exists() else []
                            print(f"[study] {name}: {(tail or ['starting'])[-1][:160]}", flush=True)
            for f in futures:
                f.result()
    print(f"[study] ran {started[0]} cell(s) in {(time.perf_counter() - start) / 60:.1f} min", flush=True)


# ----------------------------------------------------------------------------------------------
# The summary and its figures, from whatever cell files exist.


def final_per_task(cell: dict) -> dict:
    return cell["rounds"][-1]["per_task"]


def curve(cell: dict) -> tuple[list[int], list[float]]:
    """(demos spent, pooled success over the pool): the pretrained policy, then each round."""
    return [0] + [r["demos_total"] for r in cell["rounds"]], \
        [pooled_rate(cell["pretrained"])] + [pooled_rate(r["per_task"]) for r in cell["rounds"]]


def strategy_summary(cells: dict[int, dict]) -> dict:
    """One strategy in one (setting, isolation): shares, curve, final success."""
    seeds = sorted(cells)
    under = cells[seeds[0]]["setting_spec"]["under_covered"]
    out: dict = {"seeds": seeds}
    if under:
        per_seed = {s: [budget_share(r["selected"], under) for r in cells[s]["rounds"]] for s in seeds}
        overall = {s: budget_share([t for r in cells[s]["rounds"] for t in r["selected"]], under) for s in seeds}
        out["under_covered_share"] = {
            "per_round": np.mean([per_seed[s] for s in seeds], axis=0).tolist(),
            "overall": float(np.mean(list(overall.values()))),
            "per_seed": {str(s): overall[s] for s in seeds},
        }
    xs = curve(cells[seeds[0]])[0]
    out["curve"] = {"demos": xs, **mean_curve([curve(cells[s])[1] for s in seeds]),
                    "band": "mean +- 1 standard error over seeds"}
    finals = {s: pooled_rate(final_per_task(cells[s])) for s in seeds}
    out["final_success"] = {"mean_over_seeds": float(np.mean(list(finals.values()))),
                            "pooled": pooled_wilson([final_per_task(cells[s]) for s in seeds]),
                            "per_seed": {str(s): finals[s] for s in seeds}}
    out["pretrained_success"] = {"mean_over_seeds": float(np.mean([pooled_rate(cells[s]["pretrained"]) for s in seeds])),
                                 "pooled": pooled_wilson([cells[s]["pretrained"] for s in seeds])}
    ratios = [r["selection_seconds"] / r["train_seconds"] for s in seeds for r in cells[s]["rounds"]
              if r.get("selection_seconds") is not None and r.get("train_seconds")]
    diag = [(t, share) for s in seeds for r in cells[s]["rounds"] if "amf" in r
            for t, share in r["amf"]["own_importance_share"].items()]
    if diag:  # how much of each task's importance weight stays on its own demos (mean over rounds, seeds)
        groups = {"under_covered": [x for t, x in diag if t in under], "other": [x for t, x in diag if t not in under]}
        out["own_importance_share"] = {k: float(np.mean(v)) if v else None for k, v in groups.items()}
    if ratios:  # cells run side by side share the machine: read the ratio, not the seconds
        out["selection_over_train"] = {"median": float(np.median(ratios)), "max": float(np.max(ratios)),
                                       "rounds": len(ratios)}
    return out


def demos_ratio(amf: dict[int, dict], uniform: dict[int, dict]) -> dict | None:
    """Demos amf needs to reach uniform's final success (mean curves over their common seeds), / budget."""
    seeds = sorted(set(amf) & set(uniform))
    if not seeds:
        return None
    xs = curve(uniform[seeds[0]])[0]
    target = mean_curve([curve(uniform[s])[1] for s in seeds])["mean"][-1]
    amf_mean = mean_curve([curve(amf[s])[1] for s in seeds])["mean"]
    reached = first_reach(xs, amf_mean, target)
    return {"ratio": None if reached is None else reached / xs[-1], "demos_amf": reached, "demos_uniform": xs[-1],
            "uniform_final_mean": target, "amf_curve_mean": amf_mean, "demos": xs, "seeds": seeds}


def load_cells(cells_dir: Path) -> tuple[list[dict], list[dict]]:
    complete, failed = [], []
    for path in sorted(cells_dir.glob("*.json")):
        rec = json.loads(path.read_text())
        (complete if rec["status"] == "complete" else failed).append(rec)
    return complete, failed


def summarise_study(complete: list[dict], failed: list[dict], planned: list[Cell], n_boot: int = 10_000) -> dict:
    by_group: dict[tuple[str, str], dict[str, dict[int, dict]]] = {}
    for rec in complete:
        by_group.setdefault((rec["setting"], rec["isolation"]), {}).setdefault(rec["strategy"], {})[rec["seed"]] = rec
    done = {rec["cell"] for rec in complete}
    settings: dict = {}
    for (setting, isolation), strategies in sorted(by_group.items()):
        group: dict = {"strategies": {name: strategy_summary(cells) for name, cells in sorted(strategies.items())},
                       "paired": {}}
        for a, b in COMPARISONS:
            seeds = sorted(set(strategies.get(a, {})) & set(strategies.get(b, {})))
            if seeds:
                group["paired"][f"{a}_minus_{b}"] = paired_difference(
                    {s: (final_per_task(strategies[a][s]), final_per_task(strategies[b][s])) for s in seeds}, n_boot)
        group["demos_ratio_to_match_uniform"] = demos_ratio(strategies.get("amf", {}), strategies.get("uniform", {}))
        spec = next(iter(next(iter(strategies.values())).values()))["setting_spec"]
        settings.setdefault(setting, {"spec": spec, "isolations": {}})["isolations"][isolation] = group
    for setting, body in settings.items():  # paired means: every cell of a seed starts from one generalist
        generalists: dict[str, set] = {}
        for rec in complete:
            if rec["setting"] == setting:
                generalists.setdefault(str(rec["seed"]), set()).add(rec["report"]["model"]["pretrained_path"])
        body["generalist_per_seed"] = {seed: sorted(paths) for seed, paths in sorted(generalists.items())}
        body["one_generalist_per_seed"] = all(len(paths) == 1 for paths in generalists.values())
    missing = [c.name for c in planned if c.name not in done]
    any_cell = complete[0] if complete else None
    summary = {
        "benchmark": "sample_efficiency",
        "partial": bool(missing),
        "cells_planned": len(planned),
        "cells_done": len([c for c in planned if c.name in done]),
        "missing_cells": missing,
        "failed_cells": [{"cell": f["cell"], "exit_code": f["exit_code"], "error": f["error"]} for f in failed],
        "protocol": None if any_cell is None else {
            "eval": any_cell["report"]["eval_protocol"], "budget": any_cell["report"]["budget"],
            "recipe": RECIPE.as_posix(), "final_success": "pooled over every task of the pool, last round",
            "paired": "per seed a - b on the same generalist and evaluation seeds; bootstrap 95%: seeds, "
                      "then episodes within each task; two-sided exact sign test"},
        "settings": settings,
    }
    summary["headline"] = headline(settings, summary["partial"])
    return summary


def headline(settings: dict, partial: bool) -> dict:
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
    ratio = group("skewed", "shared_replay").get("demos_ratio_to_match_uniform")
    return {
        "seeds": seeds,
        "under_covered_share": {name: st["under_covered_share"]["overall"] for name, st in main.items()
                                if "under_covered_share" in st},
        "final_success": final,
        "paired_amf_minus_uniform": {iso: paired("skewed", iso, "amf_minus_uniform") for iso in ISOLATIONS},
        "demos_ratio_to_match_uniform": None if ratio is None else ratio["ratio"],
        "amf_minus_rebalancing": paired("skewed", "shared_replay", "amf_minus_rebalancing"),
        "balanced_amf_minus_uniform": paired("balanced", "shared_replay", "amf_minus_uniform"),
        "partial": partial,
    }


def markdown_summary(summary: dict) -> str:
    """The summary as the tables docs/results.md quotes: one per (setting, isolation), every number
    read from ``summary``; the heading says PARTIAL and which cells are missing."""
    def pct(x):
        return "—" if x is None else f"{100 * x:.1f}"

    def rate(entry):
        return f"{pct(entry['success_rate'])} [{pct(entry['ci95'][0])}, {pct(entry['ci95'][1])}]"

    status = (f"PARTIAL: {summary['cells_done']} of {summary['cells_planned']} planned cells done"
              if summary["partial"] else f"complete: all {summary['cells_planned']} planned cells")
    lines = [(f"Sample-efficiency study ({status}). Success in %, pooled over the pool's tasks and the seeds "
             "(Wilson 95%); paired = per seed minus uniform on the same generalist and evaluation seeds "
             "(mean, bootstrap 95% over seeds then episodes, sign-test p)."), ""]
    for setting, body in summary["settings"].items():
        for isolation, group in body["isolations"].items():
            lines += [f"**{setting}, {isolation}**", "",
                      ("| strategy | seeds | budget on under-covered tasks | pretrained | after 16 demos "
                      "| paired minus uniform | selection ÷ fine-tuning (median) |"),
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for name, st in group["strategies"].items():
                share = (st.get("under_covered_share") or {}).get("overall")
                paired = group["paired"].get(f"{name}_minus_uniform")
                diff = "—" if paired is None else (f"{pct(paired['mean'])} pp [{pct(paired['ci95'][0])}, "
                                                    f"{pct(paired['ci95'][1])}], p = {paired['sign_test_p']:.2f}")
                ratio = (st.get("selection_over_train") or {}).get("median")
                lines.append(f"| {name} | {len(st['seeds'])} | {'—' if share is None else f'{100 * share:.0f} %'} "
                             f"| {rate(st['pretrained_success']['pooled'])} | {rate(st['final_success']['pooled'])} "
                             f"| {diff} | {'—' if ratio is None else f'{ratio:.3f}'} |")
            match = group.get("demos_ratio_to_match_uniform")
            if match is not None:
                lines += ["", "amf reaches uniform's final success (mean over seeds) after "
                          + ("— (not within the budget)" if match["demos_amf"] is None
                             else f"{match['demos_amf']:.1f} of {match['demos_uniform']} demos "
                                  f"(ratio {match['ratio']:.2f})") + "."]
            lines.append("")
    return "\n".join(lines)


def _rate_ci(entry: dict) -> dict:
    return {"pooled": entry["success_rate"], "ci95": entry["ci95"], "episodes": entry["episodes"]}


def plot_summary(summary: dict, out_dir: Path) -> list[Path]:
    """Three PNGs from the cells that exist; titles say PARTIAL until every planned cell is done."""
    plt = pyplot()
    tag = " (PARTIAL)" if summary["partial"] else ""
    colour = {name: f"C{i}" for i, name in enumerate(STRATEGIES)}
    groups = [(s, i, g) for s, body in summary["settings"].items() for i, g in body["isolations"].items()]
    skewed = [(i, g) for s, i, g in groups if s == "skewed"]
    rows = [(f"{s}, {i}\n{k}", p) for s, i, g in groups for k, p in g["paired"].items()]
    paths = []

    def save(fig, title: str, name: str) -> None:
        fig.suptitle(title + tag, fontsize=10)
        fig.tight_layout()
        paths.append(out_dir / f"{SUMMARY_NAME}_{name}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)

    if groups:
        fig, axes = plt.subplots(1, len(groups), figsize=(4.8 * len(groups), 4), sharey=True, squeeze=False)
        for ax, (setting, iso, g) in zip(axes[0], groups):
            for name, st in g["strategies"].items():
                c = st["curve"]
                ax.plot(c["demos"], c["mean"], marker="o", color=colour[name], label=f"{name} (n={c['n_seeds']})")
                ax.fill_between(c["demos"], c["lo"], c["hi"], color=colour[name], alpha=0.15)
            ax.set_title(f"{setting}, {iso}", fontsize=9)
            ax.set_xlabel("fine-tuning demos spent")
            ax.legend(fontsize=6)
        axes[0][0].set_ylabel("success, pooled over the pool\n(mean over seeds, band +- 1 s.e.)")
        save(fig, "Success vs demos", "success_vs_demos")
    if skewed:
        fig, axes = plt.subplots(1, len(skewed), figsize=(4.8 * len(skewed), 3.8), sharey=True, squeeze=False)
        for ax, (iso, g) in zip(axes[0], skewed):
            shares = {n: st["under_covered_share"] for n, st in g["strategies"].items() if "under_covered_share" in st}
            width = 0.8 / max(1, len(shares))
            for j, (name, share) in enumerate(shares.items()):
                rounds = np.arange(1, len(share["per_round"]) + 1)
                ax.bar(rounds + (j - (len(shares) - 1) / 2) * width, share["per_round"], width=width,
                       color=colour[name], label=f"{name} ({share['overall']:.2f} overall)")
                ax.set_xticks(rounds)
            ax.axhline(0.5, color="k", lw=0.8, ls=":")
            ax.set_title(f"skewed, {iso}", fontsize=9)
            ax.set_xlabel("round")
            ax.set_ylim(0, 1.05)
            ax.legend(fontsize=6)
        axes[0][0].set_ylabel("share of the round's demos\non under-covered tasks (mean over seeds)")
        save(fig, "Budget spent on under-covered tasks", "under_covered_share")
    if rows:
        fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.2))
        for y, (label, p) in enumerate(rows):
            ax.scatter(list(p["per_seed"].values()), [y] * len(p["per_seed"]), s=14, color="#3b75af", zorder=4)
            ax.errorbar(p["mean"], y, xerr=[[p["mean"] - p["ci95"][0]], [p["ci95"][1] - p["mean"]]], fmt="D",
                        color="k", capsize=3, ms=4)
        ax.axvline(0, color="k", lw=0.8, ls=":")
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([r[0] for r in rows], fontsize=6)
        ax.invert_yaxis()
        ax.set_xlabel("final success difference (dots: seeds; diamond: mean, bootstrap 95%)")
        save(fig, "Paired differences per seed", "paired")
    return paths


def write_summary(study: Study) -> dict:
    complete, failed = load_cells(study.cells_dir)
    summary = summarise_study(complete, failed, planned_cells(study.planned_seeds()))
    write_json(study.results_dir / f"{SUMMARY_NAME}.json", summary)
    (study.results_dir / f"{SUMMARY_NAME}.md").write_text(markdown_summary(summary))
    plot_summary(summary, study.results_dir)
    return summary


# ----------------------------------------------------------------------------------------------
# The pilot: which tasks does a generalist learn with ~10 demos each?


def pilot_demos(study: Study) -> int:
    return SMOKE_DEMOS[0] if study.smoke else PILOT_DEMOS


def pilot_args(study: Study, tasks: list[str], steps: int | None) -> tuple[list[str], int]:
    """The pilot's CLI flags (without --output_dir) and its pretraining steps."""
    n_demos, n_covered, n_under = pilot_demos(study), len(study.covered), len(study.under_covered)
    if steps is None:  # the study's pretraining steps per pretraining demo, on the pilot's demos
        study_steps = 6 if study.smoke else json.loads((ROOT / RECIPE).read_text())["amf"]["pretrain"]["steps"]
        covered, under, _ = SMOKE_DEMOS if study.smoke else (COVERED_DEMOS, UNDER_COVERED_DEMOS, BALANCED_DEMOS)
        steps = max(1, round(study_steps * n_demos * len(tasks) / (n_covered * covered + n_under * under)))
    return pretrained_only_args(study.base_args(), tasks, {t: n_demos for t in tasks}, steps, PILOT_SEED), steps


def pretrained_only_args(base: list[str], tasks: list[str], allocation: dict[str, int], steps: int,
                         seed: int) -> list[str]:
    """CLI flags (``base`` first) of a run whose only work is a generalist pretrained on
    ``allocation`` and its evaluation on ``tasks``: the CLI has no "pretrain only" mode, so one round of one
    demo with no fine-tuning steps, of which only the pretrained evaluation is read."""
    return merge_flags(base, [
        f"--env.task={','.join(tasks)}", f"--amf.pretrain.demos_per_task={json.dumps(allocation)}",
        f"--amf.pretrain.steps={steps}", f"--seed={seed}", "--amf.strategy=uniform", "--amf.isolation=shared",
        "--amf.rounds=1", "--amf.demos_per_round=1", "--amf.steps_per_round=0"])


def run_pilot(study: Study, tasks: list[str], steps: int | None, threshold: float) -> dict:
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
    p.add_argument("--max-cells", type=int, default=None, help="run at most this many cells now")
    p.add_argument("--jobs", type=int, default=1, help="seeds run side by side (default 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per run (default: cpus // jobs when --jobs > 1, else torch's default)")
    p.add_argument("--summary-only", action="store_true", help="rebuild the summary and figures only")
    p.add_argument("--refresh", action="store_true",
                   help="first rewrite the complete cell files from their run directories (new fields)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, 2 tasks, 1 seed (needs --results-dir)")
    p.add_argument("--results-dir", type=Path, default=None, help=f"default: {RESULTS.relative_to(ROOT)}")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help=f"default: {RUNS.relative_to(ROOT)} (with --smoke: <results-dir>/runs)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the cells it would run (or the pilot) and the files it would write; run nothing")
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
    study = Study(tuple(covered or ()), tuple(under or ()), seeds, results_dir, runs_dir, smoke=args.smoke,
                  threads=threads)
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


def dry_run_study(study: Study, cells: list[Cell], args) -> None:
    """What ``main`` would run and write: each selected cell (done, or its CLI flags), the files."""
    todo = set(cells_to_run(study, cells))
    now = len(todo) if args.max_cells is None else min(len(todo), args.max_cells)
    dry_run("sample_efficiency", {
        "covered": ", ".join(study.covered) or "-", "under-covered": ", ".join(study.under_covered) or "-",
        "seeds": " ".join(map(str, study.seeds)),
        "refresh": "the complete cell files from their runs" if args.refresh else "no",
        f"cells ({len(cells) - len(todo)} of {len(cells)} selected done, {now} to run now, "
        f"{args.jobs} seed(s) at a time, torch threads {study.threads or 'default'})": [
            f"{c.name}: " + (shlex.join([*c.args(study), f"--output_dir={study.runs_dir / c.name}"]) if c in todo
                             else "done") for c in cells],
        "run directories": study.runs_dir,
        "cell files": study.cells_dir,
        "summary": [study.results_dir / f"{SUMMARY_NAME}{suffix}" for suffix in
                    (".json", ".md", "_success_vs_demos.png", "_under_covered_share.png", "_paired.png")],
    })


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("[study] stopped; run the same command again to resume (finished cells are kept)")
