"""Running a multi-seed study's cells, resumably: each cell is one ``lerobot-amf-train`` run.

What every study of cells shares, whatever its plan: the ``Study`` and ``Cell`` it runs, the CLI
flags of a cell, running or resuming it (seeds side by side, a seed's cells in order), and the
compact, portable result file a finished cell leaves. A study's own module (``sample_efficiency``)
subclasses ``Study`` with its plan. Standard library only at import time (``lerobot_amf`` inside
the functions that read a run), like ``benchmarks.common``, so a study's ``--dry-run`` loads no model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

from benchmarks.common import (RECIPE, ROOT, cli_env, last_lines, ledger_events, measured_at_commit, read_json, run_cli,
                               write_json)
from benchmarks.study_summary import write_summary


@dataclasses.dataclass(frozen=True)
class Study:
    """A study's tasks, seeds, folders and torch threads, and the parts of its definition that running
    and summarising its cells read. Used as it is, it runs pretrained-only runs (``env``, ``portable``);
    a study's module subclasses it with its definition: the class attributes below, ``allocation``,
    ``under_covered_in``, ``base_args``, ``planned_cells`` and ``headline``."""

    covered: tuple[str, ...]
    under_covered: tuple[str, ...]
    seeds: tuple[int, ...]
    results_dir: Path
    runs_dir: Path
    smoke: bool = False  # tiny sizes: the summary plans only the seeds run now
    threads: int | None = None  # torch threads per run (None: torch's default, every core)

    name: ClassVar[str] = "study"  # cell files in <results_dir>/<name>/, the summary <results_dir>/<name>.json
    title: ClassVar[str] = "Study"  # the first words of the summary's markdown
    strategies: ClassVar[dict[str, list[str]]] = {}  # strategy -> its CLI flags (this order: the figures' colours)
    isolations: ClassVar[dict[str, list[str]]] = {}  # isolation mode -> its CLI flags
    comparisons: ClassVar[tuple[tuple[str, str], ...]] = ()  # strategies (a, b): a - b paired per seed, where both ran
    isolation_comparisons: ClassVar[tuple[tuple[str, str], ...]] = ()  # isolation modes (a, b), the same per strategy
    plan_seeds: ClassVar[tuple[int, ...]] = ()  # the seeds of the whole plan

    @property
    def pool(self) -> list[str]:
        return [*self.covered, *self.under_covered]

    def allocation(self, setting: str) -> dict[str, int]:
        """Pretraining demos per task of the pool in ``setting``."""
        raise NotImplementedError(f"{type(self).__name__} defines no settings")

    def under_covered_in(self, setting: str) -> list[str]:
        """The tasks ``setting`` under-covers (the summary reads the budget spent on them)."""
        return list(self.under_covered)

    def base_args(self) -> list[str]:
        """The CLI flags every cell starts from."""
        return [f"--config_path={RECIPE.as_posix()}"]

    @property
    def cells_dir(self) -> Path:
        return self.results_dir / self.name

    def env(self) -> dict:
        """One LeRobot home for the whole study: the seeds' generalists are cached there."""
        threads = {} if self.threads is None else {"OMP_NUM_THREADS": str(self.threads),
                                                   "MKL_NUM_THREADS": str(self.threads)}
        return cli_env(self.runs_dir / "lerobot_home", **threads)

    def planned_seeds(self) -> tuple[int, ...]:
        """The seeds the summary counts as planned: the whole study's, whatever runs now."""
        return self.seeds if self.smoke else tuple(sorted({*self.plan_seeds, *self.seeds}))

    def planned_cells(self) -> list[Cell]:
        """Every cell of the plan, on ``planned_seeds``: the summary is partial until each is done."""
        raise NotImplementedError(f"{type(self).__name__} defines no plan")

    def headline(self, settings: dict, partial: bool) -> dict:
        """The few numbers the study is about, from the summary's ``settings``."""
        return {"partial": partial}

    def headline_markdown(self, headline: dict) -> str:
        """The headline as the first lines of the summary's markdown ("" when the tables say it all)."""
        return ""


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
                           f"--seed={self.seed}"], study.isolations[self.isolation],
                           study.strategies[self.strategy])


def add_cell_args(parser) -> None:
    """How many cells run now, side by side, on how many threads, or only the summary."""
    parser.add_argument("--max-cells", type=int, default=None, help="run at most this many cells now")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run side by side (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per run (default: cpus // jobs when --jobs > 1, else torch's default)")
    parser.add_argument("--summary-only", action="store_true", help="rebuild the summary and figures only")


def merge_flags(*groups: list[str]) -> list[str]:
    """CLI flags, a later ``--key=value`` replacing an earlier one of the same key in its place."""
    flags: dict[str, str] = {}
    for group in groups:
        for flag in group:
            flags[flag.split("=", 1)[0]] = flag
    return list(flags.values())


def portable(obj, study: Study):
    """``obj`` with this machine's paths replaced: the runs folder by its name in the repository
    (or ``<runs-dir>``), the repository root by ``.`` — results are committed, paths are not."""
    runs = study.runs_dir.relative_to(ROOT).as_posix() if study.runs_dir.is_relative_to(ROOT) else "<runs-dir>"
    text = json.dumps(obj)
    for path, label in ((study.runs_dir, runs), (ROOT, ".")):
        text = text.replace(json.dumps(str(path))[1:-1], label)
    return json.loads(text)


def pretrained_only_args(base: list[str], tasks: list[str], allocation: dict[str, int], steps: int,
                         seed: int) -> list[str]:
    """CLI flags (``base`` first) of a run whose only work is a generalist pretrained on
    ``allocation`` and its evaluation on ``tasks``: the CLI has no "pretrain only" mode, so one round of one
    demo with no fine-tuning steps, of which only the pretrained evaluation is read."""
    return merge_flags(base, [
        f"--env.task={','.join(tasks)}", f"--amf.pretrain.demos_per_task={json.dumps(allocation)}",
        f"--amf.pretrain.steps={steps}", f"--seed={seed}", "--amf.strategy=uniform", "--amf.isolation=shared",
        "--amf.rounds=1", "--amf.demos_per_round=1", "--amf.steps_per_round=0"])


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
        new["measured_at_commit"] = old.get("measured_at_commit")  # the run's code, not the refresh's
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
        **({"human_cost": r["human_cost"]} if "human_cost" in r else {}),  # runs before it was counted: none
        **({"held_back": r["held_back"]} if r.get("held_back") is not None else {}),
        **({"amf": amf_diagnostics(r["details"])} if "ess" in (r.get("details") or {}) else {}),
    } for r in report["rounds"]]
    return {
        "cell": cell.name, "status": "complete", **dataclasses.asdict(cell),
        "setting_spec": {"pool": study.pool, "under_covered": study.under_covered_in(cell.setting),
                         "pretrain_demos_per_task": study.allocation(cell.setting)},
        "cli_args": cell.args(study),
        "report": {k: report[k] for k in ("model", "eval_protocol", "strategy", "seed", "budget", "pool")},
        "pretrained": {t: {k: v[k] for k in ("successes", "episodes")}
                       for t, v in report["pretrained"]["per_task"].items()},
        "rounds": rounds,
        "wall_seconds_measured": round(wall_seconds, 1),
        "torch_threads": study.threads, "cpus": os.cpu_count(),
        "measured_at_commit": measured_at_commit(),  # the code the cell ran (a study runs from a pinned worktree)
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
                  "error": last_line, "cli_args": cell.args(study), "measured_at_commit": measured_at_commit()}
    else:
        result = result_of_run(cell, study, run_dir, total)
    write_json(path, portable(result, study))
    return result


def check_same_args(cell: Cell, study: Study, done: dict) -> None:
    """A finished cell must have been run with the flags the study would use now."""
    if done["cli_args"] != cell.args(study):
        sys.exit(f"{study.name}: {cell.name} was run with other flags ({' '.join(done['cli_args'])}); "
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
    """Run the ``cells`` not done yet (at most ``max_cells``), ``jobs`` seeds side by side; the
    summary is rebuilt after every cell."""
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

