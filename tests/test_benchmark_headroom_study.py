"""The headroom study's definition: its setting read off the finished pilot, the oracle's cells
following the best allocation, and its headline (share of the oracle's gain, human cost)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from test_oracle import curve_cell

from benchmarks import headroom_pilot as hp
from benchmarks import headroom_study as hs
from benchmarks.common import write_json
from lerobot_amf.selection import make_strategy
from lerobot_amf.selection.base import SelectionContext, normalised_target_weights


def finished_pilot(results_dir):
    """A complete pilot: in ``sinks`` 4 strong tasks, 4 that 3-6 demos teach, 4 that stay at 0;
    ``unseen`` flat. Its summary written as ``python -m benchmarks.headroom_pilot --summary-only`` does."""
    tasks = list(hp.SETTINGS["sinks"])
    curves = {**{t: [1.0] * 7 for t in tasks[:4]}, **{t: [0.0, 0.0, 0.1, 0.5, 0.8, 0.9, 1.0] for t in tasks[4:8]},
              **{t: [0.0] * 7 for t in tasks[8:]}}
    for setting, c in (("sinks", curves), ("unseen", {t: [0.5] * 7 for t in hp.SETTINGS["unseen"]})):
        for seed in hp.SEEDS:
            cell = curve_cell(setting, seed, c)
            write_json(results_dir / hp.NAME / f"{cell['cell']}.json", cell)
    hp.main(["--summary-only", "--results-dir", str(results_dir)])


def test_the_setting_is_the_pilots_choice_and_a_changed_cell_is_refused(tmp_path):
    with pytest.raises(hs.PilotNotReady, match="not complete"):
        hs.setting(tmp_path)
    finished_pilot(tmp_path)
    spec = hs.setting(tmp_path)
    tasks = list(hp.SETTINGS["sinks"])
    assert spec["pilot_setting"] == "sinks" and spec["tasks"] == tasks and spec["budget"] % hs.DEMOS_PER_ROUND == 0
    assert spec["pretrain_steps"] == hp.pretrain_steps(hp.SETTINGS["sinks"])
    assert spec["progress_demos"] == 3  # the learners are flat for 2 demos: shorter windows would stop them
    assert sum(spec["oracle_allocation"].values()) == spec["budget"]
    assert all(spec["oracle_allocation"][t] == 0 for t in tasks[:4])  # strong tasks get nothing
    study = hs.make_study(tmp_path, tmp_path / "runs", seeds=(1,))
    cells = [c for c in study.planned_cells() if c.seed == 1]
    assert [c.strategy for c in cells] == list(hs.strategy_flags(spec))  # every strategy, uniform first
    assert len(study.planned_cells()) == len(hs.SEEDS) * len(cells)  # the plan: every seed
    args = {c.strategy: c.args(study) for c in cells}
    assert f"--amf.rounds={spec['budget'] // hs.DEMOS_PER_ROUND}" in args["uniform"]
    assert "--amf.selection_eval_episodes=2" in args["lowest_success_small"]
    assert "--amf.learning_progress_demos=3" in args["amf_eval_progress"] and "--amf.strategy=amf" in args["amf_progress"]
    assert "--amf.selection.simulator=false" in args["amf_no_sim"]
    path = tmp_path / hp.NAME / "sinks__seed101__uniform__shared_replay.json"
    cell = json.loads(path.read_text())
    cell["rounds"][-1]["per_task"][tasks[0]]["successes"] = 0
    path.write_text(json.dumps(cell))
    with pytest.raises(hs.PilotNotReady, match="no longer give"):
        hs.setting(tmp_path)


def test_the_oracles_cells_pull_exactly_its_allocation_round_by_round():
    """uniform steered by target weights equal to the allocation's shares ends each run on the
    allocation itself, whatever it is."""
    pool = [f"t{i}" for i in range(12)]
    rng = np.random.default_rng(0)
    for _ in range(5):
        alloc = Counter(rng.choice(pool, size=24, p=rng.dirichlet(np.ones(12) * 0.3)))
        allocation = {t: int(alloc.get(t, 0)) for t in pool}
        flags = hs.strategy_flags({"oracle_allocation": allocation, "budget": 24, "progress_demos": None})
        weights = json.loads(flags["oracle"][1].split("=", 1)[1])
        counts = dict.fromkeys(pool, 0)
        for r in range(24 // hs.DEMOS_PER_ROUND):
            ctx = SelectionContext(round_index=r, pool=pool, target_weights=normalised_target_weights(weights, pool),
                                   counts=dict(counts), capacity=dict.fromkeys(pool), rng=np.random.default_rng(r))
            for t in make_strategy("uniform").select(ctx, hs.DEMOS_PER_ROUND).tasks:
                counts[t] += 1
        assert counts == allocation
    assert "lowest_success_progress" not in flags  # no window chosen: no learning-progress rows


def study_cell(seed, strategy, final_rate, cost_per_round=None):
    """A complete cell of the study: 2 tasks, 2 rounds; ``final_rate`` in the last evaluation."""
    pool = ["a", "b"]
    def per_task(rate):
        return {t: {"successes": round(20 * rate), "episodes": 20} for t in pool}
    rounds = [{"round": r, "selected": ["a", "b"], "demos_per_task": {t: r + 1 for t in pool},
               "demos_total": 2 * (r + 1), "per_task": per_task(0.5 if r == 0 else final_rate),
               **({"human_cost": {"demos": 2, "evaluation_episodes": cost_per_round - 2, "rollout_episodes": 0,
                                  "total": cost_per_round}} if cost_per_round else {})} for r in range(2)]
    return {"cell": f"headroom__seed{seed}__{strategy}__shared_replay", "status": "complete", "setting": "headroom",
            "seed": seed, "strategy": strategy, "isolation": "shared_replay",
            "setting_spec": {"pool": pool, "under_covered": ["b"], "pretrain_demos_per_task": {"a": 10, "b": 0}},
            "report": {"model": {"pretrained_path": f"gen{seed}"}, "eval_protocol": {}, "budget": 4},
            "pretrained": per_task(0.25), "rounds": rounds}


def test_the_headline_reads_each_strategys_share_of_the_oracles_gain_and_its_human_cost(tmp_path):
    from benchmarks.study_summary import summarise_study

    spec = {"oracle_allocation": {"a": 0, "b": 4}, "budget": 4, "progress_demos": None, "tasks": ["a", "b"],
            "pretrain_demos_per_task": {"a": 10, "b": 0}, "pilot_setting": "sinks", "predicted_headroom_pp": 6.6,
            "headroom_goal_met": False}
    study = hs.HeadroomStudy(("a",), ("b",), (1, 2, 3), hs.RESULTS_DIR, hs.RUNS, spec=spec)
    cells = []
    for seed in (1, 2, 3):
        cells += [study_cell(seed, "uniform", 0.5, 2), study_cell(seed, "oracle", 0.9, 2),
                  study_cell(seed, "amf_no_sim", 0.7, 2), study_cell(seed, "lowest_success_small", 0.8, 6)]
    summary = summarise_study(cells, [], [], study, n_boot=200)
    head = summary["headline"]
    rows = head["strategies"]
    assert rows["amf_no_sim"]["share_of_oracle_gain"] == pytest.approx(0.5)  # (0.7 - 0.5) / (0.9 - 0.5)
    assert rows["lowest_success_small"]["share_of_oracle_gain"] == pytest.approx(0.75)
    assert rows["lowest_success_small"]["human_cost"]["median"] == 12 and rows["amf_no_sim"]["human_cost"]["median"] == 4
    assert head["best_user_strategy"] == "lowest_success_small"
    # uniform ends at 0.5: amf_no_sim's cost curve (0, 0.25), (2, 0.5), (4, 0.7) stays above it from 2
    # on; lowest_success_small's (0, 0.25), (6, 0.5), (12, 0.8) from 6
    assert rows["amf_no_sim"]["human_cost_to_reach_uniform_final"]["median"] == pytest.approx(2)
    assert rows["lowest_success_small"]["human_cost_to_reach_uniform_final"]["median"] == pytest.approx(6)
    # at amf_no_sim's cost (4), lowest_success_small has spent 6 only after its first round: it is
    # at 0.25 + (0.5 - 0.25) * 4 / 6 on its cost curve
    equal = head["amf_no_sim_minus_lowest_success_small_at_equal_human_cost"]
    assert equal["median"] == pytest.approx(0.7 - (0.25 + 0.25 * 4 / 6))
    assert head["goals"]["met"]["amf_no_sim_vs_lowest_success_small_at_equal_human_cost"] is True
    assert head["goals"]["met"]["best_user_share_of_oracle_gain"] is False  # 0.75 < 0.8
    # Holm over the user strategies minus uniform (here 2 ran): the smaller p doubled, then monotone
    paired = head["paired"]
    raw = sorted(paired[k]["sign_test_p"] for k in ("amf_no_sim_minus_uniform", "lowest_success_small_minus_uniform"))
    assert sorted(paired[k]["holm_p"] for k in ("amf_no_sim_minus_uniform", "lowest_success_small_minus_uniform")) \
        == pytest.approx([min(1, 2 * raw[0]), max(min(1, 2 * raw[0]), raw[1])])
    assert "holm_p" not in paired["oracle_minus_uniform"]  # privileged: outside the family
    assert "Holm's correction over the 2 user strategies" in head["paired_note"]
    table = hs.headline_markdown(head)
    assert "| amf_no_sim − uniform | 3 | +20.0" in table
    assert "| 2 [2, 2] |" in table  # amf_no_sim's human cost to reach uniform's final: median [range]
    assert "| amf_no_sim | 3 | 70.0 [70.0, 70.0] | 0.50 [0.50, 0.50] |" in table
    assert "| lowest_success_small | 3 | 80.0" in table and "| 12 |" in table  # its median human cost
    assert "| best_user_share_of_oracle_gain |" in table and "missed" in table.splitlines()[0]
    hs.plot_human_cost(summary, tmp_path / "cost.png")
    assert (tmp_path / "cost.png").stat().st_size > 10_000


def test_amf_meets_its_goal_against_lowest_success_only_at_a_twentieth_of_a_round():
    rows = {"amf": {"selection_over_train_median": 0.3}, "amf_eval": {"selection_over_train_median": 0.04}}
    paired = {"amf_minus_lowest_success": {"mean": 0.0, "ci95": [-0.01, 0.01]},
              "amf_eval_minus_lowest_success": {"mean": -0.05, "ci95": [-0.08, -0.02]}}
    key = "amf_or_amf_eval_minus_lowest_success"
    assert hs.goals_met(rows, None, paired, None)[key] is False  # amf's bound holds, its selection is 0.3 of a round
    rows["amf"]["selection_over_train_median"] = 0.05
    assert hs.goals_met(rows, None, paired, None)[key] is True
    assert hs.goals_met(rows, None, {}, None)[key] is None  # neither side ran


def test_no_share_of_the_oracles_gain_where_the_oracle_did_not_beat_uniform():
    from benchmarks.study_summary import summarise_study

    spec = {"oracle_allocation": {"a": 0, "b": 4}, "budget": 4, "progress_demos": None, "tasks": ["a", "b"],
            "pretrain_demos_per_task": {"a": 10, "b": 0}}
    study = hs.HeadroomStudy(("a",), ("b",), (1, 2), hs.RESULTS_DIR, hs.RUNS, spec=spec)
    cells = [c for seed in (1, 2) for c in (study_cell(seed, "uniform", 0.6), study_cell(seed, "oracle", 0.55),
                                            study_cell(seed, "amf", 0.7))]
    row = summarise_study(cells, [], [], study, n_boot=200)["headline"]["strategies"]["amf"]
    assert row["share_of_oracle_gain"] is None and "did not beat uniform" in row["share_of_oracle_gain_note"]

