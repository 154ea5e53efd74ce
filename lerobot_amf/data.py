"""The run's dataset of fine-tuning demos (a LeRobotDataset) and how training reads it.

* ``open_demo_dataset`` creates the dataset under ``<output_dir>/demos`` or reopens it (resume).
* ``write_demos`` is the one place where demos from any source become LeRobot episodes.
* ``episode_aware_sampler`` works around a LeRobot 0.4.4 bug (see its docstring).
* ``episodes_stats`` gives normalisation stats of exactly the episodes trained on.
* ``read_frames`` reads many frames with their history at once (a LeRobot 0.4.4 slowness).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lerobot.datasets.compute_stats import aggregate_stats, compute_episode_stats
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.datasets.sampler import EpisodeAwareSampler

from lerobot_amf.sources.base import Demo


@dataclass
class DatasetRef:
    """Where a LeRobotDataset lives, for code that opens it itself (with its own delta timestamps)."""

    repo_id: str
    root: Path


def open_demo_dataset(repo_id: str, root: Path, fps: int, features: dict) -> LeRobotDataset:
    """The demo dataset at ``root``: reopened if it holds episodes, else created empty."""
    root = Path(root)
    if (root / "meta" / "info.json").exists() and (root / "data").exists():
        return LeRobotDataset(repo_id, root=root)
    if root.exists():  # created but no episode saved yet (e.g. a crash in round 0): start clean
        shutil.rmtree(root)
    return LeRobotDataset.create(repo_id=repo_id, fps=fps, features=features, root=root, use_videos=False)


def write_demos(repo_id: str, root: Path, fps: int, features: dict, demos: list[Demo]) -> list[dict]:
    """Append each demo as one episode of the dataset at ``root``; return the ledger's records.

    The dataset is reopened and finalised on every call: LeRobot 0.4.4 corrupts a dataset when
    episodes are saved through an object that was already finalised.
    """
    dataset = open_demo_dataset(repo_id, root, fps, features)
    records = []
    for demo in demos:
        for t in range(demo.length):
            frame = {key: values[t] for key, values in demo.frames.items()}
            frame["task"] = demo.instruction
            dataset.add_frame(frame)
        episode_index = dataset.meta.total_episodes
        dataset.save_episode()
        records.append(
            {
                "demo_id": demo.demo_id,
                "task": demo.task,
                "episode_index": episode_index,
                "length": demo.length,
                **{f"source_{k}": v for k, v in demo.info.items()},
            }
        )
    dataset.finalize()
    return records


def episode_aware_sampler(
    dataset: LeRobotDataset, drop_n_last_frames: int = 0, shuffle: bool = True
) -> EpisodeAwareSampler:
    """LeRobot's ``EpisodeAwareSampler``, fixed for datasets loaded with ``episodes=[...]``.

    LeRobot 0.4.4 bug: the sampler enumerates *all* episodes of the metadata and yields
    absolute frame indices (``dataset_from_index``), but a dataset loaded with a subset of
    episodes is indexed by position in the filtered frames, so it raises IndexError or, worse,
    returns frames of the wrong episodes. Here the sampler is built on the selected episodes'
    absolute indices and those are mapped through the dataset's absolute -> relative index.
    """
    episodes = dataset.meta.episodes
    selected = dataset.episodes if dataset.episodes is not None else list(range(len(episodes)))
    from_idx = [episodes[i]["dataset_from_index"] for i in selected]
    to_idx = [episodes[i]["dataset_to_index"] for i in selected]
    sampler = EpisodeAwareSampler(from_idx, to_idx, drop_n_last_frames=drop_n_last_frames, shuffle=shuffle)
    mapping = dataset._absolute_to_relative_idx
    if mapping is not None:
        sampler.indices = [mapping[i] for i in sampler.indices]
    return sampler


def episodes_stats(dataset: LeRobotDataset, episodes: list[int] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Normalisation stats of exactly these episodes (LeRobot's per-episode stats, aggregated).

    ``make_dataset`` would give full-dataset stats; training on a subset must not see those.
    """
    numeric = {k: f for k, f in dataset.meta.features.items()
               if f["dtype"] in ("float32", "float64") and k not in ("timestamp",)}
    columns = dataset.hf_dataset.with_format("numpy")
    episode_index = np.asarray(columns["episode_index"])
    episodes = sorted(set(episode_index.tolist())) if episodes is None else episodes
    per_episode = []
    for ep in episodes:
        rows = np.flatnonzero(episode_index == ep)
        data = {k: np.asarray(columns[k][rows]) for k in numeric}
        per_episode.append(compute_episode_stats(data, numeric))
    return aggregate_stats(per_episode)


def read_frames(ds: LeRobotDataset, positions) -> list[dict]:
    """``[ds[i] for i in positions]``, reading each column once.

    LeRobot 0.4.4's ``__getitem__`` re-reads the whole column of every delta-timestamp key for
    each item (``_query_hf_dataset``: ``hf_dataset[key][rows]``): ~18 ms per frame on the
    embedded default, the main cost of an amf selection. Same windows and padding (LeRobot's own
    ``_get_query_indices``). Datasets with videos or image transforms take the plain path.
    """
    positions = [int(i) for i in positions]
    if ds.meta.video_keys or ds.image_transforms is not None:
        return [ds[i] for i in positions]
    ds._ensure_hf_dataset_loaded()
    hf = ds.hf_dataset
    rows = hf[positions]
    items = [dict(zip(rows, values)) for values in zip(*rows.values())]
    delta = ds.delta_indices or {}
    every = list(range(len(hf)))
    columns = {key: torch.stack(hf[key][every]) for key in delta if key not in ds.meta.video_keys}
    to_rel = ds._absolute_to_relative_idx
    with_subtask = "subtask_index" in ds.features and ds.meta.subtasks is not None
    for item in items:
        if delta:
            query, padding = ds._get_query_indices(int(item["index"]), int(item["episode_index"]))
            item.update(padding)
            for key, idx in query.items():
                item[key] = columns[key][idx if to_rel is None else [to_rel[i] for i in idx]]
        item["task"] = ds.meta.tasks.iloc[int(item["task_index"])].name
        if with_subtask:
            item["subtask"] = ds.meta.subtasks.iloc[int(item["subtask_index"])].name
    return items


def open_dataset(cfg, ref: DatasetRef, episodes: list[int] | None = None, what: str = "dataset") -> LeRobotDataset:
    """A LeRobotDataset through LeRobot's ``make_dataset`` (the policy's delta timestamps), or a clear error.

    ``cfg`` is the run's training config; only its dataset entry is replaced.
    """
    import dataclasses

    from lerobot.configs.default import DatasetConfig
    from lerobot.datasets.factory import make_dataset

    from lerobot_amf.errors import AMFInputError

    dataset_cfg = DatasetConfig(repo_id=ref.repo_id, root=None if ref.root is None else str(ref.root), episodes=episodes)
    try:
        return make_dataset(dataclasses.replace(cfg, dataset=dataset_cfg))
    except Exception as err:  # noqa: BLE001 - Hub/offline/missing-files errors come in many types
        raise AMFInputError(f"Cannot open the {what} {ref.repo_id!r} (root={ref.root}): {type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''}") from None
