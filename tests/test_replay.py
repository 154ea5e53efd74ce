"""Replay mixing (``training/replay.py``): the replay share of every batch and over many batches."""

import numpy as np
import pytest
from torch.utils.data import SequentialSampler

from lerobot_amf.training.replay import MixedBatchSampler


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.3])
def test_replay_share_holds_per_batch_and_over_many_batches(fraction):
    n_demo, n_replay, batch = 100, 300, 16
    sampler = MixedBatchSampler(SequentialSampler(range(n_demo)), SequentialSampler(range(n_replay)), n_demo,
                                batch, fraction, seed=0, n_batches=2000)
    shares = []
    for indices in sampler:
        assert len(indices) == batch
        replayed = sum(i >= n_demo for i in indices)
        assert abs(replayed - fraction * batch) < 1  # stochastic rounding: floor or ceil
        assert all(0 <= i < n_demo + n_replay for i in indices)
        shares.append(replayed / batch)
    assert abs(np.mean(shares) - fraction) < 0.005
