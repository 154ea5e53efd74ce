"""The statistics of the multi-seed studies: small pure functions on success counts and curves.

Their own module so that every study (``sample_efficiency``, and the studies after it) reads its
cells with the same tests and intervals; tested in ``tests/test_benchmark_sample_efficiency.py``.
Standard library only at import time (numpy and ``lerobot_amf`` inside the functions), like
``benchmarks.common``, so a study's ``--help`` and ``--dry-run`` load neither.
"""

from __future__ import annotations

import math


def budget_share(selected: list[str], tasks) -> float | None:
    """Share of the picks in ``selected`` that went to ``tasks`` (None when nothing was picked)."""
    return sum(t in set(tasks) for t in selected) / len(selected) if selected else None


def sign_test_p(diffs) -> float:
    """Two-sided exact sign test of "median difference = 0" (zero differences dropped)."""
    nonzero = [d for d in diffs if d != 0]
    n, k = len(nonzero), sum(d > 0 for d in nonzero)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def pooled_rate(per_task: dict) -> float:
    """Success pooled over tasks: successes / episodes ({task: {successes, episodes}})."""
    from lerobot_amf.evaluation import pooled

    return pooled(per_task, list(per_task))["success_rate"]


def paired_bootstrap_ci(pairs: list[tuple[dict, dict]], n_boot: int = 10_000, seed: int = 0,
                        level: float = 0.95) -> list[float]:
    """Interval of the mean over seeds of (pooled success of a - of b), two-stage bootstrap.

    ``pairs``: one (a_per_task, b_per_task) per seed, each {task: {successes, episodes}}. Stage 1
    resamples seeds with replacement; stage 2 resamples each task's episodes with replacement
    within each drawn seed and arm (binomial on the observed rate).
    """
    import numpy as np

    tasks = sorted(pairs[0][0])
    arrays = []
    for arm in (0, 1):
        s = np.array([[p[arm][t]["successes"] for t in tasks] for p in pairs], dtype=float)
        n = np.array([[p[arm][t]["episodes"] for t in tasks] for p in pairs], dtype=float)
        arrays.append((s, n))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pairs), size=(n_boot, len(pairs)))
    diff = 0.0
    for sign, (s, n) in zip((1.0, -1.0), arrays):
        draws = rng.binomial(n[idx].astype(np.int64), s[idx] / n[idx])  # (boot, seeds, tasks)
        diff = diff + sign * draws.sum(axis=2) / n[idx].sum(axis=2)
    boot = diff.mean(axis=1)
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(boot, tail)), float(np.percentile(boot, 100 - tail))]


def paired_difference(pairs: dict[int, tuple[dict, dict]], n_boot: int = 10_000) -> dict:
    """a - b in pooled final success, per seed, with its bootstrap interval and sign test."""
    import numpy as np

    seeds = sorted(pairs)
    diffs = {s: pooled_rate(pairs[s][0]) - pooled_rate(pairs[s][1]) for s in seeds}
    return {
        "mean": float(np.mean(list(diffs.values()))),
        "ci95": paired_bootstrap_ci([pairs[s] for s in seeds], n_boot=n_boot),
        "sign_test_p": sign_test_p(list(diffs.values())),
        "seeds": seeds,
        "per_seed": {str(s): d for s, d in diffs.items()},
    }


def pooled_wilson(per_task_list: list[dict]) -> dict:
    """Successes and episodes pooled over every task of every run, with its Wilson 95% interval."""
    from lerobot_amf.evaluation import summarise

    s = sum(v["successes"] for per_task in per_task_list for v in per_task.values())
    n = sum(v["episodes"] for per_task in per_task_list for v in per_task.values())
    return summarise(s, n)


def mean_curve(curves: list[list[float]]) -> dict:
    """Mean over seeds at each point and its band (mean +- 1 standard error over seeds)."""
    import numpy as np

    arr = np.array(curves, dtype=float)
    mean = arr.mean(axis=0)
    se = arr.std(axis=0, ddof=1) / np.sqrt(len(arr)) if len(arr) > 1 else np.zeros_like(mean)
    return {"mean": mean.tolist(), "lo": (mean - se).tolist(), "hi": (mean + se).tolist(), "n_seeds": len(arr)}


def first_reach(xs, ys, target: float) -> float | None:
    """Smallest x where the piecewise-linear curve through (xs, ys) reaches ``target`` (None: never)."""
    if ys[0] >= target:
        return float(xs[0])
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if y1 >= target:
            return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0))
    return None


def reach_and_stay(xs, ys, target: float) -> float | None:
    """Smallest x from which the piecewise-linear curve through (xs, ys) stays at or above ``target``
    to its end: where it last rises to ``target`` (None: its last point is below it). Unlike
    ``first_reach``, a curve that crosses early and falls back does not count as reached there."""
    below = [i for i, y in enumerate(ys) if y < target]
    if not below:
        return float(xs[0])
    k = below[-1]
    if k == len(ys) - 1:
        return None
    (x0, y0), (x1, y1) = (xs[k], ys[k]), (xs[k + 1], ys[k + 1])
    return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0))


def area_under_curve(xs, ys) -> float:
    """Mean height of the piecewise-linear curve through (xs, ys) over [xs[0], xs[-1]]: success
    averaged over the budget, so a strategy that gets there early scores higher."""
    area = sum((x1 - x0) * (y0 + y1) / 2 for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:]))
    return float(area / (xs[-1] - xs[0])) if xs[-1] > xs[0] else float(ys[0])


def median_and_range(values) -> dict:
    """Median and range of ``values``, where None stands for "beyond every number" (not reached):
    the median is None when the middle falls on one, and so is the top of the range."""
    order = sorted(values, key=lambda v: (v is None, 0.0 if v is None else v))
    if not order:
        return {"median": None, "range": None}
    middle = order[(len(order) - 1) // 2: len(order) // 2 + 1]
    return {"median": None if None in middle else sum(middle) / len(middle), "range": [order[0], order[-1]]}


def seed_bootstrap_ci(values, n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile interval of the mean over seeds, seeds resampled with replacement: the interval a
    comparison across seeds needs (a Wilson interval over pooled episodes ignores seed-to-seed
    variation)."""
    import numpy as np

    x = np.asarray(list(values), dtype=float)
    means = x[np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    return [float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2))]


def holm(p_values: dict) -> dict:
    """Holm's step-down adjustment of a family of p-values ({name: p} -> {name: adjusted p})."""
    order = sorted(p_values, key=p_values.get)
    adjusted, running = {}, 0.0
    for i, name in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p_values[name]))
        adjusted[name] = running
    return adjusted
