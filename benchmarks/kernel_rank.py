"""Does the amf kernel see what the generalist has not learned, and how many directions does it span?

On the embedded default's generalist (recipes/metaworld_default.json, skewed pretraining; its
cached checkpoint is reused or trained) and on fresh held-out expert demos of each task:
- the policy's held-out error per task: its denoising loss at the expert's actions and the mean
  squared error of its own sampled chunk against the expert's (normalised units);
- per kernel (kind, layers): the mean prior variance |φ|²/κ of each task's held-out frames
  (κ = mean |φ|² over the pretraining frames), the participation ratio (Σλ)²/Σλ² of the kernel
  matrix over the pretraining frames (raw and JL-projected), and the mean cosine of one state
  embedded under its own task and under another task.

    python -m benchmarks.kernel_rank [--pretrain_steps N]   # writes benchmarks/results/kernel_rank.json
    python -m benchmarks.kernel_rank --dry-run              # the configuration and the output, nothing run

The generalist is cached where the CLI caches it (``$HF_LEROBOT_HOME/lerobot_amf_cache``).
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RECIPE, RESULTS_DIR, ROOT, dry_run, write_json

RESULTS = RESULTS_DIR
KERNELS = [("self_gradient", 1), ("gradient", 1), ("gradient", 2), ("gradient", 3), ("gradient", 4)]


def recipe_config(pretrain_steps: int | None):
    """The embedded default's config (validated) and its task pool, as the CLI reads them."""
    import draccus

    from lerobot_amf.configs import AMFTrainPipelineConfig
    from lerobot_amf.envs.tasks import task_catalog

    with tempfile.TemporaryDirectory() as tmp:  # an output directory that does not exist: nothing is written there
        args = [f"--output_dir={tmp}/unused"]
        if pretrain_steps is not None:
            args.append(f"--amf.pretrain.steps={pretrain_steps}")
        cfg = draccus.parse(config_class=AMFTrainPipelineConfig, config_path=str(ROOT / RECIPE), args=args)
        cfg.validate()
    catalog = task_catalog(cfg.env)
    pool = catalog.run_pool(cfg.amf.tasks, cfg.env)
    return cfg, catalog, pool


def generalist(pretrain_steps: int | None):
    """(policy, preprocessor, pretraining-demos ref, pool, config, task vocabulary) of the embedded
    default; its generalist is the CLI's (same pretraining source, same cache)."""
    from accelerate import Accelerator
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_amf.pretrain import ensure_pretrained, pretrain_demos_ref, read_pretrain_record
    from lerobot_amf.sources import make_source

    cfg, catalog, pool = recipe_config(pretrain_steps)
    source = make_source(cfg.amf, cfg.env, seed=cfg.seed, catalog=catalog, role="pretrain")
    path = ensure_pretrained(cfg, pool, Accelerator(cpu=True), source)
    policy = DiffusionPolicy.from_pretrained(path).eval()
    preprocessor, _ = make_pre_post_processors(policy.config, pretrained_path=str(path))
    return (policy, preprocessor, pretrain_demos_ref(path, read_pretrain_record(path)), pool, cfg,
            catalog.vocabulary(pool))


def frames(policy, preprocessor, ref, task_of_instruction, per_demo=16, seed=0):
    """``per_demo`` sampled frames of every demo (preprocessed, with action chunks) and their tasks."""
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_amf.data import read_frames

    meta = LeRobotDataset(ref.repo_id, root=ref.root).meta
    ds = LeRobotDataset(ref.repo_id, root=ref.root, delta_timestamps=resolve_delta_timestamps(policy.config, meta))
    rng = np.random.default_rng(seed)
    positions, tasks = [], []
    for e in range(meta.total_episodes):
        row = meta.episodes[e]
        start, stop = row["dataset_from_index"], row["dataset_to_index"]
        k = min(per_demo, stop - start)
        positions += sorted(rng.choice(np.arange(start, stop), k, replace=False).tolist())
        tasks += [task_of_instruction[row["tasks"][0]]] * k
    return preprocessor(torch.utils.data.default_collate(read_frames(ds, positions))), np.array(tasks)


def participation_ratio(phi: torch.Tensor) -> float:
    lam = torch.linalg.eigvalsh((phi @ phi.T).double()).clamp_min(0)
    return float(lam.sum() ** 2 / (lam**2).sum())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernel_rank", description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain_steps", type=int, default=None, help="override the recipe's pretraining steps")
    parser.add_argument("--heldout_per_task", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS / "kernel_rank.json", help="the result file")
    parser.add_argument("--dry-run", action="store_true", help="print the configuration and the output; run nothing")
    return parser


def main(argv=None):
    from lerobot_amf.data import DatasetRef, write_demos
    from lerobot_amf.families import family_of, make_embedder
    from lerobot_amf.families.diffusion import sampled_action_chunk
    from lerobot_amf.selection.amf import condition_on_task
    from lerobot_amf.sources.metaworld import MetaworldExpertSource

    args = build_parser().parse_args(argv)
    if args.dry_run:
        cfg, _, pool = recipe_config(args.pretrain_steps)
        return dry_run("kernel_rank", {
            "recipe": RECIPE.as_posix(), "pool": ", ".join(pool), "pretraining steps": cfg.amf.pretrain.steps,
            "held-out demos per task": args.heldout_per_task,
            "kernels": [f"{kind}, {layers} layer(s)" for kind, layers in KERNELS], "results": args.output})
    policy, preprocessor, pretrain_ref, pool, cfg, vocab = generalist(args.pretrain_steps)
    source = MetaworldExpertSource(seed=cfg.seed + 4242, action_noise=cfg.amf.action_noise, namespace="heldout")
    heldout = DatasetRef("local/heldout", Path(tempfile.mkdtemp()) / "heldout")
    write_demos(heldout.repo_id, heldout.root, source.fps, source.features(),
                [d for t in pool for d in source.pull(t, args.heldout_per_task, set())])
    held, held_task = frames(policy, preprocessor, heldout, vocab.task_of_instruction)
    pre, pre_task = frames(policy, preprocessor, pretrain_ref, vocab.task_of_instruction)

    def per_task(values, tasks):
        return {t: float(values[torch.as_tensor(tasks == t)].mean()) for t in pool}

    torch.manual_seed(0)
    with torch.no_grad():
        sample = sampled_action_chunk(policy, held)
    out = {"pretrain_steps": cfg.amf.pretrain.steps, "pretrain_demos": cfg.amf.pretrain.demos_covered,
           "heldout_frames": int(len(held_task)), "pretraining_frames": int(len(pre_task)),
           "heldout_denoising_error": per_task(-family_of(policy).loglik(policy, held, 8, 0), held_task),
           "heldout_action_mse": per_task(((sample - held["action"]) ** 2).mean(dim=(1, 2)), held_task),
           "kernels": {}}
    other = condition_on_task(pre, pool[-1], vocab.one_hot, None)
    not_last = torch.as_tensor(pre_task != pool[-1])
    for kind, layers in KERNELS:
        emb = make_embedder(policy, kind=kind, dim=cfg.amf.selection.embedding_dim, n_draws=cfg.amf.selection.n_draws,
                            layers=layers, target_steps=cfg.amf.selection.pseudo_target_steps)
        raw = emb.raw(pre).double()
        kappa = float((raw**2).sum(1).mean())
        held_raw = emb.raw(held).double()
        cosine = torch.nn.functional.cosine_similarity(raw[not_last], emb.raw(other).double()[not_last])
        out["kernels"][f"{kind}_{layers}"] = {
            "layers": emb.record()["layers"], "raw_dim": emb.raw_dim, "dim": emb.dim,
            "participation_ratio_raw": participation_ratio(raw),
            "participation_ratio_projected": participation_ratio(emb.projection(raw.float()).double()),
            "heldout_prior_variance": per_task((held_raw**2).sum(1) / kappa, held_task),
            "cosine_same_state_other_task": float(cosine.mean()),
        }
        print(kind, layers, json.dumps(out["kernels"][f"{kind}_{layers}"]), flush=True)
    write_json(args.output, out, newline=False)
    print(json.dumps({k: v for k, v in out.items() if k != "kernels"}, indent=1))


if __name__ == "__main__":
    main()
