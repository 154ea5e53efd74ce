"""Every bad or hostile input we know of, tried the way a user (or an attacker) would: through the
real command lines, each in its own process, and what came of it.

For each case the benchmark prepares what the case needs in a scratch folder (a finished tiny
run, a copy of its checkpoint with a hostile processor file, a routed model whose ``routing.json``
climbs out of its folder, a LIBERO-shaped dataset with hostile ``meta/info.json`` templates, a
local Hub serving a dataset for the byte cap, a run directory held by a live run ...), runs the
command, and records:

* ``exit_code`` and ``line``: the one error line the command printed (the last line of stderr
  holding ``error:``, else its last line);
* ``refused_cleanly``: exit code 2, exactly one ``error:`` line, no traceback;
* ``executed``: whether the command a hostile file names ran (it would create a marker file);
* ``written``: whether anything the case watches changed: the run directory it names (a new one
  appearing counts), and the hostile checkpoint or dataset itself.

The goal, written before the run: every case refused cleanly, 0 executed, 0 written. The summary
says how far from it the run is, and the results list each case with its line.

    python -m benchmarks.hostile_inputs            # all cases -> benchmarks/results/hostile_inputs.json
    python -m benchmarks.hostile_inputs --only negative_seed,processor_os_system_eval
    python -m benchmarks.hostile_inputs --dry-run  # the cases, nothing run

Scratch folders live under ``benchmarks/runs/hostile_inputs`` (not committed). The Hub cases use
the local Hub the tests use too (``benchmarks/local_hub.py``, reached through ``HF_ENDPOINT``) and
their LIBERO-shaped dataset builder (``benchmarks/libero_dataset.py``): only the network is replaced.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from benchmarks.common import (RESULTS_DIR, ROOT, RUNS_DIR, TINY_ARGS, cli_command, cli_env, dry_run,
                               measured_at_commit, run_cli, write_json)

RESULTS = RESULTS_DIR / "hostile_inputs.json"
SCRATCH = RUNS_DIR / "hostile_inputs"
GOAL = {"refused_cleanly": "all", "executed": 0, "written": 0}
EVAL = [sys.executable, "-m", "lerobot_amf.eval_cli"]
PUSH = [sys.executable, "-m", "lerobot_amf.publish"]
PRE = "policy_preprocessor.json"
TIMEOUT_S = 600

# A tiny ACT on two LIBERO tasks (the tests' LIBERO configuration), for the Hub dataset cases.
LIBERO_TASKS = ("libero_spatial/0", "libero_spatial/1")
LIBERO_ARGS = [
    "--policy.type=act", "--policy.chunk_size=4", "--policy.n_action_steps=4", "--policy.dim_model=32",
    "--policy.n_heads=2", "--policy.dim_feedforward=64", "--policy.n_encoder_layers=1", "--policy.n_decoder_layers=1",
    "--policy.use_vae=false", "--policy.pretrained_backbone_weights=null", "--policy.device=cpu",
    "--policy.push_to_hub=false", "--env.type=libero", f"--env.task={','.join(LIBERO_TASKS)}",
    "--env.episode_length=4", "--amf.source=hub", "--amf.source_repo_id=lerobot/libero", "--amf.rounds=1",
    "--amf.demos_per_round=2", "--amf.steps_per_round=3", "--amf.eval_episodes=1", "--amf.eval_batch_size=1",
    "--amf.pretrain.steps=3", "--amf.pretrain.batch_size=8", "--amf.pretrain.demos_covered=2",
    "--amf.pretrain.demos_uncovered=1", "--batch_size=8", "--num_workers=0", "--seed=1",
]


@dataclass
class Attempt:
    """What one case runs, and what it watches."""

    command: list[str]
    watched: list[Path]  # must be unchanged (a path that did not exist must not appear)
    env: dict = field(default_factory=dict)
    cwd: Path | None = None
    hold: Callable[[], contextlib.AbstractContextManager] | None = None  # held while the command runs


@dataclass
class Case:
    name: str
    kind: str  # bad input | mistake | hostile file
    what: str
    prepare: Callable[["Scratch", Path], Attempt]  # (shared fixtures, the case's own folder) -> attempt


# ---------------------------------------------------------------- shared fixtures, built on first use
class Scratch:
    def __init__(self, root: Path):
        self.root = root
        self.home = root / "lerobot_home"  # HF_LEROBOT_HOME: the pretraining cache of the tiny run
        self._built: dict[str, object] = {}

    def once(self, key: str, build):
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]

    @property
    def marker(self) -> Path:
        """The file a hostile command would create."""
        return self.root / "EXECUTED"

    def tiny_run(self) -> Path:
        """A finished tiny embedded run (the tests' tiny configuration)."""
        def build():
            out = self.root / "tiny_run"
            if not (out / "amf_report.json").exists():
                shutil.rmtree(out, ignore_errors=True)
                print("[hostile_inputs] building the tiny run the run-directory cases use ...", flush=True)
                code, tail = run_cli([*TINY_ARGS, f"--output_dir={out}"], cli_env(self.home),
                                     log=self.root / "tiny_run.log")
                if code != 0:
                    raise RuntimeError(f"the tiny run failed ({code}): {tail[-3:]}")
            return out
        return self.once("tiny_run", build)

    def checkpoint(self) -> Path:
        return self.tiny_run() / "checkpoints" / "last" / "pretrained_model"

    def copy_of_run(self, folder: Path) -> Path:
        run = folder / "run"
        shutil.copytree(self.tiny_run(), run, symlinks=True)
        return run

    def hostile_checkpoint(self, folder: Path, step: dict) -> Path:
        """A copy of the tiny run's checkpoint whose pre-processor starts with ``step``."""
        ckpt = folder / "checkpoint"
        shutil.copytree(self.checkpoint(), ckpt)
        config = json.loads((ckpt / PRE).read_text())
        config["steps"] = [step, *config["steps"]]
        (ckpt / PRE).write_text(json.dumps(config, indent=2))
        return ckpt

    def libero_dataset(self) -> Path:
        """A LIBERO-shaped LeRobot dataset of the two tasks."""
        def build():
            from benchmarks.libero_dataset import build_libero_dataset

            from lerobot_amf.envs.libero import LiberoCatalog

            root = self.root / "libero_dataset"
            if not (root / "meta" / "info.json").exists():
                shutil.rmtree(root, ignore_errors=True)
                catalog = LiberoCatalog()
                build_libero_dataset(root, [catalog.instruction(t) for t in catalog.parse_pool(",".join(LIBERO_TASKS))],
                                     episodes_per_task=3, frames_per_episode=6, image_size=32, episodes_per_file=2)
            return root
        return self.once("libero_dataset", build)

    def local_hub(self):
        """The local Hub serving the dataset as ``lerobot/libero``; its URL goes to the
        command as ``HF_ENDPOINT`` (huggingface_hub there runs unchanged)."""
        def build():
            from benchmarks.local_hub import LocalHub

            hub = LocalHub({"lerobot/libero": self.libero_dataset()})
            hub.__enter__()
            return hub
        return self.once("local_hub", build)

    def close(self) -> None:
        hub = self._built.get("local_hub")
        if hub is not None:
            hub.__exit__(None, None, None)


def train(*args: str) -> list[str]:
    return cli_command(list(args))


def tiny(out: Path, *args: str) -> list[str]:
    return train(*TINY_ARGS, *args, f"--output_dir={out}")


def bad_flags(name: str, *flags: str, what: str | None = None) -> Case:
    """A bad value on the tiny run's command line (``what``: the flags, unless said otherwise):
    the new run directory must not appear."""
    def prepare(s: Scratch, folder: Path) -> Attempt:
        out = folder / "run"
        return Attempt(tiny(out, *flags), [out])
    return Case(name, "bad input", what or " ".join(flags), prepare)


def resume_with(*args: str):
    """A case that resumes a copy of the tiny run with ``args``: nothing in it may change."""
    def prepare(s: Scratch, folder: Path) -> Attempt:
        run = s.copy_of_run(folder)
        return Attempt(tiny(run, "--resume=true", *args), [run])
    return prepare


# ---------------------------------------------------------------- the cases
def _output_dir_is_a_file(s, folder):
    target = folder / "notes.txt"
    target.write_text("my notes\n")
    return Attempt(tiny(target), [target])


def _missing_two_part_policy_path(s, folder):
    out = folder / "run"
    return Attempt(train(*TINY_ARGS[1:], "--policy.path=base/pretrained_model", f"--output_dir={out}"), [out],
                   cwd=folder)


def _partition_map_missing(s, folder):
    out = folder / "run"
    return Attempt(tiny(out, "--amf.isolation=lora", f"--amf.partitions={folder / 'no_such_map.json'}"), [out])


def _live_run_directory(s, folder):
    from lerobot_amf.locks import exclusive

    run = s.copy_of_run(folder)
    return Attempt(tiny(run, "--resume=true"), [run], hold=lambda: exclusive(run, "Run directory"))


def _not_a_run(s, folder):
    out = folder / "photos"
    out.mkdir()
    (out / "cat.jpg").write_bytes(b"\xff\xd8 not really")
    return Attempt(tiny(out, "--resume=true"), [out])


def _corrupt_ledger(s, folder):
    """A line in the middle of the ledger garbled (a torn *last* line is what a stop leaves; it is
    cut and the run resumes, by design: not a case here)."""
    run = s.copy_of_run(folder)
    ledger = run / "amf_ledger.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    lines[2] = lines[2][: len(lines[2]) // 2] + "\n"
    ledger.write_text("".join(lines))
    return Attempt(tiny(run, "--resume=true"), [run])


def _hostile_step(step_of: Callable[[Path], dict], cli: str):
    def prepare(s: Scratch, folder: Path) -> Attempt:
        ckpt = s.hostile_checkpoint(folder, step_of(s.marker))
        out = folder / "out"
        if cli == "eval":
            command = [*EVAL, f"--policy.path={ckpt}", "--policy.device=cpu", "--env.type=mw_state",
                       "--env.task=reach-v3,drawer-close-v3", "--env.episode_length=5", "--amf.eval_episodes=1",
                       "--amf.eval_batch_size=1", f"--output_dir={out}"]
        else:
            command = train(*TINY_ARGS[1:], f"--policy.path={ckpt}", f"--output_dir={out}")
        return Attempt(command, [out, ckpt])
    return prepare


def _routed_model(groups: dict, s: Scratch, folder: Path) -> Path:
    routed = folder / "routed_model"
    (routed / "adapters").mkdir(parents=True)
    (routed / "routing.json").write_text(json.dumps({
        "format": "lerobot_amf.routed/1", "mode": "lora",
        "base": {"pretrained_path": str(s.checkpoint()), "type": "diffusion"},
        "partitions": {"scheme": "per_task", "groups": groups}, "task_of_instruction": {}}))
    return routed


def _routing_climbs_out(s, folder):
    outside = folder / "secret"
    outside.mkdir()
    routed = _routed_model({"../../secret": ["reach-v3"]}, s, folder)
    out = folder / "out"
    return Attempt([*EVAL, f"--policy.path={routed}", "--policy.device=cpu", "--env.type=mw_state",
                    "--env.task=reach-v3", "--env.episode_length=5", "--amf.eval_episodes=1",
                    "--amf.eval_batch_size=1", f"--output_dir={out}"], [out, routed, outside])


def _hostile_dataset(key: str, template: str):
    def prepare(s: Scratch, folder: Path) -> Attempt:
        copy = folder / "libero_copy"
        shutil.copytree(s.libero_dataset(), copy)
        info = json.loads((copy / "meta" / "info.json").read_text())
        info[key] = template
        (copy / "meta" / "info.json").write_text(json.dumps(info, indent=2))
        out = folder / "run"
        return Attempt(train(*LIBERO_ARGS, f"--amf.source_root={copy}", f"--output_dir={out}",
                             f"--amf.pretrain.cache_dir={folder / 'pretrained'}"), [out, copy])
    return prepare


def _other_revision_in_the_copy(s, folder):
    copy = folder / "libero_copy"
    shutil.copytree(s.libero_dataset(), copy)
    marker = copy / ".cache" / "lerobot_amf" / "source.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"repo_id": "lerobot/libero", "revision": "v3.0"}))
    out = folder / "run"
    return Attempt(train(*LIBERO_ARGS, "--amf.source_revision=main", f"--amf.source_root={copy}",
                         f"--output_dir={out}", f"--amf.pretrain.cache_dir={folder / 'pretrained'}"), [out, copy])


def _over_the_byte_cap(s, folder):
    hub = s.local_hub()
    out = folder / "run"
    return Attempt(train(*LIBERO_ARGS, "--amf.source_max_bytes_per_round=1000", f"--amf.source_root={folder / 'cache'}",
                         f"--output_dir={out}", f"--amf.pretrain.cache_dir={folder / 'pretrained'}"), [out],
                   env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(folder / "hf_cache")})


def _push(*args: str, env: dict | None = None):
    def prepare(s: Scratch, folder: Path) -> Attempt:
        run = s.copy_of_run(folder)
        return Attempt([*PUSH, str(run), *args], [run], env=env or {})
    return prepare


CASES = [
    # --- bad values, as a new user types them
    bad_flags("unknown_strategy", "--amf.strategy=bogus"),
    bad_flags("zero_rounds", "--amf.rounds=0"),
    bad_flags("word_for_a_number", "--amf.rounds=two"),
    bad_flags("negative_seed", "--seed=-1"),
    bad_flags("negative_eval_seed", "--amf.eval_seed=-1"),
    bad_flags("negative_action_noise", "--amf.action_noise=-0.1"),
    bad_flags("replay_fraction_of_one", "--amf.isolation=shared_replay", "--amf.replay_fraction=1.0",
              what="--amf.replay_fraction=1.0"),
    bad_flags("zero_byte_cap", "--amf.source_max_bytes_per_round=0"),
    bad_flags("unknown_flag", "--amf.bogus=1"),
    bad_flags("unknown_task", "--env.task=reach-v3,not-a-task-v3"),
    bad_flags("budget_over_the_rounds", "--amf.budget=100", what="--amf.budget=100 with 2 rounds of 2 demos"),
    bad_flags("target_weight_outside_the_pool", '--amf.target_weights={"window-open-v3": 1}'),
    bad_flags("frozen_base_with_demo_stats", "--amf.isolation=lora", "--amf.normalization=demos"),
    bad_flags("hub_source_without_repo", "--amf.source=hub", what="--amf.source=hub without --amf.source_repo_id"),
    bad_flags("push_without_repo", "--amf.push_to_hub=true", what="--amf.push_to_hub=true without --amf.repo_id"),
    Case("missing_partition_map", "bad input", "--amf.partitions=<a JSON file that does not exist>",
         _partition_map_missing),
    Case("output_dir_is_a_file", "bad input", "--output_dir=<an existing file>", _output_dir_is_a_file),
    Case("missing_two_part_policy_path", "bad input",
         "--policy.path=base/pretrained_model, a local folder that does not exist here", _missing_two_part_policy_path),
    # --- everyday mistakes with a run directory
    Case("second_run_on_a_live_directory", "mistake", "--resume=true while another run holds the directory",
         _live_run_directory),
    Case("resume_a_folder_that_is_not_a_run", "mistake", "--resume=true on a folder of photos", _not_a_run),
    Case("resume_with_another_strategy", "mistake", "--resume=true --amf.strategy=amf (the run was uniform)",
         resume_with("--amf.strategy=amf")),
    Case("resume_with_another_seed", "mistake", "--resume=true --seed=7", resume_with("--seed=7")),
    Case("resume_with_another_source", "mistake", "--resume=true --amf.action_noise=0.3 (the demos would differ)",
         resume_with("--amf.action_noise=0.3")),
    Case("resume_on_a_corrupt_ledger", "mistake", "--resume=true on a ledger whose third line is garbled",
         _corrupt_ledger),
    Case("push_a_bad_repo_id", "bad input", "python -m lerobot_amf.publish <run> --repo_id='not a repo'",
         _push("--repo_id=not a repo")),
    Case("push_offline", "bad input", "python -m lerobot_amf.publish <run> --repo_id=me/run with HF_HUB_OFFLINE=1",
         _push("--repo_id=me/run", env={"HF_HUB_OFFLINE": "1"})),
    # --- files from others
    Case("processor_os_system_eval", "hostile file",
         'lerobot-amf-eval of a checkpoint whose pre-processor step is {"class": "os.system"}',
         _hostile_step(lambda m: {"class": "os.system", "config": {"command": f"touch {m}"}}, "eval")),
    Case("processor_os_system_train", "hostile file",
         'lerobot-amf-train --policy.path=<that checkpoint>',
         _hostile_step(lambda m: {"class": "os.system", "config": {"command": f"touch {m}"}}, "train")),
    Case("processor_subprocess", "hostile file", 'a pre-processor step {"class": "subprocess.run"}',
         _hostile_step(lambda m: {"class": "subprocess.run", "config": {"args": ["touch", str(m)]}}, "eval")),
    Case("processor_unregistered_name", "hostile file", 'a pre-processor step {"registry_name": "evil_step"}',
         _hostile_step(lambda m: {"registry_name": "evil_step", "config": {}}, "eval")),
    Case("processor_state_file_outside", "hostile file",
         "a normaliser step whose state_file is ../../../etc/passwd",
         _hostile_step(lambda m: {"registry_name": "normalizer_processor", "config": {},
                                  "state_file": "../../../etc/passwd"}, "eval")),
    Case("routing_partition_climbs_out", "hostile file", 'a routing.json partition named "../../secret"',
         _routing_climbs_out),
    Case("info_json_absolute_data_path", "hostile file", "a dataset whose info.json data_path is /etc/passwd",
         _hostile_dataset("data_path", "/etc/passwd")),
    Case("info_json_video_path_climbs_out", "hostile file",
         "a dataset whose info.json video_path is videos/{video_key}/../../../../x/{chunk_index}-{file_index}.mp4",
         _hostile_dataset("video_path", "videos/{video_key}/../../../../x/{chunk_index}-{file_index}.mp4")),
    Case("local_copy_of_another_revision", "mistake",
         "--amf.source_revision=main with --amf.source_root at a copy of v3.0", _other_revision_in_the_copy),
    Case("round_over_the_byte_cap", "bad input",
         "--amf.source_max_bytes_per_round=1000 on a dataset served by the (local) Hub", _over_the_byte_cap),
]


# ---------------------------------------------------------------- running one case
def digest(path: Path):
    """sha256 of every file under ``path`` (None: it does not exist)."""
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    out = {}
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        out[rel] = ("-> " + os.readlink(p)) if p.is_symlink() else (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
    return out


def error_lines(stderr: str) -> list[str]:
    return [ln.strip() for ln in stderr.splitlines() if "error:" in ln]


def run_case(case: Case, scratch: Scratch) -> dict:
    folder = scratch.root / "cases" / case.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    scratch.marker.unlink(missing_ok=True)
    attempt = case.prepare(scratch, folder)
    before = {str(p): digest(p) for p in attempt.watched}
    env = {**cli_env(scratch.home), **attempt.env}
    started = time.time()
    with attempt.hold() if attempt.hold else contextlib.nullcontext():
        proc = subprocess.run(attempt.command, cwd=attempt.cwd or ROOT, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    errors = error_lines(proc.stderr)
    tail = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    changed = [p for p in attempt.watched if digest(p) != before[str(p)]]
    result = {
        "name": case.name, "kind": case.kind, "what": case.what,
        "command": shown(attempt.command, scratch.root),
        "exit_code": proc.returncode,
        "line": shown_text(errors[-1] if errors else (tail[-1] if tail else ""), scratch.root),
        "refused_cleanly": proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr,
        "executed": scratch.marker.exists(),
        "written": bool(changed),
        "changed": [shown_text(str(p), scratch.root) for p in changed],
        "seconds": round(time.time() - started, 1),
    }
    scratch.marker.unlink(missing_ok=True)
    return result


ENTRY_POINTS = {"lerobot_amf.train": "lerobot-amf-train", "lerobot_amf.eval_cli": "lerobot-amf-eval"}


def shown_text(text: str, scratch: Path) -> str:
    """A line or path with this machine's folders named by role (results name no local path)."""
    for path, name in ((scratch, "<scratch>"), (ROOT, "<repo>")):
        text = text.replace(str(path), name)
    return text


def shown(command: list[str], scratch: Path) -> str:
    """The command as a user types it: the CLIs by their entry points, ``python`` for the rest."""
    words = command
    if words[:2] == [sys.executable, "-m"]:
        words = [*ENTRY_POINTS.get(words[2], f"python -m {words[2]}").split(), *words[3:]]
    return " ".join(shlex.quote(shown_text(w, scratch)) for w in words)


def summarize(results: list[dict]) -> dict:
    return {"tried": len(results), "refused_cleanly": sum(r["refused_cleanly"] for r in results),
            "executed": sum(r["executed"] for r in results), "written": sum(r["written"] for r in results),
            "not_refused_cleanly": [r["name"] for r in results if not r["refused_cleanly"]],
            "goal": GOAL, "goal_met": all(r["refused_cleanly"] and not r["executed"] and not r["written"]
                                          for r in results)}


def show(results: dict) -> None:
    s = results["summary"]
    print(f"{s['tried']} tried: {s['refused_cleanly']} refused cleanly, {s['executed']} executed, "
          f"{s['written']} wrote something" + ("" if s["goal_met"] else f"; not clean: {s['not_refused_cleanly']}"))
    for r in results["cases"]:
        flag = "ok " if r["refused_cleanly"] and not r["executed"] and not r["written"] else "BAD"
        print(f"  {flag} {r['name']:<36} exit {r['exit_code']}  {r['line'][:150]}")


def markdown(results: dict) -> str:
    """The docs' tables: per kind (the README's), then every case with its line."""
    kinds: dict[str, list[dict]] = {}
    for r in results["cases"]:
        kinds.setdefault(r["kind"], []).append(r)
    rows = ["| input | tried | refused cleanly (one line, exit 2) | executed | wrote something |",
            "| --- | --- | --- | --- | --- |"]
    for kind, cases in [*kinds.items(), ("total", results["cases"])]:
        rows.append(f"| {kind} | {len(cases)} | {sum(c['refused_cleanly'] for c in cases)} | "
                    f"{sum(c['executed'] for c in cases)} | {sum(c['written'] for c in cases)} |")
    rows += ["", "| case | what | exit | the line printed |", "| --- | --- | --- | --- |"]
    for r in results["cases"]:
        line, what = (text.replace("|", "\\|") for text in (r["line"], r["what"]))
        rows.append(f"| `{r['name']}` | {what} | {r['exit_code']} | {line} |")
    return "\n".join(rows)


# ---------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile_inputs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help="comma-separated case names (default: all)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--scratch", type=Path, default=SCRATCH)
    parser.add_argument("--show", action="store_true", help="print the table of the results file")
    parser.add_argument("--markdown", action="store_true", help="print the docs' markdown tables of the results file")
    parser.add_argument("--dry-run", action="store_true")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    cases = CASES
    if args.only:
        wanted = args.only.split(",")
        unknown = [n for n in wanted if n not in {c.name for c in CASES}]
        if unknown:
            raise SystemExit(f"unknown case(s) {unknown}; known: {', '.join(c.name for c in CASES)}")
        cases = [c for c in CASES if c.name in wanted]
    if args.show or args.markdown:
        results = json.loads(args.results.read_text())
        print(markdown(results)) if args.markdown else show(results)
        return
    if args.dry_run:
        dry_run("hostile_inputs", {"cases": [f"{c.name} ({c.kind}): {c.what}" for c in cases],
                                   "results": args.results, "scratch": args.scratch})
        return
    scratch = Scratch(args.scratch)
    scratch.root.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for i, case in enumerate(cases, 1):
            result = run_case(case, scratch)
            results.append(result)
            ok = result["refused_cleanly"] and not result["executed"] and not result["written"]
            print(f"[hostile_inputs] {i}/{len(cases)} {'ok ' if ok else 'BAD'} {case.name}: exit {result['exit_code']} "
                  f"({result['seconds']} s) {result['line'][:160]}", flush=True)
    finally:
        scratch.close()
    out = {"benchmark": "hostile_inputs", "measured_at_commit": measured_at_commit(),
           "complete": len(cases) == len(CASES), "summary": summarize(results), "cases": results}
    write_json(args.results, out)
    show(out)


if __name__ == "__main__":
    main()
