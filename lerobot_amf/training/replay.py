"""Shared fine-tuning with replay: each batch mixes pretraining frames into the demos.

A batch of ``B`` frames holds ``floor(f·B)`` replay frames plus one more with probability
``frac(f·B)`` (stochastic rounding), so the replay share is exactly ``f`` in expectation and
within ±1 frame per batch. Both streams are episode-aware (LeRobot's ``EpisodeAwareSampler``,
built as ``lerobot-train`` builds it: ``data.episode_sampler``), each with a seed of its own,
reshuffled each time they are exhausted. Video frames (uint8 from ``make_dataset``, e.g. a
``lerobot/libero`` replay) are made float per item before the two streams are stacked into one
batch (``data.cameras_as_float``), or stacking would mix dtypes.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Sampler

from lerobot_amf.data import cameras_as_float, episode_sampler


class ReplayMix(ConcatDataset):
    """The fine-tuning demos followed by the replay dataset (indices ``>= n_demo_frames`` replay)."""

    def __init__(self, demos, replay):
        super().__init__([demos, replay])
        self.n_demo_frames = len(demos)
        self.num_frames = len(demos) + len(replay)
        self.num_episodes = demos.num_episodes + replay.num_episodes
        self.meta = demos.meta


class MixedBatchSampler(Sampler[list[int]]):
    """Batches of ``ReplayMix`` indices with a replay share of ``fraction`` (see module docstring)."""

    def __init__(self, demo_indices: Sampler, replay_indices: Sampler, n_demo_frames: int,
                 batch_size: int, fraction: float, seed: int = 0, n_batches: int | None = None):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"replay fraction {fraction}: must be in [0, 1).")
        self.demo_indices, self.replay_indices = demo_indices, replay_indices
        self.offset, self.batch_size, self.fraction = n_demo_frames, batch_size, fraction
        self.rng = np.random.default_rng(seed)
        self.n_batches = n_batches or max(1, len(demo_indices) // max(1, batch_size - int(fraction * batch_size)))

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        demos, replay = _endless(self.demo_indices), _endless(self.replay_indices)
        for _ in range(self.n_batches):
            share = self.fraction * self.batch_size
            n_replay = int(share) + int(self.rng.random() < share - int(share))
            batch = [next(demos) for _ in range(self.batch_size - n_replay)]
            batch += [self.offset + next(replay) for _ in range(n_replay)]
            yield batch


def _endless(sampler):
    while True:
        yield from sampler


def collate_common_keys(items: list[dict], camera_keys=()) -> dict:
    """``default_collate`` over the keys every item has (two datasets may carry different extras),
    with the ``camera_keys`` frames of each item made float first (``data.cameras_as_float``)."""
    keys = set(items[0])
    for item in items[1:]:
        keys &= set(item)
    return torch.utils.data.default_collate([cameras_as_float({k: item[k] for k in keys}, camera_keys)
                                             for item in items])


def replay_loader_parts(demos, replay, batch_size: int, fraction: float, drop_n_last_frames: int, seed: int):
    """(dataset, batch_sampler, collate_fn) for a DataLoader mixing ``replay`` into ``demos``.

    ``seed``: the demo stream's sampler seed; the replay stream's is ``seed + 1`` (LeRobot derives
    each epoch's order from ``(seed, epoch)``, so the two orders are independent), and the per-batch
    replay share is drawn from ``seed`` too.
    """
    missing = [k for k in demos.meta.features if k not in replay.meta.features and not k.startswith("observation.images")]
    needed = [k for k in missing if k.startswith(("observation.", "action"))]
    if needed:
        raise ValueError(f"The replay dataset lacks feature(s) the policy trains on: {', '.join(needed)}.")
    mix = ReplayMix(demos, replay)
    sampler = MixedBatchSampler(
        episode_sampler(demos, drop_n_last_frames, seed=seed),
        episode_sampler(replay, drop_n_last_frames, seed=seed + 1),
        len(demos), batch_size, fraction, seed=seed,
    )
    cameras = tuple(dict.fromkeys([*demos.meta.camera_keys, *replay.meta.camera_keys]))
    return mix, sampler, functools.partial(collate_common_keys, camera_keys=cameras)
