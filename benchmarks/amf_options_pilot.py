"""Which of amf's options become its defaults? Decided on pilot generalists, before any amf cell of
the hard study runs (issue "AMF where the choice matters", item 2).

The options (``docs/method.md``, "amf_eval, and the options a pilot decides"):

* ``condition_on_pretraining`` (a): the GP also observes the generalist's pretraining demos, so a
  covered task starts at the posterior after pretraining instead of its prior;
* ``rollout_roles=rollouts`` (c): a rollout-fallback task's targets and candidates come from
  different rollouts;
* ``max_variance_removed=0.8`` (d): a fantasised demo may remove up to 80 % of its task's target
  variance instead of 50 %, so the greedy batch's next pick on the same task gains less.

Pilot generalists: the hard setting's allocation (``sample_efficiency_hard.setting``) pretrained
with the pilot seeds ``PILOT_SEEDS`` (0, the hard pilot's own, and two more; never one of the
study's seeds 1-10), each evaluated 20 episodes per task like the study's pretrained policies. For
each generalist and each option set, ``lerobot-amf-plan`` makes the study's first selection (6 demos,
round 0, the seed's random numbers, the simulator for the rollout fallback, no evaluation read).

The rule, fixed here before it ran: the default is the option set with the highest mean share of the
6 picks on tasks that are weak (< 0.6) on that generalist; a tie goes to the set with fewer options
on (plain amf first). amf does not read success, so the weak share measures whether its information
gain finds the tasks the generalist fails. The largest number of picks on one task is reported beside it.

    python -m benchmarks.amf_options_pilot            # resumable: generalists, then plans
    python -m benchmarks.amf_options_pilot --dry-run

Results: ``benchmarks/results/amf_options_pilot.json`` (+ ``.png``), each plan's file under
``benchmarks/results/amf_options_pilot/``, with the commit it ran at.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.common import (RESULTS_DIR, ROOT, RUNS_DIR, add_output_args, cli_env, dry_run, measured_at_commit,
                               pyplot, read_json, write_json)
from benchmarks.study_runner import pretrained_only_args, run_or_resume

NAME = "amf_options_pilot"
RUNS = RUNS_DIR / NAME
PILOT_SEEDS = (0, 11, 12)
DEMOS, WEAK, EVAL_EPISODES = 6, 0.6, 20
# option set -> its --amf.selection flags; in order of how many options are on (the tie-break)
OPTION_SETS = {
    "plain": [],
    "a_condition_on_pretraining": ["--amf.selection.condition_on_pretraining=true"],
    "c_rollout_roles": ["--amf.selection.rollout_roles=rollouts"],
    "d_remove_more": ["--amf.selection.max_variance_removed=0.8"],
    "a_c": ["--amf.selection.condition_on_pretraining=true", "--amf.selection.rollout_roles=rollouts"],
    "a_c_d": ["--amf.selection.condition_on_pretraining=true", "--amf.selection.rollout_roles=rollouts",
              "--amf.selection.max_variance_removed=0.8"],
}


def generalist_args(spec: dict, seed: int) -> list[str]:
    """The hard study's pretrained-only run for ``seed`` (its generalist and its evaluation)."""
    from benchmarks.common import RECIPE

    base = [f"--config_path={RECIPE.as_posix()}", f"--amf.eval_episodes={EVAL_EPISODES}", "--amf.eval_batch_size=10"]
    return pretrained_only_args(base, spec["tasks"], spec["pretrain_demos_per_task"], spec["pretrain_steps"], seed)


def generalist(spec: dict, seed: int, runs: Path, env: dict) -> dict:
    """Pretrain (or find) the pilot generalist of ``seed``: its path and its per-task success."""
    run_dir = runs / f"generalist_seed{seed}"
    code, last = run_or_resume(generalist_args(spec, seed), run_dir, env)
    if code != 0:
        sys.exit(f"{NAME}: the generalist of seed {seed} failed: {last}")
    report = json.loads((run_dir / "amf_report.json").read_text())
    start = next(json.loads(line) for line in (run_dir / "amf_ledger.jsonl").read_text().splitlines()
                 if json.loads(line)["event"] == "run_start")
    return {"path": start["model"]["pretrained_path"],
            "success": {t: v["success_rate"] for t, v in report["pretrained"]["per_task"].items()}}


def plan_args(spec: dict, path: str, seed: int, flags: list[str], out: Path) -> list[str]:
    recipe_env = json.loads((ROOT / "recipes" / "metaworld_default.json").read_text())["env"]
    return [f"--policy.path={path}", "--policy.device=cpu", "--env.type=mw_state", f"--env.task={','.join(spec['tasks'])}",
            f"--env.episode_length={recipe_env['episode_length']}", f"--amf.demos={DEMOS}", "--amf.evaluate=false",
            f"--seed={seed}", *flags, f"--output_dir={out}"]


def run_plan(spec: dict, gen: dict, seed: int, name: str, results: Path, runs: Path, env: dict) -> dict:
    cell_file = results / NAME / f"seed{seed}__{name}.json"
    done = read_json(cell_file)
    if done is not None:
        return done
    out = runs / f"plan_seed{seed}__{name}"
    if (out / "amf_plan.json").exists():
        (out / "amf_plan.json").unlink()
    args = plan_args(spec, gen["path"], seed, OPTION_SETS[name], out)
    proc = subprocess.run([sys.executable, "-m", "lerobot_amf.plan_cli", *args], env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.exit(f"{NAME}: plan seed {seed} {name} failed: {(proc.stderr.strip().splitlines() or [''])[-1]}")
    plan = json.loads((out / "amf_plan.json").read_text())
    weak = [t for t, s in gen["success"].items() if s < WEAK]
    picks = plan["amf"]["tasks"]
    cell = {"seed": seed, "options": name, "flags": OPTION_SETS[name], "picks": picks,
            "weak_tasks": weak, "weak_share": sum(t in weak for t in picks) / len(picks),
            "most_on_one_task": max(picks.count(t) for t in set(picks)),
            "reason": plan["amf"]["reason"], "sigma2": plan["amf"]["details"]["noise"]["sigma2"],
            "rollout_fallback": plan["amf"]["details"]["rollout_fallback"],
            "generalist_success": gen["success"], "measured_at_commit": measured_at_commit()}
    write_json(cell_file, cell)
    return cell


def decide(cells: list[dict]) -> dict:
    """The rule above, on the plan files that exist (partial until every seed x option set is in)."""
    by_set = {name: [c for c in cells if c["options"] == name] for name in OPTION_SETS}
    mean = {name: (sum(c["weak_share"] for c in cs) / len(cs) if cs else None) for name, cs in by_set.items()}
    complete = all(len(cs) == len(PILOT_SEEDS) for cs in by_set.values())
    best = max((n for n in OPTION_SETS if mean[n] is not None), key=lambda n: (mean[n], -list(OPTION_SETS).index(n)),
               default=None)
    return {"benchmark": NAME, "partial": not complete, "rule": __doc__.split("The rule, fixed here before it ran: ")[1]
            .split("\n\n")[0].replace("\n", " "),
            "pilot_seeds": list(PILOT_SEEDS), "weak_threshold": WEAK, "demos": DEMOS,
            "mean_weak_share": mean,
            "most_on_one_task": {n: [c["most_on_one_task"] for c in cs] for n, cs in by_set.items()},
            "chosen": best if complete else None, "chosen_flags": OPTION_SETS[best] if complete and best else None,
            "cells": cells}


def plot(summary: dict, path: Path) -> None:
    plt = pyplot()
    names = list(OPTION_SETS)
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for i, name in enumerate(names):
        shares = [c["weak_share"] for c in summary["cells"] if c["options"] == name]
        ax.scatter([i] * len(shares), shares, color="#3b75af", s=18, zorder=3)
        if summary["mean_weak_share"][name] is not None:
            ax.plot([i - 0.3, i + 0.3], [summary["mean_weak_share"][name]] * 2, color="k")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel(f"share of the first {DEMOS} picks\non tasks below {WEAK} (dots: generalists)")
    ax.set_title("amf's options on the pilot generalists" + (" (PARTIAL)" if summary["partial"] else
                                                             f": chosen {summary['chosen']}"), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    from benchmarks.sample_efficiency_hard import setting

    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}", description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    add_output_args(p, RUNS)
    args = p.parse_args(argv)
    results, runs = (args.results_dir or RESULTS_DIR).resolve(), (args.runs_dir or RUNS).resolve()
    spec = setting(RESULTS_DIR)
    env = cli_env(runs / "lerobot_home", OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    if args.dry_run:
        return dry_run(NAME, {
            **{f"generalist seed {s}": " ".join(generalist_args(spec, s)) for s in PILOT_SEEDS},
            **{f"plan {n}": " ".join(plan_args(spec, "<generalist>", 0, f, runs / "plan")) for n, f in OPTION_SETS.items()},
            "cell files": results / NAME, "summary": [results / f"{NAME}.json", results / f"{NAME}.png"]})
    cells = []
    for seed in PILOT_SEEDS:
        gen = generalist(spec, seed, runs, env)
        for name in OPTION_SETS:
            cells.append(run_plan(spec, gen, seed, name, results, runs, env))
            summary = decide(cells)
            write_json(results / f"{NAME}.json", summary)
            plot(summary, results / f"{NAME}.png")
            print(f"[{NAME}] seed {seed} {name}: weak share {cells[-1]['weak_share']:.2f}, picks {cells[-1]['picks']}",
                  flush=True)
    print(json.dumps({k: summary[k] for k in ("mean_weak_share", "chosen", "partial")}, indent=2))


if __name__ == "__main__":
    main()
