"""Importance weights and effective sample size, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from lerobot_amf.selection.importance import (
    ImportanceSummary,
    effective_sample_size,
    importance_log_weights,
    importance_weights,
    summarize_importance,
    systematic_resample,
)

D = torch.float64


def test_columns_sum_to_one_and_nonnegative():
    gen = torch.Generator().manual_seed(0)
    loglik = torch.randn(12, 5, generator=gen, dtype=D) * 20
    demo_task = torch.randint(0, 5, (12,), generator=gen)
    w = importance_weights(loglik, demo_task, temperature=3.0, clip=4.0)
    assert w.shape == (12, 5)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(0), torch.ones(5, dtype=D), rtol=0, atol=1e-12)


def test_hand_computed_weights():
    loglik = torch.tensor([[-1.0, -3.0], [-2.0, -2.5], [-4.0, -1.0]], dtype=D)
    demo_task = [0, 0, 1]
    T = 2.0
    # log-weights relative to each demo's own task
    expected_logw = torch.tensor([[0.0, -1.0], [0.0, -0.25], [-1.5, 0.0]], dtype=D)
    torch.testing.assert_close(importance_log_weights(loglik, demo_task, temperature=T, clip=10.0), expected_logw)
    w = importance_weights(loglik, demo_task, temperature=T, clip=10.0)
    col0 = torch.tensor([1.0, 1.0, math.exp(-1.5)], dtype=D)
    col1 = torch.tensor([math.exp(-1.0), math.exp(-0.25), 1.0], dtype=D)
    torch.testing.assert_close(w[:, 0], col0 / col0.sum(), rtol=1e-12, atol=0)
    torch.testing.assert_close(w[:, 1], col1 / col1.sum(), rtol=1e-12, atol=0)


def test_clip_respected():
    loglik = torch.tensor([[0.0, 100.0], [0.0, 0.0], [0.0, -100.0], [0.0, 1.0]], dtype=D)
    demo_task = [0, 0, 0, 0]
    clip = 3.0
    logw = importance_log_weights(loglik, demo_task, temperature=1.0, clip=clip)
    assert logw.max() <= clip and logw.min() >= -clip
    w = importance_weights(loglik, demo_task, temperature=1.0, clip=clip)
    col = torch.tensor([math.exp(3.0), 1.0, math.exp(-3.0), math.e], dtype=D)
    torch.testing.assert_close(w[:, 1], col / col.sum(), rtol=1e-12, atol=0)
    assert float(w[:, 1].max() / w[:, 1].min()) <= math.exp(2 * clip) * (1 + 1e-12)


def test_temperature_flattens():
    loglik = torch.tensor([[0.0, 5.0], [0.0, 0.0], [0.0, -5.0]], dtype=D)
    cold = importance_weights(loglik, [0, 0, 0], temperature=1.0, clip=50.0)
    hot = importance_weights(loglik, [0, 0, 0], temperature=10.0, clip=50.0)
    ess_cold, ess_hot = effective_sample_size(cold), effective_sample_size(hot)
    assert ess_hot[1] > ess_cold[1]
    assert ess_hot[0] == pytest.approx(3.0) and ess_cold[0] == pytest.approx(3.0)


def test_ess_hand_computed():
    w = torch.tensor([[0.5, 2.0], [0.3, 1.0], [0.2, 1.0]], dtype=D)
    ess = effective_sample_size(w)
    assert float(ess[0]) == pytest.approx(1.0 / (0.25 + 0.09 + 0.04), rel=1e-12)
    assert float(ess[1]) == pytest.approx(16.0 / 6.0, rel=1e-12)  # unnormalised column
    assert float(effective_sample_size(torch.zeros(3, 1))[0]) == 0.0


def test_uniform_logliks_give_full_ess():
    n, c = 17, 4
    loglik = torch.full((n, c), -3.2, dtype=D)
    w = importance_weights(loglik, torch.arange(n) % c)
    torch.testing.assert_close(w, torch.full((n, c), 1.0 / n, dtype=D))
    torch.testing.assert_close(effective_sample_size(w), torch.full((c,), float(n), dtype=D))


def test_dominated_column_collapses_to_one():
    n = 10
    loglik = torch.zeros(n, 2, dtype=D)
    loglik[3, 1] = 30.0  # demo 3 is far more likely under task 1 than any other demo
    w = importance_weights(loglik, [0] * n, temperature=1.0, clip=30.0)
    ess = effective_sample_size(w)
    assert float(w[3, 1]) > 0.999
    assert float(ess[1]) == pytest.approx(1.0, abs=1e-3)
    assert float(ess[0]) == pytest.approx(float(n))


def test_summary_and_collapsed_mask():
    n = 10
    loglik = torch.zeros(n, 3, dtype=D)
    loglik[0, 2] = 30.0
    w = importance_weights(loglik, [0] * n, clip=30.0)
    summ = summarize_importance(w, task_names=["a", "b", "c"])
    assert isinstance(summ, ImportanceSummary) and summ.n_demos == n
    assert summ.collapsed(2.0).tolist() == [False, False, True]
    assert summ.as_dict()["a"] == pytest.approx(10.0) and summ.as_dict()["b"] == pytest.approx(10.0)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        importance_weights(torch.zeros(3, 2), [0, 1])  # wrong length
    with pytest.raises(ValueError):
        importance_weights(torch.zeros(3, 2), [0, 1, 2])  # index out of range
    with pytest.raises(ValueError):
        importance_weights(torch.tensor([[0.0, float("nan")]]), [0])
    with pytest.raises(ValueError):
        importance_weights(torch.zeros(2, 2), [0, 1], temperature=0.0)


def test_systematic_resampling_draws_each_index_in_proportion_and_never_a_weightless_one():
    w = torch.tensor([0.5, 0.0, 0.3, 0.15, 0.05], dtype=torch.float64)
    index, times = systematic_resample(w, 20)
    assert index.tolist() == [0, 2, 3, 4]  # the weightless index 1 is never drawn
    assert times.tolist() == [10, 6, 3, 1]  # k * p_i, exactly where it is whole
    assert int(times.sum()) == 20
    # each index drawn floor or ceil of k * p_i times, for any k
    w = torch.rand(200, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for k in (1, 7, 50, 199):
        index, times = systematic_resample(w, k)
        expected = k * w[index] / w.sum()
        assert int(times.sum()) == k
        assert bool(((times >= expected.floor()) & (times <= expected.ceil())).all())
    with pytest.raises(ValueError, match="positive total weight"):
        systematic_resample(torch.zeros(3), 2)
