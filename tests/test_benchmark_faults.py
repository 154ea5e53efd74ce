"""The fault-injection benchmark's pieces (``benchmarks/faults.py``): comparing a killed-and-resumed
run's ledger with the reference (demos lost or duplicated, identical selections) and the summary."""

import time

from conftest import load_faults as _faults
from lerobot_amf.ledger import Ledger


def test_ledger_comparison_counts_lost_and_duplicated_demos(tmp_path):
    faults = _faults()

    def ledger_with(rounds, selections, where):
        ledger = Ledger(tmp_path / where)
        for r, tasks in enumerate(selections):
            ledger.append("selection", round=r, tasks=tasks)
        for r, ids in enumerate(rounds):
            ledger.append("demos_pulled", round=r, demos=[{"demo_id": i, "task": "a"} for i in ids])
        return faults.compared_records(ledger.path)

    ref = ledger_with([["x", "y"], ["z"]], [["a", "a"], ["a"]], "ref")
    time.sleep(0.01)  # other timestamps: ignored
    assert faults.compare(ref, ledger_with([["x", "y"], ["z"]], [["a", "a"], ["a"]], "same"), 3) == {
        "demos_recorded": 3, "episodes_on_disk": 3, "demos_lost": 0, "demos_duplicated": 0,
        "selections_identical": True, "demos_pulled_identical": True}
    bad = faults.compare(ref, ledger_with([["x", "y"], ["x"]], [["a", "a"], ["a"], ["a"]], "bad"), 4)
    assert (bad["demos_lost"], bad["demos_duplicated"], bad["selections_identical"]) == (1, 2, False)
    summary = faults.summarize([
        {"killed": True, "killed_in": "training", "survived": True, "demos_lost": 0, "demos_duplicated": 0,
         "selections_identical": True, "demos_pulled_identical": True},
        {"killed": True, "killed_in": faults.BETWEEN, "survived": False, "demos_lost": 1, "demos_duplicated": 2,
         "selections_identical": False, "demos_pulled_identical": False},
        {"killed": False, "killed_in": faults.BETWEEN, "survived": True, "demos_lost": 0, "demos_duplicated": 0,
         "selections_identical": False, "demos_pulled_identical": False}])
    assert summary == {"kills": 2, "distinct_points": 1, "points": {"training": 1, faults.BETWEEN: 1}, "survived": 1,
                       "demos_lost": 1, "demos_duplicated": 2, "selections_identical": 1}
