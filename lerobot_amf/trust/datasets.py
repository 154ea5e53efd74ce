"""A LeRobot dataset copy from others (a Hub dataset's local copy, ``--dataset.root``), checked before
its episodes are read: its tree (``files.check_tree``: an extra linked parquet file put another
folder's rows into a run's demos), its ``meta/info.json`` path templates, and its episode index
(what the metadata claims is what the copy holds)."""

from __future__ import annotations

from pathlib import Path

from lerobot_amf.trust.files import UntrustedFileError, check_inside, check_tree


def check_path_templates(info: dict, root: Path, label: str) -> None:
    """A dataset's ``meta/info.json`` ``data_path`` / ``video_path`` make paths inside its copy ``root``:
    checked before any episode file is read."""
    for key in ("data_path", "video_path"):
        template = info.get(key)
        if template is not None:
            check_inside(root, template, f"Dataset {label}'s meta/info.json {key}")


def check_dataset_copy(meta, label: str) -> None:
    """A dataset copy (LeRobot ``LeRobotDatasetMetadata``) whose folder holds only regular files and
    links inside it, whose path templates stay inside it, and whose episode index is the episodes
    0..total_episodes-1, each once, of non-negative length, on tasks the task table has."""
    root = Path(meta.root)
    check_tree(root, f"Dataset {label}")
    check_path_templates(meta.info if isinstance(meta.info, dict) else meta.info.to_dict(), root, label)
    total = meta.total_episodes
    episodes = meta.episodes
    indices = list(episodes["episode_index"]) if episodes is not None else []
    bad = [i for i in indices if not isinstance(i, int) or i < 0 or i >= max(total, len(indices))]
    if bad or sorted(indices) != list(range(len(indices))):
        shown = bad[0] if bad else next((i for i, j in zip(sorted(indices), range(len(indices))) if i != j), None)
        raise UntrustedFileError(f"Dataset {label}: meta/episodes holds episode index {shown!r}; the episodes must be "
                                 f"0..{len(indices) - 1}, each once: refused.")
    if total != len(indices):
        raise UntrustedFileError(f"Dataset {label}: meta/info.json claims {total} episodes, meta/episodes holds "
                                 f"{len(indices)}: refused.")
    lengths = list(episodes["length"]) if episodes is not None and "length" in episodes.column_names else []
    if any(not isinstance(n, int) or n < 0 for n in lengths):
        raise UntrustedFileError(f"Dataset {label}: meta/episodes holds a negative or non-integer episode length: "
                                 "refused.")
