"""Does fine-tuning on a few tasks erase the others, and which isolation mode prevents it?

Runs the embedded default recipe with ``rebalancing`` (pinned here, whatever the recipe's own
strategy: it puts the whole budget on the under-covered tasks, the case that forgets most; same
pretrained generalist, same seeds, same demos pulled) once per isolation mode and compares
success on the tasks that were pretrained but never selected, pretrained vs after the last
round, with Wilson 95% intervals — plus the selected tasks, so a mode that "keeps" by not
learning is visible too.

    python -m benchmarks.forgetting                    # all modes; resumes unfinished runs
    python -m benchmarks.forgetting --modes shared lora_per_task
    python -m benchmarks.forgetting --dry-run          # each mode's run and the outputs, nothing run

Each mode's run directory lives under ``benchmarks/runs/forgetting/<mode>`` (not committed) and
is resumed from its ledger if interrupted; ``benchmarks/results/forgetting.{json,png}`` is
rewritten after every finished mode, with ``"partial": true`` until all modes are done.
"""

import argparse
import json
import shlex
import time
from pathlib import Path

from benchmarks.common import RECIPE, RESULTS_DIR, ROOT, RUNS_DIR, dry_run, ledger_events, pyplot, run_cli, write_json

RESULTS = RESULTS_DIR
RUNS = RUNS_DIR / "forgetting"
STRATEGY = "rebalancing"  # the measured strategy; the recipe's own may change
MODES = {
    "shared": ["--amf.isolation=shared"],
    "shared_replay": ["--amf.isolation=shared_replay", "--amf.replay_fraction=0.5"],
    "lora_per_task": ["--amf.isolation=lora", "--amf.partitions=per_task", "--amf.export=merge"],
}


def mode_flags(name: str) -> list[str]:
    """The CLI flags of mode ``name``'s run."""
    return [f"--config_path={ROOT / RECIPE}", f"--output_dir={RUNS / name}", f"--amf.strategy={STRATEGY}", *MODES[name]]


def mode_args(name: str) -> list[str] | None:
    """The CLI flags that run (or resume) mode ``name``; None when its run is finished."""
    args = mode_flags(name)
    events = ledger_events(RUNS / name)
    if "run_end" in events:
        return None
    if events:
        args.append("--resume=true")
    return args


def run_mode(name: str) -> Path:
    args = mode_args(name)
    if args is not None:
        print(f"[forgetting] {name}: {' '.join(args)}", flush=True)
        run_cli(args, check=True)
    return RUNS / name


def summarise(name: str, out: Path) -> dict:
    from lerobot_amf.evaluation import pooled

    report = json.loads((out / "amf_report.json").read_text())
    pre = report["pretrained"]["per_task"]
    counts = report["demos_per_task"]["fine_tuning"]
    selected = [t for t in report["pool"] if counts.get(t, 0) > 0]
    untouched = [t for t in report["pool"] if counts.get(t, 0) == 0]
    row = {"mode": name, "model": report["model"]["isolation"], "strategy": report["strategy"],
           "demos_per_task": report["demos_per_task"], "eval_protocol": report["eval_protocol"],
           "not_selected_tasks": untouched, "selected_tasks": selected,
           "train_seconds": sum((r["train"] or {}).get("seconds", 0) for r in report["rounds"])}
    variants = [("", report["rounds"][-1]["eval"])]
    if report["rounds"][-1].get("eval_single_model"):
        variants.append(("single_model_", report["rounds"][-1]["eval_single_model"]))
    for prefix, final in variants:
        row[prefix + "final_variant"] = final["variant"]
        row[prefix + "not_selected"] = {"pretrained": pooled(pre, untouched), "final": pooled(final["per_task"], untouched)}
        row[prefix + "selected"] = {"pretrained": pooled(pre, selected), "final": pooled(final["per_task"], selected)}
        row[prefix + "per_task"] = {t: {"pretrained": pre[t], "final": final["per_task"][t]} for t in report["pool"]}
    return row


def plot(rows: list[dict], path: Path, partial: bool) -> None:
    plt = pyplot()
    bars = []
    for row in rows:
        bars.append((row["mode"], row))
        if "single_model_not_selected" in row:
            bars.append((row["mode"] + "\n(single-model merge)", {k[len("single_model_"):]: v for k, v in row.items()
                                                                 if k.startswith("single_model_")}))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, title in ((axes[0], "not_selected", "pretrained but NOT selected tasks"),
                           (axes[1], "selected", "selected (fine-tuned) tasks")):
        for i, (label, row) in enumerate(bars):
            for j, stage in enumerate(("pretrained", "final")):
                entry = row[key][stage]
                lo, hi = entry["ci95"]
                x = i + (j - 0.5) * 0.38
                ax.bar(x, entry["success_rate"], width=0.36, color=("#bbbbbb", "#3b75af")[j],
                       label=("pretrained", "after fine-tuning")[j] if i == 0 else None)
                ax.errorbar(x, entry["success_rate"], yerr=[[entry["success_rate"] - lo], [hi - entry["success_rate"]]],
                            color="k", capsize=3, lw=1)
        ax.set_xticks(range(len(bars)))
        ax.set_xticklabels([b[0] for b in bars], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("success rate (pooled, Wilson 95%)")
    axes[0].legend(fontsize=8, loc="upper left")
    proto = rows[0]["eval_protocol"]
    fig.suptitle(f"Forgetting by isolation mode — embedded default, strategy {rows[0]['strategy']}, "
                 f"{proto['episodes_per_task']} eval episodes/task{' (PARTIAL)' if partial else ''}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.forgetting", description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--dry-run", action="store_true", help="print each mode's run and the outputs; run nothing")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if args.dry_run:
        runs = {name: mode_args(name) for name in args.modes}
        return dry_run("forgetting", {
            "modes": [f"{name}: " + (f"finished, only read ({shlex.join(mode_flags(name))})" if a is None
                                     else shlex.join(a)) for name, a in runs.items()],
            "run directories": RUNS,
            "results": [RESULTS / "forgetting.json", RESULTS / "forgetting.png"],
        })
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.modes:
        start = time.perf_counter()
        out = run_mode(name)
        rows.append({**summarise(name, out), "wall_seconds_this_invocation": round(time.perf_counter() - start, 1)})
        partial = len(rows) < len(MODES)
        result = {"benchmark": "forgetting", "partial": partial, "modes_done": [r["mode"] for r in rows],
                  "recipe": RECIPE.as_posix(), "rows": rows}
        write_json(RESULTS / "forgetting.json", result, newline=False)
        plot(rows, RESULTS / "forgetting.png", partial)
        for r in rows:
            ns, s = r["not_selected"], r["selected"]
            print(f"{r['mode']:>14}: not selected {ns['pretrained']['success_rate']:.2f} {ns['pretrained']['ci95']} -> "
                  f"{ns['final']['success_rate']:.2f} {ns['final']['ci95']} | selected {s['pretrained']['success_rate']:.2f}"
                  f" -> {s['final']['success_rate']:.2f} {s['final']['ci95']}  ({r['model']})", flush=True)


if __name__ == "__main__":
    main()
