"""The baseline selection strategies (``selection/baselines.py``) and the strategy registry
(``make_strategy``): counts per cycle, target weights, capacity, seeding, the allowed names."""

from collections import Counter

import numpy as np
import pytest

from lerobot_amf.selection import BASELINES, SelectionContext, make_strategy

POOL = ["a", "b", "c", "d"]


def ctx(counts=None, pretrain=None, capacity=None, seed=0, weights=None, success=None):
    return SelectionContext(
        round_index=0, pool=POOL,
        target_weights=weights or {t: 0.25 for t in POOL},
        counts=counts or {t: 0 for t in POOL},
        capacity=capacity or {t: None for t in POOL},
        rng=np.random.default_rng(seed), pretrain_counts=pretrain, success=success,
    )


def evaluated(successes: dict[str, int], episodes: int = 20) -> dict[str, dict]:
    """The latest evaluation as the ledger records it, per task."""
    return {t: {"successes": s, "episodes": episodes, "success_rate": s / episodes} for t, s in successes.items()}


def test_uniform_gives_equal_counts_per_full_cycle():
    sel = make_strategy("uniform").select(ctx(), 8)
    assert Counter(sel.tasks) == {t: 2 for t in POOL}


def test_uniform_follows_target_weights():
    w = {"a": 0.5, "b": 0.5 / 3, "c": 0.5 / 3, "d": 0.5 / 3}
    sel = make_strategy("uniform").select(ctx(weights=w), 6)
    assert Counter(sel.tasks)["a"] == 3


def test_least_demonstrated_fills_the_emptiest_tasks():
    sel = make_strategy("least_demonstrated").select(ctx(counts={"a": 3, "b": 0, "c": 1, "d": 3}), 3)
    assert Counter(sel.tasks) == {"b": 2, "c": 1}


def test_rebalancing_uses_pretraining_counts():
    sel = make_strategy("rebalancing").select(ctx(pretrain={"a": 10, "b": 10, "c": 1, "d": 0}), 4)
    assert set(sel.tasks) == {"c", "d"} and Counter(sel.tasks)["d"] >= Counter(sel.tasks)["c"]


def test_rebalancing_without_pretraining_counts_is_a_clear_error():
    with pytest.raises(ValueError, match="pretraining demos"):
        make_strategy("rebalancing").select(ctx(), 1)


def test_random_respects_capacity_and_is_seeded():
    cap = {"a": 0, "b": 1, "c": None, "d": 0}
    s1 = make_strategy("random").select(ctx(capacity=cap, seed=5), 6)
    s2 = make_strategy("random").select(ctx(capacity=cap, seed=5), 6)
    assert s1.tasks == s2.tasks
    assert Counter(s1.tasks)["b"] <= 1 and not {"a", "d"} & set(s1.tasks)


@pytest.mark.parametrize("name", list(BASELINES))  # amf: tests/test_amf.py
def test_same_seed_same_selection(name):
    pre = {t: i for i, t in enumerate(POOL)}
    success = evaluated({t: 5 for t in POOL})
    assert make_strategy(name).select(ctx(pretrain=pre, seed=3, success=success), 5).tasks == \
        make_strategy(name).select(ctx(pretrain=pre, seed=3, success=success), 5).tasks


def test_lowest_success_spends_a_round_in_proportion_to_the_failures():
    # a fails 19/20, b 9/20, c and d never: a's score is about twice b's, so it gets two of three
    success = evaluated({"a": 1, "b": 11, "c": 20, "d": 20})
    sel = make_strategy("lowest_success").select(ctx(success=success), 3)
    assert Counter(sel.tasks) == {"a": 2, "b": 1} and sel.tasks[0] == "a"
    assert sel.scores["a"] == pytest.approx(20 / 22, abs=1e-4) and sel.scores["c"] == pytest.approx(1 / 22, abs=1e-4)
    # the same failures: ties go to the task with fewer demos in hand
    tied = make_strategy("lowest_success").select(ctx(success=evaluated({t: 10 for t in POOL}),
                                                      counts={"a": 3, "b": 0, "c": 2, "d": 1}), 2)
    assert tied.tasks == ["b", "d"]
    # target weights scale the failures: a weight-0 task gets nothing while others can take demos
    weights = {"a": 0.0, "b": 0.5, "c": 0.25, "d": 0.25}
    assert "a" not in make_strategy("lowest_success").select(ctx(success=success, weights=weights), 4).tasks


def test_a_small_evaluation_is_the_first_episodes_of_the_full_one():
    """``first_episodes``: what lowest_success reads when a team affords k episodes per task; all of
    the evaluation when k is unset; an evaluation that kept no outcomes per episode cannot be cut."""
    from lerobot_amf.errors import AMFInputError
    from lerobot_amf.evaluation import first_episodes, summarise

    full = {"a": {**summarise(2, 4), "per_episode_success": [0, 0, 1, 1]},
            "b": {**summarise(3, 4), "per_episode_success": [1, 1, 1, 0]}}
    small = first_episodes(full, 2)
    assert {t: (e["successes"], e["episodes"]) for t, e in small.items()} == {"a": (0, 2), "b": (2, 2)}
    assert first_episodes(full, None) is full
    sel = make_strategy("lowest_success").select(ctx(success={**small, "c": small["b"], "d": small["b"]}), 1)
    assert sel.tasks == ["a"] and sel.scores["a"] == pytest.approx(3 / 4)  # 2 failures of 2: (2 + 1) / (2 + 2)
    assert make_strategy("lowest_success").reads_evaluation and not make_strategy("uniform").reads_evaluation
    with pytest.raises(AMFInputError, match="kept no per-episode outcomes"):
        first_episodes({"a": summarise(2, 4)}, 2)


def test_lowest_success_without_an_evaluation_is_one_line():
    with pytest.raises(ValueError, match="lowest_success needs an evaluation"):
        make_strategy("lowest_success").select(ctx(), 1)


def test_unknown_strategy_names_the_allowed_ones():
    with pytest.raises(ValueError, match="Allowed: uniform, random"):
        make_strategy("greedy")


@pytest.mark.parametrize("name", ["uniform", "random", "rebalancing", "least_demonstrated"])
def test_partial_target_weights_spend_the_budget_on_the_weighted_tasks(name):
    weights = {"a": 0.5, "b": 0.5, "c": 0.0, "d": 0.0}
    sel = make_strategy(name).select(ctx(weights=weights, pretrain={t: 1 for t in POOL}), 4)
    assert len(sel.tasks) == 4
    if name != "least_demonstrated":  # it ignores target weights by design
        assert set(sel.tasks) == {"a", "b"}
    if name in ("uniform", "rebalancing"):
        assert sel.scores["c"] is None and sel.scores["a"] is not None
