"""Success statistics (``evaluation.py``): Wilson intervals and success pooled over tasks."""

import pytest

from lerobot_amf.evaluation import pooled, wilson_interval


def test_wilson_interval_matches_reference_values():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)


def test_pooled_success_over_tasks():
    per_task = {"a": {"successes": 3, "episodes": 10}, "b": {"successes": 7, "episodes": 10}}
    out = pooled(per_task, ["a", "b"])
    assert out["success_rate"] == 0.5 and out["episodes"] == 20
