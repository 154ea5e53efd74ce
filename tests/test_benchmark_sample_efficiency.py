"""The sample-efficiency study's statistics, runner and summary (``benchmarks/study_stats.py``,
``study_runner.py``, ``study_summary.py``) and its definition (``benchmarks/sample_efficiency.py``),
on synthetic numbers (fast, no runs)."""

import json
import math
from pathlib import Path

import pytest

from benchmarks.common import ROOT
from benchmarks.sample_efficiency import RUNS, SEEDS, SampleEfficiencyStudy, choose_tasks, planned_cells
from benchmarks.study_runner import Cell, amf_diagnostics, merge_flags, portable, seed_queues, selection_seconds
from benchmarks.study_stats import (budget_share, first_reach, mean_curve, median_and_range, paired_bootstrap_ci,
                                    paired_difference, pooled_wilson, reach_and_stay, sign_test_p)
from benchmarks.study_summary import markdown_summary, strategy_summary, summarise_study

U, C = ["u1", "u2"], ["c1", "c2"]  # under-covered, covered
STUDY = SampleEfficiencyStudy((), (), (1, 2), Path("."), Path("."))  # the summary reads its definition


def per_task(**rates) -> dict:
    """{task: {successes, episodes}} from successes out of 20."""
    return {t: {"successes": s, "episodes": 20} for t, s in rates.items()}


def test_sign_test_exact_two_sided():
    assert sign_test_p([0.1] * 5) == pytest.approx(0.0625)
    assert sign_test_p([-0.2] * 5) == pytest.approx(0.0625)
    assert sign_test_p([1, 1, 1, 1, -1]) == pytest.approx(2 * 6 / 32)
    assert sign_test_p([0.1, 0.0, 0.0]) == 1.0  # zeros dropped: one positive out of one
    assert sign_test_p([]) == 1.0
    assert sign_test_p([1] * 10) == pytest.approx(2 / 1024)


def test_budget_share_counts_picks_on_the_given_tasks():
    assert budget_share(["u1", "u2", "c1", "c2"], U) == 0.5
    assert budget_share(["u1", "u1", "u2", "c1"], U) == 0.75
    assert budget_share(["c1", "c2"], U) == 0.0
    assert budget_share([], U) is None


def test_bootstrap_of_identical_deterministic_seeds_collapses_to_the_difference():
    # every episode of a succeeds on c1 and fails on c2, b fails everywhere: nothing to resample
    pair = (per_task(c1=20, c2=0), per_task(c1=0, c2=0))
    assert paired_bootstrap_ci([pair] * 5, n_boot=2000) == [pytest.approx(0.5), pytest.approx(0.5)]


def test_bootstrap_resamples_episodes_within_tasks():
    # identical seeds, but rates strictly between 0 and 1: stage 2 alone spreads the interval
    pair = (per_task(c1=12, c2=8), per_task(c1=10, c2=6))
    lo, hi = paired_bootstrap_ci([pair] * 5, n_boot=4000)
    assert lo < 0.1 < hi and hi - lo > 0.05


def test_bootstrap_resamples_seeds():
    # deterministic episodes, seed differences 0 and 1: the mean over 2 drawn seeds is 0, 0.5 or 1
    same = (per_task(c1=20), per_task(c1=20))
    better = (per_task(c1=20), per_task(c1=0))
    assert paired_bootstrap_ci([same, better], n_boot=4000) == [0.0, 1.0]


def test_paired_difference_mean_and_sign_test():
    pairs = {s: (per_task(c1=10 + s, c2=10), per_task(c1=10, c2=10)) for s in range(1, 6)}
    out = paired_difference(pairs, n_boot=500)
    assert out["mean"] == pytest.approx(sum(s / 40 for s in range(1, 6)) / 5)
    assert out["sign_test_p"] == pytest.approx(0.0625)
    assert out["seeds"] == [1, 2, 3, 4, 5] and out["per_seed"]["3"] == pytest.approx(3 / 40)


def test_pooled_wilson_pools_every_task_of_every_run():
    out = pooled_wilson([per_task(c1=3), per_task(c1=5, u1=2)])
    assert (out["successes"], out["episodes"]) == (10, 60)
    assert out["ci95"][0] < 10 / 60 < out["ci95"][1]


def test_mean_curve_band_is_one_standard_error():
    out = mean_curve([[0.0, 0.2], [0.2, 0.6]])
    assert out["mean"] == pytest.approx([0.1, 0.4])
    se0 = math.sqrt(0.02) / math.sqrt(2)  # std (ddof 1) of {0, 0.2} over sqrt(2)
    assert out["hi"][0] - out["mean"][0] == pytest.approx(se0)
    assert mean_curve([[0.3, 0.5]])["lo"] == [0.3, 0.5]  # one seed: no band


def test_first_reach_reads_piecewise_linear_curves():
    xs, ys = [0, 4, 8, 12, 16], [0.2, 0.3, 0.5, 0.6, 0.7]
    assert first_reach(xs, ys, 0.4) == pytest.approx(6.0)
    assert first_reach(xs, ys, 0.6) == pytest.approx(12.0)
    assert first_reach(xs, ys, 0.1) == 0.0
    assert first_reach(xs, ys, 0.8) is None
    assert first_reach(xs, [0.2, 0.5, 0.4, 0.45, 0.6], 0.45) == pytest.approx(10 / 3)  # first crossing


def test_reach_and_stay_counts_only_the_last_rise_to_the_target():
    xs = [0, 4, 8, 12]
    up_down_up = [0.2, 0.5, 0.3, 0.45]  # crosses 0.4 early, falls back, rises again
    assert first_reach(xs, up_down_up, 0.4) == pytest.approx(8 / 3)
    assert reach_and_stay(xs, up_down_up, 0.4) == pytest.approx(8 + 4 * 0.1 / 0.15)
    assert reach_and_stay(xs, [0.2, 0.5, 0.45, 0.3], 0.4) is None  # ends below: never held
    assert reach_and_stay(xs, [0.5, 0.6, 0.4, 0.45], 0.4) == 0.0
    assert reach_and_stay(xs, [0.2, 0.3, 0.35, 0.4], 0.4) == pytest.approx(12.0)  # only at the end


def test_median_and_range_read_none_as_beyond_every_number():
    assert median_and_range([0.5, None, 0.25]) == {"median": 0.5, "range": [0.25, None]}
    assert median_and_range([0.75, None]) == {"median": None, "range": [0.75, None]}  # half not reached
    assert median_and_range([0.5, 1.0, 0.25, None]) == {"median": 0.75, "range": [0.25, None]}
    assert median_and_range([None]) == {"median": None, "range": [None, None]}


def test_choose_tasks_alternates_over_learned_tasks():
    rates = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.65, "e": 0.6, "f": 0.95, "g": 0.1}
    out = choose_tasks(rates, 0.6, n_covered=2, n_under=2)
    assert out["covered"] == ["f", "b"] and out["under_covered"] == ["a", "c"]
    few = choose_tasks(rates, 0.85, n_covered=2, n_under=2)  # only f, a above 0.85
    assert few["covered"] == ["f", "a"] and few["under_covered"] == ["b", "c"]
    none = choose_tasks(rates, 0.92, n_covered=2, n_under=2)
    assert none["covered"] is None and "only 1" in none["why"]


def cell(setting, seed, strategy, selected, finals, pretrained=None, isolation="shared_replay"):
    """A synthetic complete cell: ``selected`` per round, ``finals`` the per-round successes per task."""
    pool = C + U
    counts, rounds = dict.fromkeys(pool, 0), []
    for r, (picks, succ) in enumerate(zip(selected, finals)):
        for t in picks:
            counts[t] += 1
        rounds.append({"round": r, "selected": picks, "demos_per_task": dict(counts),
                       "demos_total": sum(counts.values()), "per_task": per_task(**succ)})
    return {"cell": Cell(setting, seed, strategy, isolation).name, "status": "complete", "setting": setting,
            "seed": seed, "strategy": strategy, "isolation": isolation,
            "setting_spec": {"pool": pool, "under_covered": U if setting == "skewed" else []},
            "report": {"model": {"pretrained_path": f"gen{seed}"}, "eval_protocol": {}, "budget": 4},
            "pretrained": per_task(**(pretrained or dict.fromkeys(pool, 4))), "rounds": rounds}


def test_summary_headline_from_synthetic_cells():
    flat = dict.fromkeys(C + U, 4)
    cells = []
    for seed in (1, 2):
        cells.append(cell("skewed", seed, "uniform", [["c1", "u1"], ["c2", "u2"]],
                          [flat, {**flat, "u1": 8}]))  # final pooled 0.25
        cells.append(cell("skewed", seed, "amf", [["u1", "u2"], ["u1", "c1"]],
                          [{**flat, "u1": 8}, {**flat, "u1": 12, "u2": 4 + 4 * seed}]))  # 0.35 / 0.40
    planned = planned_cells((1, 2))
    summary = summarise_study(cells, [{"cell": "x", "exit_code": 2, "error": "lerobot-amf-train: error: no"}],
                              planned, STUDY, n_boot=500)
    head = summary["headline"]
    assert set(head) == {"seeds", "under_covered_share", "final_success", "paired_amf_minus_uniform",
                         "amf_share_of_budget_to_hold_uniform_final", "amf_minus_rebalancing", "balanced_amf_minus_uniform",
                         "partial"}
    assert head["partial"] is True and summary["cells_done"] == 4
    assert "skewed__seed1__rebalancing__shared_replay" in summary["missing_cells"]
    assert summary["failed_cells"][0]["exit_code"] == 2
    assert head["seeds"] == {"skewed": [1, 2]}
    assert head["under_covered_share"] == {"amf": 0.75, "uniform": 0.5}
    group = summary["settings"]["skewed"]["isolations"]["shared_replay"]
    assert group["strategies"]["amf"]["under_covered_share"]["per_round"] == [1.0, 0.5]
    assert head["final_success"]["uniform"]["pooled"] == pytest.approx(40 / 160)
    assert head["final_success"]["pretrained"]["pooled"] == pytest.approx(0.2)
    paired = head["paired_amf_minus_uniform"]["shared_replay"]
    assert paired["mean"] == pytest.approx((0.35 - 0.25 + 0.40 - 0.25) / 2) and paired["seeds"] == [1, 2]
    assert head["paired_amf_minus_uniform"]["lora"] is None and head["amf_minus_rebalancing"] is None
    # per seed uniform ends at 0.25; amf's curve (0.2, 0.25, then 0.35 / 0.40) reaches it after 2 of the 4 demos
    hold = head["amf_share_of_budget_to_hold_uniform_final"]
    assert hold == {"median": pytest.approx(0.5), "range": [pytest.approx(0.5)] * 2, "seeds_reached": 2, "seeds": 2}
    assert summary["settings"]["skewed"]["one_generalist_per_seed"] is True


def test_summary_flags_a_seed_whose_cells_started_from_different_generalists():
    flat = dict.fromkeys(C + U, 4)
    a = cell("skewed", 1, "uniform", [["c1"]], [flat])
    b = cell("skewed", 1, "amf", [["u1"]], [flat], isolation="lora")
    b["report"]["model"]["pretrained_path"] = "another"
    summary = summarise_study([a, b], [], planned_cells((1,)), STUDY, n_boot=10)
    assert summary["settings"]["skewed"]["one_generalist_per_seed"] is False
    assert summary["settings"]["skewed"]["generalist_per_seed"]["1"] == ["another", "gen1"]


def test_portable_removes_this_machines_paths(tmp_path):
    study = SampleEfficiencyStudy(("c1",), ("u1",), (1,), tmp_path, RUNS)
    out = portable({"p": str(RUNS / "lerobot_home" / "x"), "q": [f"error in {ROOT / 'a.py'}"]}, study)
    assert out == {"p": "benchmarks/runs/sample_efficiency/lerobot_home/x", "q": ["error in ./a.py"]}
    elsewhere = SampleEfficiencyStudy(("c1",), ("u1",), (1,), tmp_path, tmp_path / "runs")
    assert portable(str(tmp_path / "runs" / "gen"), elsewhere) == "<runs-dir>/gen"


def test_merge_flags_keeps_the_last_value_of_each_key_in_its_first_place():
    out = merge_flags(["--a=1", "--b=2"], ["--a=3", "--c={\"x\": 1}"])
    assert out == ["--a=3", "--b=2", "--c={\"x\": 1}"]


def test_the_summary_plans_the_whole_study_whatever_seeds_run_now(tmp_path):
    # `--seeds 1` chooses what runs now; the summary stays partial until every seed's cells exist
    study = SampleEfficiencyStudy(("c1",), ("u1",), (1,), tmp_path, tmp_path / "runs")
    assert study.planned_seeds() == SEEDS
    assert SampleEfficiencyStudy(("c1",), ("u1",), (9,), tmp_path, tmp_path / "runs").planned_seeds() == (*SEEDS, 9)
    smoke = SampleEfficiencyStudy(("c1",), ("u1",), (1,), tmp_path, tmp_path / "runs", smoke=True)
    assert smoke.planned_seeds() == (1,)


def test_seed_queues_keep_each_seeds_cells_together_and_in_order():
    cells = planned_cells((1, 2))
    queues = seed_queues(cells)
    assert [{c.seed for c in q} for q in queues] == [{1}, {2}]
    assert [c for q in queues for c in q] == cells  # nothing lost, nothing reordered within a seed


def test_threads_reach_the_runs_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = SampleEfficiencyStudy(("c1",), ("u1",), (1,), tmp_path, tmp_path / "runs", threads=1).env()
    assert env["OMP_NUM_THREADS"] == "1" and env["HF_HUB_OFFLINE"] == "1"
    assert "OMP_NUM_THREADS" not in SampleEfficiencyStudy(("c1",), ("u1",), (1,), tmp_path, tmp_path / "runs").env()


def test_selection_seconds_read_from_the_ledger_and_summarised_against_training(tmp_path):
    from lerobot_amf.ledger import LEDGER_FILENAME

    times = [("run_start", None, 0.0), ("eval", -1, 1.0), ("selection", 0, 4.0), ("demos_pulled", 0, 5.0),
             ("train", 0, 9.0), ("round_end", 0, 10.0), ("selection", 1, 12.5)]
    (tmp_path / LEDGER_FILENAME).write_text("".join(
        json.dumps({"event": e, "time": t, **({} if r is None else {"round": r})}) + "\n" for e, r, t in times))
    assert selection_seconds(tmp_path) == {0: 3.0, 1: 2.5}
    c = cell("skewed", 1, "amf", [["u1"], ["u2"]], [dict.fromkeys(C + U, 4)] * 2)
    for r, (sel, train) in zip(c["rounds"], [(3.0, 60.0), (2.5, 25.0)]):
        r.update(selection_seconds=sel, train_seconds=train)
    ratio = strategy_summary({1: c})["selection_over_train"]
    assert ratio == {"median": pytest.approx((0.05 + 0.1) / 2), "max": pytest.approx(0.1), "rounds": 2}


def test_amf_diagnostics_keep_each_tasks_own_importance_share_and_the_summary_splits_it():
    details = {"ess": {"u1": 1.2, "c1": 6.0}, "importance_share": {"u1": {"u1": 0.2, "c1": 0.8}, "c1": {"c1": 0.9}},
               "noise": {"sigma2": 3.0}, "rollout_fallback": []}
    diag = amf_diagnostics(details)
    assert diag["own_importance_share"] == {"u1": 0.2, "c1": 0.9} and diag["sigma2"] == 3.0
    assert diag["embedded_pairs"] is None  # a record from before the target-mass floor
    floored = amf_diagnostics({**details, "embedded_frames": {"sampled": 10, "per_task": {"u1": 3, "c1": 9}}})
    assert floored["embedded_pairs"] == [12, 20]
    c = cell("skewed", 1, "amf", [["u1"]], [dict.fromkeys(C + U, 4)])
    c["rounds"][0]["amf"] = diag
    assert strategy_summary({1: c})["own_importance_share"] == {"under_covered": 0.2, "other": 0.9}


def test_markdown_summary_quotes_the_summarys_numbers_and_says_partial():
    flat = dict.fromkeys(C + U, 4)
    cells = [cell("skewed", s, name, [["c1", "u1"], ["u1", "u2"]], [flat, {**flat, "u1": 8 + 4 * (name == "amf")}])
             for s in (1, 2) for name in ("uniform", "amf")]
    summary = summarise_study(cells, [], planned_cells((1, 2)), STUDY, n_boot=200)
    text = markdown_summary(summary, SampleEfficiencyStudy.title)
    assert "PARTIAL: 4 of 20 planned cells done" in text
    amf_row = next(line for line in text.splitlines() if line.startswith("| amf |"))
    # 4 tasks x 20 episodes: amf ends at 4+4+12+4 = 24 of 80 = 30.0 %, uniform at 20 of 80: 5.0 pp ahead
    assert "| 30.0 [" in amf_row and "| 5.0 pp [" in amf_row and "| 75 % |" in amf_row


def test_demos_to_hold_uniform_is_read_per_seed_not_off_the_mean_curves():
    # the mean curve of amf crosses uniform's mean final success early and ends below it: read off the
    # mean curves (the old figure) amf "matched uniform after 0.4 of the budget"; per seed it did so on
    # one seed of two (after 0.75), and on the other crossed early but ended below
    flat = dict.fromkeys(C + U, 4)  # 16 of 80: 0.2
    cells = []
    for seed in (1, 2):
        cells.append(cell("balanced", seed, "uniform", [["c1", "u1"], ["c2", "u2"]],
                          [{**flat, "u1": 8}, {**flat, "u1": 12}]))  # 0.25, 0.30
    cells.append(cell("balanced", 1, "amf", [["u1", "u2"], ["u1", "c1"]], [{**flat, "u1": 20}, flat]))  # 0.4, 0.2
    cells.append(cell("balanced", 2, "amf", [["u1", "u2"], ["u1", "c1"]],
                      [{**flat, "u1": 8}, {**flat, "u1": 12, "u2": 8}]))  # 0.25, 0.35
    summary = summarise_study(cells, [], planned_cells((1, 2)), STUDY, n_boot=50)
    group = summary["settings"]["balanced"]["isolations"]["shared_replay"]
    amf_mean = group["strategies"]["amf"]["curve"]["mean"]
    assert amf_mean == pytest.approx([0.2, 0.325, 0.275])  # above 0.30 after 2 demos, below it at the end
    assert first_reach([0, 2, 4], amf_mean, 0.30) / 4 == pytest.approx(0.4)  # what the old figure said
    hold = group["amf_demos_to_hold_uniform_final"]
    assert "demos_ratio_to_match_uniform" not in group
    assert hold["per_seed"]["1"] == {"uniform_final": pytest.approx(0.3), "amf_demos": None, "share_of_budget": None}
    assert hold["per_seed"]["2"]["amf_demos"] == pytest.approx(3.0)  # 0.25 after 2 demos, 0.35 after 4
    assert hold["per_seed"]["2"]["share_of_budget"] == pytest.approx(0.75)
    assert (hold["seeds_reached"], hold["seeds"], hold["budget"]) == (1, [1, 2], 4)
    assert hold["share_of_budget_median"] is None and hold["share_of_budget_range"] == [pytest.approx(0.75), None]
    text = markdown_summary(summary, SampleEfficiencyStudy.title)
    assert "seed 1: > 1 (not reached), seed 2: 0.75; median > 1 (not reached)" in text
    assert "reached on 1 of 2 seeds" in text and "ratio" not in text


def test_comparisons_pair_only_the_seeds_both_sides_ran_and_say_how_many():
    # uniform ran seeds 1, 2, 3 under shared_replay but only 1, 2 under lora (and amf only 1, 2): seed 3,
    # far ahead, must not enter any comparison; pooled over every seed, shared_replay would read 0.40
    flat = dict.fromkeys(C + U, 4)
    cells = [cell("skewed", s, "uniform", [["c1", "u1"]], [{**flat, "u1": 8}]) for s in (1, 2)]  # 0.25
    cells.append(cell("skewed", 3, "uniform", [["c1", "u1"]], [dict.fromkeys(C + U, 14)]))  # 0.70
    cells += [cell("skewed", s, "uniform", [["c1", "u1"]], [flat], isolation="lora") for s in (1, 2)]  # 0.2
    cells += [cell("skewed", s, "amf", [["u1", "u2"]], [{**flat, "u1": 12}]) for s in (1, 2)]  # 0.3
    summary = summarise_study(cells, [], planned_cells((1, 2, 3)), STUDY, n_boot=200)
    assert summary["settings"]["skewed"]["isolations"]["shared_replay"]["strategies"]["uniform"]["final_success"][
        "pooled"]["success_rate"] == pytest.approx(0.4)  # every seed: not what a comparison may use
    iso = summary["settings"]["skewed"]["paired_isolations"]["lora_minus_shared_replay"]
    assert set(iso) == {"uniform"}  # amf never ran under lora
    assert iso["uniform"]["seeds"] == [1, 2] and iso["uniform"]["mean"] == pytest.approx(-0.05)
    assert iso["uniform"]["final_pooled"]["shared_replay"]["success_rate"] == pytest.approx(0.25)  # seeds 1, 2 only
    assert iso["uniform"]["final_pooled"]["lora"]["success_rate"] == pytest.approx(0.2)
    paired = summary["settings"]["skewed"]["isolations"]["shared_replay"]["paired"]["amf_minus_uniform"]
    assert paired["seeds"] == [1, 2] and paired["mean"] == pytest.approx(0.05)
    text = markdown_summary(summary, SampleEfficiencyStudy.title)
    amf_row = next(line for line in text.splitlines() if line.startswith("| amf |"))
    assert "| 5.0 pp [" in amf_row and ", 2 seeds |" in amf_row
    assert ("* uniform, seeds 1, 2: lora 20.0 [" in text and "shared_replay 25.0 [" in text
            and "lora minus shared_replay -5.0 pp [" in text)


def test_not_moved_share_counts_picks_on_tasks_their_earlier_demos_did_not_raise():
    """u1 stays at 0/20 after its first demo: its second and third picks count; u2 rises 4 -> 12,
    so its second pick does not; a task's first pick never counts."""
    from benchmarks.study_summary import human_cost_total, not_moved_share

    flat = {"c1": 4, "c2": 4}
    c = cell("skewed", 1, "lowest_success", [["u1", "u2"], ["u1", "u2"], ["u1"]],
             [{**flat, "u1": 0, "u2": 12}, {**flat, "u1": 0, "u2": 12}, {**flat, "u1": 0, "u2": 12}],
             pretrained={**flat, "u1": 0, "u2": 4})
    assert not_moved_share(c) == pytest.approx(2 / 5)
    assert not_moved_share(c, min_gain=0.0) == 0.0  # no rise needed: every task counts as moved
    assert human_cost_total(c) is None  # cells run before the human cost was counted
    for r in c["rounds"]:
        r["human_cost"] = {"demos": len(r["selected"]), "evaluation_episodes": 80, "rollout_episodes": 0,
                           "total": len(r["selected"]) + 80}
    assert human_cost_total(c) == {"demos": 5, "evaluation_episodes": 240, "rollout_episodes": 0, "total": 245}
    summary = strategy_summary({1: c})
    assert summary["not_moved_share"]["overall"] == pytest.approx(2 / 5)
    assert summary["human_cost"]["total"]["median"] == 245
