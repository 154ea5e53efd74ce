"""The run report (``report.py``): rebuilt from a synthetic ledger, and the per-task change kinds
(gained/lost only where the Wilson intervals separate)."""

from lerobot_amf.evaluation import pooled, summarise
from lerobot_amf.ledger import Ledger
from lerobot_amf.report import build_report, change_kind


def _eval(rates: dict[str, int], n: int = 10) -> dict:
    per_task = {t: summarise(s, n) for t, s in rates.items()}
    return {"per_task": per_task, "overall": pooled(per_task, list(rates))}


def test_report_is_rebuilt_from_the_ledger(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append("run_start", pool=["a", "b", "c"], target_weights={"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, budget=4,
                  demos_per_round=[2, 2], strategy="uniform", seed=3, source={"name": "x"},
                  model={"isolation": "single model (shared weights, all tasks)"}, pretrain_counts={"a": 5, "b": 1, "c": 1},
                  eval_protocol={"episodes_per_task": 10})
    ledger.append("eval", round=-1, variant="pretrained", **_eval({"a": 9, "b": 0, "c": 8}))
    for r, (picks, counts, rates) in enumerate([(["b", "b"], {"a": 0, "b": 2, "c": 0}, {"a": 9, "b": 5, "c": 8}),
                                                (["b", "a"], {"a": 1, "b": 3, "c": 0}, {"a": 9, "b": 10, "c": 1})]):
        ledger.append("selection", round=r, tasks=picks, scores={"a": 0.1}, details={}, reason="why")
        ledger.append("train", round=r, metrics={"steps": 5})
        ledger.append("eval", round=r, variant="single model", **_eval(rates))
        ledger.append("round_end", round=r, demos_per_task=counts, checkpoint=f"round_{r}")
    report = build_report(tmp_path)
    assert report["complete"] is False  # no run_end yet
    assert [r["selected"] for r in report["rounds"]] == [["b", "b"], ["b", "a"]]
    assert report["demos_per_task"] == {"pretraining": {"a": 5, "b": 1, "c": 1}, "fine_tuning": {"a": 1, "b": 3, "c": 0}}
    assert report["rounds"][1]["demos_total"] == 4
    final = report["final"]
    assert final["fine_tuned_tasks"] == ["a", "b"]
    assert final["pretrained_on_fine_tuned_tasks"]["successes"] == 9  # a 9 + b 0
    assert final["fine_tuned_on_fine_tuned_tasks"]["successes"] == 19  # a 9 + b 10
    assert final["improved_beyond_intervals"] is True
    kinds = {t: c["kind"] for t, c in final["per_task_change"].items()}
    assert kinds == {"a": "retained", "b": "gained", "c": "lost"}
    assert final["not_fine_tuned_tasks"]["final"]["successes"] == 1
    ledger.append("run_end")
    assert build_report(tmp_path)["complete"] is True


def test_change_kinds_need_separated_intervals():
    pre = {"ci95": [0.4, 0.8]}
    assert change_kind(pre, {"ci95": [0.85, 1.0]}) == "gained"
    assert change_kind(pre, {"ci95": [0.0, 0.3]}) == "lost"
    assert change_kind(pre, {"ci95": [0.5, 0.9]}) == "retained"
