"""Where amf's selection time goes, and which passes can go without changing the picks: the pilot
that fixes amf's pass defaults (issue "Selection at a twentieth of a round").

Two settings, each with a real generalist pretrained by the CLI (cached like any run's):

* ``embedded``: the embedded default (``recipes/metaworld_default.json``: 4 tasks, 26 pretraining demos);
* ``hard``: the hard-skew study's setting (12 tasks, 39 pretraining demos), its seed 1 generalist's
  allocation, steps and seed (``benchmarks/sample_efficiency_hard.py``), pretrained on the LeRobot
  this runs on (the study's own ran on 0.4.4).

Per setting, ``CONTEXTS`` selection contexts: the generalist with fine-tuning demos in hand as after
1-3 rounds (context k: its round r = 1 + k mod 3, ``demos_per_round`` x r demos from the scripted
expert, split over the pool at random by k), the selection's random numbers seeded by k, the rollout
fallback's episodes as long as the recipe's (150 steps). Every
variant's selection is timed on every context, the variants interleaved and repeated, beside one
fine-tuning round as the studies run it (300 steps, batch 64, half of each batch replayed
pretraining demos), timed at the start and the end of the setting. As from a run's second round on,
the pretraining demos are already open (``AMFStrategy.opened``); the fine-tuning demos are opened
anew (a round added episodes); each pool task's Metaworld benchmark is already built (a run's
pretrained evaluation built it: ``envs.metaworld_state.metaworld_task``).

Each selection's record splits its time into parts (``details["seconds"]``: opening demos, reading
frames, likelihood, rollouts, embedding, posterior, greedy) and counts its passes. The floor beside
a part is the passes the math needs at the frames chosen, at the throughput of one full batch
(``--amf.selection.chunk_size`` rows) of the same policy: likelihood = frames scored x distinct
tasks x loglik draws; embedding = (task, frame) pairs embedded x draws.

The rule, fixed here before it ran: a variant may become amf's default only if, on every context of
both settings, its picks equal the default's (as a multiset: the demos per task) and its median
selection time is below the default's; of those, the one with the lowest median selection time
summed over all contexts. None: the defaults stay.

    python -m benchmarks.selection_passes --dry-run
    python -m benchmarks.selection_passes                 # both settings, 10 contexts each
    python -m benchmarks.selection_passes --settings embedded --contexts 3 --repeats 1
    python -m benchmarks.selection_passes --variants default --output selection_split   # the defaults' split only

Results: ``benchmarks/results/selection_passes.{json,png}``, with the commit it was measured at.
Run it on a quiet machine: nothing else may run while it times.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from benchmarks.common import (RECIPE, RESULTS_DIR, RUNS_DIR, cli_env, dry_run, measured_at_commit, pyplot, read_json,
                               write_json)

NAME = "selection_passes"
RUNS = RUNS_DIR / NAME
CONTEXTS = 10
# Both settings run the recipe's episodes (the hard study's flags start from it): the rollout
# fallback's episodes are as long.
EPISODE_LENGTH = json.loads((Path(__file__).resolve().parents[1] / RECIPE).read_text())["env"]["episode_length"]
ROUND_STEPS = 300
# variant -> the AMFSelectionConfig fields it changes ("default": none)
VARIANTS = {
    "default": {},
    "draws_2": {"n_draws": 2},
    "draws_1": {"n_draws": 1},
    "loglik_8": {"loglik_states_per_demo": 8},
    "loglik_4": {"loglik_states_per_demo": 4},
    "draws_2_loglik_8": {"n_draws": 2, "loglik_states_per_demo": 8},
    "states_8": {"states_per_demo": 8},
    "rollouts_2": {"fallback_rollouts": 2},
}
PARTS = ("opening demos", "reading frames", "likelihood", "rollouts", "embedding", "posterior", "greedy")
RULE = __doc__.split("The rule, fixed here before it ran: ")[1].split("\n\n")[0].replace("\n", " ")
GOAL_RATIO = 0.05


def settings() -> dict:
    """setting -> (its CLI flags for a pretrained-only run, demos per round)."""
    from benchmarks.sample_efficiency_hard import make_study
    from benchmarks.study_runner import merge_flags, pretrained_only_args

    recipe = json.loads((Path(__file__).resolve().parents[1] / RECIPE).read_text())
    embedded = [f"--config_path={RECIPE.as_posix()}", "--amf.rounds=1", "--amf.demos_per_round=1",
                "--amf.steps_per_round=0", "--amf.strategy=uniform"]
    hard = make_study(RESULTS_DIR, RUNS_DIR)
    hard_flags = pretrained_only_args(hard.base_args(), hard.pool, hard.allocation("hard"),
                                      hard.spec["pretrain_steps"], 1)
    quick_eval = ["--amf.eval_episodes=1", "--amf.final_eval_episodes=1"]  # only the generalist is used
    return {"embedded": (merge_flags(embedded, quick_eval), recipe["amf"]["demos_per_round"]),
            "hard": (merge_flags(hard_flags, quick_eval), 6)}


def generalist(setting: str, flags: list[str]) -> Path:
    """The setting's generalist, pretrained by the CLI (a pretrained-only run) or found in its cache."""
    from benchmarks.study_runner import run_or_resume
    from lerobot_amf.ledger import Ledger

    run_dir = RUNS / f"{setting}_generalist"
    code, last = run_or_resume(flags, run_dir, cli_env())
    if code != 0:
        raise SystemExit(f"{NAME}: the {setting} generalist's run failed: {last}")
    start = next(Ledger(run_dir).records("run_start"))
    return Path(start["model"]["pretrained_path"])


def contexts(setting: str, checkpoint: Path, demos_per_round: int, n: int) -> list:
    """``n`` selection contexts on the generalist (``selection_cost.FinishedRun``s): context k holds
    demos_per_round x (1 + k mod 3) fine-tuning demos from the scripted expert, split over the pool
    at random by k."""
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from lerobot.policies.factory import make_pre_post_processors

    from benchmarks.selection_cost import FinishedRun
    from lerobot_amf.data import DatasetRef, write_demos
    from lerobot_amf.pretrain import pretrain_demos_ref, read_pretrain_record
    from lerobot_amf.sources.metaworld import MetaworldExpertSource

    record = read_pretrain_record(checkpoint)
    pool = list(record["demos_per_task"])  # the run's pool, in its order (the task one-hot follows it)
    policy = DiffusionPolicy.from_pretrained(str(checkpoint))
    policy.eval()
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(checkpoint))
    pretrain = pretrain_demos_ref(checkpoint, record)
    out = []
    for k in range(1, n + 1):
        rounds = 1 + k % 3
        rng = np.random.default_rng([k, 7])
        counts = Counter(rng.choice(pool, size=demos_per_round * rounds).tolist())
        root = RUNS / f"{setting}_context{k}" / "demos"
        if not (root / "meta" / "info.json").exists():
            source = MetaworldExpertSource(seed=k, namespace=f"{NAME}{k}")
            demos = [d for task, c in counts.items() for d in source.pull(task, c, set())]
            write_demos("local/amf_demos", root, source.fps, source.features(), demos)
        start = {"pool": pool, "target_weights": {t: 1 / len(pool) for t in pool}, "seed": k,
                 "episode_length": EPISODE_LENGTH}
        out.append(FinishedRun(root.parent, start, rounds, checkpoint, policy, pre, post,
                               DatasetRef("local/amf_demos", root), pretrain, {t: counts.get(t, 0) for t in pool}))
    return out


def throughput(run) -> dict:
    """Seconds per likelihood pass and per embedding pass (one draw of one (task, frame) pair), from one
    full batch of the context's frames under their own tasks."""
    from lerobot_amf.configs import AMFSelectionConfig
    from lerobot_amf.families import family_of, kernel_embedder
    from lerobot_amf.selection.amf import AMFStrategy

    cfg = AMFSelectionConfig()
    strategy = AMFStrategy(cfg)
    states = strategy.demo_states(run.context())
    rows = np.arange(min(cfg.chunk_size, len(states.demo_of_frame)))
    batch = states.batch(rows)
    family = family_of(run.policy)
    embedder = kernel_embedder(run.policy, cfg)
    out = {}
    for name, fn, per_row in (("likelihood", lambda: family.loglik(run.policy, batch, cfg.loglik_draws, cfg.loglik_seed),
                               cfg.loglik_draws),
                              ("embedding", lambda: embedder.embed(batch), cfg.n_draws)):
        fn()  # warm-up
        times = []
        for _ in range(3):
            s = time.perf_counter()
            fn()
            times.append(time.perf_counter() - s)
        out[f"{name}_s_per_pass"] = float(np.median(times)) / (len(rows) * per_row)
    out["batch_rows"] = int(len(rows))
    return out


def measure_setting(setting: str, runs: list, repeats: int, variants: dict, round_steps: int = ROUND_STEPS) -> dict:
    """Every variant on every context, interleaved and repeated, between two timed rounds."""
    from lerobot_amf.configs import AMFSelectionConfig
    from lerobot_amf.envs.metaworld_state import metaworld_task
    from lerobot_amf.selection.amf import AMFStrategy

    for task in runs[0].pool:  # built by a run's pretrained evaluation before its first selection
        metaworld_task(task)
    rounds = [runs[0].round_seconds(round_steps)]
    rates = throughput(runs[0])
    rows = []
    for i, run in enumerate(runs, 1):
        seconds = {v: [] for v in variants}
        sels = {}
        for _ in range(repeats):
            for name, fields in variants.items():
                strategy = AMFStrategy(AMFSelectionConfig(**fields))
                strategy.opened(run.pretrain, run.policy.config)  # open since the run's first round
                ctx = run.context()
                s = time.perf_counter()
                sels[name] = strategy.select(ctx, 6 if setting == "hard" else 4)
                seconds[name].append(time.perf_counter() - s)
        print(f"[{NAME}] {setting} context {i}/{len(runs)}: " + ", ".join(
            f"{n} {np.median(t):.2f}s" for n, t in seconds.items()), flush=True)
        rows.append({"context": i, "fine_tuning_demos": sum(run.counts.values()), "rounds_before": run.rounds,
                     "variants": {name: {"selection_s": float(np.median(seconds[name])),
                                         "selection_s_all": seconds[name], "picks": sels[name].tasks,
                                         "seconds": sels[name].details["seconds"],
                                         "passes": sels[name].details["passes"],
                                         "rollout_fallback": sels[name].details["rollout_fallback"]}
                                  for name in variants}})
    rounds.append(runs[0].round_seconds(round_steps))
    round_s = float(np.mean(rounds))
    return {"pool": runs[0].pool, "contexts": rows, "round_finetune_s_all": rounds, "round_finetune_s": round_s,
            "round": f"{round_steps} steps, batch 64, half of each batch replayed pretraining demos",
            "throughput": rates, "parts": split(rows, rates, round_s, variants)}


def split(rows: list[dict], rates: dict, round_s: float, variants: dict) -> dict:
    """Per variant: the median selection / round, and each part's mean seconds with its floor."""
    out = {}
    for name in variants:
        per = [r["variants"][name] for r in rows]
        mean = {p: float(np.mean([v["seconds"].get(p, 0.0) for v in per])) for p in PARTS}
        floor = {"likelihood": float(np.mean([v["passes"]["likelihood"] for v in per])) * rates["likelihood_s_per_pass"],
                 "embedding": float(np.mean([v["passes"]["embedding"] for v in per])) * rates["embedding_s_per_pass"]}
        median = float(np.median([v["selection_s"] for v in per]))
        out[name] = {"median_selection_s": median, "ratio_to_round": median / round_s,
                     "max_ratio_to_round": max(v["selection_s"] for v in per) / round_s,
                     "mean_part_s": mean, "floor_s": floor,
                     "mean_passes": {k: float(np.mean([v["passes"][k] for v in per])) for k in per[0]["passes"]},
                     "contexts_with_rollouts": sum(bool(v["rollout_fallback"]) for v in per)}
    return out


def decide(measured: dict) -> dict:
    """The rule above: the variants that kept the default's picks and were faster on every context of
    every setting, and the cheapest of them (None: the defaults stay)."""
    rows = [r for s in measured.values() for r in s["contexts"]]
    names = [n for n in rows[0]["variants"] if n != "default"]

    def same(r, n):
        return Counter(r["variants"][n]["picks"]) == Counter(r["variants"]["default"]["picks"])

    kept = [n for n in names if all(same(r, n) and r["variants"][n]["selection_s"] < r["variants"]["default"]["selection_s"]
                                    for r in rows)]
    total = {n: sum(r["variants"][n]["selection_s"] for r in rows) for n in kept}
    return {"kept_picks_and_faster": kept, "chosen": min(total, key=total.get) if total else None,
            "same_picks": {n: f"{sum(same(r, n) for r in rows)}/{len(rows)}" for n in names}}


def plot(out: dict, path: Path) -> None:
    plt = pyplot()
    measured = out["settings"]
    fig, axes = plt.subplots(1, len(measured), figsize=(6.5 * len(measured), 4.2), squeeze=False)
    for ax, (setting, m) in zip(axes[0], measured.items()):
        names = list(m["parts"])
        bottom = np.zeros(len(names))
        for part in PARTS:
            ys = np.array([m["parts"][n]["mean_part_s"][part] for n in names])
            ax.bar(names, ys, bottom=bottom, label=part)
            bottom += ys
        for k, n in enumerate(names):
            same = (out["decision"] or {}).get("same_picks", {}).get(n, "")
            ax.text(k, bottom[k], f"{m['parts'][n]['ratio_to_round']:.3f}\n{same}", ha="center", va="bottom", fontsize=7)
        ax.axhline(GOAL_RATIO * m["round_finetune_s"], color="k", ls="--", lw=1, label=f"{GOAL_RATIO} of a round")
        ax.set_title(f"{setting}: {len(m['pool'])} tasks, {len(m['contexts'])} contexts "
                     f"(round {m['round_finetune_s']:.1f} s)", fontsize=9)
        ax.set_ylabel("selection seconds (mean per part)")
        ax.tick_params(axis="x", labelsize=7, rotation=30)
    axes[0][0].legend(fontsize=7)
    chosen = f" Chosen: {out['decision']['chosen']}" if out["decision"] else ""
    fig.suptitle(f"amf's selection per part (above each bar: median selection / round; contexts whose picks equal the "
                 f"default's).{chosen}" + (" (PARTIAL)" if out["partial"] else ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}", description=__doc__.splitlines()[0])
    p.add_argument("--settings", nargs="+", default=["embedded", "hard"], choices=["embedded", "hard"])
    p.add_argument("--contexts", type=int, default=CONTEXTS)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                   help="a subset (with default) measures the time split only; the rule decides on all of them")
    p.add_argument("--output", default=NAME, help="the results' file name, under benchmarks/results")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the outputs; run nothing")
    args = p.parse_args(argv)
    variants = {name: VARIANTS[name] for name in VARIANTS if name in {"default", *args.variants}}
    results = RESULTS_DIR / f"{args.output}.json"
    if args.dry_run:
        return dry_run(NAME, {"settings": args.settings, "contexts": args.contexts, "variants": variants, "rule": RULE,
                              "results": [results, results.with_suffix(".png")]})
    import torch

    from lerobot_amf.envs import metaworld_state  # noqa: F401  (registers the env)
    from lerobot_amf.ledger import software

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    tempfile.tempdir = str(RUNS / "tmp")
    Path(tempfile.tempdir).mkdir(parents=True, exist_ok=True)
    measured = {}
    for setting in args.settings:
        flags, per_round = settings()[setting]
        checkpoint = generalist(setting, flags)
        runs = contexts(setting, checkpoint, per_round, args.contexts)
        measured[setting] = {"generalist": checkpoint.name, **measure_setting(setting, runs, args.repeats, variants)}
    partial = args.contexts < CONTEXTS or set(args.settings) != {"embedded", "hard"}
    every = len(variants) == len(VARIANTS)
    out = {"benchmark": NAME, "partial": partial, "lerobot": software()["lerobot"],
           "rule": RULE if every else "not applied: a subset of the variants (the time split only)",
           "variants": variants, "repeats": args.repeats, "goal_ratio": GOAL_RATIO,
           "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
           "load_average_at_end": os.getloadavg(), "measured_at_commit": measured_at_commit(),
           "settings": measured, "decision": decide(measured) if every else None}
    write_json(results, out)
    plot(out, results.with_suffix(".png"))
    print(json.dumps(out["decision"], indent=2))


if __name__ == "__main__":
    main()
