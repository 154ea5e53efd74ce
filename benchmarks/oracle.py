"""The best allocation of a demo budget, from measured per-task learning curves (studies only).

A learning curve is a task's success rate after d fine-tuning demos of it, d = 0 .. D, read off a
run that gave every task one demo per round (``headroom_pilot``). Under the additive model (a
task's success depends on its own demos only) the best split of a budget B over the pool is a
small dynamic program over tasks (``best_allocation``). It is privileged: it knows how every task
responds to demos, which no strategy a user can run knows. A study reports each strategy's share
of its gain over uniform; it is never offered as ``--amf.strategy``.

Curves are made non-decreasing in d (``monotone``: pool-adjacent-violators, the least-squares
monotone fit): a curve measured on 20 episodes a point wiggles, and a dynamic program would
spend demos chasing a wiggle. Allocations never go past the D demos a curve was measured to.
Standard library and NumPy only.
"""

from __future__ import annotations

import numpy as np


def monotone(values) -> list[float]:
    """The least-squares non-decreasing fit of ``values`` (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight]
    for v in values:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m1, w1), (m2, w2) = blocks[-2], blocks[-1]
            blocks[-2:] = [[(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2]]
    out: list[float] = []
    for mean, weight in blocks:
        out += [mean] * int(weight)
    return out


def best_allocation(curves: dict[str, list[float]], budget: int, weights: dict[str, float] | None = None,
                    ) -> dict[str, int]:
    """The split of ``budget`` demos over the tasks of ``curves`` that maximises
    Σ_task weight · curve[task][d_task], with 0 <= d_task <= len(curve) - 1 and Σ d_task = budget
    (exact, by dynamic programming over tasks). Among splits of equal value, the one closest to
    equal shares (least Σ (d_task - budget / tasks)²): demos the curves say nothing about are
    spread, not piled on one flat curve."""
    tasks = list(curves)
    weights = weights or {t: 1.0 for t in tasks}
    cap = sum(len(curves[t]) - 1 for t in tasks)
    if not 0 <= budget <= cap:
        raise ValueError(f"budget {budget} is outside 0..{cap}: the curves were measured to {cap} demos in all")
    share = budget / len(tasks)
    # best[b] = ((value, -departure from equal shares), allocation) over the tasks so far, spending exactly b
    best: dict[int, tuple[tuple[float, float], tuple[int, ...]]] = {0: ((0.0, 0.0), ())}
    for task in tasks:
        curve, w = curves[task], weights[task]
        nxt: dict[int, tuple[tuple[float, float], tuple[int, ...]]] = {}
        for spent, ((value, neg_dev), alloc) in best.items():
            for d in range(min(len(curve), budget - spent + 1)):
                key = (round(value + w * curve[d], 12), round(neg_dev - (d - share) ** 2, 12))
                if spent + d not in nxt or key > nxt[spent + d][0]:
                    nxt[spent + d] = (key, (*alloc, d))
        best = nxt
    return dict(zip(tasks, best[budget][1]))


def uniform_allocation(tasks: list[str], budget: int) -> dict[str, int]:
    """Equal shares; with a remainder, one more demo for the first tasks (budgets are chosen as
    multiples of the pool, so there is none)."""
    share, extra = divmod(budget, len(tasks))
    return {t: share + (i < extra) for i, t in enumerate(tasks)}


def mean_success(curves: dict[str, list[float]], allocation: dict[str, int]) -> float:
    """The mean over tasks of each task's curve at its allocation (the additive model's prediction)."""
    return float(np.mean([curves[t][allocation[t]] for t in curves]))
