"""Gradient steps on a LeRobotDataset with LeRobot's own training pieces.

This is ``lerobot-train``'s inner loop (``make_optimizer_and_scheduler`` + ``update_policy``
under ``accelerate``) run for a given number of steps on a policy that persists across rounds;
only the sampler differs (``episode_aware_sampler``, which fixes LeRobot 0.4.4's subset bug).
"""

from __future__ import annotations

import dataclasses
import time

import torch
from lerobot.utils.utils import cycle
from lerobot.optim.factory import make_optimizer_and_scheduler
from lerobot.scripts.lerobot_train import update_policy
from lerobot.utils.logging_utils import AverageMeter, MetricsTracker
from tqdm import tqdm

from lerobot_amf.data import episode_aware_sampler
from lerobot_amf.training.replay import replay_loader_parts


def loss_summary(losses: list[float]) -> dict:
    """Mean loss over the first and the last window of steps (a fifth of them, 1 to 50)."""
    window = max(1, min(50, len(losses) // 5 or 1))
    return {"loss_first": float(sum(losses[:window]) / window) if losses else None,
            "loss_last": float(sum(losses[-window:]) / window) if losses else None}


def train_steps(cfg, policy, dataset, preprocessor, accelerator, steps: int, desc: str = "Training",
                replay=None, replay_fraction: float = 0.0):
    """Run ``steps`` optimizer steps of ``policy`` (already ``accelerator.prepare``d) on ``dataset``.

    A fresh optimizer and LR schedule (the policy's preset, sized to ``steps``) per call, over
    the parameters that require grad (a routed policy's active partition). With ``replay`` (a
    LeRobotDataset), each batch mixes in ``replay_fraction`` of its frames (``training.replay``).
    Returns (metrics dict, optimizer, lr_scheduler) — the latter two for checkpointing.
    """
    round_cfg = dataclasses.replace(cfg, steps=max(steps, 1))
    unwrapped = accelerator.unwrap_model(policy)
    optimizer, lr_scheduler = make_optimizer_and_scheduler(round_cfg, unwrapped)
    drop_last_frames = getattr(unwrapped.config, "drop_n_last_frames", 0)
    loader_args = {"num_workers": cfg.num_workers, "pin_memory": accelerator.device.type == "cuda",
                   "prefetch_factor": 2 if cfg.num_workers > 0 else None}
    if replay is None:
        sampler = episode_aware_sampler(dataset, drop_n_last_frames=drop_last_frames, shuffle=True)
        dataloader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler,
                                                 drop_last=False, **loader_args)
    else:
        mix, batch_sampler, collate = replay_loader_parts(dataset, replay, cfg.batch_size, replay_fraction,
                                                          drop_last_frames, seed=cfg.seed or 0)
        dataloader = torch.utils.data.DataLoader(mix, batch_sampler=batch_sampler, collate_fn=collate, **loader_args)
    optimizer, dataloader, lr_scheduler = accelerator.prepare(optimizer, dataloader, lr_scheduler)
    meters = {
        "loss": AverageMeter("loss", ":.3f"),
        "grad_norm": AverageMeter("grdn", ":.3f"),
        "lr": AverageMeter("lr", ":0.1e"),
        "update_s": AverageMeter("updt_s", ":.3f"),
        "dataloading_s": AverageMeter("data_s", ":.3f"),
    }
    tracker = MetricsTracker(
        cfg.batch_size, dataset.num_frames, dataset.num_episodes, meters, accelerator=accelerator
    )
    losses = []
    start = time.perf_counter()
    batches = cycle(dataloader)
    bar = tqdm(total=steps, desc=desc, unit="step", disable=not accelerator.is_main_process, leave=False)
    for _ in range(steps):
        batch = preprocessor(next(batches))
        tracker, _ = update_policy(
            tracker, policy, batch, optimizer, cfg.optimizer.grad_clip_norm,
            accelerator=accelerator, lr_scheduler=lr_scheduler,
        )
        losses.append(tracker.loss.val)
        tracker.step()
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    metrics = {
        "steps": steps,
        "batch_size": cfg.batch_size,
        "num_processes": accelerator.num_processes,
        "frames": dataset.num_frames,
        "episodes": dataset.num_episodes,
        "replay": None if replay is None else {"fraction": replay_fraction, "frames": replay.num_frames,
                                               "episodes": replay.num_episodes},
        "trained_parameters": sum(p.numel() for p in unwrapped.parameters() if p.requires_grad),
        **loss_summary(losses),
        "seconds": round(time.perf_counter() - start, 2),
    }
    return metrics, optimizer, lr_scheduler
