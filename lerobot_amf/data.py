"""The run's dataset of fine-tuning demos (a LeRobotDataset) and how training reads it.

* ``write_demos`` is the one place where demos from any source become LeRobot episodes; it
  writes crash-safely (below) and ``repair_demo_dataset`` puts a stopped run's dataset back to
  exactly what the ledger records, on ``--resume=true``.
* ``episode_sampler`` is LeRobot's ``EpisodeAwareSampler`` built the way ``lerobot-train``
  builds it, with the seed given.
* ``cameras_as_float`` makes the uint8 video frames of ``make_dataset`` float, as ``lerobot-train``
  does in its loop.
* ``episodes_stats`` gives normalisation stats of exactly the episodes trained on.
* ``read_frames`` reads many frames with their history at once, and ``fast_window_reads``
  makes a dataset's own ``__getitem__`` read its windows from columns read once (a LeRobot
  0.6.1 slowness, ``DatasetReader._query_hf_dataset``: most of a CPU fine-tuning step went to it).

Crash safety: pull -> write -> record -> swap
---------------------------------------------
LeRobot 0.6.1 writes a dataset in place (``LeRobotDataset.create`` / ``resume``): parquet writers
stay open until ``finalize`` (a stop before it leaves files without a footer, unreadable) and
``meta/info.json`` / ``stats.json`` / ``tasks.parquet`` are rewritten in place after every
episode. So the committed ``<root>`` is never written to. One round's demos go through four steps:

1. **pull** – the source returns the demos in memory. Sources are deterministic by demo id
   and skip the ids the ledger already records, so the same ledger gives the same demos.
2. **write** – ``<root>`` is copied to ``<root>.tmp`` (its data and episode-metadata files
   hard-linked: a resumed LeRobot dataset writes its episodes to new files, never into an old
   one; the small files it rewrites are copied), the episodes are appended and finalised there
   (``LeRobotDataset.resume``), every file is fsynced and the directory is renamed
   ``<root>.ready``, and that rename is fsynced (the parent directory) before step 3: a power
   loss cannot undo it once the ledger says so.
3. **record** – the ledger's ``demos_pulled`` line (``record`` callback). This is the commit
   point: the demos exist for the run once, and only once, this line is on disk.
4. **swap** – ``<root>.ready`` replaces ``<root>`` (``atomic.replace_dir_atomic``).

A stop before 3 leaves the ledger without the round's demos: ``repair_demo_dataset`` drops
``.tmp`` / ``.ready`` (only those that do not hold the episodes the ledger records) and the
resumed round pulls again. Its selection is the same (the ledger
it depends on is the same) and the source gives the same demos (same ids, same frames), so
nothing is lost, and none of them was recorded, so nothing is duplicated; the cost is one
repeated pull of one round. A stop after 3 leaves a recorded ``.ready`` (or a half-done swap):
the repair finishes the swap, and those ids are excluded from every later pull. Whatever the
stop, after the repair ``<root>`` holds exactly the ledger's episodes, in its order.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from lerobot.datasets.compute_stats import aggregate_stats, compute_episode_stats
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.datasets.sampler import EpisodeAwareSampler

from lerobot_amf.atomic import TMP_SUFFIX, fsync_dir, fsync_tree, recover_dir, replace_dir_atomic
from lerobot_amf.errors import AMFInputError
from lerobot_amf.phases import phase
from lerobot_amf.sources.base import Demo
from lerobot_amf.trust import check_finite

READY_SUFFIX = ".ready"
# Written once, never reopened by LeRobot: a dataset opened with ``LeRobotDataset.resume`` starts
# the next data, video and episode-metadata file (``DatasetWriter._save_episode_data`` /
# ``_save_episode_video``, ``LeRobotDatasetMetadata._save_episode_metadata``), so these are
# hard-linked into the staging copy. Everything else (info.json, stats.json, tasks.parquet) is
# rewritten in place, so it is copied.
_IMMUTABLE_DIRS = ("data", "videos", "meta/episodes")


@dataclass
class DatasetRef:
    """Where a LeRobotDataset lives, for code that opens it itself (with its own delta timestamps)."""

    repo_id: str
    root: Path


def write_demos(repo_id: str, root: Path, fps: int, features: dict, demos: list[Demo],
                record: Callable[[list[dict]], object] | None = None) -> list[dict]:
    """Append each demo as one episode of the dataset at ``root``; return the ledger's records.

    ``record(records)`` is called once the episodes are written in full and before they are put
    in place: it must durably record them (the ledger line). See the module docstring.
    """
    root = Path(root)
    for demo in demos:  # a non-finite frame would train an all-NaN policy: refused before anything is written
        check_finite(demo.frames, f"Demo {demo.demo_id} ({demo.task})")
    with phase("writing_demos"):
        ready, records = _stage(repo_id, root, fps, features, demos)
    if record is not None:
        record(records)
    replace_dir_atomic(ready, root)
    return records


def _stage(repo_id: str, root: Path, fps: int, features: dict, demos: list[Demo]) -> tuple[Path, list[dict]]:
    """Steps 1-2: the committed dataset plus ``demos``, complete and fsynced, at ``<root>.ready``."""
    tmp, ready = _sibling(root, TMP_SUFFIX), _sibling(root, READY_SUFFIX)
    for leftover in (tmp, ready):
        shutil.rmtree(leftover, ignore_errors=True)
    if root.exists():
        _link_copy(root, tmp)
        dataset = LeRobotDataset.resume(repo_id, root=tmp)
    else:
        dataset = LeRobotDataset.create(repo_id=repo_id, fps=fps, features=features, root=tmp, use_videos=False)
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
    # Every call opens its own writer and finalises it once: LeRobot 0.6.1's ``finalize`` is
    # idempotent, so episodes saved through an already finalised object would never have their
    # metadata flushed (and would reopen, truncating, the last data file).
    dataset.finalize()
    fsync_tree(tmp)
    os.rename(tmp, ready)
    fsync_dir(ready.parent)  # the rename survives a power loss before the ledger line does
    return ready, records


def _sibling(root: Path, suffix: str) -> Path:
    return root.with_name(root.name + suffix)


def _link_copy(src: Path, dst: Path) -> None:
    """Copy the dataset ``src`` to ``dst``, hard-linking the files LeRobot never rewrites."""
    for dirpath, _, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        immutable = any(rel.as_posix() == d or rel.as_posix().startswith(d + "/") for d in _IMMUTABLE_DIRS)
        for name in filenames:
            if immutable:
                try:
                    os.link(src / rel / name, dst / rel / name)
                    continue
                except OSError:  # no hard links on this file system: copy
                    pass
            shutil.copy2(src / rel / name, dst / rel / name)


@dataclass
class RepairReport:
    """What ``repair_demo_dataset`` found and did (empty ``actions``: the dataset was already right)."""

    recorded: int
    on_disk_before: int
    actions: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.actions)

    def __str__(self) -> str:
        done = "; ".join(self.actions) if self.actions else "nothing to repair"
        return f"demos: ledger records {self.recorded} episode(s), {self.on_disk_before} were on disk: {done}"


def count_episodes(root: Path) -> int:
    """Episodes of the finalised dataset at ``root`` (0 when there is none)."""
    from lerobot.datasets.io_utils import load_info

    root = Path(root)
    if not (root / "meta" / "info.json").exists():
        return 0
    return int(load_info(root).total_episodes)


def repair_demo_dataset(root: Path, recorded: Sequence[dict], repo_id: str = "local/amf_demos") -> RepairReport:
    """Bring the run's demo dataset at ``root`` back to exactly the episodes the ledger records.

    ``recorded``: the ledger's episode records in order (``LedgerState.episodes``). Leftovers of a
    stopped ``write_demos`` are resolved (module docstring): a ``.ready`` / ``.tmp`` that holds
    exactly the recorded episodes (lengths as recorded) while ``<root>`` lacks some is put in
    place (a ``.tmp`` can only, when the file system lost the rename to ``.ready``); any other is
    not what the ledger committed, and is dropped; a half-done swap is finished or undone;
    episodes beyond the record (a dataset written in place by an older version) are removed with
    LeRobot's ``delete_episodes``. A dataset that lacks recorded episodes, or whose episode
    lengths differ from the record, cannot be repaired: ``AMFInputError``.
    """
    root = Path(root)
    n = len(recorded)
    indices = [int(rec["episode_index"]) for rec in recorded]
    if indices != list(range(n)):
        raise AMFInputError(f"The ledger's demo records are not episodes 0..{n - 1} in order ({indices[:10]}...): "
                            "it does not belong to this demos/ directory.")
    report = RepairReport(recorded=n, on_disk_before=count_episodes(root))
    undone = recover_dir(root)
    if undone:
        report.actions.append(undone)
    for staged, unrecorded in ((_sibling(root, READY_SUFFIX), "written, never recorded: those demos are pulled again"),
                               (_sibling(root, TMP_SUFFIX), "demos being written when the run stopped, never recorded")):
        if not staged.exists():
            continue
        if _holds_recorded(staged, repo_id, recorded) and count_episodes(root) < n:
            replace_dir_atomic(staged, root)
            report.actions.append(f"put {staged.name} in place (written and recorded; the stop came before the swap)")
        else:
            shutil.rmtree(staged)
            report.actions.append(f"removed {staged.name} ({unrecorded})")
    on_disk = _episodes_on_disk(root, n)
    if on_disk > n:
        _trim(root, repo_id, n, on_disk)
        report.actions.append(f"removed episodes {n}..{on_disk - 1} (on disk, never recorded)")
    elif on_disk < n:
        raise AMFInputError(f"{root} holds {on_disk} episode(s) but the ledger records {n}: episodes "
                            f"{on_disk}..{n - 1} are missing and cannot be re-made here. Restore {root.name}/ or start a new run.")
    if n:
        _check_records_match(root, repo_id, recorded)
    for action in report.actions:
        logging.warning(f"{root}: {action}")
    return report


def _holds_recorded(staged: Path, repo_id: str, recorded: Sequence[dict]) -> bool:
    """Whether the staged dataset is complete and holds exactly the ledger's episodes."""
    try:
        if count_episodes(staged) != len(recorded) or not recorded:
            return False
        _check_records_match(staged, repo_id, recorded)
        return True
    except Exception:  # noqa: BLE001 - a half-written dataset fails in many ways; it was not committed
        return False


def _episodes_on_disk(root: Path, n_recorded: int) -> int:
    """Episodes of ``root``; a dataset LeRobot cannot open is dropped when nothing is recorded."""
    if not root.exists():
        return 0
    try:
        count = count_episodes(root)
        if count and not (root / "data").exists():
            raise FileNotFoundError(root / "data")
        return count
    except Exception as err:  # noqa: BLE001 - a half-written dataset fails in many ways
        if n_recorded == 0:
            shutil.rmtree(root)
            return 0
        raise AMFInputError(f"{root} is not a complete LeRobot dataset ({type(err).__name__}: {err}); the ledger "
                            f"records {n_recorded} episode(s) in it. Restore it or start a new run.") from None


def _trim(root: Path, repo_id: str, keep: int, on_disk: int) -> None:
    """Keep episodes ``0..keep-1`` of ``root`` (LeRobot's ``delete_episodes`` into a copy, then a swap)."""
    if keep == 0:
        shutil.rmtree(root)
        return
    from lerobot.datasets.dataset_tools import delete_episodes

    tmp = _sibling(root, TMP_SUFFIX)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        delete_episodes(LeRobotDataset(repo_id, root=root), list(range(keep, on_disk)), output_dir=tmp, repo_id=repo_id)
    except Exception as err:  # noqa: BLE001 - a dataset written in place and stopped fails in many ways
        shutil.rmtree(tmp, ignore_errors=True)
        raise AMFInputError(f"{root} holds {on_disk} episodes, the ledger records {keep}, and the extra ones cannot be "
                            f"removed ({type(err).__name__}: {err}). Restore it or start a new run.") from None
    replace_dir_atomic(tmp, root)


def _check_records_match(root: Path, repo_id: str, recorded: Sequence[dict]) -> None:
    """Every recorded demo is its dataset episode: the same number of frames, and one task per
    instruction both ways (a record re-tagged with another task would tie two tasks to one
    instruction, or one task to two). Names the first record that disagrees."""
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    episodes = LeRobotDatasetMetadata(repo_id, root=root).episodes
    lengths = [int(x) for x in episodes["length"]]
    instructions = [" ".join(map(str, t)) if isinstance(t, (list, tuple)) else str(t) for t in episodes["tasks"]]
    task_of, instruction_of = {}, {}
    for i, rec in enumerate(recorded):
        if lengths[i] != int(rec["length"]):
            raise AMFInputError(f"{root}: episode {i} has {lengths[i]} frames, the ledger's demo record {i} "
                                f"({rec.get('demo_id')}) says {rec['length']}: this demos/ directory is not the ledger's.")
        instruction = instructions[i]
        if task_of.setdefault(instruction, rec["task"]) != rec["task"] or \
                instruction_of.setdefault(rec["task"], instruction) != instruction:
            raise AMFInputError(f"The ledger's demo record {i} ({rec.get('demo_id')}) says task {rec['task']!r}, but its "
                                f"episode's instruction {instruction!r} is another task's in this run: the ledger and "
                                f"{root.name}/ disagree; restore the ledger or start a new run.")


def check_demo_records(recorded: Sequence[dict], pool: Sequence[str]) -> None:
    """The ledger's demo records are the run's: each on a pool task, each demo once, episodes
    0..n-1 in order. Names the first record that is not (before the dataset is touched)."""
    seen: set[str] = set()
    for i, rec in enumerate(recorded):
        problem = ("a task outside the pool" if rec.get("task") not in pool
                   else "a demo recorded twice" if rec.get("demo_id") in seen
                   else f"episode {rec.get('episode_index')!r} where {i} belongs" if rec.get("episode_index") != i
                   else None)
        if problem:
            raise AMFInputError(f"The ledger's demo record {i} ({rec.get('demo_id')}, task {rec.get('task')!r}) holds "
                                f"{problem}: the ledger is not this run's; restore it or start a new run.")
        seen.add(rec["demo_id"])


def episode_sampler(dataset: LeRobotDataset, drop_n_last_frames: int, seed: int) -> EpisodeAwareSampler:
    """LeRobot's ``EpisodeAwareSampler`` over ``dataset``, built as LeRobot 0.6.1's ``lerobot-train``
    builds it (shuffled, episodes and absolute -> relative frame indices of the dataset).

    Its order is a function of ``(seed, epoch)`` alone, not of the global RNG: callers pass a seed
    derived from the round's (``training.loop.train_steps``).
    """
    return EpisodeAwareSampler(
        dataset.meta.episodes["dataset_from_index"],
        dataset.meta.episodes["dataset_to_index"],
        episode_indices_to_use=dataset.episodes,
        drop_n_last_frames=drop_n_last_frames,
        shuffle=True,
        seed=seed,
        absolute_to_relative_idx=dataset.absolute_to_relative_idx,
    )


def cameras_as_float(batch: dict, camera_keys) -> dict:
    """Camera frames that came back as uint8 (0-255) made float in [0, 1], in place; returns ``batch``.

    LeRobot 0.6.1's ``make_dataset`` returns video frames as uint8 (``return_uint8=True``) and
    ``lerobot-train`` converts them in its loop, exactly so (``.to(torch.float32) / 255.0``);
    image-stored cameras already come back float and are left as they are. Works on one item or
    on a collated batch (the same values, bit for bit).
    """
    for key in camera_keys:
        if key in batch and isinstance(batch[key], torch.Tensor) and batch[key].dtype == torch.uint8:
            batch[key] = batch[key].to(dtype=torch.float32) / 255.0
    return batch


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

    LeRobot 0.6.1's ``__getitem__`` re-reads the whole column of every delta-timestamp key for
    each item (``DatasetReader._query_hf_dataset``: ``hf_dataset[key][rows]``; the cost is given
    at ``WindowColumns``), which was the main cost of an amf selection. Same windows and padding
    (LeRobot's own ``DatasetReader._get_query_indices``). Numeric columns are read whole (cheap);
    image columns only at the rows the windows of ``positions`` need, and videos decoded once per
    episode and camera at exactly the timestamps those windows need (``_decode_windows``), so
    memory grows with the frames sampled, not with the dataset. Datasets with image transforms
    or depth cameras take the plain path.
    """
    positions = [int(i) for i in positions]
    if ds.image_transforms is not None or ds.meta.depth_keys:
        return [ds[i] for i in positions]
    hf = ds.hf_dataset  # loads the rows (and LeRobot's reader) on first use
    if not positions:
        return []
    reader = ds.reader
    rows = hf[positions]
    items = [dict(zip(rows, values)) for values in zip(*rows.values())]
    delta = reader.delta_indices or {}
    to_rel = ds.absolute_to_relative_idx
    queries = [reader._get_query_indices(int(item["index"]), int(item["episode_index"])) if delta else ({}, {})
               for item in items]

    def rel(idx):
        return list(idx) if to_rel is None else [to_rel[i] for i in idx]

    videos = set(ds.meta.video_keys)
    images = [key for key in delta if ds.features[key]["dtype"] == "image"]
    columns = {key: _held_column(ds, key) for key in delta if key not in videos and key not in images}
    for key in images:  # only the rows some window reads, each once
        needed = sorted({r for query, _ in queries for r in rel(query[key])})
        columns[key] = RowSubset(torch.stack(hf[key][needed]) if needed else torch.zeros(0), needed, len(hf))
    for item, (query, padding) in zip(items, queries):
        if delta:
            item.update(padding)
            for key, idx in query.items():
                if key not in videos:
                    item[key] = columns[key][rel(idx)]
        item["task"] = ds.meta.tasks.iloc[int(item["task_index"])].name
    if videos:
        _decode_windows(ds, items, [query for query, _ in queries], rel)
    return items


def _decode_windows(ds: LeRobotDataset, items: list[dict], queries: list[dict], rel) -> None:
    """Put each item's camera frames in place, as ``__getitem__`` would
    (``DatasetReader._get_query_timestamps`` + ``_query_videos``: the window's timestamps, shifted
    to the episode's place in its file, decoded with the reader's backend and dtype), but each
    timestamp decoded once, in file order, per video file and camera (torchcodec: one
    ``decode_video_frames`` call; PyAV: one open file, a seek per run of nearby timestamps,
    ``decode_runs_pyav``) instead of a call per item and camera, which opens and seeks the file
    again every time: a file holds many episodes (``lerobot/libero``: 20)."""
    from lerobot.datasets.video_utils import decode_video_frames

    reader = ds.reader
    timestamps = _held_column(ds, "timestamp")
    windows = []  # per item and camera: (its video file, camera, the window's timestamps in that file)
    for item, query in zip(items, queries):
        ep = int(item["episode_index"])
        for key in ds.meta.video_keys:
            ts = timestamps[rel(query[key])].tolist() if key in query else [float(item["timestamp"])]
            path, shift = _episode_video(ds, ep, key)
            windows.append((path, key, [shift + t for t in ts]))
    wanted: dict[tuple, set[float]] = {}
    for path, key, window in windows:
        wanted.setdefault((path, key), set()).update(window)
    decoded = {}
    for (path, key), times in wanted.items():
        unique = sorted(times)
        if reader._video_backend == "torchcodec":  # seeks to each frame: one call for the file
            frames = decode_video_frames(path, unique, ds.tolerance_s, reader._video_backend,
                                         return_uint8=reader._return_uint8)
        else:
            frames = decode_runs_pyav(path, decode_runs(unique, ds.fps), ds.tolerance_s, reader._return_uint8)
        decoded[path, key] = (dict(zip(unique, range(len(unique)))), frames.reshape(len(unique), *frames.shape[-3:]))
    cameras = len(ds.meta.video_keys)
    for n, (path, key, window) in enumerate(windows):
        where, frames = decoded[path, key]
        # copies, so that no view keeps all the file's decoded frames alive
        picked = [frames[where[t]] for t in window]
        items[n // cameras][key] = picked[0].clone() if len(window) == 1 else torch.stack(picked)


# PyAV (LeRobot's decoder where torchcodec does not load) cannot seek to a frame: LeRobot's
# ``decode_video_frames_pyav`` opens the file, seeks to the key frame before the first timestamp
# and decodes and converts every frame up to the last one. For frames sampled across a file
# (a likelihood pass reads one per demo, ``lerobot/libero`` holds 20 episodes a file) one call
# decodes the whole file, and a call per frame opens and probes the file each time (most of the
# cost at small frames). ``decode_runs_pyav`` opens a file once and seeks for each run of nearby
# frames; neighbours further apart than this many frames start a new run. A seek (the decoder
# flushed, restarted at a key frame: LeRobot writes one every 2 frames, ``VideoEncoderConfig.g``)
# costs more than decoding a few frames: on the 130-task benchmark's files a new run at every gap
# over 2 frames made reading 16 of each 24 frames several times slower than one run a file.
PYAV_NEW_RUN_GAP_FRAMES = 8


def decode_runs(times: list[float], fps: float) -> list[list[float]]:
    """Sorted ``times`` of one video file cut wherever two neighbours lie more than
    ``PYAV_NEW_RUN_GAP_FRAMES`` frames apart."""
    runs: list[list[float]] = []
    for n, t in enumerate(times):
        if not n or (t - times[n - 1]) * fps > PYAV_NEW_RUN_GAP_FRAMES:
            runs.append([])
        runs[-1].append(t)
    return runs


def decode_runs_pyav(path: Path, runs: list[list[float]], tolerance_s: float, return_uint8: bool) -> torch.Tensor:
    """The frames at every timestamp of ``runs`` (in order), as LeRobot 0.6.1's
    ``decode_video_frames_pyav`` gives each run (same seek, same closest frame within
    ``tolerance_s``, same layout and dtype), from one open file, converting only the frames
    returned. Tested equal to ``__getitem__``. With long groups of pictures a run still decodes
    from its key frame, as LeRobot's call per item does."""
    import av
    from lerobot.datasets.video_utils import FrameTimestampError

    picked = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for run in runs:
            container.seek(round(run[0] / stream.time_base) - 1, backward=True, any_frame=False, stream=stream)
            frames, stamps = [], []
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                frames.append(frame)
                stamps.append(float(frame.pts * stream.time_base))
                if stamps[-1] >= run[-1]:
                    break
            if not frames:
                raise FrameTimestampError(f"No frames could be decoded from {path} in [{run[0]}, {run[-1]}].")
            gap, nearest = (torch.tensor(run)[:, None] - torch.tensor(stamps)[None, :]).abs().min(1)
            if not (gap < tolerance_s).all():
                raise FrameTimestampError(f"Timestamps {torch.tensor(run)[gap >= tolerance_s].tolist()} of {path} "
                                          f"are further than {tolerance_s=} from any decoded frame.")
            converted = {}
            for k in nearest.tolist():
                if k not in converted:
                    converted[k] = torch.from_numpy(frames[k].to_ndarray(format="rgb24")).permute(2, 0, 1).contiguous()
                picked.append(converted[k])
    out = torch.stack(picked)
    return out if return_uint8 else out.type(torch.float32) / 255


def _episode_video(ds: LeRobotDataset, ep: int, key: str) -> tuple[Path, float]:
    """(video file, the episode's first timestamp in it) of camera ``key``, looked up once per
    dataset object, episode and camera and kept with it. Each lookup reads a row of
    ``meta.episodes`` (a ``datasets.Dataset``: one formatted row, ~0.15 ms); per item and camera
    that was a tenth of a 130-task selection. A grown dataset is a new dataset object."""
    held = ds.__dict__.setdefault("_amf_episode_videos", {})
    if (ep, key) not in held:
        held[ep, key] = (ds.root / ds.meta.get_video_file_path(ep, key),
                         float(ds.meta.episodes[ep][f"videos/{key}/from_timestamp"]))
    return held[ep, key]


class RowSubset:
    """Values held for some rows only, indexed by row number: memory grows with the rows held, not
    with all of them (an image column's needed rows; the frames one task embedded). Reading a
    row that is not held raises."""

    def __init__(self, values: torch.Tensor, rows, n: int):
        self.values = values
        self.position = np.full(n, -1, dtype=np.int64)
        self.position[np.asarray(rows, dtype=np.int64)] = np.arange(len(rows))

    def __getitem__(self, rows) -> torch.Tensor:
        position = self.position[np.asarray(rows, dtype=np.int64)]
        if (position < 0).any():
            raise IndexError("a row that is not held was read")
        return self.values[torch.as_tensor(position)]


def _whole_column(ds: LeRobotDataset, key: str) -> torch.Tensor:
    """Column ``key`` of every row as one tensor. Numeric columns are formatted in one batch
    (datasets' per-row transform, ``hf[key][rows]``, costs ~0.1 ms a row: most of a selection's
    frame reading); images keep LeRobot's own transform (float, channel first)."""
    hf = ds.hf_dataset
    if ds.features[key]["dtype"] == "image":
        return torch.stack(hf[key][list(range(len(hf)))])
    return hf.with_format("torch", columns=[key])[0:len(hf)][key]


def _held_column(ds: LeRobotDataset, key: str) -> torch.Tensor:
    """``_whole_column(ds, key)`` of a numeric column, read once per dataset object and kept with
    it: selection reads its frames a chunk at a time, and each chunk needs the same columns."""
    held = ds.__dict__.setdefault("_amf_held_columns", {})
    if key not in held:
        held[key] = _whole_column(ds, key)
    return held[key]


class WindowColumns:
    """LeRobot 0.6.1 workaround, installed by ``fast_window_reads`` in place of a dataset reader's
    ``DatasetReader._query_hf_dataset``: the delta-timestamp windows of numeric columns are indexed
    from each column read once (on first use) instead of ``hf_dataset[key][rows]`` per item, which
    goes through datasets' per-call feature copies (measured on LeRobot 0.6.1, the embedded
    default's windows on 7,200 frames, one CPU thread: ~5 ms of each ``__getitem__``, about 11x
    this path; reported upstream as huggingface/lerobot#2549 and #2895). Image and video keys
    take LeRobot's own path. A plain class, so a dataset with it still pickles into DataLoader
    workers."""

    def __init__(self, ds: LeRobotDataset):
        self.ds, self.columns = ds, None

    def __call__(self, query_indices: dict[str, list[int]]) -> dict:
        ds = self.ds
        if self.columns is None:
            self.columns = {key: _whole_column(ds, key) for key in query_indices
                            if key not in ds.meta.video_keys and ds.features[key]["dtype"] not in ("image", "video")}
        to_rel = ds.absolute_to_relative_idx
        out = type(ds.reader)._query_hf_dataset(ds.reader, {k: v for k, v in query_indices.items()
                                                            if k not in self.columns})
        for key, idx in query_indices.items():
            if key in self.columns:
                out[key] = self.columns[key][idx if to_rel is None else [to_rel[i] for i in idx]]
        return out


def fast_window_reads(ds: LeRobotDataset) -> LeRobotDataset:
    """``ds`` with ``WindowColumns`` in place on its reader (same items, bit for bit); returns it.

    Set on ``ds.reader``, which ``__getitem__`` calls (an attribute of ``ds`` itself is ignored).
    """
    ds.reader._query_hf_dataset = WindowColumns(ds)
    return ds


def open_dataset(cfg, ref: DatasetRef, episodes: list[int] | None = None, what: str = "dataset") -> LeRobotDataset:
    """A LeRobotDataset through LeRobot's ``make_dataset`` (the policy's delta timestamps, windows
    read by ``fast_window_reads``), or a clear error.

    ``cfg`` is the run's training config; only its dataset entry is replaced.
    """
    import dataclasses

    from lerobot.configs.default import DatasetConfig
    from lerobot.datasets.factory import make_dataset

    from lerobot_amf.errors import AMFInputError

    dataset_cfg = DatasetConfig(repo_id=ref.repo_id, root=None if ref.root is None else str(ref.root), episodes=episodes)
    try:
        return fast_window_reads(make_dataset(dataclasses.replace(cfg, dataset=dataset_cfg)))
    except Exception as err:  # noqa: BLE001 - Hub/offline/missing-files errors come in many types
        raise AMFInputError(f"Cannot open the {what} {ref.repo_id!r} (root={ref.root}): {type(err).__name__}: "
                            f"{str(err).splitlines()[0] if str(err) else ''}") from None
