"""``amf_report.json``, the plots and the console tables — all rebuilt from the ledger.

Every output says: single model vs per-partition adapters, demos per task (pretraining and
selected), the selection strategy, and the evaluation protocol with Wilson 95% intervals.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from lerobot_amf.atomic import atomic_path, write_json_atomic
from lerobot_amf.evaluation import episodes_label, format_success, pooled
from lerobot_amf.evaluation import PER_PARTITION as ROUTED
from lerobot_amf.evaluation import SINGLE_MODEL as SINGLE
from lerobot_amf.ledger import Ledger
from lerobot_amf.phases import phase

REPORT_FILENAME = "amf_report.json"
SCHEMA_VERSION = 1


def build_report(output_dir: Path) -> dict:
    ledger = Ledger(output_dir)
    start = next(ledger.records("run_start"))
    pool = start["pool"]
    evals: dict[int, dict[str, dict]] = {}
    for rec in ledger.records("eval"):
        evals.setdefault(rec["round"], {})[rec.get("variant", SINGLE)] = rec
    rounds, counts, spent = [], {t: 0 for t in pool}, 0
    selections = {rec["round"]: rec for rec in ledger.records("selection")}
    trains = {rec["round"]: rec for rec in ledger.records("train")}
    for rec in ledger.records("round_end"):
        r = rec["round"]
        counts = rec["demos_per_task"]
        sel = selections.get(r, {})
        primary, single = _variants(evals.get(r, {}))
        rounds.append({
            "round": r,
            "selected": sel.get("tasks", []),
            "reason": sel.get("reason", ""),
            "scores": sel.get("scores", {}),
            "details": sel.get("details", {}),
            "demos_per_task": counts,
            "demos_total": sum(counts.values()),
            "human_cost": human_cost(sum(counts.values()) - spent, sel),
            "held_back": sel.get("held_back"),  # learning progress (None: off)
            "train": trains.get(r, {}).get("metrics"),
            "eval": _eval_part(primary),
            "eval_single_model": _eval_part(single) if single is not primary else None,
            "checkpoint": rec.get("checkpoint"),
        })
        spent = sum(counts.values())
    pretrained_eval = _eval_part(next(iter(evals.get(-1, {}).values()), None))
    last = rounds[-1] if rounds else {}
    report = {
        "schema_version": SCHEMA_VERSION,
        "model": start["model"],
        "strategy": start["strategy"],
        "seed": start["seed"],
        "source": start["source"],
        "pool": pool,
        "target_weights": start["target_weights"],
        "demos_per_task": {"pretraining": start.get("pretrain_counts"), "fine_tuning": counts},
        "budget": start["budget"],
        "eval_protocol": start["eval_protocol"],
        "software": start.get("software"),  # absent in runs started before it was recorded
        "pretrained": pretrained_eval,
        "rounds": rounds,
        "human_cost": {key: sum(r["human_cost"][key] for r in rounds) for key in HUMAN_COST_PARTS + ("total",)},
        "final": _final(pool, counts, pretrained_eval, last.get("eval")),
        "final_single_model": _final(pool, counts, pretrained_eval, last.get("eval_single_model")),
        "complete": any(True for _ in ledger.records("run_end")),
    }
    return report


HUMAN_COST_PARTS = ("demos", "evaluation_episodes", "rollout_episodes")


def human_cost(demos: int, selection: dict) -> dict:
    """What a round asks of people on a robot: the demos recorded, the evaluation episodes its
    selection read (lowest_success, amf_eval; the evaluation every run makes for its report is not
    counted) and the rollouts its selection ran (amf's fallback; none without a simulator)."""
    parts = {"demos": demos, "evaluation_episodes": int(selection.get("evaluation_episodes_read", 0)),
             "rollout_episodes": int(((selection.get("details") or {}).get("passes") or {}).get("rollout_episodes", 0))}
    return {**parts, "total": sum(parts.values())}


def _variants(by_variant: dict[str, dict]) -> tuple[dict | None, dict | None]:
    """(the run's own model: routed if there is one, the single model) of one round's evals."""
    single = by_variant.get(SINGLE)
    return by_variant.get(ROUTED, single), single


def _eval_part(rec: dict | None) -> dict | None:
    if rec is None:
        return None
    return {"per_task": rec["per_task"], "per_suite": rec.get("per_suite"), "overall": rec["overall"],
            "variant": rec.get("variant", SINGLE)}


def change_kind(before: dict, after: dict) -> str:
    """gained / lost when the Wilson intervals separate, else retained."""
    if after["ci95"][0] > before["ci95"][1]:
        return "gained"
    if after["ci95"][1] < before["ci95"][0]:
        return "lost"
    return "retained"


def _final(pool, counts, pretrained, last) -> dict | None:
    if pretrained is None or last is None:
        return None
    tuned = [t for t in pool if counts.get(t, 0) > 0]
    untouched = [t for t in pool if counts.get(t, 0) == 0]
    before, after = pooled(pretrained["per_task"], tuned), pooled(last["per_task"], tuned)
    out = {
        "fine_tuned_tasks": tuned,
        "pretrained_on_fine_tuned_tasks": before,
        "fine_tuned_on_fine_tuned_tasks": after,
        "improved_beyond_intervals": bool(tuned) and after["ci95"][0] > before["ci95"][1],
        # gained / lost: the Wilson intervals separate; retained: they overlap.
        "per_task_change": {
            t: {"pretrained": pretrained["per_task"][t]["success_rate"],
                "final": last["per_task"][t]["success_rate"],
                "fine_tuned": counts.get(t, 0) > 0,
                "kind": change_kind(pretrained["per_task"][t], last["per_task"][t])}
            for t in pool if t in pretrained["per_task"] and t in last["per_task"]
        },
    }
    if untouched:
        out["not_fine_tuned_tasks"] = {"pretrained": pooled(pretrained["per_task"], untouched),
                                       "final": pooled(last["per_task"], untouched)}
    return out


def write_report(output_dir: Path) -> dict:
    """Rebuild the report and plots from the ledger; each file is replaced atomically."""
    with phase("writing_report"):
        report = build_report(output_dir)
        write_json_atomic(Path(output_dir) / REPORT_FILENAME, report, indent=2)
        write_plots(report, Path(output_dir))
    return report


def what_the_numbers_are(report: dict) -> str:
    """One line: model (single / per-partition), strategy, seed, demos per task, eval protocol."""
    model = report["model"]
    proto = report["eval_protocol"]
    pre = report["demos_per_task"]["pretraining"]
    return (
        f"model: {model['isolation']} | strategy: {report['strategy']} | seed: {report['seed']} | "
        f"demos per task: pretraining {pre if pre is not None else 'unknown'}, "
        f"fine-tuning {report['demos_per_task']['fine_tuning']} | eval: {episodes_label(proto)} episodes/task, "
        f"seeds {proto['seeds']}, max {proto['max_steps']} steps, {proto['interval']} intervals | "
        f"human cost: {human_cost_label(report.get('human_cost'))}"
    )


def human_cost_label(cost: dict | None) -> str:
    """"24 demos + 480 evaluation episodes + 0 rollouts read by selection = 504" ("unknown" for a
    report written before it was counted)."""
    if not cost:
        return "unknown"
    return (f"{cost['demos']} demos + {cost['evaluation_episodes']} evaluation episodes + "
            f"{cost['rollout_episodes']} rollouts read by selection = {cost['total']}")


def print_round_table(report: dict, console: Console | None = None) -> None:
    console = console or Console()
    _success_table(report, "eval", report["model"]["isolation"], console)
    if any(r.get("eval_single_model") for r in report["rounds"]):
        _success_table(report, "eval_single_model", "single model exported from the partitions "
                       f"({report['model'].get('export')})", console)
    console.print(what_the_numbers_are(report))


def _success_table(report: dict, key: str, what: str, console: Console) -> None:
    table = Table(title=f"Success per task (Wilson 95%) — {what}, strategy {report['strategy']}")
    table.add_column("task")
    table.add_column("pretrain demos", justify="right")
    table.add_column("pretrained", justify="right")
    rounds = [r for r in report["rounds"] if r.get(key)]
    for r in rounds:
        table.add_column(f"round {r['round']}\n({r['demos_total']} demos)", justify="right")
    table.add_column("vs pretrained")
    pre = report["demos_per_task"]["pretraining"] or {}
    pretrained = (report["pretrained"] or {}).get("per_task", {})
    for task in report["pool"]:
        row = [task, str(pre.get(task, "?")), format_success(pretrained.get(task))]
        for r in rounds:
            row.append(f"{format_success(r[key]['per_task'].get(task))} +{r['demos_per_task'].get(task, 0)}")
        last = rounds[-1][key]["per_task"].get(task) if rounds else None
        tuned = rounds and rounds[-1]["demos_per_task"].get(task, 0) > 0
        status = change_kind(pretrained[task], last) if last and task in pretrained else "-"
        row.append(f"{status}{'' if tuned else ' (not fine-tuned)'}")
        table.add_row(*row)
    row = ["mean (pooled)", "", format_success((report["pretrained"] or {}).get("overall"))]
    row += [format_success(r[key]["overall"]) for r in rounds] + [""]
    table.add_row(*row, style="bold")
    console.print(table)


def print_final_comparison(report: dict, console: Console | None = None) -> None:
    console = console or Console()
    for key, what in (("final", report["model"]["isolation"]), ("final_single_model", "single model export")):
        if report.get(key):
            console.print(f"[bold]{what}[/bold]")
            _print_final(report[key], console)


def _print_final(final: dict, console: Console) -> None:
    before, after = final["pretrained_on_fine_tuned_tasks"], final["fine_tuned_on_fine_tuned_tasks"]
    verdict = "improved beyond the Wilson 95% intervals" if final["improved_beyond_intervals"] else \
        "NOT improved beyond the Wilson 95% intervals"
    console.print(
        f"[bold]Mean success on the {len(final['fine_tuned_tasks'])} fine-tuned task(s)[/bold]: "
        f"pretrained {format_success(before)} -> fine-tuned {format_success(after)} "
        f"({before['episodes']} episodes each): {verdict}."
    )
    if "not_fine_tuned_tasks" in final:
        nf = final["not_fine_tuned_tasks"]
        console.print(f"Tasks not fine-tuned on: pretrained {format_success(nf['pretrained'])} "
                      f"-> {format_success(nf['final'])}.")


def write_plots(report: dict, output_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pool = report["pool"]
    points = []
    if report["pretrained"]:
        points.append((0, report["pretrained"]))
    points += [(r["demos_total"], r["eval"]) for r in report["rounds"] if r["eval"]]
    title_suffix = f"{report['model']['isolation']}, strategy={report['strategy']}, " \
                   f"{episodes_label(report['eval_protocol'])} eval episodes/task"
    if points:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        xs = [p[0] for p in points]
        for task in pool:
            ax.plot(xs, [p[1]["per_task"][task]["success_rate"] for p in points], alpha=0.35, lw=1, marker=".", label=task)
        mean = [p[1]["overall"]["success_rate"] for p in points]
        lo = [p[1]["overall"]["ci95"][0] for p in points]
        hi = [p[1]["overall"]["ci95"][1] for p in points]
        ax.fill_between(xs, lo, hi, color="k", alpha=0.12, label="mean, Wilson 95%")
        ax.plot(xs, mean, color="k", lw=2.5, marker="o", label=f"mean over pool ({report['model']['isolation'][:40]})")
        single = [(r["demos_total"], r["eval_single_model"]["overall"]["success_rate"])
                  for r in report["rounds"] if r.get("eval_single_model")]
        if single:
            ax.plot([0] + [p[0] for p in single], [mean[0]] + [p[1] for p in single], color="k", lw=1.5, ls="--",
                    marker="s", label="mean over pool (single model export)")
        ax.set_xlabel("fine-tuning demos spent")
        ax.set_ylabel("success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"Success vs demos\n({title_suffix})", fontsize=9)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.tight_layout()
        _save_figure(fig, output_dir / "success_vs_demos.png")
    if report["rounds"]:
        fig, ax = plt.subplots(figsize=(7, 4))
        rounds = [r["round"] for r in report["rounds"]]
        bottom = [0] * len(rounds)
        for task in pool:
            vals = [r["selected"].count(task) for r in report["rounds"]]
            ax.bar(rounds, vals, bottom=bottom, label=task)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_xlabel("round")
        ax.set_ylabel("demos pulled")
        ax.set_xticks(rounds)
        ax.set_title(f"Demos per task per round ({report['strategy']})", fontsize=9)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.tight_layout()
        _save_figure(fig, output_dir / "selections_per_round.png")


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip("."))
    plt.close(fig)
