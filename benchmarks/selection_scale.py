"""One amf selection at LIBERO's scale: all 130 tasks, a LIBERO-shaped dataset of 1,820 episodes.

The dataset has ``lerobot/libero``'s schema (two cameras stored as MP4, 8-dim state, 7-dim
action, 10 fps, ``benchmarks/libero_dataset.py``) and the 130 real task strings (LIBERO-90 and the
four 10-task suites), 14 episodes of each. Its images are 16x16; they take the code path a
256x256 dataset takes (decoded from video a chunk at a time, ``DemoStates.chunks``). LIBERO has
112 distinct instructions among its 130 tasks: an instruction shared by several tasks names the
first of them (``LiberoCatalog.vocabulary``), so the others have no demo of their own and start
cold.

Measured, each in its own process with 2 torch threads (the goal's 2 cores), random weights:

- the selection (6 picks, every default, the dataset as the fine-tuning demos in hand) with a
  LeRobot diffusion policy (sees no task on LIBERO: each demo informs its own task only) and with
  the tiny real SmolVLA (``benchmarks/tiny_smolvla.py``; its likelihood surrogate scores every
  sampled frame under every task): wall time, peak RSS of the process (``ru_maxrss``) and its RSS
  before the selection;
- the same SmolVLA selection without the caps on frames sampled and likelihood passes
  (``smolvla_uncapped``, asked for by name: 16 frames per demo, each under every instruction, as
  before ``max_sampled_frames`` and ``max_likelihood_passes``), for its picks and its time beside
  the capped one's; each selection row carries its seconds per part and passes;
- greedy scoring at 130 tasks x 50,000 target states (d = 1024): seconds per pick, with the
  candidate states the product's cap allows one pick (``max_candidate_states`` over 130 tasks;
  the goal's row), and with 100 per task (13,000, the spec measured before the cap existed).

Goals (issue "The headline path for real"): peak RSS <= 4 GB, <= 60 s per selection, < 10 s per
pick. A goal a measurement misses is reported with the factor it misses by.

Each part records the commit it was measured at; ``--parts`` re-measures some parts and keeps the
others' committed rows (with their own commits) in the JSON.``--before REV`` also runs each selection
part on REV's code (a detached worktree), just before the current code's, and records those rows
under ``before``: a change's effect measured side by side on one machine, not against a row
measured on another day.

    python -m benchmarks.selection_scale                  # writes benchmarks/results/selection_scale.{json,png}
    python -m benchmarks.selection_scale --parts scoring  # re-measure the greedy pick only
    python -m benchmarks.selection_scale --parts smolvla --before REV  # and REV's code, just before
    python -m benchmarks.selection_scale --dry-run        # the parts and the outputs, nothing run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import (RESULTS_DIR, ROOT, RUNS_DIR, add_output_args, dry_run, kept_parts, measured_at_commit,
                               pyplot, read_json, write_json)

RUNS = RUNS_DIR / "selection_scale"
EPISODES_PER_TASK, FRAMES_PER_EPISODE, IMAGE_SIZE, EPISODES_PER_FILE = 14, 24, 16, 20
PICKS, THREADS = 6, 2
CAP_S = 600.0  # a selection still running after 10 goal-lengths is stopped and reported as such
GOALS = {"peak_rss_gb": 4.0, "selection_s": 60.0, "seconds_per_pick": 10.0}
POLICIES = ("diffusion", "smolvla")
# The same SmolVLA selection without the caps on the frames sampled and the likelihood passes
# (amf.selection.max_sampled_frames=None, max_likelihood_passes=None): 16 frames per demo, each
# scored under every instruction, as before those caps existed (the "before" row).
UNCAPPED = "smolvla_uncapped"
PARTS = {**{kind: ("selection", kind) for kind in (*POLICIES, UNCAPPED)},
         "scoring": ("scoring",)}  # name -> key path
# The greedy pick at 130 tasks x 50k targets: with the candidate states the product's cap allows
# (amf.selection.max_candidate_states over 130 tasks: the most one pick scores), and with 100 per
# task (13,000 rows, the spec measured before the cap existed; kept as a second row).
SCORING = {"n_tasks": 130, "n_targets": 50_000, "dim": 1024, "states_per_task": None}
SCORING_BEFORE_CAPS = {**SCORING, "states_per_task": 100}
REPO = "lerobot/libero"


def pool() -> list[str]:
    """The 130 LIBERO tasks, in catalogue order (the four 10-task suites, then libero_90)."""
    from lerobot_amf.envs.libero import LiberoCatalog

    return LiberoCatalog().all_tasks()


def dataset(runs: Path) -> Path:
    """The LIBERO-shaped dataset (built once, then reused from ``runs``)."""
    from benchmarks.libero_dataset import build_libero_dataset
    from lerobot_amf.envs.libero import LiberoCatalog

    root = runs / "libero_130"
    if (root / "meta" / "info.json").exists() and (root / ".complete").exists():
        return root
    if root.exists():
        import shutil

        shutil.rmtree(root)
    catalog = LiberoCatalog()
    instructions = [catalog.instruction(t) for t in pool()]
    start = time.perf_counter()
    print(f"[selection_scale] building {len(instructions) * EPISODES_PER_TASK} episodes (built once)", flush=True)
    build_libero_dataset(root, instructions, EPISODES_PER_TASK, FRAMES_PER_EPISODE, IMAGE_SIZE,
                         EPISODES_PER_FILE, repo_id=REPO, video=True)
    (root / ".complete").write_text(f"{time.perf_counter() - start:.0f} s\n")
    return root


def make_policy(kind: str, root: Path, runs: Path):
    """(policy, pre-processor, post-processor) with random weights on the dataset's features."""
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
    from lerobot.utils.feature_utils import dataset_to_policy_features
    from lerobot.policies.factory import make_pre_post_processors

    meta = LeRobotDatasetMetadata(REPO, root=root)
    features = dataset_to_policy_features(meta.features)
    inputs = {k: f for k, f in features.items() if k != "action"}
    outputs = {"action": features["action"]}
    torch.manual_seed(0)
    if kind == "diffusion":
        from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
        from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

        cfg = DiffusionConfig(input_features=inputs, output_features=outputs, device="cpu", push_to_hub=False,
                              crop_shape=None, n_obs_steps=2, horizon=16, n_action_steps=8,
                              down_dims=(32, 64, 128), diffusion_step_embed_dim=64,
                              # LeRobot 0.6 changed these defaults (an ImageNet download at
                              # construction, BatchNorm, one encoder per camera): 0.4.4's, as measured
                              pretrained_backbone_weights=None, use_group_norm=True,
                              use_separate_rgb_encoder_per_camera=False)
        policy = DiffusionPolicy(cfg)
    else:
        from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

        from benchmarks.tiny_smolvla import tiny_smolvla_config

        cfg = tiny_smolvla_config(runs / "tiny_smolvlm", inputs, outputs)
        policy = SmolVLAPolicy(cfg)
    policy.eval()
    pre, post = make_pre_post_processors(policy.config, dataset_stats=meta.stats)
    return policy, pre, post


def rss_now() -> int:
    """This process's resident set size now, bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """This process's peak resident set size so far, bytes (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child_selection(kind: str, root: Path, runs: Path) -> dict:
    """One amf selection over the 130 tasks, in this process; its measurements."""
    import numpy as np
    import torch

    from lerobot_amf.data import DatasetRef
    from lerobot_amf.envs.libero import LiberoCatalog
    from lerobot_amf.selection.amf import AMFStrategy
    from lerobot_amf.selection.base import SelectionContext

    from lerobot_amf.selection.config import AMFSelectionConfig

    torch.set_num_threads(THREADS)
    tasks = pool()
    cfg = AMFSelectionConfig(max_likelihood_passes=None, max_sampled_frames=None) if kind == UNCAPPED \
        else AMFSelectionConfig()
    policy, pre, post = make_policy("smolvla" if kind == UNCAPPED else kind, root, runs)
    ctx = SelectionContext(
        round_index=1, pool=tasks, target_weights={t: 1 / len(tasks) for t in tasks}, counts={t: 0 for t in tasks},
        capacity={t: None for t in tasks}, rng=np.random.default_rng(0), policy=policy, preprocessor=pre,
        postprocessor=post, demo_dataset=DatasetRef(REPO, root), vocabulary=LiberoCatalog().vocabulary(tasks))
    before = rss_now()
    start = time.perf_counter()
    chosen = AMFStrategy(cfg).select(ctx, PICKS)
    wall = time.perf_counter() - start
    details = chosen.details
    return {
        "policy": kind, "parameters": sum(p.numel() for p in policy.parameters()),
        "selection_s": round(wall, 2), "peak_rss_gb": round(peak_rss() / 1e9, 3),
        "rss_before_selection_gb": round(before / 1e9, 3),
        "picks": chosen.tasks, "reason": chosen.reason,
        "importance": details.get("importance"), "sampled_frames": details["embedded_frames"]["sampled"],
        "embedded_frames": sum(details["embedded_frames"]["per_task"].values()),
        "demos_in_hand": details["n_demos_in_hand"], "cold_start_tasks": len(details["cold_start_tasks"]),
        "scored_tasks": len(details["candidate_demos"]),
        "caps_per_task": details["caps"]["per_task"],
        "tasks_capped": {what: sum(what in c for c in details["caps"]["capped"].values())
                         for what in ("targets", "candidate_demos")},
        "candidate_demos": sum(details["candidate_demos"].values()),
        "max_likelihood_passes": cfg.max_likelihood_passes,
        "likelihood_frames_per_demo": details["caps"]["likelihood_frames_per_demo"],
        "max_sampled_frames": cfg.max_sampled_frames,
        "frames_per_demo": details["caps"].get("frames_per_demo"),
        "seconds_per_part": details["seconds"], "passes": details["passes"],
    }


def scoring_states_per_task() -> int:
    """Candidate states per task in the scoring part: the product's cap shared over the 130 tasks."""
    from lerobot_amf.selection.config import AMFSelectionConfig

    return AMFSelectionConfig().max_candidate_states // SCORING["n_tasks"]


def child_scoring() -> dict:
    """The greedy pick at the product's caps (the verdict's row), and at the earlier 100 states per task."""
    import torch

    from benchmarks.selection_cost import bench_scoring

    torch.set_num_threads(THREADS)
    out = bench_scoring(**{**SCORING, "states_per_task": scoring_states_per_task()})
    out["candidate_states"] = out["tasks"] * out["states_per_candidate"]
    before = bench_scoring(**SCORING_BEFORE_CAPS)
    out["at_100_states_per_task"] = {**before, "candidate_states": before["tasks"] * before["states_per_candidate"]}
    out["peak_rss_gb"] = round(peak_rss() / 1e9, 3)
    return out


def run_child(args: list[str], runs: Path, timeout_s: float | None = None, code: Path = ROOT) -> dict:
    """A part in its own process (its peak RSS is its own), running the code checked out at
    ``code`` (the repository, or a worktree of an earlier commit); its JSON line. Past ``timeout_s`` it
    is stopped, and what it had done is read off its progress bars (``DemoStates.chunks``) and
    its peak RSS so far (``VmHWM``, polled); a part killed by a signal (the out-of-memory killer)
    is a row too, read off the same way."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(THREADS)}
    err_path = runs / f"child_{args[1]}{'' if code == ROOT else '_before'}.stderr"
    err_path.parent.mkdir(parents=True, exist_ok=True)
    start, hwm = time.perf_counter(), 0
    with open(err_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.selection_scale", *args], cwd=code, env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        while proc.poll() is None:
            hwm = max(hwm, _vm_hwm(proc.pid))
            if timeout_s is not None and time.perf_counter() - start > timeout_s:
                proc.kill()
                proc.wait()
                break
            time.sleep(0.5)
        out = proc.stdout.read()
    elapsed = time.perf_counter() - start
    stderr = err_path.read_text(errors="replace")
    if proc.returncode == 0:
        return json.loads(out.strip().splitlines()[-1])
    stopped = timeout_s is not None and elapsed > timeout_s
    if not stopped and proc.returncode >= 0:
        raise RuntimeError(f"selection_scale {' '.join(args)} failed:\n{stderr[-3000:]}")
    row = {"policy": args[1], "finished": False, "stopped_after_s": round(elapsed, 1), "selection_s": None,
           "peak_rss_gb": round(hwm / 1e9, 3), "progress_when_stopped": progress_bars(stderr)}
    if not stopped:  # killed by a signal before the cap: not a time measurement
        row.update(stopped_after_s=None, killed_by_signal=-proc.returncode, killed_after_s=round(elapsed, 1))
    return row


@contextlib.contextmanager
def earlier_commit(rev: str):
    """A detached worktree of ``rev`` (removed afterwards): a part run there measures that commit's code."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), rev], cwd=ROOT, check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)


def progress_bars(stderr: str) -> dict:
    """The last state of each of the selection's progress bars in a part's stderr: how far it got."""
    import re

    bars = re.findall(r"(amf: [^:\r\n]+):\s+\d+%\|[^|]*\|\s*(\d+)/(\d+) \[(\d+):(\d+)", stderr)
    return {desc: {"chunks_done": int(k), "chunks": int(n), "elapsed_s": int(minutes) * 60 + int(seconds)}
            for desc, k, n, minutes, seconds in bars}


def _vm_hwm(pid: int) -> int:
    """The peak RSS of process ``pid`` so far, bytes (Linux ``VmHWM``); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def verdicts(results: dict) -> dict:
    """Each goal against each measurement: met, or the factor it misses by."""
    out = {}
    for kind, row in results["selection"].items():
        if kind == UNCAPPED:  # a reference row (the selection before the cap), not the product's
            continue
        if row.get("killed_by_signal"):  # no time measured: it never finished
            out[f"{kind}.selection_s"] = {"measured": f"killed by signal {row['killed_by_signal']} after "
                                                      f"{row['killed_after_s']} s", "goal": GOALS["selection_s"],
                                          "met": False, "misses_by_factor": None}
        elif row.get("finished") is False:  # stopped at the cap: it misses by at least cap / goal
            out[f"{kind}.selection_s"] = {"measured": f"> {row['stopped_after_s']}", "goal": GOALS["selection_s"],
                                          "met": False, "misses_by_factor": f">= {row['stopped_after_s'] / GOALS['selection_s']:.1f}"}
        for key in ("peak_rss_gb",) if row.get("finished") is False else ("peak_rss_gb", "selection_s"):
            ratio = row[key] / GOALS[key]
            out[f"{kind}.{key}"] = {"measured": row[key], "goal": GOALS[key], "met": ratio <= 1,
                                    "misses_by_factor": None if ratio <= 1 else round(ratio, 2)}
    pick = results["scoring"]["seconds_per_pick"]
    out["scoring.seconds_per_pick"] = {"measured": round(pick, 3), "goal": GOALS["seconds_per_pick"],
                                       "met": pick < GOALS["seconds_per_pick"],
                                       "misses_by_factor": None if pick < GOALS["seconds_per_pick"]
                                       else round(pick / GOALS["seconds_per_pick"], 2)}
    return out


def plot(results: dict, path: Path):
    plt = pyplot()
    kinds = list(results["selection"])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = (("selection_s", "one selection, s", GOALS["selection_s"]),
              ("peak_rss_gb", "peak RSS, GB", GOALS["peak_rss_gb"]))
    for ax, (key, label, goal) in zip(axes, panels):
        rows = [results["selection"][k] for k in kinds]
        stopped = [row.get("finished") is False and key == "selection_s" for row in rows]
        values = [(row["stopped_after_s"] or row["killed_after_s"]) if cut else row[key]
                  for row, cut in zip(rows, stopped)]
        for kind, v, cut in zip(kinds, values, stopped):
            ax.bar(kind, v, color="tab:green" if v <= goal and not cut else "tab:red", hatch="//" if cut else None)
        ax.axhline(goal, color="k", ls="--", lw=1, label=f"goal {goal:g}")
        for i, (row, v, cut) in enumerate(zip(rows, values, stopped)):
            text = (f"killed at {v:g}" if row.get("killed_by_signal") else f"> {v:g} (stopped)") if cut else f"{v:g}"
            ax.text(i, v, text, ha="center", va="bottom")
        ax.set_title(label)
        ax.legend(frameon=False)
    scoring = results["scoring"]
    picks = {f"{scoring.get('candidate_states', 13_000):,} cand.\nstates": scoring["seconds_per_pick"]}
    if "at_100_states_per_task" in scoring:  # the earlier spec, above the product's cap
        before = scoring["at_100_states_per_task"]
        picks[f"{before['candidate_states']:,} cand.\nstates (no cap)"] = before["seconds_per_pick"]
    for i, (label, pick) in enumerate(picks.items()):
        axes[2].bar(label, pick, color="tab:green" if pick < GOALS["seconds_per_pick"] else "tab:red",
                    alpha=1.0 if i == 0 else 0.5)
        axes[2].text(i, pick, f"{pick:.2f}", ha="center", va="bottom")
    axes[2].axhline(GOALS["seconds_per_pick"], color="k", ls="--", lw=1, label=f"goal {GOALS['seconds_per_pick']:g}")
    axes[2].set_title(f"s per pick, {SCORING['n_tasks']} tasks x {SCORING['n_targets']:,} targets")
    axes[2].legend(frameon=False)
    ds = results["dataset"]
    fig.suptitle(f"amf selection over {ds['tasks']} LIBERO tasks, {ds['episodes']:,} episodes, 2 cameras (video), "
                 f"{THREADS} CPU threads, random weights")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.selection_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=[p for p in PARTS if p != UNCAPPED],
                        help="the parts to measure: a selection per policy, and the greedy scoring (default: all but the "
                             f"{UNCAPPED} reference row); "
                             "the committed rows of the others are kept")
    add_output_args(parser, RUNS)
    parser.add_argument("--cap-s", type=float, default=CAP_S,
                        help=f"stop a selection after this many seconds and report how far it got (default {CAP_S:g})")
    parser.add_argument("--before", metavar="REV",
                        help="also measure each selection part at commit REV, just before this one (side by side)")
    parser.add_argument("--child", choices=[*POLICIES, UNCAPPED, "scoring"], help=argparse.SUPPRESS)
    parser.add_argument("--dataset", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    runs = args.runs_dir or RUNS
    if args.child == "scoring":
        print(json.dumps(child_scoring()))
        return
    if args.child:
        print(json.dumps(child_selection(args.child, args.dataset, runs)))
        return
    results_dir = args.results_dir or RESULTS_DIR
    policies = [p for p in (*POLICIES, UNCAPPED) if p in args.parts]
    if args.dry_run:
        dry_run("selection_scale", {
            "dataset": f"{len(pool())} LIBERO tasks x {EPISODES_PER_TASK} episodes x {FRAMES_PER_EPISODE} frames, "
                       f"2 cameras {IMAGE_SIZE}x{IMAGE_SIZE} as MP4, under {runs}",
            "parts": [f"amf selection, {PICKS} picks, policy {k}, {THREADS} threads" for k in policies]
            + ([f"greedy scoring, {SCORING['n_tasks']} tasks x {SCORING['n_targets']} targets, "
                f"{scoring_states_per_task()} and {SCORING_BEFORE_CAPS['states_per_task']} candidate states per task"]
               if "scoring" in args.parts else []),
            "writes": [str(results_dir / "selection_scale.json"), str(results_dir / "selection_scale.png")]})
        return
    runs.mkdir(parents=True, exist_ok=True)
    results = kept_parts(read_json(results_dir / "selection_scale.json"), PARTS, args.parts)
    results.pop("before", None)  # a comparison belongs to the run that measured it
    for stale in ("measured_at_commit", "cap_s", "verdicts"):  # now per part (the verdicts: remade below)
        results.pop(stale, None)
    results.setdefault("selection", {})
    commit = measured_at_commit()
    results.update({
        "benchmark": "selection_scale",
        "machine": {"cpus_used": THREADS, "platform": platform.platform(), "python": platform.python_version()},
        "goals": GOALS,
        "protocol": "each part in its own process, 2 torch threads, random weights, the dataset as the fine-tuning "
                    "demos in hand, every amf default; peak RSS = the process's ru_maxrss (imports and policy included); "
                    "each part's row records the commit it was measured at",
    })
    if policies:
        root = dataset(runs)
        from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

        meta = LeRobotDatasetMetadata(REPO, root=root)
        results["dataset"] = {"tasks": len(pool()), "distinct_instructions": len(meta.tasks),
                              "episodes": meta.total_episodes, "frames": meta.total_frames,
                              "cameras": len(meta.video_keys), "storage": "video (MP4)", "image_size": IMAGE_SIZE}
    if args.before:
        results["before"] = {"commit": args.before, "rows": {}}
    for kind in policies:
        child = ["--child", kind, "--dataset", str(root), "--runs-dir", str(runs)]
        if args.before:  # the same part at the earlier commit, just before this one: side by side
            print(f"[selection_scale] selection with {kind} at {args.before} ...", flush=True)
            with earlier_commit(args.before) as code:
                row = run_child(child, runs, timeout_s=args.cap_s, code=code)
            results["before"]["rows"][kind] = {**row, "cap_s": args.cap_s, "measured_at_commit": args.before}
        print(f"[selection_scale] selection with {kind} ...", flush=True)
        row = run_child(child, runs, timeout_s=args.cap_s)
        results["selection"][kind] = {**row, "cap_s": args.cap_s, "measured_at_commit": commit}
        print(f"  {json.dumps({k: v for k, v in results['selection'][kind].items() if k != 'reason'})}", flush=True)
    if "scoring" in args.parts:
        print("[selection_scale] greedy scoring ...", flush=True)
        results["scoring"] = {**run_child(["--child", "scoring"], runs), "measured_at_commit": commit}
    results["verdicts"] = verdicts(results)
    write_json(results_dir / "selection_scale.json", results)
    plot(results, results_dir / "selection_scale.png")
    for name, v in results["verdicts"].items():
        state = "met" if v["met"] else f"MISSED by x{v['misses_by_factor']}"
        print(f"  {name}: {v['measured']} (goal {v['goal']}): {state}")


if __name__ == "__main__":
    main()
