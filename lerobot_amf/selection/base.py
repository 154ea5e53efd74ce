"""The strategy interface: which tasks the next demos are for.

A strategy sees a ``SelectionContext`` (plain data about the run so far, plus the current
policy and datasets for strategies that need them, like AMF) and returns a ``Selection``: the
tasks of the next ``n`` demos (a task may repeat) and, per task, the numbers behind the choice
so the ledger and report can show *why* each pick was made.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lerobot_amf.envs.tasks import TaskVocabulary
from lerobot_amf.errors import AMFInputError


@dataclass
class SelectionContext:
    round_index: int
    pool: list[str]
    target_weights: dict[str, float]  # mu(c), sums to 1 over the pool
    counts: dict[str, int]  # fine-tuning demos collected so far, per task
    capacity: dict[str, int | None]  # demos the source can still give per task (None: unlimited)
    rng: np.random.Generator  # seeded per round: same seed -> same selections
    pretrain_counts: dict[str, int] | None = None  # privileged (rebalancing); None if unknown
    # The latest evaluation of the run's own model, per task: {"successes", "episodes", ...};
    # None where nothing was evaluated (no simulator).
    success: dict[str, dict] | None = None
    # For model-based strategies (AMF): the current policy and the data in hand.
    policy: Any = None
    preprocessor: Any = None
    postprocessor: Any = None
    demo_dataset: Any = None  # (repo_id, root) of the fine-tuning demos D; None before the first pull
    pretrain_dataset: Any = None  # (repo_id, root) of the pretraining demos, when known
    env_cfg: Any = None
    accelerator: Any = None
    # How tasks are named to the policy (one-hot order, instructions) and in the datasets.
    vocabulary: TaskVocabulary | None = None

    def can_take(self, task: str, already: int = 0) -> bool:
        cap = self.capacity.get(task)
        return cap is None or cap - already > 0


@dataclass
class Selection:
    tasks: list[str]  # one entry per demo to pull, in pick order
    scores: dict[str, float] = field(default_factory=dict)  # per-task score used for the choice
    details: dict[str, Any] = field(default_factory=dict)  # strategy-specific diagnostics
    reason: str = ""  # one line: how the picks were made


def round_context(*, round_index: int, seed: int | None, **fields) -> SelectionContext:
    """The context of round ``round_index``'s choice, its random numbers seeded by (seed, round) alone:
    the loop and ``lerobot-amf-plan`` build it here, so the same state gives the same picks."""
    return SelectionContext(round_index=round_index, rng=np.random.default_rng([seed or 0, round_index]), **fields)


def normalised_target_weights(given: dict[str, float] | None, pool: list[str]) -> dict[str, float]:
    """μ(c) over ``pool`` from ``--amf.target_weights`` (default uniform; tasks a map leaves out weigh
    0), summing to 1; a task outside the pool or a bad weight is one line."""
    weights = given or {t: 1.0 for t in pool}
    unknown = [t for t in weights if t not in pool]
    if unknown:
        raise AMFInputError(f"amf.target_weights names task(s) outside the pool: {', '.join(unknown)}. "
                            f"Pool: {', '.join(pool)}.")
    bad = {t: w for t, w in weights.items() if not (isinstance(w, (int, float)) and np.isfinite(w) and w >= 0)}
    if bad or sum(weights.values()) <= 0:
        raise AMFInputError(f"amf.target_weights={weights}: weights must be finite, >= 0, with a positive sum.")
    total = sum(weights.values())
    return {t: weights.get(t, 0.0) / total for t in pool}


class Strategy(abc.ABC):
    name: str
    # Picks from the latest evaluation of the run's model (``ctx.success``): on a robot, evaluation
    # episodes someone runs before each round, counted in the run's human cost.
    reads_evaluation: bool = False

    def check_inputs(self, pretrain_counts: dict[str, int] | None, policy_path: object = None) -> None:
        """Refuse, before anything is written, a run this strategy cannot select for (one line,
        ``AMFInputError``); ``select`` calls it too. Most strategies need nothing."""

    @abc.abstractmethod
    def select(self, ctx: SelectionContext, n: int) -> Selection:
        """Tasks of the next ``n`` demos."""


def greedy_fill(ctx: SelectionContext, n: int, key) -> list[str]:
    """Pick ``n`` tasks one by one, each time the available task with the smallest ``key``.

    ``key(task, picked_so_far)`` returns a sortable value; ties are broken by a seeded random
    order so no task is favoured by its position in the pool.
    """
    order = list(ctx.rng.permutation(len(ctx.pool)))
    picked: dict[str, int] = {t: 0 for t in ctx.pool}
    out = []
    for _ in range(n):
        candidates = [t for t in ctx.pool if ctx.can_take(t, picked[t])]
        if not candidates:
            raise ValueError("The demo source has no demos left for any task in the pool.")
        best = min(candidates, key=lambda t: (key(t, picked[t]), order[ctx.pool.index(t)]))
        picked[best] += 1
        out.append(best)
    return out
