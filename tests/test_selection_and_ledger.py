from collections import Counter

import numpy as np
import pytest

from lerobot_amf.evaluation import pooled, wilson_interval
from lerobot_amf.ledger import Ledger
from lerobot_amf.selection import BASELINES, SelectionContext, make_strategy

POOL = ["a", "b", "c", "d"]


def ctx(counts=None, pretrain=None, capacity=None, seed=0, weights=None):
    return SelectionContext(
        round_index=0, pool=POOL,
        target_weights=weights or {t: 0.25 for t in POOL},
        counts=counts or {t: 0 for t in POOL},
        capacity=capacity or {t: None for t in POOL},
        rng=np.random.default_rng(seed), pretrain_counts=pretrain,
    )


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


@pytest.mark.parametrize("name", list(BASELINES))  # amf: tests/test_amf_strategy.py
def test_same_seed_same_selection(name):
    pre = {t: i for i, t in enumerate(POOL)}
    assert make_strategy(name).select(ctx(pretrain=pre, seed=3), 5).tasks == \
        make_strategy(name).select(ctx(pretrain=pre, seed=3), 5).tasks


def test_unknown_strategy_names_the_allowed_ones():
    with pytest.raises(ValueError, match="Allowed: uniform, random"):
        make_strategy("greedy")


def test_ledger_is_append_only_and_skips_a_torn_last_line(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append("demos_pulled", round=0, demos=[{"demo_id": "x", "task": "a"}, {"demo_id": "y", "task": "b"}])
    ledger.append("round_end", round=0)
    with open(ledger.path, "a") as f:
        f.write('{"event": "demos_pulled", "round": 1, "demos": [{"demo_id"')  # crash mid-write
    state = ledger.state()
    assert state.demo_ids == {"x", "y"} and state.counts == {"a": 1, "b": 1} and state.rounds_done == 1


def test_wilson_interval_matches_reference_values():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)


def test_pooled_success_over_tasks():
    per_task = {"a": {"successes": 3, "episodes": 10}, "b": {"successes": 7, "episodes": 10}}
    out = pooled(per_task, ["a", "b"])
    assert out["success_rate"] == 0.5 and out["episodes"] == 20


@pytest.mark.parametrize("name", ["uniform", "random", "rebalancing", "least_demonstrated"])
def test_partial_target_weights_spend_the_budget_on_the_weighted_tasks(name):
    weights = {"a": 0.5, "b": 0.5, "c": 0.0, "d": 0.0}
    sel = make_strategy(name).select(ctx(weights=weights, pretrain={t: 1 for t in POOL}), 4)
    assert len(sel.tasks) == 4
    if name != "least_demonstrated":  # it ignores target weights by design
        assert set(sel.tasks) == {"a", "b"}
    if name in ("uniform", "rebalancing"):
        assert sel.scores["c"] is None and sel.scores["a"] is not None
