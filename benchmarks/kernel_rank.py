"""Does the amf kernel see what the generalist has not learned, and how many directions does it span?

On the embedded default's generalist (recipes/metaworld_default.json, skewed pretraining; its
cached checkpoint is reused or trained) and on fresh held-out expert demos of each task:
- the policy's held-out error per task: its denoising loss at the expert's actions and the mean
  squared error of its own sampled chunk against the expert's (normalised units);
- per kernel (kind, layers): the mean prior variance |φ|²/κ of each task's held-out frames
  (κ = mean |φ|² over the pretraining frames), the participation ratio (Σλ)²/Σλ² of the kernel
  matrix over the pretraining frames (raw and JL-projected), and the mean cosine of one state
  embedded under its own task and under another task.

    python benchmarks/kernel_rank.py [--pretrain_steps N]   # writes benchmarks/results/kernel_rank.json
"""

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
RESULTS = Path(__file__).parent / "results"
KERNELS = [("self_gradient", 1), ("gradient", 1), ("gradient", 2), ("gradient", 3), ("gradient", 4)]


def generalist(pretrain_steps: int | None):
    """(policy, preprocessor, pretraining-demos ref, pool, config) of the embedded default."""
    import draccus
    from accelerate import Accelerator
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_amf.configs import AMFTrainPipelineConfig
    from lerobot_amf.pretrain import ensure_pretrained, pretrain_demos_ref, read_pretrain_record

    recipe = Path(__file__).parents[1] / "recipes" / "metaworld_default.json"
    args = [f"--output_dir={tempfile.mkdtemp()}/unused"]
    if pretrain_steps is not None:
        args.append(f"--amf.pretrain.steps={pretrain_steps}")
    cfg = draccus.parse(config_class=AMFTrainPipelineConfig, config_path=str(recipe), args=args)
    cfg.validate()
    pool = cfg.env.task.split(",")
    path = ensure_pretrained(cfg, pool, Accelerator(cpu=True))
    policy = DiffusionPolicy.from_pretrained(path).eval()
    preprocessor, _ = make_pre_post_processors(policy.config, pretrained_path=str(path))
    return policy, preprocessor, pretrain_demos_ref(path, read_pretrain_record(path)), pool, cfg


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


def main():
    from lerobot_amf.data import DatasetRef, write_demos
    from lerobot_amf.embeddings import make_embedder
    from lerobot_amf.envs.metaworld_state import task_vocabulary
    from lerobot_amf.families import family_of
    from lerobot_amf.families.diffusion import sampled_action_chunk
    from lerobot_amf.selection.amf import condition_on_task
    from lerobot_amf.sources.metaworld import MetaworldExpertSource

    parser = argparse.ArgumentParser()
    parser.add_argument("--pretrain_steps", type=int, default=None, help="override the recipe's pretraining steps")
    parser.add_argument("--heldout_per_task", type=int, default=3)
    args = parser.parse_args()
    policy, preprocessor, pretrain_ref, pool, cfg = generalist(args.pretrain_steps)
    vocab = task_vocabulary(pool)
    source = MetaworldExpertSource(seed=cfg.seed + 4242, action_noise=cfg.amf.action_noise, namespace="heldout")
    heldout = DatasetRef("local/heldout", Path(tempfile.mkdtemp()) / "heldout")
    write_demos(heldout.repo_id, heldout.root, source.fps, source.features(),
                [d for t in pool for d in source.pull(t, args.heldout_per_task, set())])
    held, held_task = frames(policy, preprocessor, heldout, vocab["task_of_instruction"])
    pre, pre_task = frames(policy, preprocessor, pretrain_ref, vocab["task_of_instruction"])

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
    other = condition_on_task(pre, pool[-1], vocab["vocabulary"], None)
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
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kernel_rank.json").write_text(json.dumps(out, indent=2))
    print(json.dumps({k: v for k, v in out.items() if k != "kernels"}, indent=1))


if __name__ == "__main__":
    main()
