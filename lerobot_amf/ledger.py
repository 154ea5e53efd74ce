"""The run's append-only record.

Every event of a run (its config, each round's selections, the demos pulled, training
metrics, evaluation results) is one JSON line in ``<output_dir>/amf_ledger.jsonl``, written
with flush + fsync so that a crash loses at most the line being written. The ledger is the
run's memory: counts per task, demo ids already pulled and finished rounds are all derived
from it, never kept elsewhere.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

LEDGER_FILENAME = "amf_ledger.jsonl"


class Ledger:
    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / LEDGER_FILENAME

    def append(self, event: str, **payload: Any) -> dict:
        record = {"event": event, "time": round(time.time(), 3), **payload}
        line = json.dumps(record, sort_keys=True, default=_jsonable)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        return record

    def records(self, event: str | None = None) -> Iterator[dict]:
        """Complete records in order; a torn last line (crash mid-write) is skipped."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    break
                if event is None or rec.get("event") == event:
                    yield rec

    def state(self) -> "LedgerState":
        state = LedgerState()
        for rec in self.records():
            if rec["event"] == "demos_pulled":
                for demo in rec["demos"]:
                    state.demo_ids.add(demo["demo_id"])
                    state.counts[demo["task"]] += 1
                    state.episodes.append(demo)
            elif rec["event"] == "round_end":
                state.rounds_done = max(state.rounds_done, rec["round"] + 1)
        return state


@dataclass
class LedgerState:
    """What the ledger says has happened so far."""

    counts: Counter = field(default_factory=Counter)
    demo_ids: set[str] = field(default_factory=set)
    episodes: list[dict] = field(default_factory=list)
    rounds_done: int = 0


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
