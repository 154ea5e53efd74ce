"""How many directions does the flow heads' kernel span, by layers, next to diffusion's?

A real tiny SmolVLA (``benchmarks/tiny_smolvla.py``: LeRobot's ``SmolVLAPolicy``, random VLM,
built offline) is first fine-tuned briefly on a LIBERO-shaped dataset (``benchmarks/libero_dataset.py``:
real LIBERO instructions, two cameras, 8-dim state, 7-dim actions), so its gradients are not
those of an untrained head. Then, for ``kernel_layers`` = 1, 2, 3 (the output projection, plus the
last one or two action-expert layers' MLP output projections), every frame's loss-gradient
embedding at its own expert chunk is taken and the participation ratio (Σλ)²/Σλ² of the kernel
matrix over the frames is measured, raw and JL-projected to the default dimension. Diffusion's
figures on the embedded default's generalist are read from ``kernel_rank.json`` (the same
measure) and reported beside them.

What this does not show: a SmolVLA with real weights (its VLM is GB-sized and on the Hub) or real
LIBERO frames; the ratio of a tiny model on synthetic frames says how the layers add directions,
not how a real SmolVLA's kernel looks.

    python -m benchmarks.flow_kernel_rank            # writes benchmarks/results/flow_kernel_rank.json
    python -m benchmarks.flow_kernel_rank --dry-run  # the configuration and the output, nothing run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, dry_run, measured_at_commit, read_json, write_json

RESULTS = RESULTS_DIR / "flow_kernel_rank.json"
DIFFUSION = RESULTS_DIR / "kernel_rank.json"
LAYERS = (1, 2, 3)
TASKS = "libero_spatial/0,libero_object/0,libero_goal/0"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flow_kernel_rank", description=__doc__.splitlines()[0])
    parser.add_argument("--episodes_per_task", type=int, default=4)
    parser.add_argument("--frames_per_episode", type=int, default=12)
    parser.add_argument("--train_steps", type=int, default=150, help="fine-tuning steps before the measure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--dry-run", action="store_true", help="print the configuration and the output; run nothing")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if args.dry_run:
        return dry_run("flow_kernel_rank", {
            "policy": "tiny SmolVLA (benchmarks/tiny_smolvla.py), random VLM", "tasks": TASKS,
            "episodes per task": args.episodes_per_task, "frames per episode": args.frames_per_episode,
            "fine-tuning steps": args.train_steps, "kernel layers": list(LAYERS), "results": args.output})

    import torch
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy

    from benchmarks.kernel_rank import participation_ratio
    from benchmarks.libero_dataset import build_libero_dataset
    from benchmarks.tiny_smolvla import tiny_smolvla_config
    from lerobot_amf.data import read_frames
    from lerobot_amf.embeddings.kinds import DEFAULT_DIM
    from lerobot_amf.envs.libero import LiberoCatalog
    from lerobot_amf.families import make_embedder

    torch.manual_seed(args.seed)
    work = Path(tempfile.mkdtemp())
    catalog = LiberoCatalog()
    pool = catalog.parse_pool(TASKS)
    root = build_libero_dataset(work / "libero", [catalog.instruction(t) for t in pool], args.episodes_per_task,
                                args.frames_per_episode, image_size=32, episodes_per_file=args.episodes_per_task,
                                video=False)  # frames stored as images: no video decoder needed
    cfg = tiny_smolvla_config(work / "tiny_smolvlm")
    meta = LeRobotDataset("lerobot/libero", root=root).meta
    policy = SmolVLAPolicy(cfg)
    pre, _ = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    ds = LeRobotDataset("lerobot/libero", root=root, delta_timestamps=resolve_delta_timestamps(cfg, meta))
    frames = pre(torch.utils.data.default_collate(read_frames(ds, list(range(len(ds))))))

    started = time.perf_counter()
    policy.train()
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    generator = torch.Generator().manual_seed(args.seed)
    losses = []
    for step in range(args.train_steps):
        rows = torch.randint(0, len(ds), (8,), generator=generator)
        batch = {k: v[rows] if isinstance(v, torch.Tensor) else [v[i] for i in rows] if isinstance(v, list) else v
                 for k, v in frames.items()}
        loss, _ = policy.forward(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
        if step % 50 == 0:
            print(f"[flow_kernel_rank] fine-tuning step {step}/{args.train_steps}: loss {loss:.4f}", flush=True)
    policy.eval()
    trained_s = time.perf_counter() - started

    kernels = {}
    for layers in LAYERS:
        emb = make_embedder(policy, layers=layers, dim=DEFAULT_DIM, seed=args.seed)
        raw = torch.cat([emb.raw(chunk, target="expert") for chunk in _chunks(frames, 64)])
        kernels[f"gradient_{layers}"] = {
            "layers": emb.record()["layers"], "raw_dim": emb.raw_dim, "dim": emb.dim,
            "participation_ratio_raw": participation_ratio(raw.double()),
            "participation_ratio_projected": participation_ratio(emb.projection(raw.float()).double()),
        }
        print(f"[flow_kernel_rank] {layers} layer(s): raw {emb.raw_dim} dims, participation ratio "
              f"{kernels[f'gradient_{layers}']['participation_ratio_raw']:.2f}", flush=True)
    diffusion = read_json(DIFFUSION) or {}
    result = {
        "benchmark": "flow_kernel_rank", "measured_at_commit": measured_at_commit(),
        "policy": "tiny SmolVLA, random VLM weights (benchmarks/tiny_smolvla.py)",
        "parameters": sum(p.numel() for p in policy.parameters()),
        "frames": len(ds), "tasks": pool, "fine_tuning_steps": args.train_steps,
        "fine_tuning_loss_first_last": [losses[0], losses[-1]] if losses else None,
        "fine_tuning_seconds": round(trained_s, 1), "kernels": kernels,
        "diffusion_for_comparison": {
            "source": "kernel_rank.json: the embedded default's diffusion generalist on Metaworld",
            **{k: {"layers": v["layers"], "raw_dim": v["raw_dim"],
                   "participation_ratio_raw": v["participation_ratio_raw"]}
               for k, v in diffusion.get("kernels", {}).items() if k.startswith("gradient_")}},
    }
    write_json(args.output, result)
    print(json.dumps({k: round(v["participation_ratio_raw"], 2) for k, v in kernels.items()}))


def _chunks(batch: dict, size: int):
    import torch

    n = len(next(v for v in batch.values() if isinstance(v, torch.Tensor)))
    for start in range(0, n, size):
        rows = slice(start, start + size)
        yield {k: v[rows] if isinstance(v, (torch.Tensor, list)) else v for k, v in batch.items()}


if __name__ == "__main__":
    main()
