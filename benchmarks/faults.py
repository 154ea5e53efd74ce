"""Fault injection: SIGKILL a run anywhere, resume it, and check that nothing was lost or duplicated.

One uninterrupted tiny embedded run (the test suite's tiny configuration) is the reference; it
also measures how long each phase of the run takes. Each trial then starts the same run (same
seed) and kills it with SIGKILL (the whole process group, as a machine stop would) at a
random instant inside a phase chosen at random (a random permutation of the phases, so the
first trials hit distinct ones): a random occurrence of that phase (e.g. which round), a
random fraction (< 0.6) of its measured duration after it began. A kill that lands after the
phase ended still counts (as "between_phases" or the next phase) and the target is tried
again, aiming earlier. Then ``--resume=true`` until the run finishes (a fresh start when the
stop came before the run wrote its ledger). Each resumed run's ledger is compared with the
reference:

* demos lost: demo ids the reference pulled that the resumed run never recorded;
* demos duplicated: demo ids recorded more than once, plus episodes in ``demos/`` beyond the
  ledger's record;
* selections identical: the ``selection`` and ``demos_pulled`` records, byte for byte as
  canonical JSON, ignoring their ``time`` field.

Where a run is, and where it really died, is read from its own phase markers (stderr lines of
``lerobot_amf.phases``, turned on with ``LEROBOT_AMF_PHASE_MARKERS=1``): the kill is timed
from a marker, and the phase it landed in is the one still open in the output once the
process is dead (a kill that lands between phases says so). Nothing in the run kills itself.

    python -m benchmarks.faults                      # 8 kills, seed 0 -> benchmarks/results/faults.json
    python -m benchmarks.faults --kills 10 --seed 3 --strategy uniform
    python -m benchmarks.faults --show               # print the table of a results file
    python -m benchmarks.faults --dry-run            # the reference run and the outputs, nothing run

Run directories live under ``benchmarks/runs/faults`` (not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from benchmarks.common import (RESULTS_DIR, ROOT, RUNS_DIR, TINY_ARGS, cli_env, dry_run, measured_at_commit,
                               start_cli, write_json)
from lerobot_amf.phases import ENV_VAR, PHASES, PREFIX

RESULTS = RESULTS_DIR / "faults.json"
RUNS = RUNS_DIR / "faults"
LEDGER = "amf_ledger.jsonl"
COMPARED = ("selection", "demos_pulled")
BETWEEN = "between_phases"
NOTHING = {event: [] for event in COMPARED}  # the records of a run that recorded nothing

STRATEGY_ARGS = {"amf": ["--amf.strategy=amf", "--amf.selection.chunk_size=8"]}


# ---------------------------------------------------------------- reading a run's output
def parse_markers(lines) -> list[tuple[str, str, float]]:
    """(kind, phase, unix time) of every phase marker in ``lines``."""
    out = []
    for line in lines:
        parts = line.strip().split()
        if len(parts) == 4 and parts[0] == PREFIX and parts[1] in ("begin", "end"):
            out.append((parts[1], parts[2], float(parts[3])))
    return out


def open_phases(markers) -> list[str]:
    """The phases still open after ``markers``, outermost first (empty: between phases)."""
    stack: list[str] = []
    for kind, name, _ in markers:
        if kind == "begin":
            stack.append(name)
        elif stack and stack[-1] == name:
            stack.pop()
    return stack


def occurrences(markers) -> list[dict]:
    """Outermost phase occurrences, in order: {phase, index (per phase), start, seconds}."""
    stack, found, seen = [], [], Counter()
    for kind, name, t in markers:
        if kind == "begin":
            if not stack:
                found.append({"phase": name, "index": seen[name], "start": t, "seconds": None})
                seen[name] += 1
            stack.append(name)
        elif stack and stack[-1] == name:
            stack.pop()
            if not stack:
                found[-1]["seconds"] = round(t - found[-1]["start"], 3)
    return found


def compared_records(ledger_path: Path) -> dict[str, list[str]]:
    """The records compared with the reference, as canonical JSON without their time."""
    from lerobot_amf.ledger import Ledger

    out: dict[str, list[str]] = {event: [] for event in COMPARED}
    for rec in Ledger(ledger_path.parent).records():
        if rec["event"] in out:
            out[rec["event"]].append(json.dumps({k: v for k, v in rec.items() if k != "time"}, sort_keys=True))
    return out


def compare(reference: dict[str, list[str]], resumed: dict[str, list[str]], episodes_on_disk: int) -> dict:
    """Demos lost / duplicated and identical selections of a resumed run against the reference."""
    ids = lambda recs: [d["demo_id"] for r in recs for d in json.loads(r)["demos"]]  # noqa: E731
    ref_ids, got_ids = ids(reference["demos_pulled"]), ids(resumed["demos_pulled"])
    lost = len(set(ref_ids) - set(got_ids))
    duplicated = len(got_ids) - len(set(got_ids)) + max(0, episodes_on_disk - len(got_ids))
    return {
        "demos_recorded": len(got_ids),
        "episodes_on_disk": episodes_on_disk,
        "demos_lost": lost,
        "demos_duplicated": duplicated,
        "selections_identical": resumed["selection"] == reference["selection"],
        "demos_pulled_identical": resumed["demos_pulled"] == reference["demos_pulled"],
    }


def summarize(kills: list[dict]) -> dict:
    landed = [k for k in kills if k["killed"]]
    return {
        "kills": len(landed),
        "distinct_points": len({k["killed_in"] for k in landed if k["killed_in"] != BETWEEN}),
        "points": dict(Counter(k["killed_in"] for k in landed)),
        "survived": sum(k["survived"] for k in landed),
        "demos_lost": sum(k["demos_lost"] for k in landed),
        "demos_duplicated": sum(k["demos_duplicated"] for k in landed),
        "selections_identical": sum(k["selections_identical"] and k["demos_pulled_identical"] for k in landed),
    }


# ---------------------------------------------------------------- running
class Run:
    """One CLI process with its stderr read line by line (phase markers) and logged."""

    def __init__(self, args: list[str], env: dict, log: Path, on_line=None):
        self.lines: list[str] = []
        self.on_line = on_line
        self.log = open(log, "a")
        self.log.write(f"\n$ {' '.join(args)}\n")
        self.proc = start_cli(args, env, stdout=self.log, text=True, own_group=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            self.log.write(line)
            if self.on_line is not None:
                self.on_line(line)

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the CLI and anything it started
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = self.proc.wait()
        self.reader.join(10)
        self.log.close()
        return rc


def cli_args(out: Path, cache: Path, strategy: str, seed: int, resume: bool) -> list[str]:
    return [*TINY_ARGS, *STRATEGY_ARGS.get(strategy, [f"--amf.strategy={strategy}"]), f"--seed={seed}",
            f"--output_dir={out}", f"--amf.pretrain.cache_dir={cache}", *(["--resume=true"] if resume else [])]


def env_for(home: Path) -> dict:
    return cli_env(home, **{ENV_VAR: "1", "PYTHONPATH": str(ROOT)})


def reference_run(base: Path, strategy: str, seed: int, timeout: float) -> dict:
    ref = base / "reference"
    shutil.rmtree(ref, ignore_errors=True)
    ref.mkdir(parents=True)
    start = time.time()
    run = Run(cli_args(ref / "run", ref / "cache", strategy, seed, False), env_for(ref / "home"), ref / "log.txt")
    rc = run.wait(timeout)
    if rc != 0:
        raise SystemExit(f"reference run failed (exit {rc}); see {ref / 'log.txt'}")
    occ = occurrences(parse_markers(run.lines))
    return {"dir": ref, "seconds": round(time.time() - start, 1), "occurrences": occ,
            "records": compared_records(ref / "run" / LEDGER)}


def trial(i: int, target: str, occ: dict, fraction: float, reference: dict, base: Path, strategy: str, seed: int,
          timeout: float, max_restarts: int) -> dict:
    """Kill one run ``fraction`` of the reference's duration into occurrence ``occ`` of ``target``, then restart it."""
    trial_dir = base / f"trial_{i:02d}"
    shutil.rmtree(trial_dir, ignore_errors=True)
    trial_dir.mkdir(parents=True)
    out, cache, log = trial_dir / "run", trial_dir / "cache", trial_dir / "log.txt"
    if target != "pretraining":
        # the reference's pretrained generalist; its kept evaluation stays in the reference's own
        # HF_LEROBOT_HOME, so the run goes through the same phases as the reference, in the same order
        shutil.copytree(reference["dir"] / "cache", cache)
    delay = fraction * (occ["seconds"] or 0.0)
    env = env_for(trial_dir / "home")
    record = {"trial": i, "target": target, "occurrence": occ["index"], "delay_s": round(delay, 3),
              "phase_seconds_in_reference": occ["seconds"]}

    seen = Counter()
    stack: list[str] = []
    runs: list[Run] = []

    def on_line(line):
        for kind, name, _ in parse_markers([line]):
            if kind == "begin":
                if not stack and name == target:
                    if seen[name] == occ["index"]:
                        threading.Timer(delay, lambda: runs[0].kill()).start()
                    seen[name] += 1
                stack.append(name)
            elif stack and stack[-1] == name:
                stack.pop()

    runs.append(Run(cli_args(out, cache, strategy, seed, False), env, log, on_line))
    rc = runs[0].wait(timeout)
    run = runs[0]
    still_open = open_phases(parse_markers(run.lines))
    record.update(killed=rc == -signal.SIGKILL, first_exit=rc, open_at_death=still_open,
                  killed_in=still_open[0] if still_open else BETWEEN)
    if not record["killed"]:
        return {**record, "survived": rc == 0, "demos_lost": 0, "demos_duplicated": 0,
                "selections_identical": False, "demos_pulled_identical": False, "restarts": []}
    restarts = []
    for _ in range(max_restarts):
        resume = (out / LEDGER).exists()
        rc = Run(cli_args(out, cache, strategy, seed, resume), env, log).wait(timeout)
        restarts.append({"resume": resume, "exit": rc})
        if rc == 0:
            break
    survived = rc == 0
    if (out / LEDGER).exists():
        from lerobot_amf.data import count_episodes
        from lerobot_amf.errors import AMFInputError

        try:
            result = compare(reference["records"], compared_records(out / LEDGER), count_episodes(out / "demos"))
        except AMFInputError as err:  # a ledger the run itself left corrupt
            survived = False
            result = {**compare(reference["records"], NOTHING, 0), "error": str(err)}
    else:
        result = compare(reference["records"], NOTHING, 0)
    return {**record, **result, "survived": survived, "restarts": restarts}


def plan_targets(available: list[str], kills: int, rng: random.Random) -> list[str]:
    """A random permutation of the available phases, repeated (and reshuffled) up to ``kills``."""
    targets: list[str] = []
    while len(targets) < kills:
        block = list(available)
        rng.shuffle(block)
        targets += block
    return targets[:kills]


def show(path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    data = json.loads(path.read_text())
    table = Table(title=f"Fault injection ({data['config']['strategy']}, seed {data['config']['seed']}) — {path.name}")
    for col in ("trial", "target", "killed in", "restarts", "survived", "lost", "duplicated", "selections identical"):
        table.add_column(col)
    for k in data["kills"]:
        table.add_row(str(k["trial"]), f"{k['target']}#{k['occurrence']}", k["killed_in"] if k["killed"] else "(not killed)",
                      " ".join(("resume" if r["resume"] else "fresh") + f":{r['exit']}" for r in k["restarts"]),
                      str(k["survived"]), str(k["demos_lost"]), str(k["demos_duplicated"]),
                      str(k["selections_identical"] and k["demos_pulled_identical"]))
    console = Console(width=150)
    console.print(table)
    console.print(f"summary: {json.dumps(data['summary'])}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="chooses the kill points (the run's seed is --run-seed)")
    parser.add_argument("--run-seed", type=int, default=1000)
    parser.add_argument("--strategy", default="amf")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per CLI invocation")
    parser.add_argument("--max-restarts", type=int, default=3)
    parser.add_argument("--attempts", type=int, default=3, help="tries per target phase when a kill lands outside it")
    parser.add_argument("--runs", type=Path, default=RUNS)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--show", action="store_true", help="print the table of --results and exit")
    parser.add_argument("--dry-run", action="store_true", help="print the reference run and the outputs; run nothing")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if args.dry_run:
        ref = args.runs / "reference"
        return dry_run("faults", {
            "reference run": shlex.join(cli_args(ref / "run", ref / "cache", args.strategy, args.run_seed, False)),
            "then": f"{args.kills} kill(s) (kill points from seed {args.seed}), each resumed up to "
                    f"{args.max_restarts} time(s), {args.attempts} attempt(s) per target phase",
            "run directories": args.runs,
            "results": f"{args.results} (read by --show)" if args.show else args.results,
        })
    if args.show:
        return show(args.results)
    rng = random.Random(args.seed)
    print(f"[faults] reference run ({args.strategy}, seed {args.run_seed}) ...", flush=True)
    reference = reference_run(args.runs, args.strategy, args.run_seed, args.timeout)
    available = sorted({o["phase"] for o in reference["occurrences"] if o["seconds"] is not None})
    print(f"[faults] reference: {reference['seconds']} s; phases seen: {', '.join(available)}", flush=True)
    kills = []
    for target in plan_targets(available, args.kills, rng):
        occ = rng.choice([o for o in reference["occurrences"] if o["phase"] == target])
        fraction = rng.uniform(0.0, 0.6)
        for attempt in range(args.attempts):  # a short phase may end before the kill lands: aim earlier
            start = time.time()
            k = trial(len(kills), target, occ, fraction, reference, args.runs, args.strategy, args.run_seed,
                      args.timeout, args.max_restarts)
            k.update(attempt=attempt, seconds=round(time.time() - start, 1))
            kills.append(k)
            print(f"[faults] trial {k['trial']}: target {target}#{k['occurrence']} (+{k['delay_s']} s) -> killed in "
                  f"{k['killed_in'] if k['killed'] else '(not killed)'}, restarts {[r['exit'] for r in k['restarts']]}, "
                  f"lost {k['demos_lost']}, dup {k['demos_duplicated']}, "
                  f"identical {k['selections_identical'] and k['demos_pulled_identical']}", flush=True)
            if k["killed_in"] == target:
                break
            fraction *= 0.3
    summary = summarize(kills)
    result = {
        "benchmark": "faults",
        "summary": summary,
        "goal_met": (summary["kills"] >= 5 and summary["distinct_points"] >= 5 and summary["survived"] == summary["kills"]
                     and summary["demos_lost"] == 0 and summary["demos_duplicated"] == 0
                     and summary["selections_identical"] == summary["kills"]),
        "config": {"strategy": args.strategy, "seed": args.seed, "run_seed": args.run_seed, "tiny_args": TINY_ARGS,
                   "phases": list(PHASES)},
        "reference": {"seconds": reference["seconds"], "occurrences": reference["occurrences"]},
        "kills": kills,
        "measured_at_commit": measured_at_commit(),
    }
    write_json(args.results, result, newline=False)
    print(f"[faults] summary: {json.dumps(summary)}; results: {args.results}", flush=True)


if __name__ == "__main__":
    main()
