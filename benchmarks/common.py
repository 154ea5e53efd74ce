"""What the benchmarks share, one home each: where things live, the tiny configuration, the one
way to run ``lerobot-amf-train`` as a subprocess, result files, figures and dry runs.

Kept light (standard library only at import time) so that every benchmark's ``--dry-run`` and
``--help`` answer without loading torch, LeRobot or a simulator.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

# Every benchmark runs offline; set before anything imports huggingface_hub (it reads it once).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]  # the repository root
RESULTS_DIR = ROOT / "benchmarks" / "results"  # committed results
RUNS_DIR = ROOT / "benchmarks" / "runs"  # run directories (not committed)
# The embedded default recipe, relative to ROOT: the CLI runs from ROOT, and the study records
# this flag in its committed cell files, which must not name this machine's paths.
RECIPE = Path("recipes") / "metaworld_default.json"

# A tiny but complete configuration of the embedded default: real diffusion policy, real
# Metaworld, real LeRobot datasets and checkpoints; small enough for 2 CPU cores. The tests use it too.
TINY_ARGS = [
    "--policy.type=diffusion",
    "--policy.down_dims=[16,32]",
    "--policy.diffusion_step_embed_dim=16",
    "--policy.device=cpu",
    "--policy.push_to_hub=false",
    "--policy.noise_scheduler_type=DDIM",
    "--policy.num_inference_steps=3",
    "--policy.horizon=16",  # LeRobot 0.6 changed the defaults to 64 / 32: pinned as the recipe does
    "--policy.n_action_steps=8",
    "--policy.scheduler_warmup_steps=2",
    "--env.type=mw_state",
    "--env.task=reach-v3,drawer-close-v3",
    "--env.episode_length=40",
    "--amf.rounds=2",
    "--amf.demos_per_round=2",
    "--amf.steps_per_round=6",
    "--amf.eval_episodes=2",
    "--amf.eval_batch_size=2",
    "--amf.pretrain.steps=6",
    "--amf.pretrain.demos_covered=2",
    "--amf.pretrain.demos_uncovered=1",
    "--batch_size=8",
    "--num_workers=0",
]


# ---------------------------------------------------------------- the CLI as a subprocess
def cli_command(args: list[str]) -> list[str]:
    """``lerobot-amf-train`` with ``args``, through this interpreter (the benchmark's environment)."""
    return [sys.executable, "-m", "lerobot_amf.train", *args]


def cli_env(home: Path | None = None, **extra: str) -> dict:
    """This process's environment for a CLI run: offline, headless MuJoCo (``egl`` unless set),
    ``HF_LEROBOT_HOME=home`` (where the pretrained generalists are cached) and ``extra``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    if home is not None:
        env["HF_LEROBOT_HOME"] = str(home)
    return {**env, **extra}


def start_cli(args: list[str], env: dict | None = None, stdout=None, text: bool = False,
              own_group: bool = False) -> subprocess.Popen:
    """Start the CLI from the repository root with its stderr piped to the caller (the progress
    and phase markers are read from it). ``env`` None: this process's. ``own_group``: its own
    process group, so that a kill of the group stops it and everything it started."""
    return subprocess.Popen(cli_command(args), cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.PIPE,
                            text=text, start_new_session=own_group)


def run_cli(args: list[str], env: dict | None = None, log: Path | None = None,
            check: bool = False) -> tuple[int, list[str]]:
    """Run the CLI to its end; its stderr shows through as it comes, or goes with its stdout to
    ``log`` (appended) when several runs share the terminal. Returns (exit code, the last
    non-empty lines of its stderr); ``check``: a failed run raises ``CalledProcessError``."""
    with contextlib.ExitStack() as stack:
        out = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(open(log, "ab"))
        sink = out or sys.stderr.buffer
        proc = start_cli(args, env, stdout=out)
        tail = b""
        try:
            while chunk := os.read(proc.stderr.fileno(), 4096):
                sink.write(chunk)
                sink.flush()
                tail = (tail + chunk)[-8192:]
            code = proc.wait()
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
    if check and code != 0:
        raise subprocess.CalledProcessError(code, cli_command(args))
    return code, last_lines(tail)


def last_lines(raw: bytes) -> list[str]:
    """The non-empty lines of a run's output, progress-bar redraws split apart."""
    return [ln.strip() for ln in raw.decode(errors="replace").replace("\r", "\n").splitlines() if ln.strip()]


def ledger_events(run_dir: Path) -> set[str]:
    """The events a run's ledger holds (empty when there is no ledger): ``run_end`` = finished,
    any other = started, to be continued with ``--resume=true``."""
    from lerobot_amf.ledger import Ledger

    return {rec["event"] for rec in Ledger(run_dir).records()}


# ---------------------------------------------------------------- results
def measured_at_commit() -> str | None:
    """The commit the repository is at (short hash), recorded with a result; None outside git."""
    try:
        proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=False)
    except OSError:  # no git on this machine
        return None
    return proc.stdout.strip() or None


def kept_parts(old: dict | None, parts: dict[str, tuple[str, ...]], rerun) -> dict:
    """A benchmark's committed results minus the parts about to be re-measured, so one part can be
    measured again without the others. ``parts``: part name -> its key path in the results. Each
    kept part carries the commit it was measured at; a part written before parts carried one
    takes the file's ``measured_at_commit`` (one commit measured them all), else None."""
    if old is None or set(rerun) >= set(parts):
        return {}
    commit = old.get("measured_at_commit")
    for name, path in parts.items():
        *outer, key = path
        holder = old
        for step in outer:
            holder = holder.get(step, {})
        if key not in holder:
            continue
        if name in rerun:
            del holder[key]
        elif isinstance(holder[key], dict):
            holder[key] = {"measured_at_commit": commit, **holder[key]}
    return old


def write_json(path: Path, obj, newline: bool = True, **dumps_kwargs) -> None:
    """``json.dumps(obj, indent=2, **dumps_kwargs)`` (``newline``: and a final newline), written
    atomically by the run's own helper: a stop while writing leaves the previous file, never half of one.
    A result (a dict) says which LeRobot produced it (``"lerobot"``, as a run's ledger records it:
    results from 0.4.4 and 0.6 do not compare bit for bit), unless it says so already."""
    from lerobot_amf.atomic import write_text_atomic  # here: importing the package loads LeRobot
    from lerobot_amf.ledger import software

    if isinstance(obj, dict) and "lerobot" not in obj:
        obj = {"lerobot": software()["lerobot"], **obj}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(obj, indent=2, **dumps_kwargs) + ("\n" if newline else ""))


def read_json(path: Path):
    """The JSON at ``path``, or None when there is no file."""
    return json.loads(path.read_text()) if path.exists() else None


def pyplot():
    """matplotlib's pyplot on the file-only backend (figures are written, never shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------- dry runs
def add_output_args(parser, runs: Path) -> None:
    """``--results-dir``, ``--runs-dir`` (default ``runs``) and ``--dry-run``: every study's last flags."""
    parser.add_argument("--results-dir", type=Path, default=None, help=f"default: {RESULTS_DIR.relative_to(ROOT)}")
    parser.add_argument("--runs-dir", type=Path, default=None, help=f"default: {runs.relative_to(ROOT)}")
    parser.add_argument("--dry-run", action="store_true", help="print what it would run and write; run nothing")


def dry_run(benchmark: str, plan: dict) -> None:
    """Print what a benchmark would run and write (``plan``: label -> value or list of values)."""
    print(f"[{benchmark}] dry run: nothing is run or written", flush=True)
    for label, value in plan.items():
        if isinstance(value, (list, tuple)):
            print(f"  {label}:")
            for item in value:
                print(f"    {item}")
        else:
            print(f"  {label}: {value}")
    sys.stdout.flush()
