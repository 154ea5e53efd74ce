"""What AMF selection costs, as ratios measured side by side in one run (machines are noisy).

(a) embedding throughput / plain forward (training-loss) throughput of the same policy, states/s
(b) one amf selection's wall time / one round's fine-tuning wall time, embedded default sizes
(c) greedy scoring of 90 tasks x 10,000 target states at d = 1024 (seconds per pick)

    python benchmarks/selection_cost.py            # writes benchmarks/results/selection_cost.{json,png}
"""

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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RESULTS = Path(__file__).parent / "results"


def recipe_policy():
    """The embedded default's diffusion policy, sized as in recipes/metaworld_default.json."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    recipe = json.loads((Path(__file__).parents[1] / "recipes" / "metaworld_default.json").read_text())["policy"]
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in recipe.items() if k != "type"}
    cfg = DiffusionConfig(
        input_features={"observation.state": PolicyFeature(FeatureType.STATE, (39,)),
                        "observation.environment_state": PolicyFeature(FeatureType.ENV, (50,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (4,))}, **kwargs)
    torch.manual_seed(0)
    return DiffusionPolicy(cfg), recipe


def bench_embedding(policy, batch_size=256, repeats=5):
    from lerobot_amf.embeddings import make_embedder

    cfg = policy.config
    b = {"observation.state": torch.randn(batch_size, cfg.n_obs_steps, 39),
         "observation.environment_state": torch.zeros(batch_size, cfg.n_obs_steps, 50),
         "action": torch.randn(batch_size, cfg.horizon, 4),
         "action_is_pad": torch.zeros(batch_size, cfg.horizon, dtype=torch.bool)}
    b["observation.environment_state"][:, :, 3] = 1
    from lerobot_amf.configs import AMFSelectionConfig

    sel = AMFSelectionConfig()  # the amf strategy's defaults
    emb = make_embedder(policy, dim=sel.embedding_dim, n_draws=sel.n_draws, target_steps=sel.pseudo_target_steps)
    emb.embed(b), policy.forward(b)  # warm-up
    t_fwd, t_emb = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine load
        s = time.perf_counter()
        with torch.no_grad():
            policy.forward(b)
        t_fwd.append(time.perf_counter() - s)
        s = time.perf_counter()
        emb.embed(b)
        t_emb.append(time.perf_counter() - s)
    fwd, em = batch_size / np.median(t_fwd), batch_size / np.median(t_emb)
    return {"batch_size": batch_size, "n_draws": sel.n_draws, "pseudo_target": emb.record().get("pseudo_target"),
            "forward_states_per_s": fwd, "embedding_states_per_s": em, "ratio": em / fwd}


def bench_selection_vs_round(policy, recipe):
    """One amf selection vs one round of fine-tuning (300 steps, batch 64) on the same demos."""
    from lerobot.configs.default import DatasetConfig
    from lerobot.datasets.factory import make_dataset
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_amf.configs import AMFSelectionConfig, AMFTrainPipelineConfig
    from lerobot_amf.data import write_demos
    from lerobot_amf.envs.metaworld_state import MetaworldStateEnvConfig
    from lerobot_amf.selection import SelectionContext
    from lerobot_amf.selection.amf import AMFStrategy
    from lerobot_amf.sources.metaworld import MetaworldExpertSource
    from lerobot_amf.data import DatasetRef
    from lerobot_amf.envs.metaworld_state import task_vocabulary
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
    ds = make_dataset(cfg)
    pre, post = make_pre_post_processors(policy.config, dataset_stats=ds.meta.stats)
    ctx = SelectionContext(
        round_index=1, pool=pool, target_weights={t: 0.25 for t in pool}, counts={t: 2 for t in pool},
        capacity={t: None for t in pool}, rng=np.random.default_rng(0), policy=policy, preprocessor=pre,
        postprocessor=post, pretrain_dataset=DatasetRef("local/pre", root / "pre"),
        demo_dataset=DatasetRef("local/fine", root / "fine"), env_cfg=cfg.env, plan=task_vocabulary(pool))
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


def bench_scoring(n_tasks=90, n_targets=10_000, dim=1024, states_per_task=100):
    from lerobot_amf.selection.gp import WeightSpacePosterior, greedy_batch, kernel_scale

    g = torch.Generator().manual_seed(0)
    targets = torch.randn(n_targets, dim, generator=g, dtype=torch.float64)
    cands = {f"task{i}": (torch.randn(states_per_task, dim, generator=g, dtype=torch.float64), None) for i in range(n_tasks)}
    post = WeightSpacePosterior(dim, sigma2=1.0, kappa=kernel_scale(targets))
    post.observe(torch.randn(500, dim, generator=g, dtype=torch.float64))
    s = time.perf_counter()
    greedy_batch(post, cands, (targets, None), batch_size=1)
    t1 = time.perf_counter() - s
    return {"tasks": n_tasks, "target_states": n_targets, "dim": dim, "states_per_candidate": states_per_task,
            "seconds_per_pick": t1, "goal_s": 10.0}


def main():
    from lerobot_amf.envs import metaworld_state  # noqa: F401  (registers the env)

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    policy, recipe = recipe_policy()
    out = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": sys.version.split()[0],
                       "platform": platform.platform()},
           "partial": False}
    print("(a) embedding vs forward ...", flush=True)
    out["embedding_vs_forward"] = bench_embedding(policy)
    print(json.dumps(out["embedding_vs_forward"], indent=1), flush=True)
    print("(c) scoring 90 tasks x 10k states, d=1024 ...", flush=True)
    out["scoring"] = bench_scoring()
    print(json.dumps(out["scoring"], indent=1), flush=True)
    print("(b) selection vs one fine-tuning round ...", flush=True)
    out["selection_vs_round"] = bench_selection_vs_round(policy, recipe)
    print(json.dumps(out["selection_vs_round"], indent=1), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "selection_cost.json").write_text(json.dumps(out, indent=2, default=float))
    plot(out)
    print(f"(a) embedding/forward throughput = {out['embedding_vs_forward']['ratio']:.2f} (goal >= 0.8)")
    print(f"(b) selection/round wall time    = {out['selection_vs_round']['ratio']:.3f} (goal <= 0.05)")
    print(f"(c) 90 tasks x 10k states, d=1024: {out['scoring']['seconds_per_pick']:.2f} s per pick (goal < 10 s)")


def plot(out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    a = out["embedding_vs_forward"]
    axes[0].bar(["forward", "embedding"], [a["forward_states_per_s"], a["embedding_states_per_s"]], color=["grey", "C0"])
    axes[0].set_title(f"(a) states/s, ratio {a['ratio']:.2f} (goal ≥ 0.8)", fontsize=9)
    b = out["selection_vs_round"]
    axes[1].bar(["amf selection", f"fine-tune round\n({b['round_steps']} steps)"], [b["selection_s"], b["round_finetune_s"]], color=["C0", "grey"])
    axes[1].set_title(f"(b) seconds, ratio {b['ratio']:.3f} (goal ≤ 0.05)", fontsize=9)
    c = out["scoring"]
    axes[2].bar(["one greedy pick"], [c["seconds_per_pick"]], color="C0")
    axes[2].axhline(c["goal_s"], color="r", ls="--", label="goal")
    axes[2].set_title("(c) 90 tasks × 10k states, d=1024 (s)", fontsize=9)
    axes[2].legend(fontsize=8)
    fig.suptitle(f"AMF selection cost on {out['machine']['cpus']} CPU cores", fontsize=10)
    fig.tight_layout()
    fig.savefig(RESULTS / "selection_cost.png", dpi=110)


if __name__ == "__main__":
    main()
