"""The hard setting's pilot (``benchmarks/hard_pilot.py``): complementary allocations that measure
every task once with 1 and once with 10 pretraining demos, and the setting's criteria read off them."""

from benchmarks import hard_pilot as hp

TASKS = [f"t{i}" for i in range(12)]


def test_the_two_allocations_swap_under_covered_and_covered_halves_not_in_list_order():
    plan = hp.allocations(TASKS)
    a, b = plan["A"], plan["B"]
    assert set(a) == set(b) == set(TASKS)
    assert sorted(a.values()) == [1] * 6 + [10] * 6
    assert all({a[t], b[t]} == {1, 10} for t in TASKS)
    under = [t for t in TASKS if a[t] == 1]
    assert under != TASKS[:6] and under != TASKS[6:]  # a seeded permutation, not the candidates' order
    assert hp.allocations(TASKS) == plan  # and the same every time


def cell(allocation, rates):
    return {"complete": True, "demos_per_task": allocation,
            "per_task": {t: {"success_rate": rates[t]} for t in allocation}}


def test_criteria_are_read_off_both_allocations_and_partial_until_both_are_done():
    plan = hp.allocations(TASKS)
    balanced = {t: 1.0 for t in TASKS}
    # A: four of its under-covered half fail with 1 demo, one is strong; B swaps the halves
    under_a = [t for t in TASKS if plan["A"][t] == 1]
    covered_a = [t for t in TASKS if plan["A"][t] == 10]
    rates_a = {**dict(zip(under_a, [0.2, 0.2, 0.2, 0.2, 0.9, 0.5])), **{t: 0.95 for t in covered_a}}
    rates_b = {**dict(zip(under_a, [1.0, 1.0, 1.0, 1.0, 0.5, 0.3])), **{t: 0.9 for t in covered_a}}
    only_a = hp.summarise(TASKS, balanced, {"A": cell(plan["A"], rates_a)})
    assert only_a["partial"] and only_a["covered_weak"] == []
    both = hp.summarise(TASKS, balanced, {"A": cell(plan["A"], rates_a), "B": cell(plan["B"], rates_b)})
    assert not both["partial"] and both["met"] == {"tasks": True, "under_covered_weak": True, "covered_weak": True}
    assert set(both["under_covered_weak"]) == set(under_a[:4])
    assert set(both["covered_weak"]) == set(under_a[4:])  # 0.5 and 0.3 with 10 demos
    assert set(both["under_covered_strong"]) == {under_a[4], *covered_a}
    assert both["per_task"][under_a[0]] == {"balanced_10_demos": 1.0, "under_covered_1_demo": 0.2,
                                            "covered_10_demos": 1.0}


def test_the_confirmation_under_covers_the_tasks_whose_one_demo_count_misleads_and_reads_criteria_off_itself():
    summary = {"under_covered_weak": ["t0", "t1"], "under_covered_strong": ["t2"]}
    allocation = hp.confirmation_allocation(TASKS, summary)
    assert [t for t in TASKS if allocation[t] == 1] == ["t0", "t1", "t2"] and list(allocation) == TASKS
    rates = {t: 0.9 for t in TASKS} | {"t0": 0.1, "t1": 0.5, "t2": 0.85, "t3": 0.55, "t4": 0.7}
    read = hp.read_off(cell(allocation, rates))
    assert read["under_covered_weak"] == ["t0"] and read["under_covered_strong"] == ["t2"]
    assert read["covered_weak"] == ["t3"] and read["closest_covered_weak"] == ["t3", "t4"]
    assert read["met"] == {"under_covered_weak": False, "covered_weak": False}
