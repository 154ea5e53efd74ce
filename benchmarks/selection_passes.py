"""Fewer passes in amf's selection: what fewer (noise, timestep) draws or fewer frames per demo save,
and whether the picks change, measured before either default moves.

amf's selection is 0.094 of a fine-tuning round at the embedded default's size (goal 0.05,
``selection_cost`` (b)). What is left to cut is passes: the loss-gradient embeddings average
``--amf.selection.n_draws`` (noise, timestep) draws per frame, and each demo gives
``--amf.selection.states_per_demo`` frames to the likelihood and embedding passes. Both change what
amf computes, so neither default moves while the hard study (which fixed amf's defaults) runs.

On finished runs of the hard study (each re-opened at its final checkpoint, with its demos and its
generalist's pretraining demos: 12 tasks, the selection a fifth round would make, 6 demos), every
variant's selection is timed (repeats interleaved, so all see the same machine load) beside one
fine-tuning round as the study runs it (300 steps, batch 64, half of each batch replayed).

The rule, fixed here before it ran: a variant may become amf's default only if, on every run
measured, its picks equal the default's (as a multiset: the demos per task) and its median
selection time is below the default's; of those, the one with the lowest median selection time
summed over the runs. None: the defaults stay. Run it on a quiet machine (no study running), and
only once the hard study is complete.

    python -m benchmarks.selection_passes --dry-run
    python -m benchmarks.selection_passes                # the runs below, from the hard study's amf lane
    python -m benchmarks.selection_passes --runs <run dir> [<run dir> ...]

Results: ``benchmarks/results/selection_passes.{json,png}``, each row with the commit it was measured at.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS_DIR, RUNS_DIR, dry_run, measured_at_commit, pyplot, write_json

NAME = "selection_passes"
# The hard study's amf cells of three seeds (its runs folder: the lane's --runs-dir).
RUNS = tuple(RUNS_DIR / "sample_efficiency_hard" / f"hard__seed{s}__amf__shared_replay" for s in (1, 2, 3))
# variant -> the AMFSelectionConfig fields it changes ("default": none)
VARIANTS = {
    "default": {},
    "draws_2": {"n_draws": 2},
    "states_8": {"states_per_demo": 8},
    "draws_2_states_8": {"n_draws": 2, "states_per_demo": 8},
    "draws_1_states_4": {"n_draws": 1, "states_per_demo": 4},
}
DEMOS, ROUND_STEPS = 6, 300
RULE = __doc__.split("The rule, fixed here before it ran: ")[1].split("\n\n")[0].replace("\n", " ")


def measure_run(run, variants: dict, repeats: int, round_steps: int) -> dict:
    """Every variant's selection on ``run`` (a ``selection_cost.FinishedRun``), ``repeats`` times
    interleaved, and one fine-tuning round (none when ``round_steps`` is 0)."""
    from lerobot_amf.configs import AMFSelectionConfig
    from lerobot_amf.selection.amf import AMFStrategy

    seconds, picks, pairs = {v: [] for v in variants}, {}, {}
    for _ in range(repeats):
        for name, fields in variants.items():
            strategy = AMFStrategy(AMFSelectionConfig(**fields))
            ctx = run.context()
            s = time.perf_counter()
            sel = strategy.select(ctx, DEMOS)
            seconds[name].append(time.perf_counter() - s)
            picks[name] = sel.tasks
            pairs[name] = sum(sel.details["embedded_frames"]["per_task"].values())
    round_s = run.round_seconds(round_steps) if round_steps else None
    return {"run": run.run_dir.name, "pool": run.pool, "fine_tuning_demos": sum(run.counts.values()),
            "round_steps": round_steps, "round_finetune_s": round_s, "repeats": repeats,
            "variants": {name: {"fields": variants[name], "selection_s": float(np.median(seconds[name])),
                                "selection_s_all": seconds[name], "picks": picks[name],
                                "ratio": None if not round_s else float(np.median(seconds[name])) / round_s,
                                "task_frame_pairs_embedded": pairs[name]}
                         for name in variants}}


def decide(rows: list[dict]) -> dict:
    """The rule above on the measured runs: the variants that kept the default's picks and were faster
    on every run, and the cheapest of them (None: the defaults stay)."""
    if not rows:
        return {"kept_picks_and_faster": [], "chosen": None}
    names = [n for n in rows[0]["variants"] if n != "default"]

    def ok(name):
        return all(Counter(r["variants"][name]["picks"]) == Counter(r["variants"]["default"]["picks"])
                   and r["variants"][name]["selection_s"] < r["variants"]["default"]["selection_s"] for r in rows)
    kept = [n for n in names if ok(n)]
    total = {n: sum(r["variants"][n]["selection_s"] for r in rows) for n in kept}
    return {"kept_picks_and_faster": kept, "chosen": min(total, key=total.get) if total else None}


def plot(out: dict, path: Path) -> None:
    plt = pyplot()
    rows = out["runs"]
    names = list(VARIANTS)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        ys = [row["variants"][n]["selection_s"] for n in names]
        bars = ax.bar([k + i * width for k in range(len(names))], ys, width, label=row["run"])
        for bar, n in zip(bars, names):
            same = Counter(row["variants"][n]["picks"]) == Counter(row["variants"]["default"]["picks"])
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), "=" if same else "≠", ha="center",
                    va="bottom", fontsize=8)
    ax.set_xticks([k + width * (len(rows) - 1) / 2 for k in range(len(names))])
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel("one selection (s), median")
    ax.set_title(f"amf's selection with fewer passes (= picks as the default's, ≠ changed); chosen: "
                 f"{out['decision']['chosen']}" + (" (PARTIAL)" if out["partial"] else ""), fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    from benchmarks.selection_cost import finished_run
    from lerobot_amf.envs import metaworld_state  # noqa: F401  (registers the env)

    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}", description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", type=Path, default=list(RUNS), help="finished hard-study run folders")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--dry-run", action="store_true", help="print the runs and the outputs; run nothing")
    args = p.parse_args(argv)
    results = RESULTS_DIR / f"{NAME}.json"
    if args.dry_run:
        return dry_run(NAME, {"variants": VARIANTS, "rule": RULE,
                              "runs": [f"{r} ({'present' if (r / 'amf_ledger.jsonl').exists() else 'absent'})"
                                       for r in args.runs],
                              "results": [results, RESULTS_DIR / f"{NAME}.png"]})
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    rows, missing = [], []
    for run_dir in args.runs:
        run = finished_run(run_dir)
        if run is None:
            missing.append(str(run_dir.name))
            continue
        print(f"[{NAME}] {run_dir.name}: {len(VARIANTS)} variants x {args.repeats}, then one round", flush=True)
        rows.append({**measure_run(run, VARIANTS, args.repeats, ROUND_STEPS), "measured_at_commit": measured_at_commit()})
    out = {"benchmark": NAME, "partial": bool(missing) or not rows, "missing_runs": missing,
           "rule": RULE,
           "load_average": os.getloadavg(), "runs": rows, "decision": decide(rows)}
    write_json(results, out)
    plot(out, RESULTS_DIR / f"{NAME}.png")
    print(json.dumps(out["decision"], indent=2))


if __name__ == "__main__":
    main()
