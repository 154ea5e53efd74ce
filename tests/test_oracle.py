"""The best allocation of a budget from learning curves, and the headroom pilot's reading of its runs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from benchmarks import headroom_pilot as hp
from benchmarks.oracle import best_allocation, mean_success, monotone, uniform_allocation


def test_monotone_is_the_least_squares_non_decreasing_fit():
    assert monotone([0.2, 0.1, 0.5, 0.4, 0.9]) == pytest.approx([0.15, 0.15, 0.45, 0.45, 0.9])
    assert monotone([0.0, 0.3, 0.6]) == [0.0, 0.3, 0.6]  # already monotone: unchanged
    assert monotone([0.9, 0.5, 0.1]) == pytest.approx([0.5, 0.5, 0.5])


def test_best_allocation_equals_brute_force_on_random_curves():
    rng = np.random.default_rng(0)
    for _ in range(20):
        curves = {f"t{i}": monotone(rng.random(5)) for i in range(4)}
        for budget in (0, 3, 7, 16):
            best = best_allocation(curves, budget)
            assert sum(best.values()) == budget and all(0 <= d <= 4 for d in best.values())
            brute = max(mean_success(curves, dict(zip(curves, ds)))
                        for ds in itertools.product(range(5), repeat=4) if sum(ds) == budget)
            assert mean_success(curves, best) == pytest.approx(brute)


def test_best_allocation_spends_on_the_task_demos_move_and_not_on_flat_curves():
    curves = {"strong": [1.0] * 5, "sink": [0.0] * 5, "steep": [0.0, 0.0, 0.5, 1.0, 1.0],
              "slow": [0.2, 0.3, 0.4, 0.5, 0.6]}
    assert best_allocation(curves, 4) == {"strong": 0, "sink": 0, "steep": 3, "slow": 1}
    # flat everywhere: equal shares, never everything on one task; demos left once the curves are
    # flat go to the tasks furthest below an equal share
    assert best_allocation({t: [0.5] * 5 for t in "abcd"}, 8) == {t: 2 for t in "abcd"}
    assert best_allocation({"a": [0.0, 1.0, 1.0, 1.0], "b": [0.5] * 4, "c": [0.5] * 4}, 3) == {"a": 1, "b": 1, "c": 1}
    with pytest.raises(ValueError, match="outside 0..16"):
        best_allocation(curves, 17)
    assert uniform_allocation(list(curves), 8) == {t: 2 for t in curves}


def curve_cell(setting: str, seed: int, curves: dict[str, list[float]], episodes: int = 20) -> dict:
    """A finished curve run's cell file, as ``run_cell`` writes it, for these success rates."""
    counts = {t: [round(v * episodes) for v in c] for t, c in curves.items()}
    return {
        "cell": f"{setting}__seed{seed}__uniform__shared_replay", "status": "complete", "seed": seed,
        "measured_at_commit": "abc", "report": {"eval_protocol": {"episodes_per_task": episodes}},
        "pretrained": {t: {"successes": c[0], "episodes": episodes} for t, c in counts.items()},
        "rounds": [{"round": d - 1, "demos_per_task": {t: d for t in curves},
                    "per_task": {t: {"successes": c[d], "episodes": episodes} for t, c in counts.items()}}
                   for d in range(1, len(next(iter(curves.values()))))],
    }


def test_the_pilot_reads_curves_and_its_rule_picks_the_largest_cross_fitted_headroom():
    tasks = list(hp.SETTINGS["sinks"])
    strong, steep, sink = tasks[:4], tasks[4:8], tasks[8:]
    curve = {**{t: [1.0] * 7 for t in strong}, **{t: [0.0, 0.0, 0.1, 0.5, 0.8, 0.9, 1.0] for t in steep},
             **{t: [0.0] * 7 for t in sink}}
    cells = {"sinks": {f"s{seed}": curve_cell("sinks", seed, curve) for seed in hp.SEEDS}}
    flat = {t: [0.5] * 7 for t in hp.SETTINGS["unseen"]}
    cells["unseen"] = {f"s{seed}": curve_cell("unseen", seed, flat) for seed in hp.SEEDS}
    summary = hp.summarise(cells)
    sinks = summary["settings"]["sinks"]
    assert not summary["partial"] and sinks["stays_failing"] == sink and sinks["strong_before_demos"] == strong
    by_budget = {b["budget"]: b for b in sinks["budgets"]}
    # 24 demos: uniform gives 2 each (steep tasks at 0.1), the best gives the 4 steep tasks 6 each (1.0)
    assert by_budget[24]["best_allocation"] == {**{t: 0 for t in strong + sink}, **{t: 6 for t in steep}}
    assert by_budget[24]["headroom_pp"] == pytest.approx(100 * 4 * (1.0 - 0.1) / 12, abs=0.1)
    assert by_budget[24]["headroom_cross_fitted_pp"] == by_budget[24]["headroom_pp"]  # same curves on both seeds
    assert all(b["headroom_pp"] == 0 for b in summary["settings"]["unseen"]["budgets"])  # flat: no headroom
    best = max(sinks["budgets"], key=lambda b: b["headroom_cross_fitted_pp"])
    assert summary["chosen"] == {"setting": "sinks", "budget": best["budget"], "headroom_pp": best["headroom_pp"],
                                 "headroom_cross_fitted_pp": best["headroom_cross_fitted_pp"],
                                 "goal_met": True, "final": True}


def test_cross_fitting_does_not_count_noise_as_headroom():
    """Two seeds whose curves differ only by noise: the best allocation of one seed's curves gains
    less on the other seed's than on its own mean."""
    tasks = list(hp.SETTINGS["unseen"])
    rng = np.random.default_rng(1)
    by_seed = [{t: list(np.clip(0.5 + rng.normal(0, 0.15, 7), 0, 1)) for t in tasks} for _ in hp.SEEDS]
    row = hp.headroom(by_seed, 24)
    assert row["headroom_pp"] > 0 and row["headroom_cross_fitted_pp"] < row["headroom_pp"]


def test_a_run_that_did_not_give_every_task_one_demo_a_round_is_not_a_curve():
    tasks = list(hp.SETTINGS["sinks"])
    cell = curve_cell("sinks", 101, {t: [0.5] * 3 for t in tasks})
    cell["rounds"][1]["demos_per_task"][tasks[0]] = 3
    with pytest.raises(ValueError, match="not a curve run"):
        hp.curve_of(cell)


def test_the_summary_is_partial_until_every_seed_of_every_setting_ran():
    tasks = list(hp.SETTINGS["sinks"])
    one = {"sinks": {"s": curve_cell("sinks", 101, {t: [0.5] * 7 for t in tasks})}}
    summary = hp.summarise(one)
    assert summary["partial"] and summary["chosen"] is None  # no cross-fitted figure from one seed
    assert summary["settings"]["unseen"]["seeds_done"] == []
    assert summary["settings"]["sinks"]["budgets"][0]["headroom_cross_fitted_pp"] is None  # one seed: no pair


def test_learning_progress_default_is_the_shortest_window_that_stops_no_learner():
    """On the curve runs' own evaluations: a window of 1 or 2 demos holds back a slow learner
    (flat for its first demos) as well as a task demos never fix; 3 holds back only the latter."""
    tasks = list(hp.SETTINGS["unseen"])
    slow, sink, plateau = tasks[4], tasks[5], tasks[6]
    curves = {t: [0.9] * 7 for t in tasks}
    curves[slow] = [0.0, 0.0, 0.0, 0.5, 0.8, 0.9, 0.9]
    curves[sink] = [0.0] * 7
    curves[plateau] = [0.0, 0.5, 0.55, 0.55, 0.55, 0.55, 0.55]
    cells = [curve_cell("unseen", seed, curves) for seed in hp.SEEDS]
    by_n = {n: hp.progress_stops(cells, n) for n in hp.PROGRESS_DEMOS}
    # held back at its plateau: not a false stop (the withheld demos did not move it), but the
    # rule's first version called it one (its curve rose from 0)
    assert [(r["task"], r["held_back_after_demos"]) for r in by_n[1]["plateau_stops"]
            if r["task"] == plateau] == [(plateau, 2)] * 2
    assert plateau in {r["task"] for r in by_n[3]["false_stops_first_rule"]}
    assert hp.progress_default(by_n, "false_stops_first_rule") is None
    assert [(r["task"], r["held_back_after_demos"]) for r in by_n[1]["false_stops"]] == [(slow, 1)] * 2
    assert [(r["task"], r["held_back_after_demos"]) for r in by_n[1]["true_stops"]] == [(sink, 1)] * 2
    assert by_n[1]["demos_saved_on_true_stops"] == 2 * 5
    assert by_n[2]["false_stops"] and not by_n[3]["false_stops"]
    assert [(r["task"], r["held_back_after_demos"]) for r in by_n[3]["true_stops"]] == [(sink, 3)] * 2
    assert hp.progress_default(by_n) == 3
    assert hp.progress_default({1: by_n[1], 2: by_n[2]}) is None  # no window without a false stop: off
    summary = hp.summarise({"unseen": {f"s{c['seed']}": c for c in cells}})
    assert summary["learning_progress"]["default_demos"] is None  # partial: the other setting has no cells
