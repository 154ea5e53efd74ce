"""The summary of a multi-seed study, from whatever cell files exist: per (setting, isolation), each
strategy's curve, final success and budget shares, the paired comparisons, the tables and figures.

Its own module so that every study of cells (``sample_efficiency``, and the studies after it) is
summarised by the same code; what is a study's own (its name, comparisons, headline) comes from
its ``study_runner.Study``. Standard library only at import time (numpy, matplotlib and
``lerobot_amf`` inside the functions), so a study's ``--dry-run`` loads none of them.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import RECIPE, pyplot, write_json
from benchmarks.study_stats import (area_under_curve, budget_share, mean_curve, median_and_range, paired_difference,
                                    pooled_rate, pooled_wilson, reach_and_stay)

WEAK = 0.6  # a task is weak at selection time when the evaluation before the round is below this
NOT_MOVED_GAIN = 0.1  # a task's earlier demos moved it when its estimated success rose this much


def final_per_task(cell: dict) -> dict:
    return cell["rounds"][-1]["per_task"]


def curve(cell: dict) -> tuple[list[int], list[float]]:
    """(demos spent, pooled success over the pool): the pretrained policy, then each round."""
    return [0] + [r["demos_total"] for r in cell["rounds"]], \
        [pooled_rate(cell["pretrained"])] + [pooled_rate(r["per_task"]) for r in cell["rounds"]]


def weak_at_selection(cell: dict, threshold: float = WEAK) -> list[list[str]]:
    """Per round, the tasks below ``threshold`` in the evaluation the round's selection came after
    (the pretrained one for the first round): what "weak" meant when the demos were chosen."""
    before = [cell["pretrained"], *(r["per_task"] for r in cell["rounds"][:-1])]
    return [[t for t, v in per_task.items() if v["successes"] < threshold * v["episodes"]] for per_task in before]


def weak_share(cell: dict, threshold: float = WEAK, per_round: bool = False):
    """Share of the cell's picks that went to tasks weak at the time they were picked (``per_round``:
    one share per round)."""
    rounds = [[t in weak for t in r["selected"]] for r, weak in zip(cell["rounds"], weak_at_selection(cell, threshold))]
    if per_round:
        return [sum(r) / len(r) if r else None for r in rounds]
    picks = [p for r in rounds for p in r]
    return sum(picks) / len(picks) if picks else None


def not_moved_share(cell: dict, min_gain: float = NOT_MOVED_GAIN) -> float | None:
    """Share of the cell's picks that went to a task whose earlier fine-tuning demos (one or more)
    had not raised its estimated success (Beta posterior mean) by ``min_gain`` since the evaluation
    before its first one, in the evaluation the selection came after."""
    from lerobot_amf.selection.progress import posterior_success as estimate

    evals = [cell["pretrained"], *[r["per_task"] for r in cell["rounds"]]]
    first: dict[str, int] = {}  # task -> index of the evaluation before its first demo
    given: dict[str, int] = {}
    picks = []
    for r, rnd in enumerate(cell["rounds"]):  # round r's selection came after evals[r]
        for task in rnd["selected"]:
            moved = given.get(task, 0) == 0 or estimate(evals[r][task]) - estimate(evals[first[task]][task]) >= min_gain
            picks.append(not moved)
        for task in rnd["selected"]:
            first.setdefault(task, r)
            given[task] = given.get(task, 0) + 1
    return sum(picks) / len(picks) if picks else None


def human_cost_total(cell: dict) -> dict | None:
    """The cell's human cost on a robot summed over its rounds (None: a cell run before it was counted)."""
    if not all("human_cost" in r for r in cell["rounds"]):
        return None
    return {k: sum(r["human_cost"][k] for r in cell["rounds"]) for k in cell["rounds"][0]["human_cost"]}


def cost_curve(cell: dict) -> dict:
    """(cumulative human cost, pooled success): the pretrained policy at cost 0, then each round."""
    costs, total = [0], 0
    for r in cell["rounds"]:
        total += r["human_cost"]["total"]
        costs.append(total)
    return {"human_cost": costs, "success": curve(cell)[1]}


def strategy_summary(cells: dict[int, dict]) -> dict:
    """One strategy in one (setting, isolation): shares, curve, final success."""
    import numpy as np

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
    shares = {s: weak_share(cells[s]) for s in seeds}
    out["weak_share"] = {"overall": float(np.mean([v for v in shares.values() if v is not None])),
                         "per_round": np.mean([weak_share(cells[s], per_round=True) for s in seeds], axis=0).tolist(),
                         "per_seed": {str(s): v for s, v in shares.items()},
                         "rule": f"share of the picks that went to tasks below {WEAK} in the evaluation the "
                                 "selection came after"}
    moved = {s: not_moved_share(cells[s]) for s in seeds}
    out["not_moved_share"] = {"overall": float(np.mean([v for v in moved.values() if v is not None])),
                              "per_seed": {str(s): v for s, v in moved.items()},
                              "rule": f"share of the picks that went to a task whose earlier demos had not raised its "
                                      f"estimated success by {NOT_MOVED_GAIN} since the evaluation before its first"}
    costs = {s: human_cost_total(cells[s]) for s in seeds}
    if all(c is not None for c in costs.values()):
        out["human_cost"] = {"per_seed": {str(s): c for s, c in costs.items()},
                             "total": median_and_range([c["total"] for c in costs.values()]),
                             "rule": "demos + evaluation episodes the selections read + their rollouts",
                             "curve_per_seed": {str(s): cost_curve(cells[s]) for s in seeds}}
    aucs = {s: area_under_curve(*curve(cells[s])) for s in seeds}
    out["area_under_curve"] = {"mean_over_seeds": float(np.mean(list(aucs.values()))),
                               "per_seed": {str(s): v for s, v in aucs.items()},
                               "rule": "pooled success averaged over the budget (trapezoid, pretrained to final)"}
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


def demos_to_hold_uniform(amf: dict[int, dict], uniform: dict[int, dict]) -> dict | None:
    """Per seed both ran: the demos after which amf's (or another strategy's) curve (linear between evaluations) reaches that
    seed's uniform final success and stays at or above it to the end, as a share of uniform's budget
    (None: not by the end of the budget); their median and range over the seeds (None: beyond the
    budget) and how many seeds reached it."""
    seeds = sorted(set(amf) & set(uniform))
    if not seeds:
        return None
    per_seed = {}
    for s in seeds:
        xs, uniform_curve = curve(uniform[s])
        demos = reach_and_stay(*curve(amf[s]), uniform_curve[-1])
        per_seed[str(s)] = {"uniform_final": uniform_curve[-1], "amf_demos": demos,
                            "share_of_budget": None if demos is None else demos / xs[-1]}
    spread = median_and_range([p["share_of_budget"] for p in per_seed.values()])
    return {"rule": "per seed: amf's demos from which its success stays at or above that seed's uniform final "
                    "success, / uniform's budget; null: not reached within the budget",
            "budget": xs[-1], "seeds": seeds,
            "seeds_reached": sum(p["share_of_budget"] is not None for p in per_seed.values()),
            "share_of_budget_median": spread["median"], "share_of_budget_range": spread["range"],
            "per_seed": per_seed}


def paired_cells(a: dict[int, dict], b: dict[int, dict], n_boot: int) -> dict | None:
    """a - b in final success, paired on the seeds both ran (None: no seed in common)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    return paired_difference({s: (final_per_task(a[s]), final_per_task(b[s])) for s in seeds}, n_boot)


def load_cells(cells_dir: Path) -> tuple[list[dict], list[dict]]:
    """The cell files in ``cells_dir``: (complete, failed)."""
    complete, failed = [], []
    for path in sorted(cells_dir.glob("*.json")):
        rec = json.loads(path.read_text())
        (complete if rec["status"] == "complete" else failed).append(rec)
    return complete, failed


def summarise_study(complete: list[dict], failed: list[dict], planned: list, study, n_boot: int = 10_000) -> dict:
    """The summary of the finished cells ``complete`` (and the ``failed`` ones) against the ``planned``
    cells of ``study`` (a ``study_runner.Study``: its name, comparisons of strategies and of
    isolation modes, headline)."""
    by_group: dict[tuple[str, str], dict[str, dict[int, dict]]] = {}
    for rec in complete:
        by_group.setdefault((rec["setting"], rec["isolation"]), {}).setdefault(rec["strategy"], {})[rec["seed"]] = rec
    done = {rec["cell"] for rec in complete}
    settings: dict = {}
    for (setting, isolation), strategies in sorted(by_group.items()):
        group: dict = {"strategies": {name: strategy_summary(cells) for name, cells in sorted(strategies.items())},
                       "paired": {}}
        for a, b in study.comparisons:
            paired = paired_cells(strategies.get(a, {}), strategies.get(b, {}), n_boot)
            if paired is not None:
                group["paired"][f"{a}_minus_{b}"] = paired
        group["amf_demos_to_hold_uniform_final"] = demos_to_hold_uniform(strategies.get("amf", {}),
                                                                         strategies.get("uniform", {}))
        group["demos_to_hold_uniform_final"] = {
            name: held for name, cells in sorted(strategies.items()) if name != "uniform"
            and (held := demos_to_hold_uniform(cells, strategies.get("uniform", {}))) is not None}
        spec = next(iter(next(iter(strategies.values())).values()))["setting_spec"]
        settings.setdefault(setting, {"spec": spec, "isolations": {}})["isolations"][isolation] = group
    for setting, body in settings.items():  # paired means: every cell of a seed starts from one generalist
        # one cache entry (its name is the hash of the pretraining config and seed, wherever the runs
        # folder was) and one pretrained evaluation, success for success, across the seed's cells
        generalists: dict[str, set] = {}
        pretrained: dict[str, set] = {}
        for rec in complete:
            if rec["setting"] == setting:
                generalists.setdefault(str(rec["seed"]), set()).add(Path(rec["report"]["model"]["pretrained_path"]).name)
                pretrained.setdefault(str(rec["seed"]), set()).add(json.dumps(rec["pretrained"], sort_keys=True))
        body["generalist_per_seed"] = {seed: sorted(names) for seed, names in sorted(generalists.items())}
        body["one_generalist_per_seed"] = all(len(names) == 1 for names in generalists.values()) and \
            all(len(evals) == 1 for evals in pretrained.values())
        body["paired_isolations"] = paired_isolations({i: by_group[(s, i)] for s, i in by_group if s == setting},
                                                      study.isolation_comparisons, n_boot)
    missing = [c.name for c in planned if c.name not in done]
    any_cell = complete[0] if complete else None
    summary = {
        "benchmark": study.name,
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
    summary["headline"] = study.headline(settings, summary["partial"])
    return summary


def paired_isolations(by_isolation: dict[str, dict[str, dict[int, dict]]], comparisons, n_boot: int) -> dict:
    """Per (a, b) of ``comparisons`` and per strategy run under both isolation modes: a - b paired on
    the seeds both ran, with each side's final success pooled over those seeds only."""
    out: dict = {}
    for a, b in comparisons:
        for name in sorted(set(by_isolation.get(a, {})) & set(by_isolation.get(b, {}))):
            cells_a, cells_b = by_isolation[a][name], by_isolation[b][name]
            entry = paired_cells(cells_a, cells_b, n_boot)
            if entry is not None:
                entry["final_pooled"] = {iso: pooled_wilson([final_per_task(cells[s]) for s in entry["seeds"]])
                                         for iso, cells in ((a, cells_a), (b, cells_b))}
                out.setdefault(f"{a}_minus_{b}", {})[name] = entry
    return out


def pct(x) -> str:
    """A share as a percentage with one decimal ("—" for none), as the summaries' tables print it."""
    return "—" if x is None else f"{100 * x:.1f}"


def interval(ci) -> str:
    """A 95% interval of shares as "[low, high]" in %."""
    return f"[{pct(ci[0])}, {pct(ci[1])}]"


def pct_with_interval(value, ci) -> str:
    return f"{pct(value)} {interval(ci)}"


def rate(entry: dict) -> str:
    """A pooled success entry (``success_rate``, ``ci95``) as "rate [low, high]" in %."""
    return pct_with_interval(entry["success_rate"], entry["ci95"])


def markdown_summary(summary: dict, title: str) -> str:
    """The summary as the tables docs/results.md quotes: one per (setting, isolation), every number
    read from ``summary``; the heading says PARTIAL and which cells are missing."""
    def difference(paired):
        return (f"{pct(paired['mean'])} pp {interval(paired['ci95'])}, "
                f"p = {paired['sign_test_p']:.2f}, {len(paired['seeds'])} seeds")

    def part(x):  # a share of the budget; None: not reached within it
        return "> 1 (not reached)" if x is None else f"{x:.2f}"

    status = (f"PARTIAL: {summary['cells_done']} of {summary['cells_planned']} planned cells done"
              if summary["partial"] else f"complete: all {summary['cells_planned']} planned cells")
    lines = [(f"{title} ({status}). Success in %, pooled over the pool's tasks and the seeds "
             "(Wilson 95%); paired = per seed minus uniform on the same generalist and evaluation seeds "
             "(mean, bootstrap 95% over seeds then episodes, sign-test p)."), ""]
    budget = (summary["protocol"] or {}).get("budget")
    for setting, body in summary["settings"].items():
        for isolation, group in body["isolations"].items():
            lines += [f"**{setting}, {isolation}**", "",
                      (f"| strategy | seeds | budget on under-covered tasks | pretrained | after {budget} demos "
                       "| paired minus uniform | selection ÷ fine-tuning (median) |"),
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for name, st in group["strategies"].items():
                share = (st.get("under_covered_share") or {}).get("overall")
                paired = group["paired"].get(f"{name}_minus_uniform")
                diff = "—" if paired is None else difference(paired)
                ratio = (st.get("selection_over_train") or {}).get("median")
                lines.append(f"| {name} | {len(st['seeds'])} | {'—' if share is None else f'{100 * share:.0f} %'} "
                             f"| {rate(st['pretrained_success']['pooled'])} | {rate(st['final_success']['pooled'])} "
                             f"| {diff} | {'—' if ratio is None else f'{ratio:.3f}'} |")
            hold = group.get("amf_demos_to_hold_uniform_final")
            if hold is not None:
                low, high = hold["share_of_budget_range"]
                seeds = ", ".join(f"seed {s}: {part(p['share_of_budget'])}" for s, p in hold["per_seed"].items())
                lines += ["", (f"Share of the {hold['budget']}-demo budget after which amf reaches that seed's uniform "
                               f"final success and stays at or above it, per seed: {seeds}; median "
                               f"{part(hold['share_of_budget_median'])}, range {part(low)} to {part(high)}; "
                               f"reached on {hold['seeds_reached']} of {len(hold['seeds'])} seeds.")]
            lines.append("")
        for key, by_strategy in body.get("paired_isolations", {}).items():
            a, b = key.split("_minus_")
            lines += [f"**{setting}, {a} minus {b}** (paired per seed on the seeds both ran, the same generalist "
                      "and evaluation seeds; final success pooled over those seeds only):", ""]
            lines += [f"* {name}, seeds {', '.join(map(str, p['seeds']))}: {a} {rate(p['final_pooled'][a])}, "
                      f"{b} {rate(p['final_pooled'][b])}; {a} minus {b} {difference(p)}"
                      for name, p in by_strategy.items()]
            lines.append("")
    return "\n".join(lines)


def plot_summary(summary: dict, out_dir: Path, prefix: str, strategies) -> list[Path]:
    """PNGs ``<prefix>_*.png`` (curves, budget shares, paired differences) from the cells that exist, a colour per strategy in the order of
    ``strategies``; titles say PARTIAL until every planned cell is done."""
    import numpy as np

    plt = pyplot()
    tag = " (PARTIAL)" if summary["partial"] else ""
    colour = {strategy: f"C{i}" for i, strategy in enumerate(strategies)}
    groups = [(s, i, g) for s, body in summary["settings"].items() for i, g in body["isolations"].items()]
    skewed = [(s, i, g) for s, i, g in groups  # the settings that under-cover some tasks
              if any("under_covered_share" in st for st in g["strategies"].values())]
    rows = [(f"{s}, {i}\n{k}", p) for s, i, g in groups for k, p in g["paired"].items()]
    paths = []

    def save(fig, title: str, figure: str) -> None:
        fig.suptitle(title + tag, fontsize=10)
        fig.tight_layout()
        paths.append(out_dir / f"{prefix}_{figure}.png")
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
    def share_bars(groups_with, key: str, ylabel: str, title: str, figure: str, half_line: bool) -> None:
        """One panel per (setting, isolation): per round, each strategy's mean share of the demos ``key``."""
        fig, axes = plt.subplots(1, len(groups_with), figsize=(4.8 * len(groups_with), 3.8), sharey=True,
                                 squeeze=False)
        for ax, (setting, iso, g) in zip(axes[0], groups_with):
            shares = {n: st[key] for n, st in g["strategies"].items() if key in st}
            width = 0.8 / max(1, len(shares))
            for j, (name, share) in enumerate(shares.items()):
                rounds = np.arange(1, len(share["per_round"]) + 1)
                ax.bar(rounds + (j - (len(shares) - 1) / 2) * width, share["per_round"], width=width,
                       color=colour[name], label=f"{name} ({share['overall']:.2f} overall)")
                ax.set_xticks(rounds)
            if half_line:
                ax.axhline(0.5, color="k", lw=0.8, ls=":")
            ax.set_title(f"{setting}, {iso}", fontsize=9)
            ax.set_xlabel("round")
            ax.set_ylim(0, 1.05)
            ax.legend(fontsize=6)
        axes[0][0].set_ylabel(ylabel)
        save(fig, title, figure)

    if skewed:
        share_bars(skewed, "under_covered_share", "share of the round's demos\non under-covered tasks (mean over seeds)",
                   "Budget spent on under-covered tasks", "under_covered_share", half_line=True)
    weak = [(s, i, g) for s, i, g in groups if any("weak_share" in st for st in g["strategies"].values())]
    if weak:
        share_bars(weak, "weak_share", "share of the round's demos on tasks\nbelow 0.6 when chosen (mean over seeds)",
                   "Budget spent on tasks that were failing", "weak_share", half_line=False)
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


def write_summary(study) -> dict:
    """Rebuild ``study``'s summary (JSON, markdown, figures) from whatever cell files exist."""
    complete, failed = load_cells(study.cells_dir)
    summary = summarise_study(complete, failed, study.planned_cells(), study)
    write_json(study.results_dir / f"{study.name}.json", summary)
    head = study.headline_markdown(summary["headline"])
    (study.results_dir / f"{study.name}.md").write_text(f"{head}\n\n" * bool(head) + markdown_summary(summary, study.title))
    plot_summary(summary, study.results_dir, study.name, study.strategies)
    return summary

