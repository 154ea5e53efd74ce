"""Training batches (``training/replay.py``, ``training/loop.py``): the replay share of every batch and
over many batches; uint8 video frames made float before an image-stored and a video dataset are
stacked into one batch; the same batches from DataLoader workers started by spawn; and the meter
``update_policy`` writes on CUDA."""

import dataclasses
import itertools
import types

import numpy as np
import pytest
import torch
from lerobot.optim.optimizers import AdamConfig
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


@dataclasses.dataclass
class LoopConfig:
    """The fields of a training config that ``train_steps`` reads (lerobot-train's defaults for workers)."""

    batch_size: int = 8
    steps: int = 1
    num_workers: int = 0
    prefetch_factor: int = 4
    persistent_workers: bool = True
    dataloader_multiprocessing_context: str | None = "spawn"
    use_policy_training_preset: bool = False
    optimizer: AdamConfig = dataclasses.field(default_factory=lambda: AdamConfig(lr=1e-3, grad_clip_norm=1.0))
    scheduler: None = None


class Probe(torch.nn.Module):
    """A stand-in policy: one weight, and the batches it was trained on."""

    def __init__(self):
        super().__init__()
        self.config = types.SimpleNamespace(drop_n_last_frames=0)
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.batches = []

    def forward(self, batch):
        self.batches.append(batch)
        return (self.weight - batch["action"].mean()) ** 2, {"probe": 1.0}


def libero_datasets(tmp_path):
    """The run's demos as ``write_demos`` stores them (cameras as images: float frames) and a
    ``lerobot/libero``-like replay dataset opened as ``make_dataset`` opens it (MP4: uint8 frames)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from benchmarks.libero_dataset import CAMERAS, LIBERO_TASKS, build_libero_dataset

    demos = build_libero_dataset(tmp_path / "demos", LIBERO_TASKS[:2], episodes_per_task=1, frames_per_episode=8,
                                 video=False, repo_id="local/demos")
    replay = build_libero_dataset(tmp_path / "replay", LIBERO_TASKS[2:4], episodes_per_task=2, frames_per_episode=8)
    delta = {CAMERAS[0]: [-0.1, 0.0], "action": [0.0, 0.1]}
    return (LeRobotDataset("local/demos", root=demos, delta_timestamps=delta),
            LeRobotDataset("lerobot/libero", root=replay, delta_timestamps=delta, return_uint8=True), CAMERAS)


def test_video_frames_reach_the_policy_as_float_with_and_without_replay(tmp_path):
    from accelerate import Accelerator

    from lerobot_amf.training.loop import train_steps

    demos, replay, cameras = libero_datasets(tmp_path)
    assert replay[0][cameras[0]].dtype == torch.uint8 and demos[0][cameras[0]].dtype == torch.float32
    accelerator = Accelerator(cpu=True)
    for dataset, mixed in ((demos, replay), (replay, None)):
        policy = accelerator.prepare(Probe())
        metrics, _, _ = train_steps(LoopConfig(), policy, dataset, lambda batch: batch, accelerator, 4,
                                    replay=mixed, replay_fraction=0.5 if mixed is not None else 0.0, seed=3)
        assert metrics["steps"] == 4 and len(policy.batches) == 4
        for batch in policy.batches:
            assert len(batch["action"]) == 8
            for key in cameras:  # 0..1: uint8 frames were divided by 255 (their values are 40 and more)
                assert batch[key].dtype == torch.float32 and 0 < batch[key].max() <= 1, key


def test_a_non_finite_training_loss_stops_training_with_one_line(tmp_path):
    """A NaN loss (statistics or frames the checks did not see) ends the training: nothing after it
    runs, so no all-NaN checkpoint is saved or pushed."""
    from accelerate import Accelerator

    from lerobot_amf.errors import AMFInputError
    from lerobot_amf.training.loop import train_steps

    demos, _, _ = libero_datasets(tmp_path)
    accelerator = Accelerator(cpu=True)
    policy = accelerator.prepare(Probe())
    poisoned = lambda batch: {**batch, "action": batch["action"] * float("nan")}  # noqa: E731
    with pytest.raises(AMFInputError, match="Training: the training loss is nan at step 1 of 4"):
        train_steps(LoopConfig(), policy, demos, poisoned, accelerator, 4, seed=3)
    assert len(policy.batches) == 1


@pytest.mark.slow
def test_worker_processes_started_by_spawn_give_the_same_batches(tmp_path):
    """lerobot-train's worker options are honoured (``spawn`` is its default): the datasets, windows
    read by ``fast_window_reads`` and the replay mix pickle into the workers, and a seed gives the
    same batches there as in this process."""
    from lerobot_amf.data import fast_window_reads
    from lerobot_amf.training.loop import make_loader

    demos, replay, cameras = libero_datasets(tmp_path)
    demos, replay = fast_window_reads(demos), fast_window_reads(replay)

    def batches(workers: int) -> list[dict]:
        cfg = LoopConfig(num_workers=workers, prefetch_factor=2)
        loader = make_loader(cfg, demos, 0, seed=5, pin_memory=False, replay=replay, replay_fraction=0.5)
        return list(itertools.islice(loader, 3))

    here, spawned = batches(0), batches(1)
    for a, b in zip(here, spawned):
        assert set(a) == set(b)
        for key in b:
            assert torch.equal(a[key], b[key]) if isinstance(b[key], torch.Tensor) else a[key] == b[key], key
        assert a[cameras[0]].dtype == torch.float32


def test_the_tracker_takes_the_gpu_memory_update_policy_writes_on_cuda(monkeypatch):
    """LeRobot 0.6.1's ``update_policy`` sets ``gpu_mem_gb`` whenever CUDA is available; a tracker
    without that meter raises AttributeError (on GPU machines only: CUDA is faked here)."""
    from accelerate import Accelerator
    from lerobot.scripts.lerobot_train import update_policy
    from lerobot.utils.logging_utils import MetricsTracker

    from lerobot_amf.training.loop import training_meters

    accelerator = Accelerator(cpu=True)
    policy = accelerator.prepare(Probe())
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *args, **kwargs: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *args, **kwargs: 3 * 1024**3)
    batch = {"action": torch.ones(8, 2)}
    tracker = MetricsTracker(8, 100, 2, training_meters(), accelerator=accelerator)
    tracker, _ = update_policy(tracker, policy, batch, optimizer, 1.0, accelerator=accelerator)
    assert tracker.gpu_mem_gb.val == 3.0 and tracker.loss.val == 1.0
    without = MetricsTracker(8, 100, 2, training_meters(cuda=False), accelerator=accelerator)
    with pytest.raises(AttributeError, match="gpu_mem_gb"):
        update_policy(without, policy, batch, optimizer, 1.0, accelerator=accelerator)
