"""Phase markers: one stderr line as a run enters and leaves each phase of its work.

Off unless ``LEROBOT_AMF_PHASE_MARKERS=1``. ``benchmarks/faults.py`` turns them on to stop a
run with SIGKILL inside a chosen phase and to tell afterwards where it really died (the last
``begin`` without its ``end``). They only print: nothing in a run depends on them.

    amf-phase: begin <phase> <unix time>
    amf-phase: end <phase> <unix time>
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Iterator

ENV_VAR = "LEROBOT_AMF_PHASE_MARKERS"
PREFIX = "amf-phase:"
PHASES = ("pretraining", "selecting", "pulling", "writing_demos", "training", "saving_checkpoint",
          "evaluating", "writing_report")


def _mark(kind: str, name: str) -> None:
    if os.environ.get(ENV_VAR) == "1":
        print(f"{PREFIX} {kind} {name} {time.time():.3f}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Mark ``name`` (one of ``PHASES``) as running for the duration of the block."""
    if name not in PHASES:
        raise ValueError(f"unknown phase {name!r}; known: {', '.join(PHASES)}")
    _mark("begin", name)
    yield
    _mark("end", name)
