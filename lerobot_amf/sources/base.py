"""The demo-source interface: "give me k new demos of task c".

A source knows its task names and how many demos it can still give per task; ``pull`` returns
whole episodes as frame arrays keyed by LeRobot feature names, each with a stable ``demo_id``
so the run's ledger can guarantee that no demo is pulled twice (the ids already pulled are
passed back in as ``exclude``). Writing them into the run's LeRobotDataset happens in one
place, ``lerobot_amf.data.write_demos``, whatever the source.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from lerobot_amf.errors import AMFInputError

# --amf.source_max_bytes_per_round: far above a LIBERO round (a few video files of <= 500 MB
# each per demo), far below what a wrong repo id or a runaway selection could download.
DEFAULT_MAX_BYTES_PER_ROUND = 20 * 10**9


class WaitingForDemos(Exception):
    """A source filled by people does not hold the round's demos yet: the run stops (exit 0) with this
    one line, and ``--resume=true`` continues it."""


@dataclass
class Demo:
    demo_id: str  # stable, unique within the source
    task: str  # task name in the pool
    instruction: str  # the LeRobot dataset "task" string (language instruction)
    frames: dict[str, np.ndarray]  # feature name -> (T, ...) array
    info: dict = field(default_factory=dict)  # provenance: seed, success, source episode index ...

    @property
    def length(self) -> int:
        return len(next(iter(self.frames.values())))


class DemoSource(abc.ABC):
    """Where demonstrations come from (a scripted expert in simulation, a Hub dataset, ...)."""

    name: str

    @abc.abstractmethod
    def tasks(self) -> list[str]:
        """Every task name this source can give demos for."""

    @abc.abstractmethod
    def remaining(self, task: str, exclude: set[str]) -> int | None:
        """How many more demos of ``task`` can be pulled (None: unlimited)."""

    @abc.abstractmethod
    def pull(self, task: str, k: int, exclude: set[str]) -> list[Demo]:
        """``k`` new demos of ``task`` whose ids are not in ``exclude``."""

    @abc.abstractmethod
    def features(self) -> dict[str, dict]:
        """LeRobot dataset features of the frames this source returns."""

    @property
    @abc.abstractmethod
    def fps(self) -> int: ...

    def check_round(self, wanted: dict[str, int], exclude: set[str], pretraining: bool = False) -> dict[str, int]:
        """The pulls to make for a round (task -> demos): ``wanted``, or a one-line ``AMFInputError`` if
        they cannot all be made, raised before the first of them, so a refused round has fetched
        nothing. Nothing to check for a source that makes its demos. (A source filled by people may
        take fewer, or raise ``WaitingForDemos``.)"""
        return dict(wanted)

    def announce(self, round_index: int, tasks: list[str], output_dir) -> None:
        """Once a round's tasks are chosen: tell whoever fills this source (a collection request).
        Nothing to tell a source that makes or downloads its demos."""

    def round_record(self) -> dict:
        """What the round's ``demos_pulled`` ledger record adds about the last ``check_round``."""
        return {}

    def describe(self) -> dict:
        """The run record's "source" entry: what the demos came from."""
        return {"name": self.name}

    def cache_key(self) -> dict:
        """What, besides the allocation, shapes the demos a generalist is pretrained on."""
        return {}

    def check_features(self, policy_config) -> None:
        """One-line ``AMFInputError`` unless the frames this source gives fit what the policy reads
        and predicts. A simulated expert gives the env's own features, which the run checks
        against the policy already: nothing more to check by default."""

    def validate_pool(self, pool: list[str]) -> None:
        unknown = [t for t in pool if t not in self.tasks()]
        if unknown:
            raise AMFInputError(
                f"Unknown task name(s) for source {self.name!r}: {', '.join(unknown)}. "
                f"Allowed: {', '.join(self.tasks())}."
            )
