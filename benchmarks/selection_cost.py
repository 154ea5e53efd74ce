"""What AMF selection costs, as ratios measured side by side in one run (machines are noisy).

(a) embedding throughput / forward throughput of the same policy, states/s, against two forwards:
    training  = ``policy.forward(batch)``: the training loss, one UNet pass per state;
    inference = ``policy.reset(); policy.select_action(obs)``: one ``predict_action_chunk``,
                the full DDIM denoising (num_inference_steps UNet passes per state).
(b) one amf selection's wall time / one round's fine-tuning wall time, embedded default sizes
(c) greedy scoring of 90 tasks x 10,000 target states at d = 1024 (seconds per pick), with the
    default float32 scoring product and with the exact float64 one
(d) at the sample-efficiency study's size, on one of its runs (8 tasks, a real generalist after
    four rounds, its 44 pretraining + 16 fine-tuning demos): the selection a fifth round would
    make, with the default target-mass floor and with none (every frame embedded under every
    task that weighs it at all), against one fine-tuning round as the study runs it (300 steps,
    batch 64, half of each batch replayed pretraining demos); picks and scores side by side

    python -m benchmarks.selection_cost            # writes benchmarks/results/selection_cost.{json,png}
    python -m benchmarks.selection_cost --dry-run  # the parts and the outputs, nothing run
    python -m benchmarks.selection_cost --parts embedding selection  # re-measure (a) and (b) only
"""

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (RECIPE, RESULTS_DIR, ROOT, RUNS_DIR, dry_run, kept_parts, measured_at_commit, pyplot,
                               read_json, write_json)

RESULTS = RESULTS_DIR


def recipe_policy():
    """The embedded default's diffusion policy, sized as in recipes/metaworld_default.json."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    recipe = json.loads((ROOT / RECIPE).read_text())["policy"]
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in recipe.items() if k != "type"}
    cfg = DiffusionConfig(
        input_features={"observation.state": PolicyFeature(FeatureType.STATE, (39,)),
                        "observation.environment_state": PolicyFeature(FeatureType.ENV, (50,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (4,))}, **kwargs)
    torch.manual_seed(0)
    return DiffusionPolicy(cfg)


def bench_embedding(policy, batch_size=256, repeats=5):
    from lerobot_amf.configs import AMFSelectionConfig
    from lerobot_amf.embeddings.kinds import DEFAULT_TARGET
    from lerobot_amf.families import make_embedder

    cfg = policy.config
    b = {"observation.state": torch.randn(batch_size, cfg.n_obs_steps, 39),
         "observation.environment_state": torch.zeros(batch_size, cfg.n_obs_steps, 50),
         "action": torch.randn(batch_size, cfg.horizon, 4),
         "action_is_pad": torch.zeros(batch_size, cfg.horizon, dtype=torch.bool)}
    b["observation.environment_state"][:, :, 3] = 1
    obs = {k: b[k][:, -1] for k in ("observation.state", "observation.environment_state")}  # (B, D), as from an env
    sel = AMFSelectionConfig()  # the amf strategy's defaults
    emb = make_embedder(policy, kind=sel.kernel, dim=sel.embedding_dim, n_draws=sel.n_draws, layers=sel.kernel_layers,
                        target_steps=sel.pseudo_target_steps)
    target_passes = len(emb.target_timesteps) if DEFAULT_TARGET[sel.kernel] == "self" else 0
    policy.eval()

    def training():
        with torch.no_grad():
            policy.forward(b)

    def inference():
        policy.reset()
        policy.select_action(dict(obs))  # empty action queue: one predict_action_chunk

    runs = {"training": training, "inference": inference, "embedding": lambda: emb.embed(b)}
    for fn in runs.values():  # warm-up
        fn()
    times = {name: [] for name in runs}
    for _ in range(repeats):  # interleaved, so all see the same machine load
        for name, fn in runs.items():
            s = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - s)
    rate = {name: batch_size / np.median(t) for name, t in times.items()}
    target = DEFAULT_TARGET[sel.kernel]  # expert: the batch's own action chunk; self: the policy's sample
    return {"batch_size": batch_size, "kernel": sel.kernel, "kernel_layers": emb.n_layers, "target": target,
            "n_draws": sel.n_draws, "pseudo_target": emb.record().get("pseudo_target") if target == "self" else None,
            "unet_passes_per_state": {"training": 1, "inference": int(policy.diffusion.num_inference_steps),
                                      "embedding": target_passes + sel.n_draws},
            "training_forward": "policy.forward(batch) (training loss, no grad)",
            "inference_forward": "policy.reset(); policy.select_action(obs) -> predict_action_chunk",
            "training_states_per_s": rate["training"], "inference_states_per_s": rate["inference"],
            "embedding_states_per_s": rate["embedding"],
            "ratio_vs_training": rate["embedding"] / rate["training"],
            "ratio_vs_inference": rate["embedding"] / rate["inference"]}


def bench_selection_vs_round(policy):
    """One amf selection vs one round of fine-tuning (300 steps, batch 64) on the same demos."""
    from lerobot.configs.default import DatasetConfig
    from lerobot.datasets.factory import make_dataset
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_amf.configs import AMFSelectionConfig, AMFTrainPipelineConfig
    from lerobot_amf.data import DatasetRef, fast_window_reads, write_demos
    from lerobot_amf.envs.metaworld_state import MetaworldCatalog, MetaworldStateEnvConfig
    from lerobot_amf.selection import SelectionContext
    from lerobot_amf.selection.amf import AMFStrategy
    from lerobot_amf.sources.metaworld import MetaworldExpertSource
    from lerobot_amf.train import make_accelerator
    from lerobot_amf.training import train_steps

    pool = ["reach-v3", "window-open-v3", "drawer-close-v3", "button-press-topdown-v3"]
    root = Path(tempfile.mkdtemp())
    src = MetaworldExpertSource(seed=0)
    alloc = {"reach-v3": 12, "window-open-v3": 12, "drawer-close-v3": 1, "button-press-topdown-v3": 1}
    write_demos("local/pre", root / "pre", src.fps, src.features(), [d for t, k in alloc.items() for d in src.pull(t, k, set())])
    fine = MetaworldExpertSource(seed=1, namespace="fine")
    write_demos("local/fine", root / "fine", src.fps, src.features(), [d for t in pool for d in fine.pull(t, 2, set())])
    cfg = AMFTrainPipelineConfig(dataset=DatasetConfig(repo_id="local/fine", root=str(root / "fine")),
                                 env=MetaworldStateEnvConfig(task=",".join(pool)), policy=policy.config,
                                 batch_size=64, num_workers=0, output_dir=root / "out")
    cfg.optimizer, cfg.scheduler = policy.config.get_optimizer_preset(), policy.config.get_scheduler_preset()
    ds = fast_window_reads(make_dataset(cfg))  # read as a run reads its demos
    pre, post = make_pre_post_processors(policy.config, dataset_stats=ds.meta.stats)
    ctx = SelectionContext(
        round_index=1, pool=pool, target_weights={t: 0.25 for t in pool}, counts={t: 2 for t in pool},
        capacity={t: None for t in pool}, rng=np.random.default_rng(0), policy=policy, preprocessor=pre,
        postprocessor=post, pretrain_dataset=DatasetRef("local/pre", root / "pre"),
        demo_dataset=DatasetRef("local/fine", root / "fine"), env_cfg=cfg.env, vocabulary=MetaworldCatalog().vocabulary(pool))
    s = time.perf_counter()
    sel = AMFStrategy(AMFSelectionConfig()).select(ctx, 4)
    t_sel = time.perf_counter() - s
    accelerator = make_accelerator(cfg)
    prepared = accelerator.prepare(policy)
    steps = 300
    metrics, _, _ = train_steps(dataclasses.replace(cfg, steps=steps), prepared, ds, pre, accelerator, steps,
                                desc="Fine-tuning round (timing)")
    return {"demos_in_hand": sel.details["n_demos_in_hand"], "states_per_demo": AMFSelectionConfig().states_per_demo, "pool": pool,
            "selection_s": t_sel, "round_steps": steps, "round_finetune_s": metrics["seconds"],
            "ratio": t_sel / metrics["seconds"], "picks": sel.tasks}


STUDY_RUN = RUNS_DIR / "sample_efficiency" / "skewed__seed1__amf__shared_replay"


@dataclasses.dataclass
class FinishedRun:
    """A finished run re-opened where its last round left it: its final checkpoint, its demos, its
    generalist's pretraining demos, and the selection context a next round would get."""

    run_dir: Path
    start: dict
    rounds: int
    checkpoint: Path  # the last round's
    policy: object
    pre: object
    post: object
    demos: object  # DatasetRef
    pretrain: object  # DatasetRef
    counts: dict

    @property
    def pool(self) -> list[str]:
        return self.start["pool"]

    def context(self):
        from lerobot_amf.envs.metaworld_state import MetaworldCatalog, MetaworldStateEnvConfig
        from lerobot_amf.selection import SelectionContext

        return SelectionContext(
            round_index=self.rounds, pool=self.pool, target_weights=self.start["target_weights"], counts=self.counts,
            capacity={t: None for t in self.pool}, rng=np.random.default_rng([self.start["seed"], self.rounds]),
            policy=self.policy, preprocessor=self.pre, postprocessor=self.post, pretrain_dataset=self.pretrain,
            demo_dataset=self.demos,
            # the rollout fallback's episodes as long as the run's (where its start record says)
            env_cfg=MetaworldStateEnvConfig(task=",".join(self.pool),
                                            **({"episode_length": self.start["episode_length"]}
                                               if "episode_length" in self.start else {})),
            vocabulary=MetaworldCatalog().vocabulary(self.pool))

    def round_seconds(self, steps: int, replay_fraction: float = 0.5, batch_size: int = 64) -> float:
        """One fine-tuning round from the final checkpoint as the studies run it (``steps`` steps,
        ``replay_fraction`` of each batch from the pretraining demos)."""
        from lerobot.configs.default import DatasetConfig
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
        from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

        from lerobot_amf.configs import AMFTrainPipelineConfig
        from lerobot_amf.data import fast_window_reads
        from lerobot_amf.envs.metaworld_state import MetaworldStateEnvConfig
        from lerobot_amf.train import make_accelerator
        from lerobot_amf.training import train_steps

        demos, pretrain = self.demos, self.pretrain
        cfg = AMFTrainPipelineConfig(dataset=DatasetConfig(repo_id=demos.repo_id, root=str(demos.root)),
                                     env=MetaworldStateEnvConfig(task=",".join(self.pool)), policy=self.policy.config,
                                     batch_size=batch_size, num_workers=0, output_dir=Path(tempfile.mkdtemp()) / "out")
        cfg.optimizer, cfg.scheduler = self.policy.config.get_optimizer_preset(), self.policy.config.get_scheduler_preset()
        accelerator = make_accelerator(cfg)
        prepared = accelerator.prepare(DiffusionPolicy.from_pretrained(str(self.checkpoint)))

        def windows(ref):
            return fast_window_reads(LeRobotDataset(ref.repo_id, root=ref.root, delta_timestamps=delta_of(self.policy, ref)))
        metrics, _, _ = train_steps(dataclasses.replace(cfg, steps=steps), prepared, windows(demos), self.pre, accelerator,
                                    steps, desc="Fine-tuning round (timing)", replay=windows(pretrain),
                                    replay_fraction=replay_fraction)
        return metrics["seconds"]


def finished_run(run_dir: Path, cache_dir: Path | None = None) -> FinishedRun | None:
    """``run_dir`` re-opened (None when it is not on this machine). Its generalist is looked up by
    name in ``cache_dir`` (default: the studies' ``<runs>/lerobot_home/lerobot_amf_cache``)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_amf.data import DatasetRef
    from lerobot_amf.envs.metaworld_state import MetaworldCatalog

    ledger = run_dir / "amf_ledger.jsonl"
    if not ledger.exists():
        return None
    start = next(r for r in map(json.loads, ledger.read_text().splitlines()) if r["event"] == "run_start")
    cache_dir = cache_dir or run_dir.parent / "lerobot_home" / "lerobot_amf_cache"
    generalist = cache_dir / Path(start["model"]["pretrained_path"]).name
    rounds = len(start["demos_per_round"])
    checkpoint = run_dir / "checkpoints" / f"round_{rounds - 1:02d}" / "pretrained_model"
    policy = DiffusionPolicy.from_pretrained(str(checkpoint))
    policy.eval()
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(checkpoint))
    demos = DatasetRef("local/amf_demos", run_dir / "demos")
    counts = {t: 0 for t in start["pool"]}
    task_of = MetaworldCatalog().vocabulary(start["pool"]).task_of_instruction
    for episode in LeRobotDataset(demos.repo_id, root=demos.root).meta.episodes:
        counts[task_of[episode["tasks"][0]]] += 1
    return FinishedRun(run_dir, start, rounds, checkpoint, policy, pre, post, demos,
                       DatasetRef("local/amf_pretrain_demos", generalist / "pretrain_demos"), counts)


def bench_study_selection(run_dir: Path = STUDY_RUN, repeats: int = 2, steps: int = 300):
    """(d): see the module docstring. None when the study run is not on this machine."""
    from lerobot_amf.configs import AMFSelectionConfig
    from lerobot_amf.selection.amf import AMFStrategy

    run = finished_run(run_dir)
    if run is None:
        return None
    pool, rounds = run.pool, run.rounds

    def select(floor: float):
        ctx = run.context()
        s = time.perf_counter()
        sel = AMFStrategy(AMFSelectionConfig(target_mass_floor=floor)).select(ctx, 4)
        return time.perf_counter() - s, sel

    floors = {"default": AMFSelectionConfig().target_mass_floor, "none": 0.0}
    seconds, sels = {k: [] for k in floors}, {}
    for _ in range(repeats):  # interleaved, so both see the same machine load
        for name, floor in floors.items():
            t, sels[name] = select(floor)
            seconds[name].append(t)
    round_s = run.round_seconds(steps)
    out = {"run": run_dir.name, "selection": f"round {rounds + 1} (after the run's {rounds} rounds: its final checkpoint)",
           "pool": pool, "demos_in_hand": sels["default"].details["n_demos_in_hand"],
           "demos_in_d": sels["default"].details["n_demos_in_d"], "round_steps": steps, "round_batch": 64,
           "round_replay_fraction": 0.5, "round_finetune_s": round_s, "repeats": repeats}
    for name, floor in floors.items():
        embedded = sels[name].details["embedded_frames"]
        out[f"floor_{name}"] = {
            "target_mass_floor": floor, "selection_s": float(np.median(seconds[name])), "selection_s_all": seconds[name],
            "ratio": float(np.median(seconds[name])) / round_s, "picks": sels[name].tasks,
            "scores": sels[name].scores, "frames_sampled": embedded["sampled"],
            "task_frame_pairs_embedded": sum(embedded["per_task"].values()),
            "task_frame_pairs_possible": embedded["sampled"] * len(pool)}
    a, b = out["floor_default"], out["floor_none"]
    out["same_picks"] = a["picks"] == b["picks"]
    out["max_relative_score_difference"] = max(abs(a["scores"][t] - b["scores"][t]) / max(abs(b["scores"][t]), 1e-12)
                                               for t in pool)
    return out


def delta_of(policy, ref):
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    return resolve_delta_timestamps(policy.config, LeRobotDatasetMetadata(ref.repo_id, root=ref.root))


def bench_scoring(n_tasks=90, n_targets=10_000, dim=1024, states_per_task=100):
    from lerobot_amf.selection.gp import WeightSpacePosterior, greedy_batch, kernel_scale

    g = torch.Generator().manual_seed(0)
    targets = torch.randn(n_targets, dim, generator=g, dtype=torch.float64)
    cands = {f"task{i}": (torch.randn(states_per_task, dim, generator=g, dtype=torch.float64), None) for i in range(n_tasks)}
    post = WeightSpacePosterior(dim, sigma2=1.0, kappa=kernel_scale(targets))
    post.observe(torch.randn(500, dim, generator=g, dtype=torch.float64))
    out = {"tasks": n_tasks, "target_states": n_targets, "dim": dim, "states_per_candidate": states_per_task, "goal_s": 10.0}
    picks = {}
    for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        s = time.perf_counter()
        picks[name] = greedy_batch(post, cands, (targets, None), batch_size=1, score_dtype=dtype).picks
        out[f"seconds_per_pick_{name}"] = time.perf_counter() - s
    out["seconds_per_pick"] = out["seconds_per_pick_float32"]  # the default
    out["same_pick"] = picks["float32"] == picks["float64"]
    return out


# part name -> its key in the results (``--parts`` re-measures some and keeps the others' rows)
PARTS = {"embedding": ("embedding_vs_forward",), "scoring": ("scoring",), "selection": ("selection_vs_round",),
         "study": ("study_selection_vs_round",)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.selection_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="print the parts and the outputs; run nothing")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS),
                        help="(a) embedding, (c) scoring, (b) selection, (d) study; default: all. The committed rows "
                             "of the others are kept, each with the commit it was measured at")
    return parser


def main(argv=None):
    from lerobot_amf.envs import metaworld_state  # noqa: F401  (registers the env)

    args = build_parser().parse_args(argv)
    if args.dry_run:
        return dry_run("selection_cost", {
            "parts": ["(a) embedding vs forward throughput, recipe-sized diffusion policy",
                      "(c) greedy scoring, 90 tasks x 10k states, d=1024, float32 and float64",
                      "(b) one amf selection vs one fine-tuning round (300 steps, batch 64)",
                      f"(d) selection at the study's size on {STUDY_RUN.name}: "
                      + ("present" if (STUDY_RUN / "amf_ledger.jsonl").exists() else "absent, skipped")],
            "results": [RESULTS / "selection_cost.json", RESULTS / "selection_cost.png"]})
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    policy = recipe_policy()
    out = kept_parts(read_json(RESULTS / "selection_cost.json"), PARTS, args.parts)
    out.pop("measured_at_commit", None)  # per part now
    out.update({"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                            "python": sys.version.split()[0], "platform": platform.platform(),
                            "load_average_at_start": os.getloadavg()}, "partial": False})
    commit = measured_at_commit()

    def measure(part: str, label: str, fn):
        if part in args.parts:
            print(label, flush=True)
            row = fn()
            out[PARTS[part][0]] = None if row is None else {**row, "measured_at_commit": commit}
            print(json.dumps(out[PARTS[part][0]], indent=1), flush=True)

    measure("embedding", "(a) embedding vs forward ...", lambda: bench_embedding(policy))
    measure("scoring", "(c) scoring 90 tasks x 10k states, d=1024 ...", bench_scoring)
    measure("selection", "(b) selection vs one fine-tuning round ...", lambda: bench_selection_vs_round(policy))
    measure("study", f"(d) selection at the study's size ({STUDY_RUN.name}) ...", bench_study_selection)
    if out.get("study_selection_vs_round") is None:
        out["study_selection_vs_round"] = {"skipped": f"no study run at benchmarks/runs/sample_efficiency/{STUDY_RUN.name} "
                                                      "(python -m benchmarks.sample_efficiency makes it)"}
    out["machine"]["load_average_at_end"] = os.getloadavg()
    write_json(RESULTS / "selection_cost.json", out, newline=False, default=float)
    plot(out)
    a = out["embedding_vs_forward"]
    print(f"(a) embedding/training-forward throughput  = {a['ratio_vs_training']:.2f} (goal >= 0.8)")
    print(f"    embedding/inference-forward throughput = {a['ratio_vs_inference']:.2f} (goal >= 0.8)")
    print(f"(b) selection/round wall time    = {out['selection_vs_round']['ratio']:.3f} (goal <= 0.05)")
    c = out["scoring"]
    print(f"(c) 90 tasks x 10k states, d=1024: {c['seconds_per_pick']:.2f} s per pick (float64: "
          f"{c['seconds_per_pick_float64']:.2f} s) (goal < 10 s)")
    d = out["study_selection_vs_round"]
    if "skipped" not in d:
        print(f"(d) study size, selection/round wall time = {d['floor_default']['ratio']:.3f} "
              f"(no target-mass floor: {d['floor_none']['ratio']:.3f}) (goal <= 0.05); same picks: {d['same_picks']}")


def plot(out):
    plt = pyplot()
    d = out.get("study_selection_vs_round") or {"skipped": "not run"}
    fig, axes = plt.subplots(1, 3 if "skipped" in d else 4, figsize=(11 if "skipped" in d else 14.5, 3.4))
    a = out["embedding_vs_forward"]
    axes[0].bar(["training\nforward", "inference\nforward", "embedding"],
                [a["training_states_per_s"], a["inference_states_per_s"], a["embedding_states_per_s"]],
                color=["grey", "silver", "C0"])
    axes[0].set_title(f"(a) states/s; embedding ÷ training {a['ratio_vs_training']:.2f},\n"
                      f"÷ inference {a['ratio_vs_inference']:.2f} (goal ≥ 0.8)", fontsize=9)
    b = out["selection_vs_round"]
    axes[1].bar(["amf selection", f"fine-tune round\n({b['round_steps']} steps)"], [b["selection_s"], b["round_finetune_s"]], color=["C0", "grey"])
    axes[1].set_title(f"(b) seconds, ratio {b['ratio']:.3f} (goal ≤ 0.05)", fontsize=9)
    c = out["scoring"]
    axes[2].bar(["float32\n(default)", "float64"], [c["seconds_per_pick_float32"], c["seconds_per_pick_float64"]],
                color=["C0", "grey"])
    axes[2].axhline(c["goal_s"], color="r", ls="--", label="goal")
    axes[2].set_title("(c) one greedy pick, 90 tasks × 10k states,\nd=1024 (s)", fontsize=9)
    axes[2].legend(fontsize=8)
    if "skipped" not in d:
        a_, b_ = d["floor_default"], d["floor_none"]
        axes[3].bar(["selection\n(floor 0.001)", "selection\n(no floor)", f"fine-tune round\n({d['round_steps']} steps)"],
                    [a_["selection_s"], b_["selection_s"], d["round_finetune_s"]], color=["C0", "C1", "grey"])
        axes[3].set_title(f"(d) study size: {len(d['pool'])} tasks, {d['demos_in_hand']} demos (s);\n"
                          f"ratio {a_['ratio']:.3f} / {b_['ratio']:.3f} (goal ≤ 0.05)", fontsize=9)
    fig.suptitle(f"AMF selection cost on {out['machine']['cpus']} CPU cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(RESULTS / "selection_cost.png", dpi=110)


if __name__ == "__main__":
    main()
