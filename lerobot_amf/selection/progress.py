"""Learning progress: stop spending on a task whose recent demos did not move it.

Information gain and "lowest success" both keep paying for a task that fails and stays failing
(on an unseen pool they spent 8 of 12 demos on a task that stayed at 0/10). Multitask DAgger
schedules by a failure term times a learning-progress term; this is its simplest measured form,
read off the run's own evaluations:

    a task is *stalled* when, since the latest evaluation at which it had at least N fewer
    fine-tuning demos than now, its estimated success (Beta posterior mean, uniform prior) rose by
    less than ``min_gain``.

A stalled task gets no demos this round while another task can take them (every strategy sees
it as a task the source cannot give, ``SelectionContext.capacity``); if every task is stalled,
nothing is held back. It needs an evaluation each round (a simulator), and counts as reading it
(the run's human cost). N and ``min_gain`` are ``--amf.learning_progress_demos`` (unset: off)
and ``--amf.learning_progress_min_gain``.
"""

from __future__ import annotations

from dataclasses import dataclass


def posterior_success(entry: dict) -> float:
    """Beta posterior mean success under a uniform prior: (successes + 1) / (episodes + 2)."""
    return (entry["successes"] + 1) / (entry["episodes"] + 2)


@dataclass(frozen=True)
class Evaluated:
    """One evaluation of the run's model and the fine-tuning demos each task had when it ran."""

    demos: dict[str, int]
    per_task: dict[str, dict]


def stalled_tasks(history: list[Evaluated], demos: int, min_gain: float) -> dict[str, dict]:
    """Tasks whose success rose by less than ``min_gain`` over their last ``demos`` demos (or more),
    each with what was compared: {task: {"demos_since", "success_then", "success_now"}}.
    ``history``: the run's evaluations, oldest first; the last is the latest."""
    if len(history) < 2:
        return {}
    latest = history[-1]
    stalled = {}
    for task, now in latest.per_task.items():
        have = latest.demos.get(task, 0)
        earlier = [e for e in history[:-1] if task in e.per_task and have - e.demos.get(task, 0) >= demos]
        if not earlier:
            continue
        then = earlier[-1]
        gain = posterior_success(now) - posterior_success(then.per_task[task])
        if gain < min_gain:
            stalled[task] = {"demos_since": have - then.demos.get(task, 0),
                             "success_then": round(posterior_success(then.per_task[task]), 4),
                             "success_now": round(posterior_success(now), 4)}
    return stalled
