"""``--amf.source=request``: demos recorded by people with ``lerobot-record``, into an intake dataset.

A team with a real robot records by hand, over hours or days. Each round, once its tasks are
chosen, the loop writes a collection request (``requests/round_XX.json`` and ``.md``: the tasks,
how many demos of each, their instruction strings and the ready ``lerobot-record`` command per
task), prints it, and stops with exit 0 and one line saying what it waits for. The team records into
the intake dataset (a LeRobot dataset folder, ``--amf.source_root``; by default ``<output_dir>/intake``)
and runs the same command with ``--resume=true``; the loop checks the new episodes against the request,
takes them into the run's demo dataset, and goes on.

* An intake episode is named by its content (task string and actions), not by its index, so deleting
  or relabelling episodes with ``lerobot-edit-dataset`` never makes one count twice, and the ledger's
  records (the commit point of ``data.write_demos``) say which intake episodes each round consumed: a
  stop anywhere neither loses nor double-counts one.
* An episode whose task string is no pool task's instruction is refused with one line naming it and
  the fix, before anything is consumed. Episodes shorter than ``--amf.request_min_frames`` are named
  and left. Episodes beyond a task's request, or of a task not requested, are named and left for a
  later request of that task.
* A partly filled request waits for the rest; ``--amf.accept_partial=true`` takes what is there and
  the round's ledger record keeps the shortfall.
* The intake is read as the hub source reads a local copy (path templates checked, frames decoded by
  LeRobot); it is the team's own folder, so nothing is written into it. An intake on the Hub
  (``--amf.source_repo_id`` without ``--amf.source_root``: the team records with
  ``--dataset.push_to_hub=true``) is downloaded into ``<output_dir>/intake`` once per start, so each
  resume sees what was pushed since.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import numpy as np

from lerobot_amf.atomic import write_text_atomic
from lerobot_amf.errors import AMFInputError
from lerobot_amf.sources.base import DemoSource, WaitingForDemos
from lerobot_amf.sources.hub import HubDatasetSource

REQUESTS_DIR = "requests"
DEFAULT_INTAKE_DIR = "intake"
RECORD_ARGS_PLACEHOLDER = "--robot.type=<your robot> --teleop.type=<your teleoperator>"


def request_path(output_dir: Path, round_index: int, suffix: str = ".json") -> Path:
    return Path(output_dir) / REQUESTS_DIR / f"round_{round_index + 1:02d}{suffix}"


class IntakeReader(HubDatasetSource):
    """The intake dataset as the hub source reads a local copy, with three differences: episodes in
    recording order, ids from content (``fingerprints``), and nothing written into the folder."""

    name = "request"
    mark_revision = False

    def __init__(self, repo_id: str, root: Path, task_of_instruction: dict[str, str], min_frames: int):
        self.min_frames = min_frames
        super().__init__(repo_id, root=root, task_of_instruction=task_of_instruction, max_bytes_per_round=None)
        self.length_of = {int(e): int(n) for e, n in zip(self.meta.episodes["episode_index"],
                                                         self.meta.episodes["length"], strict=True)}
        self.label_of = {int(e): (tasks[0] if len(tasks) == 1 else " | ".join(tasks))
                         for e, tasks in zip(self.meta.episodes["episode_index"], self.meta.episodes["tasks"],
                                             strict=True)}
        self.fingerprint = self._fingerprints()

    @property
    def label(self) -> str:
        return f"intake {self.repo_id} ({self.root})"

    def _fingerprints(self) -> dict[int, str]:
        """Episode -> a hash of its task string and its actions in frame order."""
        import pyarrow.parquet as pq

        parts: dict[int, list] = {}
        for path in sorted((self.root / "data").rglob("*.parquet")):
            table = pq.read_table(path, columns=["episode_index", "frame_index", "action"]).to_pydict()
            for e, f, a in zip(table["episode_index"], table["frame_index"], table["action"], strict=True):
                parts.setdefault(int(e), []).append((int(f), a))
        out = {}
        for episode, rows in parts.items():
            actions = np.asarray([a for _, a in sorted(rows, key=lambda r: r[0])], dtype=np.float32)
            digest = hashlib.sha256(self.label_of.get(episode, "").encode() + actions.tobytes()).hexdigest()
            out[episode] = digest[:20]
        return out

    def demo_id(self, episode: int) -> str:
        return f"intake/{self.repo_id}/{self.fingerprint[episode]}"

    def order(self, task: str) -> list[int]:
        """Recording order, episodes too short to train on left out."""
        return [e for e in self.episodes_of_task[task] if self.length_of[e] >= self.min_frames]


class RequestSource(DemoSource):
    name = "request"

    def __init__(self, repo_id: str, root: Path, task_of_instruction: dict[str, str], min_frames: int,
                 accept_partial: bool, record_args: str | None, from_hub: bool = False):
        self.repo_id, self.root, self.from_hub = repo_id, Path(root), from_hub
        self._refreshed = False
        self.task_of_instruction = task_of_instruction  # every catalogue task's instruction -> task
        self.instruction_of = {t: i for i, t in task_of_instruction.items()}
        self.min_frames, self.accept_partial = min_frames, accept_partial
        self.record_args = record_args or RECORD_ARGS_PLACEHOLDER
        self.pool: list[str] = list(task_of_instruction.values())
        self._reader: IntakeReader | None = None
        self._policy_cfg = None
        self._note: dict = {}

    # --- the intake ----------------------------------------------------------------------------------
    def intake(self) -> IntakeReader | None:
        """The intake dataset as it is now (None: nothing recorded yet); features checked once known."""
        if self.from_hub and not self._refreshed:
            self._refresh_from_hub()
        if self._reader is None and (self.root / "meta" / "info.json").is_file():
            pool_instructions = {self.instruction_of[t]: t for t in self.pool}
            self._reader = IntakeReader(self.repo_id, self.root, pool_instructions, self.min_frames)
            if self._policy_cfg is not None:
                self._reader.check_features(self._policy_cfg)
        return self._reader

    def _refresh_from_hub(self) -> None:
        """Bring the local copy up to what the Hub repo holds now (nothing pushed yet: nothing to read)."""
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        self._refreshed = True
        if constants.HF_HUB_OFFLINE:
            return  # the copy as it is (HF_HUB_OFFLINE=1 forbids asking the Hub for more)
        try:
            snapshot_download(self.repo_id, repo_type="dataset", local_dir=self.root)
        except (RepositoryNotFoundError, RevisionNotFoundError):
            return

    # --- DemoSource ----------------------------------------------------------------------------------
    def tasks(self) -> list[str]:
        return list(self.task_of_instruction.values())

    def validate_pool(self, pool: list[str]) -> None:
        super().validate_pool(pool)
        self.pool = list(pool)

    def remaining(self, task: str, exclude: set[str]) -> int | None:
        return None  # people can always record more

    @property
    def fps(self) -> int:
        return self._require().fps

    def features(self) -> dict[str, dict]:
        return self._require().features()

    def check_features(self, policy_config) -> None:
        self._policy_cfg = policy_config
        if self.intake() is not None:
            self._reader.check_features(policy_config)

    def describe(self) -> dict:
        return {"name": self.name, "repo_id": self.repo_id, "root": str(self.root), "from_hub": self.from_hub}

    def pull(self, task: str, k: int, exclude: set[str]):
        return self._require().pull(task, k, exclude)

    def _require(self) -> IntakeReader:
        reader = self.intake()
        if reader is None:
            raise AMFInputError(f"The intake dataset {self.root} holds no recording yet.")
        return reader

    # --- a round's request ---------------------------------------------------------------------------
    def announce(self, round_index: int, tasks: list[str], output_dir: Path) -> Path:
        """Write the round's collection request (once) and print it; its path."""
        from collections import Counter

        from rich.console import Console
        from rich.table import Table

        wanted = dict(Counter(tasks))
        first = self.intake() is None
        commands = {}
        where = ["--dataset.push_to_hub=true"] if self.from_hub else [f"--dataset.root={self.root}",
                                                                      "--dataset.push_to_hub=false"]
        for i, (task, k) in enumerate(wanted.items()):
            resume = [] if first and i == 0 else ["--resume=true"]
            commands[task] = (f"lerobot-record {self.record_args} " + shlex.join([
                f"--dataset.repo_id={self.repo_id}", f"--dataset.single_task={self.instruction_of[task]}",
                f"--dataset.num_episodes={k}", *where, *resume]))
        request = {"format": "lerobot_amf.request/1", "round": round_index + 1,
                   "intake": {"repo_id": self.repo_id, "root": str(self.root), "from_hub": self.from_hub},
                   "min_frames": self.min_frames,
                   "tasks": [{"task": t, "instruction": self.instruction_of[t], "demos": k, "command": commands[t]}
                             for t, k in wanted.items()],
                   "then": "the same lerobot-amf-train command with --resume=true"}
        path = request_path(output_dir, round_index)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            into = f"the Hub dataset `{self.repo_id}` (pushed)" if self.from_hub else \
                f"the intake dataset `{self.root}` (repo id `{self.repo_id}`)"
            lines = [f"# Collection request, round {round_index + 1}", "",
                     f"Record into {into}, one session per task; "
                     f"episodes shorter than {self.min_frames} frames are not used.", "",
                     "| task | instruction (`--dataset.single_task`) | demos |", "| --- | --- | --- |",
                     *(f"| {t['task']} | {t['instruction']} | {t['demos']} |" for t in request["tasks"]), "",
                     "Commands (add your robot's and teleoperator's flags):", "", "```bash",
                     *(t["command"] for t in request["tasks"]), "```", "",
                     "Then run the same `lerobot-amf-train` command with `--resume=true`.", ""]
            write_text_atomic(path.with_suffix(".md"), "\n".join(lines))
            write_text_atomic(path, json.dumps(request, indent=2) + "\n")
        table = Table(title=f"Collection request, round {round_index + 1} ({path})")
        for column in ("task", "instruction", "demos"):
            table.add_column(column, overflow="fold")
        for t in request["tasks"]:
            table.add_row(t["task"], t["instruction"], str(t["demos"]))
        Console().print(table)
        return path

    def check_round(self, wanted: dict[str, int], exclude: set[str], pretraining: bool = False) -> dict[str, int]:
        """What the intake holds for this round, checked before anything is consumed: one line and exit 2
        for a wrong label; wait (``WaitingForDemos``) while the request is not filled, unless
        ``accept_partial`` and something is there. The demos to take per task."""
        reader = self.intake()
        waiting = f"Waiting for demos in the intake dataset {self.repo_id if self.from_hub else self.root}"
        if reader is None:
            raise WaitingForDemos(f"{waiting}: nothing recorded yet; wanted {_counts(wanted)}. {self._then()}")
        fresh = [e for e in sorted(reader.label_of) if reader.demo_id(e) not in exclude]
        wrong = [e for e in fresh if reader.label_of[e] not in reader.instruction_of_episode.values()]
        if wrong:
            raise AMFInputError(self._wrong_labels(reader, wrong))
        short = [e for e in fresh if reader.length_of[e] < self.min_frames]
        available = {t: reader.remaining(t, exclude) if t in reader.episodes_of_task else 0 for t in self.pool}
        take = {t: min(k, available[t]) for t, k in wanted.items()}
        missing = {t: k - take[t] for t, k in wanted.items() if take[t] < k}
        extra = {t: n - take.get(t, 0) for t, n in available.items() if n > take.get(t, 0)}
        notes = "; ".join(part for part in (
            f"episodes too short (< {self.min_frames} frames), not used: {short}" if short else "",
            f"beyond the request, left for a later one: {_counts(extra)}" if extra else "") if part)
        if missing and (not self.accept_partial or not sum(take.values())):
            have = ", ".join(f"{t} {take[t]}/{wanted[t]}" for t in wanted)
            raise WaitingForDemos(f"{waiting}: {have} recorded{'; ' + notes if notes else ''}. {self._then()}"
                                  + ("" if self.accept_partial else " Or add --amf.accept_partial=true to take "
                                     "what is there."))
        self._note = {"intake": {"wanted": wanted, "taken": take, "shortfall": missing, "left_extra": extra,
                                 "too_short": short}}
        return {t: k for t, k in take.items() if k}

    def round_record(self) -> dict:
        return self._note

    def _then(self) -> str:
        return "Record them (the request is in the run's requests/ folder), then resume with --resume=true."

    def _wrong_labels(self, reader: IntakeReader, episodes: list[int]) -> str:
        named = ", ".join(f"{e} ({reader.label_of[e]!r})" for e in episodes)
        edit = shlex.join(["lerobot-edit-dataset", f"--repo_id={self.repo_id}", f"--root={self.root}",
                           "--operation.type=modify_tasks",
                           f"--operation.episode_tasks={json.dumps({str(e): '<instruction>' for e in episodes})}"])
        # LeRobot 0.6.1's delete_episodes writes to $HF_LEROBOT_HOME/<repo_id> unless --new_root names
        # the folder (the same folder: edited in place, the original kept as a backup).
        delete = shlex.join(["lerobot-edit-dataset", f"--repo_id={self.repo_id}", f"--root={self.root}",
                             f"--new_root={self.root}", "--operation.type=delete_episodes",
                             f"--operation.episode_indices={json.dumps(list(episodes))}"])
        return (f"Intake episode(s) {named} carry no pool task's instruction (allowed: "
                f"{', '.join(repr(self.instruction_of[t]) for t in self.pool)}); nothing was consumed. Relabel them "
                f"({edit}) or delete them ({delete}), then resume.")


def _counts(per_task: dict[str, int]) -> str:
    return ", ".join(f"{t} x{k}" for t, k in per_task.items()) or "nothing"


def make_request_source(amf_cfg, output_dir: Path, task_of_instruction: dict[str, str]) -> RequestSource:
    """The intake: ``--amf.source_root`` (a local folder), else the Hub repo ``--amf.source_repo_id``
    (copied into ``<output_dir>/intake``), else the local folder ``<output_dir>/intake``."""
    from_hub = bool(amf_cfg.source_repo_id) and not amf_cfg.source_root
    root = Path(amf_cfg.source_root) if amf_cfg.source_root else Path(output_dir) / DEFAULT_INTAKE_DIR
    repo_id = amf_cfg.source_repo_id or f"local/{Path(output_dir).name}_intake"
    return RequestSource(repo_id, root, task_of_instruction, amf_cfg.request_min_frames, amf_cfg.accept_partial,
                         amf_cfg.request_record_args, from_hub=from_hub)
