"""Learning progress (``selection/progress.py``): which tasks their recent demos did not move."""

from __future__ import annotations

from lerobot_amf.selection.progress import Evaluated, posterior_success, stalled_tasks


def ev(demos: dict[str, int], successes: dict[str, int], episodes: int = 10) -> Evaluated:
    return Evaluated(demos, {t: {"successes": s, "episodes": episodes} for t, s in successes.items()})


def test_a_task_its_demos_did_not_move_is_stalled_and_one_they_moved_is_not():
    history = [ev({}, {"sink": 0, "learner": 0, "new": 3}),
               ev({"sink": 1, "learner": 1}, {"sink": 0, "learner": 2, "new": 3}),
               ev({"sink": 2, "learner": 2, "new": 1}, {"sink": 1, "learner": 6, "new": 3})]
    stalled = stalled_tasks(history, demos=2, min_gain=0.1)
    # sink: 0/10 -> 1/10 over 2 demos (+0.083 < 0.1); learner: 0/10 -> 6/10; new: 1 demo only
    assert stalled == {"sink": {"demos_since": 2, "success_then": round(1 / 12, 4), "success_now": round(2 / 12, 4)}}
    assert stalled_tasks(history, demos=1, min_gain=0.1) == {
        "sink": {"demos_since": 1, "success_then": round(1 / 12, 4), "success_now": round(2 / 12, 4)},
        "new": {"demos_since": 1, "success_then": round(4 / 12, 4), "success_now": round(4 / 12, 4)}}
    # compared with the latest evaluation at least N demos back, not the first one
    assert "learner" not in stalled_tasks(history, demos=1, min_gain=0.3)  # 3/12 -> 7/12
    assert "learner" in stalled_tasks(history, demos=1, min_gain=0.4)


def test_nothing_is_stalled_before_two_evaluations():
    assert stalled_tasks([ev({}, {"a": 0})], demos=1, min_gain=0.5) == {}
    assert stalled_tasks([], demos=1, min_gain=0.5) == {}
    assert posterior_success({"successes": 0, "episodes": 0}) == 0.5
