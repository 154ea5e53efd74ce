"""Where choosing tasks matters: the preregistered hard-skew study (issue "AMF where the choice matters").

The setting is the hard pilot's confirmation generalist ``C`` (``benchmarks/results/hard_pilot.json``),
fixed before any strategy cell ran and checked by ``setting()`` every time this module runs:

* the 12 Metaworld v3 tasks that 10 demos teach; 9 under-covered (1 pretraining demo each: the
  tasks one demo left weak or strong in the pilot's generalists A and B), 3 covered (10 each);
* each seed pretrains its own generalist on that allocation, with the pilot's pretraining steps,
  shared by every strategy and isolation mode of the seed (the CLI caches it by config + seed);
* budget 24 demos = 4 rounds x 6 (2 per task), ``shared_replay`` (single model, half of each batch
  from the pretraining demos); 20 evaluation episodes per task after each round, 50 after the
  last, on fixed evaluation seeds;
* strategies on all 10 seeds: uniform, random, rebalancing (privileged: knows the pretraining
  counts), lowest_success, amf, amf_eval; on seeds 1-5: amf without a simulator (``amf_no_sim``: no
  rollouts and no evaluation inside selection, the real-robot case), and per-task ``lora`` for
  uniform, amf and lowest_success.

The criteria and what the pilot measured against them are recorded in the summary's ``setting``;
where the pilot did not meet one (no task was "covered but weak"), the summary says so and names
the closest tasks with their measured success. Nothing here may change once a strategy cell has
run: ``setting()`` refuses a pilot that no longer gives the recorded setting, and the runner refuses a
finished cell whose flags differ from the plan's.

    python -m benchmarks.sample_efficiency_hard --dry-run                 # the plan, nothing run
    python -m benchmarks.sample_efficiency_hard --strategies uniform lowest_success --max-cells 2
    python -m benchmarks.sample_efficiency_hard --jobs 2                  # two seeds side by side
    python -m benchmarks.sample_efficiency_hard --summary-only

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

from benchmarks.common import RECIPE, RESULTS_DIR, RUNS_DIR, add_output_args, read_json
from benchmarks.study_runner import Cell, Study, add_cell_args, merge_flags, run_study
from benchmarks.study_summary import pct, pct_with_interval, rate, write_summary

NAME = "sample_efficiency_hard"
RUNS = RUNS_DIR / NAME
SETTING = "hard"
SEEDS = tuple(range(1, 11))
FEW_SEEDS = 5  # amf_no_sim and the lora rows
STUDY_ARGS = ["--amf.rounds=4", "--amf.demos_per_round=6", "--amf.eval_episodes=20", "--amf.final_eval_episodes=50",
              "--amf.eval_batch_size=10"]
STRATEGIES = {
    "uniform": ["--amf.strategy=uniform"],
    "random": ["--amf.strategy=random"],
    "rebalancing": ["--amf.strategy=rebalancing"],  # privileged: knows the pretraining counts
    "lowest_success": ["--amf.strategy=lowest_success"],
    "amf": ["--amf.strategy=amf"],
    "amf_eval": ["--amf.strategy=amf_eval"],
    "amf_no_sim": ["--amf.strategy=amf", "--amf.selection.simulator=false"],
}
ISOLATIONS = {
    "shared_replay": ["--amf.isolation=shared_replay", "--amf.replay_fraction=0.5"],
    "lora": ["--amf.isolation=lora", "--amf.partitions=per_task", "--amf.export=none"],
}
# (isolation, strategies, seeds): the strategies that need no amf default run first within a seed.
PLAN = (
    ("shared_replay", ("uniform", "lowest_success", "random", "rebalancing", "amf", "amf_eval"), SEEDS),
    ("shared_replay", ("amf_no_sim",), SEEDS[:FEW_SEEDS]),
    ("lora", ("uniform", "lowest_success", "amf"), SEEDS[:FEW_SEEDS]),
)
COMPARISONS = (("amf", "uniform"), ("amf", "lowest_success"), ("amf_eval", "lowest_success"),
               ("amf_no_sim", "uniform"), ("amf", "rebalancing"), ("lowest_success", "uniform"),
               ("amf_eval", "uniform"), ("random", "uniform"), ("rebalancing", "uniform"))
# The goals (issue), each on a paired difference in percentage points: (comparison, its rule).
GOALS = {
    "amf_minus_uniform": "mean >= +8 pp, 95% interval excludes 0, sign test p < 0.05, >= 10 seeds",
    "amf_demos_ratio_to_match_uniform": "per-seed median <= 0.5",
    "amf_eval_minus_lowest_success": "95% interval's lower bound >= -2 pp",
    "amf_no_sim_minus_uniform": "mean >= +5 pp",
    "amf_minus_rebalancing": "mean >= -2 pp",
}
# What the embedded recipe (``RECIPE``) fine-tunes with once the study is complete (issue: "the embedded
# recipe uses the best strategy that does not need privileged counts"). Committed at 6e44143 with 50 of
# the 80 cells in: not preregistered, unlike the setting, the protocol and ``GOALS``.
# rebalancing needs the pretraining counts; amf_no_sim ran on 5 seeds only, and the recipe has a simulator.
RECIPE_CANDIDATES = ("lowest_success", "random", "amf", "amf_eval")
RECIPE_RULE = ("of the strategies that need no pretraining counts and ran on every seed (shared_replay), the one "
               "with the largest mean paired gain over uniform whose 95% interval lies above 0; uniform if none")


def setting(results_dir: Path) -> dict:
    """The hard setting as the pilot fixed it, and the criteria it met, re-read from the pilot's files
    and checked: a pilot that is partial, or whose confirmation no longer reads off the same way, stops here."""
    from benchmarks import hard_pilot

    pilot = read_json(results_dir / f"{hard_pilot.NAME}.json")
    cell = read_json(results_dir / hard_pilot.NAME / "C.json")
    if pilot is None or pilot["partial"] or cell is None or not cell.get("complete"):
        sys.exit(f"{NAME}: the hard pilot is not complete ({results_dir / (hard_pilot.NAME + '.json')}): "
                 "run python -m benchmarks.hard_pilot first")
    confirmation = pilot["confirmation"]
    measured = hard_pilot.read_off(cell)
    if cell["demos_per_task"] != confirmation["demos_per_task"] or measured["met"] != confirmation["met"]:
        sys.exit(f"{NAME}: hard_pilot/C.json does not give the setting recorded in hard_pilot.json")
    flag = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in cell["cli_args"]}
    return {
        "tasks": list(cell["demos_per_task"]),
        "pretrain_demos_per_task": cell["demos_per_task"],
        "pretrain_steps": int(flag["--amf.pretrain.steps"]),
        "pilot_success": measured["success"],
        "pilot_generalist": "hard_pilot C (seed 0; the study's seeds 1-10 pretrain their own on the same allocation)",
        "criteria": {
            "teachable_with_10_demos": f">= {hard_pilot.TEACHABLE} (balanced pilot): {len(cell['demos_per_task'])} "
                                       f"tasks, need >= {hard_pilot.NEED_TASKS}",
            "under_covered_weak": f"1 demo, success <= {hard_pilot.UNDER_WEAK}, need >= {hard_pilot.NEED_UNDER_WEAK}",
            "covered_weak": f"10 demos, success <= {hard_pilot.COVERED_WEAK}, need >= {hard_pilot.NEED_COVERED_WEAK}",
            "under_covered_strong": f"1 demo, success >= {hard_pilot.UNDER_STRONG} (added where any)",
        },
        "met": {"tasks": len(cell["demos_per_task"]) >= hard_pilot.NEED_TASKS, **measured["met"]},
        "under_covered_weak": measured["under_covered_weak"],
        "under_covered_strong": measured["under_covered_strong"],
        "covered_weak": measured["covered_weak"],
        "closest_covered_weak": None if measured["met"]["covered_weak"] else {
            t: measured["success"][t] for t in measured["closest_covered_weak"]},
        "pilot_commit": cell.get("measured_at_commit"),
    }


@dataclasses.dataclass(frozen=True)
class HardStudy(Study):
    """The hard setting on the runner's ``Study``: one setting (``spec``, from ``setting()``), the plan above."""

    spec: dict = dataclasses.field(default_factory=dict)
    name, title = NAME, "Hard-skew study"
    strategies, isolations, comparisons, plan_seeds = STRATEGIES, ISOLATIONS, COMPARISONS, SEEDS
    isolation_comparisons = (("lora", "shared_replay"),)

    @property
    def pool(self) -> list[str]:
        return list(self.spec["tasks"])  # the pilot's order (the policy's task one-hot follows it)

    def allocation(self, setting: str) -> dict[str, int]:
        return dict(self.spec["pretrain_demos_per_task"])

    def base_args(self) -> list[str]:
        return merge_flags([f"--config_path={RECIPE.as_posix()}"], STUDY_ARGS,
                           [f"--amf.pretrain.steps={self.spec['pretrain_steps']}"])

    def planned_cells(self) -> list[Cell]:
        return planned_cells(self.planned_seeds())

    def headline(self, settings: dict, partial: bool) -> dict:
        return headline(settings, self.spec, partial)

    def headline_markdown(self, headline: dict) -> str:
        return headline_markdown(headline)


def make_study(results_dir: Path, runs_dir: Path, seeds=SEEDS, threads: int | None = None) -> HardStudy:
    spec = setting(results_dir)
    under = tuple(t for t, n in spec["pretrain_demos_per_task"].items() if n == min(spec["pretrain_demos_per_task"].values()))
    covered = tuple(t for t in spec["tasks"] if t not in under)
    return HardStudy(covered, under, tuple(seeds), results_dir, runs_dir, threads=threads, spec=spec)


def planned_cells(seeds) -> list[Cell]:
    """Seed-major: each seed's cells in the plan's order (its generalist is pretrained once)."""
    return [Cell(SETTING, seed, strategy, isolation) for seed in seeds for isolation, strategies, plan_seeds in PLAN
            if seed in plan_seeds for strategy in strategies]


def headline(settings: dict, spec: dict, partial: bool) -> dict:
    """The numbers the study is about (issue: "What must be shown"), each goal with whether it is met
    (None while partial or where a side has not run)."""
    body = settings.get(SETTING, {}).get("isolations", {})
    main = body.get("shared_replay", {})
    strategies = main.get("strategies", {})

    def paired(key, group=main):
        entry = group.get("paired", {}).get(key)
        return None if entry is None else {k: entry[k] for k in ("mean", "ci95", "sign_test_p", "seeds", "per_seed")
                                           if k in entry}

    final, seeds = {}, {}
    if strategies:
        first = next(iter(strategies.values()))["pretrained_success"]["pooled"]
        final["pretrained"] = {k: first[k] for k in ("success_rate", "ci95", "episodes")}
    for name, st in strategies.items():
        pooled = st["final_success"]["pooled"]
        final[name] = {k: pooled[k] for k in ("success_rate", "ci95", "episodes")}
        seeds[name] = st["seeds"]
    hold = {name: {"median": h["share_of_budget_median"], "range": h["share_of_budget_range"],
                   "seeds_reached": h["seeds_reached"], "seeds": len(h["seeds"])}
            for name, h in main.get("demos_to_hold_uniform_final", {}).items()}
    pairs = {key: paired(key) for key in ("amf_minus_uniform", "amf_minus_lowest_success",
                                          "amf_eval_minus_lowest_success", "amf_no_sim_minus_uniform",
                                          "amf_minus_rebalancing", "lowest_success_minus_uniform")}
    lora = body.get("lora", {})
    return {
        "seeds": seeds,
        "setting": spec,
        "weak_share": {name: st["weak_share"]["overall"] for name, st in strategies.items()},
        "final_success": final,
        "paired": pairs,
        "paired_lora": {key: paired(key, lora) for key in ("amf_minus_uniform", "amf_minus_lowest_success")},
        "demos_ratio_to_match_uniform": hold,
        "area_under_curve": {name: st["area_under_curve"]["mean_over_seeds"] for name, st in strategies.items()},
        "goals": goals(pairs, hold, partial),
        "recipe_strategy": recipe_strategy(main.get("paired", {}), SEEDS, partial),
        "partial": partial,
    }


def goals(pairs: dict, hold: dict, partial: bool) -> dict:
    """Each goal's rule and whether it is met: None until the study is complete (no verdict on a part)."""
    def pp(entry, key="mean"):
        return None if entry is None else (100 * entry[key] if key == "mean" else [100 * x for x in entry[key]])

    checks = {}
    if not partial:
        d = pairs["amf_minus_uniform"]
        checks = {
            "amf_minus_uniform": d is not None and pp(d) >= 8 and pp(d, "ci95")[0] > 0 and d["sign_test_p"] < 0.05
                                 and len(d["seeds"]) >= 10,
            "amf_demos_ratio_to_match_uniform": "amf" in hold and hold["amf"]["median"] is not None
                                                and hold["amf"]["median"] <= 0.5,
            "amf_eval_minus_lowest_success": pairs["amf_eval_minus_lowest_success"] is not None
                                             and pp(pairs["amf_eval_minus_lowest_success"], "ci95")[0] >= -2,
            "amf_no_sim_minus_uniform": pairs["amf_no_sim_minus_uniform"] is not None
                                        and pp(pairs["amf_no_sim_minus_uniform"]) >= 5,
            "amf_minus_rebalancing": pairs["amf_minus_rebalancing"] is not None
                                     and pp(pairs["amf_minus_rebalancing"]) >= -2,
        }
    return {key: {"rule": rule, "met": checks.get(key)} for key, rule in GOALS.items()}


def headline_markdown(h: dict) -> str:
    """The headline as tables: per strategy, the paired comparisons the goals read, each goal's verdict
    (none while partial) and the recipe's strategy; every number read from ``h``."""
    def ratio(hold):
        if hold is None:
            return "—"
        def part(x):
            return "> 1" if x is None else f"{x:.2f}"
        return (f"{part(hold['median'])} ({part(hold['range'][0])}–{part(hold['range'][1])}; "
                f"reached on {hold['seeds_reached']} of {hold['seeds']})")

    status = "PARTIAL: no verdict, no figure to quote" if h["partial"] else "complete"
    final = h["final_success"]
    lines = [f"**Headline ({status})**: single model with replay (`shared_replay`) unless a row says lora; "
             f"{len(h['setting'].get('tasks', []))} tasks, 24 fine-tuning demos (4 rounds × 6); final evaluation "
             "50 episodes per task on fixed seeds; success in % pooled over tasks and seeds, Wilson 95% over "
             "pooled episodes (narrower than over seeds: compare strategies with `--seed-level`).", "",
             "| strategy | seeds | final success | budget on tasks failing (< 0.6) when chosen | area under the curve "
             "| share of the budget to hold uniform's final success (per-seed median, range) |",
             "| --- | --- | --- | --- | --- | --- |"]
    if "pretrained" in final:
        lines.append(f"| pretrained | — | {rate(final['pretrained'])} | — | — | — |")
    for name, seeds in h["seeds"].items():
        lines.append(f"| {name} | {len(seeds)} | {rate(final[name])} "
                     f"| {pct(h['weak_share'].get(name))} % | {pct(h['area_under_curve'].get(name))} "
                     f"| {ratio(h['demos_ratio_to_match_uniform'].get(name))} |")
    lines += ["", "| paired difference (pp) | mean [bootstrap 95%] | sign test p | seeds |", "| --- | --- | --- | --- |"]
    for group, pairs in (("", h["paired"]), (" (lora)", h.get("paired_lora", {}))):
        for key, d in pairs.items():
            if d is not None:
                lines.append(f"| {key.replace('_minus_', ' − ')}{group} | {pct_with_interval(d['mean'], d['ci95'])} "
                             f"| {d['sign_test_p']:.3f} | {len(d['seeds'])} |")
    verdict = {True: "met", False: "**not met**", None: "no verdict (partial)"}
    lines += ["", "| goal | rule | verdict |", "| --- | --- | --- |"]
    lines += [f"| {key} | {g['rule']} | {verdict[g['met']]} |" for key, g in h["goals"].items()]
    recipe = h.get("recipe_strategy") or {}
    lines += ["", f"Embedded recipe's strategy by the recipe rule (`RECIPE_RULE`, committed at `6e44143` with 50 of the 80 cells in; {recipe.get('rule', '—')}): "
                  f"{recipe.get('strategy') or 'none yet (partial)'}."]
    return "\n".join(lines)


def recipe_strategy(paired: dict, seeds, partial: bool) -> dict:
    """The recipe rule (``RECIPE_RULE``, set with 50 of 80 cells in) applied to the shared_replay row's paired differences over
    uniform; no strategy while the study is partial."""
    if partial:
        return {"rule": RECIPE_RULE, "strategy": None}
    gains = {name: d["mean"] for name in RECIPE_CANDIDATES if (d := paired.get(f"{name}_minus_uniform")) is not None
             and d["ci95"][0] > 0 and len(d["seeds"]) >= len(seeds)}
    return {"rule": RECIPE_RULE, "strategy": max(gains, key=gains.get) if gains else "uniform",
            "gains_over_uniform": gains}


def seed_level_markdown(summary: dict) -> str:
    """The study's final success per strategy with intervals over seeds (a bootstrap of each seed's
    pooled final success), beside the committed Wilson interval over pooled episodes, and the paired
    differences over uniform with Holm's correction across ``RECIPE_CANDIDATES``: read from a
    committed summary, nothing re-run (``--seed-level``)."""
    from benchmarks.study_stats import holm, seed_bootstrap_ci

    body = summary["settings"][SETTING]["isolations"]
    rows = ["| strategy | seeds | final success % | 95 % over seeds (bootstrap) | Wilson 95 % over pooled episodes |",
            "| --- | --- | --- | --- | --- |"]
    for isolation, group in (("shared_replay", ""), ("lora", " (lora)")):
        for name, st in body.get(isolation, {}).get("strategies", {}).items():
            per_seed = list(st["final_success"]["per_seed"].values())
            low, high = seed_bootstrap_ci(per_seed)
            pooled = st["final_success"]["pooled"]
            rows.append(f"| {name}{group} | {len(per_seed)} | {100 * pooled['success_rate']:.1f} | "
                        f"[{100 * low:.1f}, {100 * high:.1f}] | [{100 * pooled['ci95'][0]:.1f}, "
                        f"{100 * pooled['ci95'][1]:.1f}] |")
    paired = body["shared_replay"]["paired"]
    family = {name: paired[f"{name}_minus_uniform"]["sign_test_p"] for name in RECIPE_CANDIDATES}
    adjusted = holm(family)
    rows += ["", "| vs uniform (shared_replay) | mean pp [paired bootstrap 95 %] | sign test p | Holm p (over "
             f"{', '.join(RECIPE_CANDIDATES)}) |", "| --- | --- | --- | --- |"]
    for name in sorted(family, key=family.get):
        d = paired[f"{name}_minus_uniform"]
        rows.append(f"| {name} − uniform | {pct_with_interval(d['mean'], d['ci95'])} | {family[name]:.3f} | "
                    f"{adjusted[name]:.3f} |")
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sample_efficiency_hard", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", nargs="+", type=int, default=None, help=f"default: {list(SEEDS)}")
    p.add_argument("--strategies", nargs="+", choices=list(STRATEGIES), default=list(STRATEGIES))
    p.add_argument("--isolations", nargs="+", choices=list(ISOLATIONS), default=list(ISOLATIONS))
    p.add_argument("--seed-level", action="store_true",
                   help="print the committed summary's final success with intervals over seeds and Holm-corrected "
                        "comparisons (nothing is run)")
    add_cell_args(p)
    add_output_args(p, RUNS)
    return p


def main(argv=None) -> None:
    p = build_parser()
    args = p.parse_args(argv)
    if args.seed_level:
        return print(seed_level_markdown(read_json((args.results_dir or RESULTS_DIR) / f"{NAME}.json")))
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, not {args.jobs}")
    threads = args.threads or (max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None)
    study = make_study((args.results_dir or RESULTS_DIR).resolve(), (args.runs_dir or RUNS).resolve(),
                       tuple(args.seeds or SEEDS), threads)
    cells = [] if args.summary_only else [c for c in planned_cells(study.seeds) if c.strategy in args.strategies
                                          and c.isolation in args.isolations]
    if args.dry_run:
        from benchmarks.sample_efficiency import dry_run_study

        return dry_run_study(study, cells, args, NAME)
    if not args.summary_only:
        run_study(study, cells, args.max_cells, args.jobs)
    summary = write_summary(study)
    print(json.dumps({k: summary["headline"][k] for k in ("final_success", "weak_share", "partial")}, indent=2),
          flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("[study] stopped; run the same command again to resume (finished cells are kept)")
