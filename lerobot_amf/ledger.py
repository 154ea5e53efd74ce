"""The run's append-only record.

Every event of a run (its config, each round's selections, the demos pulled, training
metrics, evaluation results) is one JSON line in ``<output_dir>/amf_ledger.jsonl``, written
with flush + fsync so that a crash loses at most the line being written. The ledger is the
run's memory: counts per task, demo ids already pulled and finished rounds are all derived
from it, never kept elsewhere.

A record exists once its line, newline included, is on disk. A stop mid-write leaves a torn
last line (no newline, or not JSON): readers skip it, and the first append of the next
process truncates it away (logged) so that the new line does not glue onto it. A line that
is not a JSON record anywhere else means the file was damaged: reading it is a one-line
``AMFInputError`` naming the line, never a silent truncation of the run's history.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from lerobot_amf.errors import AMFInputError

LEDGER_FILENAME = "amf_ledger.jsonl"


def software() -> dict[str, str]:
    """What ran the run, recorded in its first line: its numbers depend on it (LeRobot 0.4 and 0.6
    sample, normalise losses and build policies differently), and a resume must not mix two."""
    import platform
    from importlib.metadata import version

    return {"lerobot_amf": version("lerobot-amf"), "lerobot": version("lerobot"), "torch": version("torch"),
            "python": platform.python_version()}


def same_lerobot_release(a: str, b: str) -> bool:
    """Whether two LeRobot versions are one release line (``0.6.1`` and ``0.6.3``: yes; ``0.4.4``: no)."""
    return a.split(".")[:2] == b.split(".")[:2]


class Ledger:
    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / LEDGER_FILENAME
        self._tail_checked = False

    def append(self, event: str, **payload: Any) -> dict:
        record = {"event": event, "time": round(time.time(), 3), **payload}
        line = json.dumps(record, sort_keys=True, default=_jsonable)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._tail_checked:
            self.repair_torn_tail()
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        return record

    def repair_torn_tail(self) -> int:
        """Truncate a torn last line left by a stopped writer; return the bytes removed."""
        self._tail_checked = True
        if not self.path.exists():
            return 0
        data = self.path.read_bytes()
        keep = _complete_length(data)
        if keep == len(data):
            return 0
        with open(self.path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        line_no = data[:keep].count(b"\n") + 1
        logging.warning(f"{self.path}: removed a torn last line (line {line_no}, {len(data) - keep} bytes) "
                        "left by an interrupted write; that record was never complete.")
        return len(data) - keep

    def records(self, event: str | None = None) -> Iterator[dict]:
        """Complete records in order; a torn last line is skipped, a corrupt earlier one is an error."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        lines = data[: _complete_length(data)].split(b"\n")[:-1]
        for number, raw in enumerate(lines, start=1):
            rec = _parse(raw)
            if rec is None:
                raise AMFInputError(
                    f"Corrupt ledger {self.path} at line {number} of {len(lines)}: not a JSON record "
                    f"({raw[:60]!r}). The run's history cannot be trusted past it; restore the file or start a new run."
                )
            if event is None or rec["event"] == event:
                yield rec

    def state(self) -> "LedgerState":
        state = LedgerState()
        for rec in self.records():
            if rec["event"] == "selection":
                state.selections[rec["round"]] = rec
            elif rec["event"] == "demos_pulled":
                state.pulled_rounds.add(rec["round"])
                for demo in rec["demos"]:
                    state.demo_ids.add(demo["demo_id"])
                    state.counts[demo["task"]] += 1
                    state.pulled.setdefault(rec["round"], Counter())[demo["task"]] += 1
                    state.episodes.append(demo)
            elif rec["event"] == "round_end":
                state.rounds_done = max(state.rounds_done, rec["round"] + 1)
            elif rec["event"] == "eval":
                state.evals.setdefault(rec["round"], rec)  # a round's first variant: the run's own model
        return state


@dataclass
class LedgerState:
    """What the ledger says has happened so far."""

    counts: Counter = field(default_factory=Counter)
    demo_ids: set[str] = field(default_factory=set)
    episodes: list[dict] = field(default_factory=list)  # demos_pulled records, in episode order
    rounds_done: int = 0
    selections: dict[int, dict] = field(default_factory=dict)  # round -> its (last) selection record
    pulled_rounds: set[int] = field(default_factory=set)  # rounds whose demos are recorded
    evals: dict[int, dict] = field(default_factory=dict)  # round (-1: pretrained) -> its first eval record
    pulled: dict[int, Counter] = field(default_factory=dict)  # round -> demos pulled in it, per task

    def demos_after(self, r: int) -> dict[str, int]:
        """Fine-tuning demos per task once round ``r``'s were pulled (-1: none; what round r's eval saw)."""
        total: Counter = Counter()
        for rr, pulled in self.pulled.items():
            if rr <= r:
                total.update(pulled)
        return dict(total)

    def latest_success(self) -> dict[str, dict] | None:
        """Per task, the latest evaluation of the run's own model (None before any)."""
        return self.evals[max(self.evals)]["per_task"] if self.evals else None


def _parse(raw: bytes) -> dict | None:
    """A ledger record from one line, or None if the line is not one."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("event"), str) else None


def _complete_length(data: bytes) -> int:
    """Length of ``data`` without a torn last line: no newline after it, or not a JSON record."""
    end = data.rfind(b"\n") + 1  # everything after the last newline is torn
    if end == 0:
        return 0
    start = data.rfind(b"\n", 0, end - 1) + 1
    return end if _parse(data[start:end - 1]) is not None else start


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
