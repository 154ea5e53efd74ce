"""Demos from a LeRobot dataset on the Hub (e.g. ``lerobot/libero``), pulled episode by episode.

* The task -> episodes index comes from the dataset's metadata (the ``tasks`` column of
  ``meta/episodes``); ``meta/`` is the only part downloaded up front. Dataset task strings map to
  pool task names through ``task_of_instruction`` (default: the task strings are the pool).
* A task's episodes are pulled in a seeded order without replacement: the same seed gives the
  same order, and ids already pulled (``exclude``) are skipped.
* A pull downloads only the files holding the chosen episodes (v3.0 packs many episodes per data
  and video file; the same files ``LeRobotDataset(episodes=...)`` would download) with
  huggingface_hub's ``snapshot_download`` into the local copy, and each demo records the bytes it
  made us download, so the ledger keeps what every round cost.
* Frames come back keyed by feature name (after the rename map), camera frames as uint8 HWC
  images, ready for ``lerobot_amf.data.write_demos``.
* The dataset is hostile until checked: the file paths its ``meta/info.json`` templates make
  must stay inside the local copy (``trust.check_inside``), and a round's downloads are sized
  (HEAD requests) and refused before they start when they would pass ``max_bytes_per_round``.
* The local copy is one per revision (``<HF_LEROBOT_HOME>/<repo_id>@<revision>`` by default),
  and it says which revision it holds (``REVISION_MARKER``): another revision's ``meta/`` is
  never read as this one's. LeRobot 0.6.1's own default for a Hub dataset without a ``root``
  (a snapshot cache under ``$HF_LEROBOT_HOME/hub``) is never used: the source always passes its
  ``root``, so LeRobot downloads ``meta/`` straight into that copy.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_url, snapshot_download
from huggingface_hub.errors import (
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from lerobot.datasets.lerobot_dataset import CODEBASE_VERSION, LeRobotDatasetMetadata
from lerobot.datasets.feature_utils import get_hf_features_from_features
from lerobot.datasets.io_utils import load_nested_dataset
from lerobot.datasets.utils import DATA_DIR, INFO_PATH
from lerobot.datasets.video_utils import decode_video_frames
from lerobot.utils.constants import DEFAULT_FEATURES, HF_LEROBOT_HOME
from lerobot.utils.feature_utils import dataset_to_policy_features
from lerobot.utils.import_utils import get_safe_default_video_backend

from lerobot_amf.errors import AMFInputError
from lerobot_amf.features import feature_mismatches
from lerobot_amf.sources.base import DEFAULT_MAX_BYTES_PER_ROUND, Demo, DemoSource
from lerobot_amf.trust import UntrustedFileError, check_dataset_copy, check_finite, check_inside, check_tree

# In the local copy, beside huggingface_hub's own download records: the repo id and revision it holds.
REVISION_MARKER = ".cache/lerobot_amf/source.json"

SHOWN = 4  # items of a long list an error message shows
VIDEO_TOLERANCE_S = 1e-4  # LeRobotDataset's default tolerance between a timestamp and its video frame


def shorten(items, width: int = 48) -> str:
    """``'a', 'b', … (+N more)``: long lists of long task strings kept to one readable line."""
    items = list(items)
    cut = [repr(s if len(s) <= width else s[: width - 1] + "…") for s in items[:SHOWN]]
    return ", ".join(cut) + (f", … (+{len(items) - SHOWN} more)" if len(items) > SHOWN else "")


class HubDatasetSource(DemoSource):
    name = "hub"
    mark_revision = True  # write REVISION_MARKER into the local copy (not into someone's own folder)

    def __init__(
        self,
        repo_id: str,
        revision: str | None = None,
        root: str | Path | None = None,
        rename_map: dict[str, str] | None = None,
        seed: int = 0,
        task_of_instruction: dict[str, str] | None = None,
        max_bytes_per_round: int | None = DEFAULT_MAX_BYTES_PER_ROUND,
    ):
        self.repo_id = repo_id
        self.revision = revision or CODEBASE_VERSION  # LeRobot's default: the codebase-version tag
        self.root = Path(root) if root is not None else HF_LEROBOT_HOME / f"{repo_id}@{self.revision}"
        self.seed = seed
        self.max_bytes_per_round = max_bytes_per_round
        if self.root.exists():  # a copy from others: no links out, no FIFO to block the marker's read
            check_tree(self.root, f"Dataset {self.label}")
        self._check_revision_marker()
        downloads_meta = not (self.root / INFO_PATH).is_file()
        self.meta = self._open_metadata()
        # before any episode file is read (``meta.info`` is LeRobot 0.6.1's ``DatasetInfo``): the
        # copy's tree, its path templates and its episode index
        check_dataset_copy(self.meta, self.label)
        if downloads_meta and self.mark_revision:  # the copy is this source's download cache: marked
            self._write_revision_marker()  # (a copy refused above, or one complete already, is left as it was)
        self.frame_keys = [key for key in self.meta.features if key not in DEFAULT_FEATURES]
        self.rename_map = self._checked_rename_map(dict(rename_map or {}))
        self.episodes_of_task, self.instruction_of_episode = self._index(task_of_instruction)
        for key, values in self.stats().items():  # NaN statistics would train an all-NaN checkpoint
            check_finite(values, f"Dataset {self.label}'s meta/stats.json, {key}")
        self.bytes_fetched = 0  # over the source's life

    # --- metadata ----------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        return f"{self.repo_id}@{self.revision}"

    def _not_cached(self, missing: str) -> AMFInputError:
        return AMFInputError(
            f"Dataset {self.label} is not cached in {self.root} ({missing}) and HF_HUB_OFFLINE=1 "
            f"forbids downloading it: run `hf download --repo-type dataset {self.repo_id} "
            f"--revision {self.revision} --local-dir {self.root}` while online, or unset HF_HUB_OFFLINE "
            f"(or point amf.source_root at a local copy)."
        )

    def _open_metadata(self) -> LeRobotDatasetMetadata:
        """LeRobot's metadata of the copy at ``root``, ``meta/`` downloaded into it when missing.

        LeRobot 0.6.1 reads ``meta/info.json`` into a ``DatasetInfo`` that refuses missing or
        non-positive fields (``TypeError`` / ``ValueError``) as it loads: one line here.
        """
        offline = hf_constants.HF_HUB_OFFLINE
        if offline and not (self.root / INFO_PATH).is_file():
            raise self._not_cached("no meta/")
        try:
            return LeRobotDatasetMetadata(self.repo_id, root=self.root, revision=self.revision)
        except HFValidationError as e:
            raise AMFInputError(f"{self.repo_id!r} is not a Hub dataset repo id (amf.source_repo_id): "
                                f"{' '.join(str(e).split())}") from e
        except RepositoryNotFoundError as e:
            raise AMFInputError(f"No dataset {self.repo_id!r} on the Hub (amf.source_repo_id).") from e
        except RevisionNotFoundError as e:
            raise AMFInputError(f"Dataset {self.repo_id!r} has no revision {self.revision!r} "
                                f"(amf.source_revision).") from e
        except (FileNotFoundError, OfflineModeIsEnabled, LocalEntryNotFoundError) as e:
            if offline:
                raise self._not_cached("incomplete meta/") from e
            raise
        except (TypeError, ValueError) as e:
            raise AMFInputError(f"Dataset {self.label}: LeRobot cannot read its meta/ in {self.root} "
                                f"({type(e).__name__}: {' '.join(str(e).split())[:300]}).") from e

    def _check_revision_marker(self) -> None:
        """A local copy that says it holds another repo or revision is not read as this one."""
        marker = self.root / REVISION_MARKER
        try:
            held = json.loads(marker.read_text())
        except (FileNotFoundError, ValueError):
            return
        if not isinstance(held, dict) or (held.get("repo_id"), held.get("revision")) != (self.repo_id, self.revision):
            held_label = f"{held.get('repo_id')}@{held.get('revision')}" if isinstance(held, dict) else repr(held)
            raise AMFInputError(
                f"{self.root} holds dataset {held_label} ({REVISION_MARKER}), not {self.label}: point "
                f"amf.source_root at a folder of its own for this revision (or leave it unset: one per revision)."
            )

    def _write_revision_marker(self) -> None:
        marker = self.root / REVISION_MARKER
        if not marker.exists():
            try:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(json.dumps({"repo_id": self.repo_id, "revision": self.revision}) + "\n")
            except OSError:  # a read-only copy: it cannot be mistaken for another revision by us, then
                pass

    def _checked_rename_map(self, rename_map: dict[str, str]) -> dict[str, str]:
        unknown = [key for key in rename_map if key not in self.frame_keys]
        if unknown:
            raise AMFInputError(
                f"amf.source_rename_map renames {', '.join(map(repr, unknown))}, not a feature of dataset "
                f"{self.label}. Its features: {', '.join(self.frame_keys)}."
            )
        names = [rename_map.get(key, key) for key in self.frame_keys]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise AMFInputError(f"amf.source_rename_map gives several features the name(s) {', '.join(clashes)}.")
        return rename_map

    def _index(self, task_of_instruction: dict[str, str] | None):
        """Pool task -> its episodes (ascending), and episode -> its task string.

        An episode belongs to a task when the episode carries exactly that one task string;
        task strings the mapping leaves out are not in the pool.
        """
        episodes = self.meta.episodes
        has_labels = episodes is not None and "tasks" in episodes.column_names
        labels = zip(episodes["episode_index"], episodes["tasks"]) if has_labels else []
        labelled = [(int(e), tasks[0]) for e, tasks in labels if len(tasks) == 1 and tasks[0]]
        if not labelled:
            raise AMFInputError(
                f"Dataset {self.label} has no task labels (no episode with one task string in "
                f"meta/episodes): the hub source pulls demos by task and needs them."
            )
        episodes_of_task: dict[str, list[int]] = {}
        instruction_of_episode: dict[int, str] = {}
        for episode, instruction in labelled:
            task = instruction if task_of_instruction is None else task_of_instruction.get(instruction)
            if task is not None:
                episodes_of_task.setdefault(task, []).append(episode)
                instruction_of_episode[episode] = instruction
        return {t: sorted(e) for t, e in episodes_of_task.items()}, instruction_of_episode

    # --- DemoSource ----------------------------------------------------------------------------------
    def tasks(self) -> list[str]:
        return list(self.episodes_of_task)

    @property
    def fps(self) -> int:
        return self.meta.fps

    def features(self) -> dict[str, dict]:
        """The features the run's dataset needs: the frames' features, renamed, videos as images
        (the run's dataset stores frames, not MP4s)."""
        features = {}
        for key in self.frame_keys:
            feature = {k: v for k, v in self.meta.features[key].items() if k != "info"}
            feature["shape"] = tuple(feature["shape"])
            if feature["dtype"] == "video":
                feature["dtype"] = "image"
            features[self.rename_map.get(key, key)] = feature
        return features

    def stats(self) -> dict[str, dict]:
        """The whole dataset's normalisation stats (``meta/stats.json``), keyed as the run's features."""
        return {self.rename_map.get(key, key): value for key, value in self.meta.stats.items()
                if key in self.frame_keys}

    def describe(self) -> dict:
        return {"name": self.name, "repo_id": self.repo_id, "revision": self.revision,
                "rename_map": self.rename_map}

    def cache_key(self) -> dict:
        return {"dataset": self.label, "rename_map": self.rename_map}

    def validate_pool(self, pool: list[str]) -> None:
        unknown = [t for t in pool if t not in self.episodes_of_task]
        if unknown:
            raise AMFInputError(
                f"Task(s) {', '.join(map(repr, unknown))} not in dataset {self.label}; its "
                f"{len(self.episodes_of_task)} tasks: {shorten(self.tasks())}."
            )

    def demo_id(self, episode: int) -> str:
        return f"hub/{self.label}/episode_{episode}"

    def order(self, task: str) -> list[int]:
        """The task's episodes in the order they are pulled: a permutation seeded by (seed, task)."""
        episodes = self.episodes_of_task[task]
        entropy = [self.seed, *f"{self.label}/{task}".encode()]
        return [episodes[i] for i in np.random.default_rng(entropy).permutation(len(episodes))]

    def _left(self, task: str, exclude: set[str]) -> list[int]:
        self.validate_pool([task])
        return [e for e in self.order(task) if self.demo_id(e) not in exclude]

    def _too_few(self, task: str, left: list[int], k: int) -> AMFInputError:
        return AMFInputError(f"Dataset {self.label} has {len(left)} episode(s) of task {task!r} left "
                             f"(of {len(self.episodes_of_task[task])}); {k} were asked for.")

    def remaining(self, task: str, exclude: set[str]) -> int:
        return len(self._left(task, exclude))

    def _chosen(self, task: str, k: int, exclude: set[str]) -> list[int]:
        """The next ``k`` episodes of ``task`` not in ``exclude``, or one line saying how many are left."""
        left = self._left(task, exclude)
        if k > len(left):
            raise self._too_few(task, left, k)
        return left[:k]

    def pull(self, task: str, k: int, exclude: set[str]) -> list[Demo]:
        chosen = self._chosen(task, k, exclude)
        if not chosen:
            return []
        fetched = self._fetch(chosen)
        frames = self._read(chosen)
        demos, counted = [], set()
        for episode in chosen:
            # each newly downloaded file is counted once, on the first demo that needed it
            files = [f for f in self.files_of(episode) if f in fetched and f not in counted]
            counted.update(files)
            info = {"repo_id": self.repo_id, "revision": self.revision, "episode_index": episode,
                    "bytes_fetched": sum(fetched[f] for f in files), "files_fetched": files}
            demos.append(Demo(self.demo_id(episode), task, self.instruction_of_episode[episode],
                              frames[episode], info))
        return demos

    # --- files and frames ------------------------------------------------------------------------
    def files_of(self, episode: int) -> list[str]:
        """The repo files holding an episode (the ones ``LeRobotDataset(episodes=...)`` downloads)."""
        files = [self.meta.get_data_file_path(episode)]
        files += [self.meta.get_video_file_path(episode, key) for key in self.meta.video_keys]
        where = f"Dataset {self.label}: the file of episode {episode}"
        return [check_inside(self.root, Path(f).as_posix(), where).relative_to(self.root).as_posix() for f in files]

    def check_round(self, wanted: dict[str, int], exclude: set[str], pretraining: bool = False) -> dict[str, int]:
        """Before any pull of the round (or of the pretraining demos): every task has the episodes,
        and the files they need that are not cached (sized by HEAD requests, nothing downloaded)
        fit ``max_bytes_per_round``."""
        chosen = [e for task, k in wanted.items() for e in self._chosen(task, k, exclude)]
        missing = self._missing_files(chosen)
        if not missing or self.max_bytes_per_round is None:
            return dict(wanted)
        sizes = {f: self._remote_size(f) for f in missing}
        total = sum(sizes.values())
        if total > self.max_bytes_per_round:
            largest = sorted(sizes, key=sizes.get, reverse=True)
            whose, kept = (("The pretraining demos", "") if pretraining else
                           ("This round's demos", " (the round's selection is kept for --resume=true)"))
            raise AMFInputError(
                f"{whose} of {self.label} would download {total:,} bytes ({total / 1e9:.2f} GB in "
                f"{len(missing)} file(s), "
                f"largest {shorten(largest, 60)}), over amf.source_max_bytes_per_round={self.max_bytes_per_round}: "
                f"nothing was downloaded; raise the cap to go on{kept}."
            )
        return dict(wanted)

    def _remote_size(self, file: str) -> int:
        url = hf_hub_url(self.repo_id, file, repo_type="dataset", revision=self.meta.revision)
        size = get_hf_file_metadata(url).size
        return int(size) if size is not None else 0

    def _missing_files(self, episodes: list[int]) -> list[str]:
        """The files holding these episodes that are not in the local copy, sorted; offline, one
        line saying so when there are any."""
        missing = sorted({f for e in episodes for f in self.files_of(e) if not (self.root / f).is_file()})
        if missing and hf_constants.HF_HUB_OFFLINE:
            raise self._not_cached(f"missing {len(missing)} file(s) of the chosen episodes: {shorten(missing, 60)}")
        return missing

    def _fetch(self, episodes: list[int]) -> dict[str, int]:
        """Download the files holding these episodes that are not cached; return them -> bytes.

        The download is huggingface_hub's ``snapshot_download`` of exactly those files (each name
        glob-escaped, so a name cannot match more files than were sized) into the local copy, at
        the revision the metadata resolved: what LeRobot 0.6.1's metadata does in its private
        ``_pull_from_repo``. ``LeRobotDataset(episodes=...)`` is not used: it reloads the whole
        metadata on every pull and downloads whatever files it decides, while the source counts
        the bytes of each file it asked for.
        """
        missing = self._missing_files(episodes)
        if missing:
            if self.mark_revision:  # the copy is this source's download cache from now on
                self._write_revision_marker()
            snapshot_download(self.repo_id, repo_type="dataset", revision=self.meta.revision,
                              local_dir=self.root, allow_patterns=[glob.escape(f) for f in missing])
            absent = [f for f in missing if not (self.root / f).is_file()]
            if absent:
                raise AMFInputError(f"Dataset {self.label}: its metadata names file(s) the Hub repo does not "
                                    f"hold: {shorten(absent, 60)}.")
        fetched = {f: (self.root / f).stat().st_size for f in missing}
        self.bytes_fetched += sum(fetched.values())
        return fetched

    def _read(self, episodes: list[int]) -> dict[int, dict[str, np.ndarray]]:
        """Each episode's frames as arrays keyed by (renamed) feature; camera frames uint8 HWC.

        Rows are read the way ``LeRobotDataset`` reads them (``load_nested_dataset`` with the
        episodes as a filter); videos are decoded one episode at a time by LeRobot's decoder.
        """
        check_tree(self.root, f"Dataset {self.label}")  # the files just downloaded too: no links out
        features = get_hf_features_from_features(self.meta.features)
        rows = load_nested_dataset(self.root / DATA_DIR, features=features, episodes=episodes)
        columns = rows.with_format("numpy")[:]  # stored images decode to uint8 HWC
        order = np.lexsort((columns["frame_index"], columns["episode_index"]))
        columns = {key: np.asarray(values)[order] for key, values in columns.items()}
        backend = get_safe_default_video_backend()
        frames = {}
        for episode in episodes:
            mine = columns["episode_index"] == episode
            if int(mine.sum()) != self.meta.episodes[episode]["length"]:
                raise UntrustedFileError(f"Dataset {self.label}: episode {episode} has {int(mine.sum())} rows in data/, "
                                         f"its metadata says {self.meta.episodes[episode]['length']}: refused.")
            episode_frames = {}
            for key in self.frame_keys:
                if key in self.meta.video_keys:
                    values = self._decode(episode, key, columns["timestamp"][mine], backend)
                else:
                    values = columns[key][mine]
                episode_frames[self.rename_map.get(key, key)] = values
            frames[episode] = episode_frames
        return frames

    def _decode(self, episode: int, key: str, timestamps: np.ndarray, backend: str) -> np.ndarray:
        """An episode's video frames at its timestamps, in one pass (many episodes share an MP4)."""
        start = self.meta.episodes[episode][f"videos/{key}/from_timestamp"]
        path = check_inside(self.root, Path(self.meta.get_video_file_path(episode, key)).as_posix(),
                            f"Dataset {self.label}: the video of episode {episode}")
        frames = decode_video_frames(path, [start + float(t) for t in timestamps], VIDEO_TOLERANCE_S, backend)
        return (frames * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # from (T, C, H, W) in [0, 1]

    # --- policy compatibility ----------------------------------------------------------------------
    def check_features(self, policy_config) -> None:
        """One-line error unless every feature the policy reads or predicts is in the frames, shaped
        as the policy expects (or as it pads / resizes to)."""
        ours = dataset_to_policy_features(self.features())
        problems = feature_mismatches(ours, policy_config, "the dataset")
        if problems:
            raise AMFInputError(
                f"Dataset {self.label} does not match the policy's features: {'; '.join(problems)}. "
                f"Dataset features (after amf.source_rename_map): {', '.join(ours)}."
            )


def make_hub_source(amf_cfg, seed: int, task_of_instruction: dict[str, str] | None = None) -> HubDatasetSource:
    """The source of ``--amf.source=hub``, from ``amf.source_repo_id`` / ``_revision`` / ``_root`` /
    ``_rename_map``."""
    repo_id = getattr(amf_cfg, "source_repo_id", None)
    if not repo_id:
        raise AMFInputError("amf.source=hub needs amf.source_repo_id (a LeRobot dataset, e.g. lerobot/libero).")
    return HubDatasetSource(
        repo_id,
        revision=getattr(amf_cfg, "source_revision", None),
        root=getattr(amf_cfg, "source_root", None),
        rename_map=getattr(amf_cfg, "source_rename_map", None),
        seed=seed,
        task_of_instruction=task_of_instruction,
        max_bytes_per_round=getattr(amf_cfg, "source_max_bytes_per_round", DEFAULT_MAX_BYTES_PER_ROUND),
    )
