"""Gradient steps on a LeRobotDataset with LeRobot's own training pieces.

This is LeRobot 0.6.1 ``lerobot-train``'s inner loop (``make_optimizer_and_scheduler`` +
``update_policy`` under ``accelerate``, its sampler, DataLoader options and meters, and its
conversion of uint8 video frames to float) run for a given number of steps on a policy that
persists across rounds. What differs: a fresh optimizer and schedule per call, an optional replay
stream mixed into each batch (``training.replay``), and the sampler's seed, which comes from the
round (``train_steps``) instead of once from ``--seed``.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch
from lerobot.optim.factory import make_optimizer_and_scheduler
from lerobot.scripts.lerobot_train import update_policy
from lerobot.utils.logging_utils import AverageMeter, MetricsTracker
from lerobot.utils.utils import cycle
from tqdm import tqdm

from lerobot_amf.data import cameras_as_float, episode_sampler
from lerobot_amf.errors import AMFInputError
from lerobot_amf.training.replay import replay_loader_parts


def loss_summary(losses: list[float]) -> dict:
    """Mean loss over the first and the last window of steps (a fifth of them, 1 to 50)."""
    window = max(1, min(50, len(losses) // 5 or 1))
    return {"loss_first": float(sum(losses[:window]) / window) if losses else None,
            "loss_last": float(sum(losses[-window:]) / window) if losses else None}


def training_meters(cuda: bool | None = None) -> dict[str, AverageMeter]:
    """The meters ``lerobot-train`` gives its tracker; ``update_policy`` writes ``gpu_mem_gb`` on CUDA
    (``MetricsTracker`` raises AttributeError for a meter it does not have)."""
    meters = {
        "loss": AverageMeter("loss", ":.3f", reduction="mean"),
        "grad_norm": AverageMeter("grdn", ":.3f"),
        "lr": AverageMeter("lr", ":0.1e"),
        "update_s": AverageMeter("updt_s", ":.3f", reduction="max"),
        "dataloading_s": AverageMeter("data_s", ":.3f", reduction="max"),
    }
    if cuda is None:
        cuda = torch.cuda.is_available()
    if cuda:
        meters["gpu_mem_gb"] = AverageMeter("mem_gb", ":.2f", reduction="max")
    return meters


def make_loader(cfg, dataset, drop_n_last_frames: int, seed: int, pin_memory: bool, replay=None,
                replay_fraction: float = 0.0) -> torch.utils.data.DataLoader:
    """The DataLoader ``lerobot-train`` builds over ``dataset`` (``data.episode_sampler``, its worker
    options: ``num_workers``, ``prefetch_factor``, ``persistent_workers``,
    ``dataloader_multiprocessing_context``), or, with ``replay``, over the demos mixed with it."""
    workers = cfg.num_workers > 0
    options = {
        "num_workers": cfg.num_workers,
        "pin_memory": pin_memory,
        "prefetch_factor": cfg.prefetch_factor if workers else None,
        "persistent_workers": cfg.persistent_workers and workers,
        "multiprocessing_context": cfg.dataloader_multiprocessing_context if workers else None,
    }
    if replay is None:
        sampler = episode_sampler(dataset, drop_n_last_frames, seed=seed)
        return torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=False,
                                           **options)
    mix, batch_sampler, collate = replay_loader_parts(dataset, replay, cfg.batch_size, replay_fraction,
                                                      drop_n_last_frames, seed=seed)
    return torch.utils.data.DataLoader(mix, batch_sampler=batch_sampler, collate_fn=collate, **options)


def draw_seed() -> int:
    """A sampler seed drawn from torch's global generator (the same on every process when they were
    seeded alike, as ``accelerate`` needs to shard one order between them)."""
    return int(torch.randint(0, 2**31 - 1, ()).item())


def train_steps(cfg, policy, dataset, preprocessor, accelerator, steps: int, desc: str = "Training",
                replay=None, replay_fraction: float = 0.0, seed: int | None = None):
    """Run ``steps`` optimizer steps of ``policy`` (already ``accelerator.prepare``d) on ``dataset``.

    A fresh optimizer and LR schedule (the policy's preset, sized to ``steps``) per call, over
    the parameters that require grad (a routed policy's active partition). With ``replay`` (a
    LeRobotDataset), each batch mixes in ``replay_fraction`` of its frames (``training.replay``).
    ``seed`` orders the batches (LeRobot's sampler shuffles by ``(seed, epoch)``, not by the
    global RNG); by default it is drawn from the global generator, which the round loop seeds
    from ``(--seed, round)`` before training, so a resumed round sees the batches the first try did
    and each call of a round (one per partition) gets an order of its own.
    Returns (metrics dict, optimizer, lr_scheduler) — the latter two for checkpointing.
    """
    round_cfg = dataclasses.replace(cfg, steps=max(steps, 1))
    unwrapped = accelerator.unwrap_model(policy)
    optimizer, lr_scheduler = make_optimizer_and_scheduler(round_cfg, unwrapped)
    dataloader = make_loader(cfg, dataset, getattr(unwrapped.config, "drop_n_last_frames", 0),
                             draw_seed() if seed is None else seed, accelerator.device.type == "cuda",
                             replay=replay, replay_fraction=replay_fraction)
    cameras = [*dataset.meta.camera_keys, *(replay.meta.camera_keys if replay is not None else [])]
    optimizer, dataloader, lr_scheduler = accelerator.prepare(optimizer, dataloader, lr_scheduler)
    tracker = MetricsTracker(
        cfg.batch_size, dataset.num_frames, dataset.num_episodes, training_meters(), accelerator=accelerator
    )
    losses = []
    start = time.perf_counter()
    batches = cycle(dataloader)
    bar = tqdm(total=steps, desc=desc, unit="step", disable=not accelerator.is_main_process, leave=False)
    for _ in range(steps):
        fetched = time.perf_counter()
        batch = preprocessor(cameras_as_float(next(batches), cameras))
        tracker.dataloading_s = time.perf_counter() - fetched
        tracker, _ = update_policy(
            tracker, policy, batch, optimizer, cfg.optimizer.grad_clip_norm,
            accelerator=accelerator, lr_scheduler=lr_scheduler,
        )
        losses.append(tracker.loss.val)
        if not math.isfinite(losses[-1]):  # an all-NaN checkpoint must never be saved or pushed
            raise AMFInputError(f"{desc}: the training loss is {losses[-1]} at step {len(losses)} of {steps}: the "
                                "demos, replay frames or normalisation statistics hold values the policy cannot "
                                "train on; nothing of this training was saved.")
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
