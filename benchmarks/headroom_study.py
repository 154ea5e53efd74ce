"""Where choosing tasks pays: the study on the headroom pilot's setting (issue "Where choosing tasks pays").

The setting is the headroom pilot's choice (``benchmarks/results/headroom_pilot.json``: the
candidate setting and budget with the largest cross-fitted headroom), fixed before any strategy
cell ran and re-read and checked by ``setting()`` every time this module runs:

* the pilot setting's 12 Metaworld v3 tasks and pretraining allocation (strong tasks, tasks never
  demonstrated in pretraining, and in ``sinks`` harder ones), the pilot's pretraining steps; each
  seed pretrains its own generalist, shared by every strategy of the seed;
* the pilot's budget, in rounds of 6 demos, ``shared_replay`` (single model, half of each batch
  from the pretraining demos); 20 evaluation episodes per task after each round, 50 after the
  last, on fixed evaluation seeds;
* seeds 1-10 (the pilot's generalists were seeds 101 and 102), every strategy on every seed.

What each strategy sees:

* ``uniform``: the demo counts in hand; ``amf``: the policy, the demos in hand (fine-tuning and the
  pretraining demos it names), a simulator for rollouts where importance weights fail;
  ``amf_no_sim``: amf without the simulator (no rollouts, no evaluation: the real-robot case);
* ``lowest_success``: every round's evaluation (20 episodes per task); ``lowest_success_small``: its
  first 2 episodes per task (``--amf.selection_eval_episodes=2``, what a team with a robot can
  afford); ``amf_eval``: amf plus every round's evaluation;
* with the learning-progress window N the pilot chose (none: these rows are not run):
  ``lowest_success_progress``, ``amf_eval_progress`` and ``amf_progress`` also hold back tasks
  their last N demos did not move (``--amf.learning_progress_demos=N``; reading the evaluations
  for it is part of their human cost). ``amf_progress`` was added to the plan after the first 4
  cells (uniform and oracle, seeds 1 and 2) were in, before any cell of an amf or lowest_success
  strategy;
* ``oracle`` (privileged, studies only): the best allocation of the budget under the pilot's mean
  learning curves (``benchmarks.oracle.best_allocation``), run as ``uniform`` steered by
  ``--amf.target_weights`` set to its shares, so the demos follow it round by round.

Every strategy's human cost on a robot is counted (demos + evaluation episodes its selections
read + fallback rollouts; the evaluation every cell runs for the study's own figures is not
counted). ``GOALS`` were committed before the first strategy cell; there is no recipe rule.

    python -m benchmarks.headroom_study --dry-run              # the plan, nothing run
    python -m benchmarks.headroom_study --jobs 2 --max-cells 4
    python -m benchmarks.headroom_study --summary-only

Run it from a pinned worktree (``git worktree add <dir> <commit>``) with ``--results-dir`` pointing at
the main checkout's ``benchmarks/results``: every cell records the commit it ran at. Cells are
resumable one by one and the summary says ``partial`` until every planned cell is done.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from benchmarks.common import RECIPE, RESULTS_DIR, RUNS_DIR, add_output_args, dry_run, read_json
from benchmarks.study_runner import Cell, Study, add_cell_args, merge_flags, run_study
from benchmarks.study_summary import interval, pct, write_summary

NAME = "headroom_study"
RUNS = RUNS_DIR / NAME
SETTING = "headroom"
SEEDS = tuple(range(1, 11))
DEMOS_PER_ROUND = 6
SMALL_EVAL_EPISODES = 2
STUDY_ARGS = [f"--amf.demos_per_round={DEMOS_PER_ROUND}", "--amf.eval_episodes=20", "--amf.final_eval_episodes=50",
              "--amf.eval_batch_size=10", "--amf.isolation=shared_replay", "--amf.replay_fraction=0.5"]
USER_STRATEGIES = ("uniform", "lowest_success", "lowest_success_small", "amf", "amf_eval", "amf_no_sim",
                   "lowest_success_progress", "amf_eval_progress", "amf_progress")  # no privileged knowledge
PROGRESS = ("lowest_success_progress", "amf_eval_progress", "amf_progress")
# The goals (issue "Where choosing tasks pays"), committed before the first strategy cell.
GOALS = {
    "best_user_share_of_oracle_gain": "the best strategy a user can run (largest mean final success, not uniform) "
                                      "captures >= 80% of the oracle's gain over uniform, its 95% interval above 0",
    "best_user_demos_to_reach_uniform_final": "per-seed median <= 0.5 of the budget",
    "amf_no_sim_minus_uniform": "mean >= +5 pp",
    "amf_no_sim_vs_lowest_success_small_at_equal_human_cost": "amf_no_sim's final success >= lowest_success_small's "
                                                              "at amf_no_sim's human cost (per-seed median difference >= 0)",
    "amf_or_amf_eval_minus_lowest_success": "95% interval's lower bound >= -2 pp, selection <= 0.05 of a round",
    "progress_not_moved_share": "<= 25% of the budget on tasks whose earlier demos did not move them",
}
COMPARISONS = tuple((s, "uniform") for s in USER_STRATEGIES[1:] + ("oracle",)) + (
    ("amf", "lowest_success"), ("amf_eval", "lowest_success"), ("amf_no_sim", "lowest_success_small"),
    ("lowest_success_progress", "lowest_success"), ("amf_eval_progress", "amf_eval"), ("amf_progress", "amf"))
# The family Holm's correction runs over: every strategy a user can run, each minus uniform.
HOLM_FAMILY = tuple(f"{s}_minus_uniform" for s in USER_STRATEGIES[1:])


class PilotNotReady(Exception):
    """The headroom pilot has not fixed the setting (partial, missing, or its cells disagree with it)."""


def setting(results_dir: Path) -> dict:
    """The pilot's chosen setting, budget, oracle allocation and learning-progress window, re-read
    from its files; a partial pilot, or cells that no longer give its summary, raise ``PilotNotReady``."""
    from benchmarks import headroom_pilot as hp
    from benchmarks.oracle import best_allocation, monotone

    pilot = read_json(results_dir / f"{hp.NAME}.json")
    if pilot is None or pilot["partial"] or not (pilot.get("chosen") or {}).get("final"):
        raise PilotNotReady(f"the headroom pilot is not complete ({results_dir / (hp.NAME + '.json')}): "
                            "run python -m benchmarks.headroom_pilot first")
    cells = {s: {p.stem: read_json(p) for p in sorted((results_dir / hp.NAME).glob(f"{s}__*.json"))}
             for s in hp.SETTINGS}
    again = json.loads(json.dumps(hp.summarise(cells)))  # as written and read back
    if any(again[key] != pilot[key] for key in ("chosen", "settings", "learning_progress")):
        raise PilotNotReady(f"the headroom pilot's cells no longer give the choice recorded in {hp.NAME}.json")
    chosen = pilot["chosen"]
    body = pilot["settings"][chosen["setting"]]
    allocation = body["pretrain_demos_per_task"]
    curves = {t: monotone(c) for t, c in body["mean_curve"].items()}
    return {
        "pilot_setting": chosen["setting"], "tasks": list(allocation), "pretrain_demos_per_task": allocation,
        "pretrain_steps": hp.pretrain_steps(allocation), "budget": chosen["budget"],
        "predicted_headroom_pp": chosen["headroom_cross_fitted_pp"], "headroom_goal_met": chosen["goal_met"],
        "oracle_allocation": best_allocation(curves, chosen["budget"]),
        "progress_demos": pilot["learning_progress"]["default_demos"],
        "stays_failing_in_pilot": body["stays_failing"], "pilot_commits": body["measured_at_commit"],
    }


def strategy_flags(spec: dict) -> dict[str, list[str]]:
    """Each planned strategy's CLI flags (the learning-progress rows only if the pilot chose a window)."""
    alloc, budget = spec["oracle_allocation"], spec["budget"]
    flags = {
        "uniform": ["--amf.strategy=uniform"],
        "oracle": ["--amf.strategy=uniform", f"--amf.target_weights={json.dumps({t: n / budget for t, n in alloc.items()})}"],
        "lowest_success": ["--amf.strategy=lowest_success"],
        "lowest_success_small": ["--amf.strategy=lowest_success", f"--amf.selection_eval_episodes={SMALL_EVAL_EPISODES}"],
        "amf": ["--amf.strategy=amf"],
        "amf_eval": ["--amf.strategy=amf_eval"],
        "amf_no_sim": ["--amf.strategy=amf", "--amf.selection.simulator=false"],
    }
    if spec["progress_demos"] is not None:
        window = f"--amf.learning_progress_demos={spec['progress_demos']}"
        flags["lowest_success_progress"] = [*flags["lowest_success"], window]
        flags["amf_eval_progress"] = [*flags["amf_eval"], window]
        flags["amf_progress"] = [*flags["amf"], window]
    return flags


@dataclasses.dataclass(frozen=True)
class HeadroomStudy(Study):
    """The pilot's setting on the runner's ``Study``: one setting (``spec``, from ``setting()``)."""

    spec: dict = dataclasses.field(default_factory=dict)
    name, title = NAME, "Headroom study"
    isolations = {"shared_replay": []}  # the flags are in STUDY_ARGS
    comparisons, plan_seeds = COMPARISONS, SEEDS

    @property
    def strategies(self) -> dict[str, list[str]]:  # type: ignore[override]
        return strategy_flags(self.spec)

    @property
    def pool(self) -> list[str]:
        return list(self.spec["tasks"])

    def allocation(self, setting: str) -> dict[str, int]:
        return dict(self.spec["pretrain_demos_per_task"])

    def under_covered_in(self, setting: str) -> list[str]:
        return [t for t, n in self.spec["pretrain_demos_per_task"].items() if n == 0]

    def base_args(self) -> list[str]:
        return merge_flags([f"--config_path={RECIPE.as_posix()}"], STUDY_ARGS, [
            f"--amf.rounds={self.spec['budget'] // DEMOS_PER_ROUND}",
            f"--amf.pretrain.steps={self.spec['pretrain_steps']}"])

    def planned_cells(self) -> list[Cell]:
        return [Cell(SETTING, seed, strategy, "shared_replay") for seed in self.planned_seeds()
                for strategy in self.strategies]

    def headline(self, settings: dict, partial: bool) -> dict:
        return headline(settings, self.spec, partial)

    def headline_markdown(self, headline: dict) -> str:
        return headline_markdown(headline)


def headline_markdown(h: dict) -> str:
    """The headline as tables: per strategy, final success with its interval over seeds, share of
    the oracle's gain, budget on failing and on unmoved tasks, human cost and what it took to reach
    uniform's final success; the paired differences (sign tests uncorrected and Holm-corrected);
    then each goal's verdict."""
    def span(ci):
        return "" if not ci else f" {interval(ci)}"

    spec = h["setting"]
    lines = [f"**Headroom study ({'PARTIAL' if h['partial'] else 'complete'})**: setting `{spec['pilot_setting']}` of the "
             f"headroom pilot, {spec['budget']} demos in rounds of {DEMOS_PER_ROUND}, single model with replay; the pilot "
             f"predicted {spec['predicted_headroom_pp']} pp for the best allocation over uniform (cross-fitted; goal 8 pp: "
             f"{'met' if spec['headroom_goal_met'] else 'missed'}). Success in % after the last round (50 episodes per "
             "task), mean over seeds with a bootstrap 95% interval over seeds; shares of the budget over all picks; "
             "\"to reach\": per-seed median [range] of where the strategy's curve reaches that seed's uniform final "
             "success and stays there (demos as a share of the budget; > 1: not within the run).", "",
             "| strategy | seeds | final success % | share of the oracle's gain | budget on failing tasks "
             "| budget on tasks not moved | human cost (median) | demos to reach uniform's final | human cost to reach it |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in h["strategies"].items():
        share, share_ci = r.get("share_of_oracle_gain"), r.get("share_of_oracle_gain_ci95")
        share_text = "—" if share is None else f"{share:.2f}" + (f" [{share_ci[0]:.2f}, {share_ci[1]:.2f}]" if share_ci else "")
        lines.append(f"| {name} | {r['seeds']} | {pct(r['final_success'])}{span(r['final_ci95_over_seeds'])} | {share_text} | "
                     f"{pct(r['budget_on_failing_tasks'])} | {pct(r['budget_on_tasks_not_moved'])} | "
                     f"{'—' if not r['human_cost'] else format(r['human_cost']['median'], 'g')} | "
                     f"{reach_text(r.get('demos_to_reach_uniform_final'), share=True)} | "
                     f"{reach_text(r.get('human_cost_to_reach_uniform_final'))} |")
    lines += ["", f"Paired differences, per seed on the same generalist and evaluation seeds (mean pp, bootstrap 95% "
                  f"over seeds then episodes; {h['paired_note']}):", "",
              "| comparison | seeds | mean pp [95%] | sign test p | Holm p |", "| --- | --- | --- | --- | --- |"]
    for key, e in h["paired"].items():
        if e:
            lines.append(f"| {key.replace('_minus_', ' − ')} | {len(e.get('seeds', []))} | {100 * e['mean']:+.1f} "
                         f"[{100 * e['ci95'][0]:+.1f}, {100 * e['ci95'][1]:+.1f}] | {e['sign_test_p']:.2f} | "
                         f"{format(e['holm_p'], '.2f') if 'holm_p' in e else '—'} |")
    met = h["goals"]["met"] or {}
    lines += ["", "| goal | rule | met |", "| --- | --- | --- |"]
    lines += [f"| {k} | {rule} | {'— (partial)' if h['partial'] else met.get(k)} |" for k, rule in h["goals"]["rules"].items()]
    return "\n".join(lines)


def reach_text(reach: dict | None, share: bool = False) -> str:
    """A median [range] over seeds of where a curve reached uniform's final success ("> 1" or "not
    reached": past the run on that seed); ``share`` for a share of the budget, else a human cost."""
    if reach is None:
        return "—"

    def one(v):
        if v is None:
            return "> 1" if share else "not reached"
        return f"{v:.2f}" if share else format(round(v, 1), "g")

    low, high = reach.get("range") or [None, None]
    return f"{one(reach['median'])} [{one(low)}, {one(high)}]"


def plot_human_cost(summary: dict, path: Path) -> None:
    """Success against the human cost spent (demos + evaluation episodes read + rollouts), mean over
    the seeds each strategy ran, one line per strategy: what a team with a robot pays for each curve."""
    import numpy as np

    from benchmarks.common import pyplot

    group = summary["settings"].get(SETTING, {}).get("isolations", {}).get("shared_replay", {})
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, st in group.get("strategies", {}).items():
        curves = (st.get("human_cost") or {}).get("curve_per_seed")
        if not curves:
            continue
        costs = np.mean([c["human_cost"] for c in curves.values()], axis=0)
        success = np.mean([c["success"] for c in curves.values()], axis=0)
        ax.plot(costs, 100 * success, marker="o", ms=3, label=f"{name} ({len(curves)} seeds)")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("human cost: demos + evaluation episodes read + rollouts (mean over seeds)")
    ax.set_ylabel("success %, pooled over the pool")
    ax.set_title("Headroom study: success against what a robot team pays" + (" (partial)" if summary["partial"] else ""),
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def headline(settings: dict, spec: dict, partial: bool) -> dict:
    """The numbers the study is about, each goal with whether it is met (None while partial)."""
    import numpy as np

    from benchmarks.study_stats import holm, seed_bootstrap_ci

    group = settings.get(SETTING, {}).get("isolations", {}).get("shared_replay", {})
    strategies, paired = group.get("strategies", {}), group.get("paired", {})
    finals = {n: {int(s): v for s, v in st["final_success"]["per_seed"].items()} for n, st in strategies.items()}
    rows = {}
    for name, st in strategies.items():
        per_seed = finals[name]
        row = {"final_success": float(np.mean(list(per_seed.values()))),
               "final_ci95_over_seeds": seed_bootstrap_ci(list(per_seed.values())),
               "seeds": len(per_seed), "budget_on_failing_tasks": st["weak_share"]["overall"],
               "budget_on_tasks_not_moved": st["not_moved_share"]["overall"],
               "human_cost": (st.get("human_cost") or {}).get("total"),
               "selection_over_train_median": (st.get("selection_over_train") or {}).get("median")}
        seeds = sorted(set(per_seed) & set(finals.get("uniform", {})) & set(finals.get("oracle", {})))
        if name not in ("uniform", "oracle") and len(seeds) >= 2:
            gain = np.array([per_seed[s] - finals["uniform"][s] for s in seeds])
            ceiling = np.array([finals["oracle"][s] - finals["uniform"][s] for s in seeds])
            boot = np.random.default_rng(0).integers(0, len(seeds), size=(10_000, len(seeds)))
            ratios = gain[boot].mean(1) / np.where(ceiling[boot].mean(1) == 0, np.nan, ceiling[boot].mean(1))
            if ceiling.mean() > 0:  # a share of a gain the oracle did not make is no number
                row["share_of_oracle_gain"] = float(gain.mean() / ceiling.mean())
                row["share_of_oracle_gain_ci95"] = [float(np.nanpercentile(ratios, 2.5)),
                                                    float(np.nanpercentile(ratios, 97.5))]
            else:
                row["share_of_oracle_gain"] = None
                row["share_of_oracle_gain_note"] = (f"the oracle did not beat uniform on these {len(seeds)} seeds "
                                                    f"({100 * ceiling.mean():+.1f} pp): no share")
        held = group.get("demos_to_hold_uniform_final", {}).get(name)
        if held:
            row["demos_to_reach_uniform_final"] = {"median": held["share_of_budget_median"],
                                                   "range": held["share_of_budget_range"]}
        cost = cost_to_reach(st, strategies.get("uniform"))
        if cost is not None:
            row["human_cost_to_reach_uniform_final"] = cost
        rows[name] = row
    users = {n: r for n, r in rows.items() if n in USER_STRATEGIES and n != "uniform"}
    best = max(users, key=lambda n: users[n]["final_success"], default=None)

    def pair(key):
        entry = paired.get(key)
        return None if entry is None else {k: entry[k] for k in ("mean", "ci95", "sign_test_p", "seeds") if k in entry}

    at_equal_cost = equal_cost_difference(strategies.get("amf_no_sim"), strategies.get("lowest_success_small"))
    pairs = {key: pair(key) for key in paired}
    family = {key: e["sign_test_p"] for key, e in pairs.items()
              if e and key in HOLM_FAMILY and e.get("sign_test_p") is not None}
    for key, adjusted in holm(family).items():
        pairs[key]["holm_p"] = adjusted
    return {
        "partial": partial, "setting": spec, "strategies": rows, "best_user_strategy": best,
        "paired": pairs,
        "paired_note": f"sign_test_p uncorrected; holm_p: Holm's correction over the {len(family)} user strategies "
                       "minus uniform",
        "amf_no_sim_minus_lowest_success_small_at_equal_human_cost": at_equal_cost,
        "goals": {"rules": GOALS, "met": None if partial else goals_met(rows, best, paired, at_equal_cost)},
        "spread_note": "final_ci95_over_seeds: bootstrap over seeds of the per-seed pooled final success",
    }


def cost_to_reach(a: dict, uniform: dict | None) -> dict | None:
    """Per seed both ran: the human cost from which a's (cost, success) curve stays at or above that
    seed's uniform final success (None: not within its run); median and range over the seeds."""
    from benchmarks.study_stats import median_and_range, reach_and_stay

    if not uniform or "human_cost" not in a or "human_cost" not in uniform:
        return None
    ours, theirs = a["human_cost"]["curve_per_seed"], uniform["human_cost"]["curve_per_seed"]
    per_seed = {seed: reach_and_stay(c["human_cost"], c["success"], theirs[seed]["success"][-1])
                for seed, c in ours.items() if seed in theirs}
    return {"per_seed": per_seed, **median_and_range(list(per_seed.values()))} if per_seed else None


def equal_cost_difference(a: dict | None, b: dict | None) -> dict | None:
    """Per seed both ran: a's final success minus b's success at a's total human cost (b's
    (cost, success) curve read linearly between its rounds); the median and range over seeds."""
    from benchmarks.study_stats import median_and_range

    if not a or not b or "human_cost" not in a or "human_cost" not in b:
        return None
    import numpy as np

    diffs = {}
    for seed, curve_a in a["human_cost"]["curve_per_seed"].items():
        curve_b = b["human_cost"]["curve_per_seed"].get(seed)
        if curve_b is None:
            continue
        cost = curve_a["human_cost"][-1]
        diffs[seed] = curve_a["success"][-1] - float(np.interp(cost, curve_b["human_cost"], curve_b["success"]))
    return {"per_seed": diffs, **median_and_range(list(diffs.values()))} if diffs else None


def goals_met(rows: dict, best: str | None, paired: dict, at_equal_cost: dict | None) -> dict:
    """Each goal of ``GOALS`` read off the finished study (None where a side did not run)."""
    def mean(key):
        return (paired.get(key) or {}).get("mean")

    def lower(key):
        return ((paired.get(key) or {}).get("ci95") or [None])[0]

    share = rows.get(best, {}).get("share_of_oracle_gain")
    share_ci = rows.get(best, {}).get("share_of_oracle_gain_ci95") or [None]
    reach = (rows.get(best, {}).get("demos_to_reach_uniform_final") or {}).get("median")
    # met by amf or amf_eval: its interval's lower bound over lowest_success and its selection time
    sides = [(lower(f"{n}_minus_lowest_success"), rows.get(n, {}).get("selection_over_train_median"))
             for n in ("amf", "amf_eval")]
    sides = [(low, ratio) for low, ratio in sides if low is not None]
    progress = [rows[n]["budget_on_tasks_not_moved"] for n in PROGRESS if n in rows]
    return {
        "best_user_share_of_oracle_gain": None if share is None else share >= 0.8 and (share_ci[0] or 0) > 0,
        "best_user_demos_to_reach_uniform_final": None if reach is None else reach <= 0.5,
        "amf_no_sim_minus_uniform": None if mean("amf_no_sim_minus_uniform") is None
        else mean("amf_no_sim_minus_uniform") >= 0.05,
        "amf_no_sim_vs_lowest_success_small_at_equal_human_cost": None if at_equal_cost is None
        else at_equal_cost["median"] >= 0,
        "amf_or_amf_eval_minus_lowest_success": None if not sides else any(
            low >= -0.02 and ratio is not None and ratio <= 0.05 for low, ratio in sides),
        "progress_not_moved_share": None if not progress else max(progress) <= 0.25,
    }


def make_study(results_dir: Path, runs_dir: Path, seeds=SEEDS, threads: int | None = None) -> HeadroomStudy:
    spec = setting(results_dir)
    under = tuple(t for t, n in spec["pretrain_demos_per_task"].items() if n == 0)
    covered = tuple(t for t in spec["tasks"] if t not in under)
    return HeadroomStudy(covered, under, tuple(seeds), results_dir, runs_dir, threads=threads, spec=spec)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--strategies", nargs="+", default=None, help="run only these strategies' cells now")
    add_cell_args(p)
    add_output_args(p, RUNS)
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    results_dir = (args.results_dir or RESULTS_DIR).resolve()
    threads = args.threads or (max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None)
    try:
        study = make_study(results_dir, (args.runs_dir or RUNS).resolve(), args.seeds, threads)
    except PilotNotReady as why:
        if args.dry_run:
            return dry_run(NAME, {"setting": f"none yet: {why}", "strategies": list(strategy_flags(
                {"oracle_allocation": {}, "budget": 1, "progress_demos": 1}))})
        sys.exit(f"{NAME}: {why}")
    cells = [c for c in study.planned_cells() if c.seed in args.seeds
             and (args.strategies is None or c.strategy in args.strategies)]
    if args.dry_run:
        return dry_run(NAME, {"setting": json.dumps({k: v for k, v in study.spec.items() if k != "pilot_commits"}),
                              **{c.name: " ".join(c.args(study)) for c in cells},
                              "summary": [results_dir / f"{NAME}.json", results_dir / f"{NAME}.md"]})
    if not args.summary_only:
        run_study(study, cells, args.max_cells, args.jobs)
    summary = write_summary(study)
    plot_human_cost(summary, results_dir / f"{NAME}_success_vs_human_cost.png")
    print(json.dumps(summary["headline"]["goals"], indent=2), flush=True)


if __name__ == "__main__":
    main()
