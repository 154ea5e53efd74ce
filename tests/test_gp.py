"""Weight-space GP posterior and greedy selection against dense / brute-force references."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest
import torch

from lerobot_amf.errors import AMFInputError
from lerobot_amf.selection.gp import (
    CandidateDemo,
    GreedyResult,
    WeightSpacePosterior,
    calibrate_noise,
    dense_gp_variance,
    greedy_batch,
    information_gain,
    kernel_scale,
)

D = torch.float64


def greedy64(*args, **kwargs) -> GreedyResult:
    """Greedy selection with exact (float64) scoring: compared with dense references at 1e-8."""
    return greedy_batch(*args, score_dtype=D, **kwargs)


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=D)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / b.abs().clamp_min(1e-300)).max())


def _dense_gain(obs, obs_w, new, new_w, targets, target_w, sigma2, kappa) -> float:
    """Brute-force gain of adding `new` rows, all in function space (independent reference)."""
    before = dense_gp_variance(obs, targets, sigma2, kappa, obs_w)
    after = dense_gp_variance(torch.cat([obs, new]), targets, sigma2, kappa, torch.cat([obs_w, new_w]))
    return float((target_w * 0.5 * torch.log(before / after)).sum())


# ---------------------------------------------------------------------------------------------
# posterior algebra


def test_kernel_scale_is_mean_squared_norm_and_guards_zero():
    phi = torch.tensor([[3.0, 4.0], [1.0, 0.0]], dtype=D)
    assert kernel_scale(phi) == pytest.approx((25.0 + 1.0) / 2)
    assert kernel_scale(torch.zeros(5, 3)) == 1.0
    assert kernel_scale(torch.zeros(0, 3)) == 1.0


def test_prior_variance_is_kernel_diagonal():
    gen = torch.Generator().manual_seed(0)
    phi = _rand(gen, 7, 5)
    post = WeightSpacePosterior(5, sigma2=0.5, kappa=2.5)
    torch.testing.assert_close(post.variance(phi), (phi * phi).sum(1) / 2.5, rtol=1e-12, atol=0)


@pytest.mark.parametrize("n,d", [(12, 8), (5, 9), (40, 6)])
@pytest.mark.parametrize("weighted", [False, True])
def test_weight_space_variance_matches_dense(n: int, d: int, weighted: bool):
    gen = torch.Generator().manual_seed(100 * n + d + int(weighted))
    obs = _rand(gen, n, d)
    targets = torch.cat([_rand(gen, 9, d), obs[:3]])  # include observed points
    weights = torch.rand(n, generator=gen, dtype=D) * 3.0 if weighted else None
    if weighted:
        weights[0] = 0.0  # a zero-weight observation must count as nothing
    sigma2, kappa = 0.3, kernel_scale(obs)

    post = WeightSpacePosterior(d, sigma2, kappa)
    # observe in two chunks: accumulation must be order/chunk independent
    post.observe(obs[: n // 2], None if weights is None else weights[: n // 2])
    post.observe(obs[n // 2 :], None if weights is None else weights[n // 2 :])
    got = post.variance(targets)
    ref = dense_gp_variance(obs, targets, sigma2, kappa, weights)
    assert _rel_err(got, ref) <= 1e-6
    assert post.n_observed == n
    # observing must actually shrink variance (guards against a no-op observe)
    assert (got < (targets * targets).sum(1) / kappa - 1e-9).all()


def test_fractional_weight_equals_repeated_observation():
    gen = torch.Generator().manual_seed(1)
    obs, tgt = _rand(gen, 4, 6), _rand(gen, 5, 6)
    a = WeightSpacePosterior(6, 0.2, 1.7)
    a.observe(obs, torch.tensor([3.0, 1.0, 1.0, 2.0], dtype=D))
    b = WeightSpacePosterior(6, 0.2, 1.7)
    b.observe(torch.cat([obs[0:1]] * 3 + [obs[1:3]] + [obs[3:4]] * 2))
    torch.testing.assert_close(a.variance(tgt), b.variance(tgt), rtol=1e-10, atol=0)


def variance_after(post, tgt, new, new_w=None):
    """The targets' variance had ``new`` also been observed: greedy's rank update, the posterior untouched."""
    z = post.whiten(tgt)
    return post.whitened_variance(z) - post.variance_reductions(z, [post.update_factor(new, new_w)])[0]


@pytest.mark.parametrize("t_new", [1, 4, 25])  # 25 > d exercises the rank-compression path
@pytest.mark.parametrize("weighted", [False, True])
def test_variance_after_matches_rebuilt_posterior(t_new: int, weighted: bool):
    d = 10
    gen = torch.Generator().manual_seed(7 * t_new + int(weighted))
    obs, new, tgt = _rand(gen, 15, d), _rand(gen, t_new, d), _rand(gen, 30, d)
    obs_w = torch.rand(15, generator=gen, dtype=D) + 0.1
    new_w = torch.rand(t_new, generator=gen, dtype=D) * 2.0 if weighted else None
    post = WeightSpacePosterior(d, 0.25, kernel_scale(obs))
    post.observe(obs, obs_w)
    before = post.variance(tgt)

    got = variance_after(post, tgt, new, new_w)

    rebuilt = post.copy()
    rebuilt.observe(new, new_w)
    ref = rebuilt.variance(tgt)
    assert _rel_err(got, ref) <= 1e-8
    torch.testing.assert_close(post.variance(tgt), before, rtol=0, atol=0)  # not modified
    assert (got <= before + 1e-12).all() and (got < before).any()


def test_variance_after_zero_weight_rows_change_nothing():
    gen = torch.Generator().manual_seed(3)
    post = WeightSpacePosterior(5, 0.1, 1.0)
    post.observe(_rand(gen, 3, 5))
    tgt, new = _rand(gen, 4, 5), _rand(gen, 6, 5)
    torch.testing.assert_close(variance_after(post, tgt, new, torch.zeros(6, dtype=D)), post.variance(tgt))


def test_copy_is_independent():
    gen = torch.Generator().manual_seed(4)
    post = WeightSpacePosterior(4, 0.1, 1.0)
    tgt = _rand(gen, 3, 4)
    clone = post.copy()
    clone.observe(_rand(gen, 5, 4))
    torch.testing.assert_close(post.variance(tgt), (tgt * tgt).sum(1))
    assert post.n_observed == 0 and clone.n_observed == 5


def test_dimension_mismatch_raises():
    post = WeightSpacePosterior(4, 0.1, 1.0)
    with pytest.raises(ValueError):
        post.observe(torch.zeros(2, 3))
    with pytest.raises(ValueError):
        post.observe(torch.zeros(2, 4), torch.tensor([1.0, -1.0]))


def test_information_gain_hand_computed():
    vb = torch.tensor([2.0, 1.0, 4.0], dtype=D)
    va = torch.tensor([1.0, 1.0, 1.0], dtype=D)
    w = torch.tensor([1.0, 5.0, 0.5], dtype=D)
    expected = 1.0 * 0.5 * math.log(2.0) + 0.0 + 0.5 * 0.5 * math.log(4.0)
    assert information_gain(vb, vb - va, w) == pytest.approx(expected, rel=1e-12)
    assert information_gain(vb, vb - va) == pytest.approx(0.5 * math.log(2.0) + 0.5 * math.log(4.0), rel=1e-12)
    # zero prior variance carries no information
    assert information_gain(torch.zeros(2), torch.zeros(2)) == 0.0


# ---------------------------------------------------------------------------------------------
# greedy selection


def _problem(seed: int, n_tasks: int = 4, d: int = 5, states: int = 3, n_obs: int = 6):
    gen = torch.Generator().manual_seed(seed)
    obs = _rand(gen, n_obs, d)
    obs_w = torch.rand(n_obs, generator=gen, dtype=D) + 0.5
    cands = {
        f"task{i}": (_rand(gen, states, d), torch.rand(states, generator=gen, dtype=D) + 0.2)
        for i in range(n_tasks)
    }
    tgt = torch.cat([c[0] for c in cands.values()] + [_rand(gen, 4, d)])
    tgt_w = torch.rand(tgt.shape[0], generator=gen, dtype=D) + 0.1
    sigma2, kappa = 0.5, kernel_scale(tgt)
    post = WeightSpacePosterior(d, sigma2, kappa)
    post.observe(obs, obs_w)
    return post, obs, obs_w, cands, tgt, tgt_w, sigma2, kappa


def _batch_gain(obs, obs_w, cands, multiset, tgt, tgt_w, sigma2, kappa) -> float:
    new = torch.cat([cands[n][0] for n in multiset])
    new_w = torch.cat([cands[n][1] if cands[n][1] is not None else torch.ones(len(cands[n][0]), dtype=D) for n in multiset])
    return _dense_gain(obs, obs_w, new, new_w, tgt, tgt_w, sigma2, kappa)


@pytest.mark.parametrize("seed", range(5))
def test_first_pick_is_bruteforce_argmax(seed: int):
    post, obs, obs_w, cands, tgt, tgt_w, sigma2, kappa = _problem(seed)
    res = greedy64(post, cands, (tgt, tgt_w), batch_size=1)
    brute = {n: _batch_gain(obs, obs_w, cands, [n], tgt, tgt_w, sigma2, kappa) for n in cands}
    assert res.picks == [max(brute, key=brute.get)]
    for n, g in brute.items():  # every reported score is the true gain
        assert res.step_scores[0][n] == pytest.approx(g, rel=1e-8)
    # first-step variance summary agrees with the dense model
    denom = float(tgt_w.sum())
    before = float((tgt_w * dense_gp_variance(obs, tgt, sigma2, kappa, obs_w)).sum()) / denom
    for n, (vb, va) in res.first_step_variance.items():
        after = dense_gp_variance(torch.cat([obs, cands[n][0]]), tgt, sigma2, kappa, torch.cat([obs_w, cands[n][1]]))
        assert vb == pytest.approx(before, rel=1e-8)
        assert va == pytest.approx(float((tgt_w * after).sum()) / denom, rel=1e-8)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("batch", [2, 3])
def test_greedy_within_submodular_bound_of_bruteforce(seed: int, batch: int):
    post, obs, obs_w, cands, tgt, tgt_w, sigma2, kappa = _problem(seed)
    res = greedy64(post, cands, (tgt, tgt_w), batch_size=batch)
    assert len(res.picks) == batch
    # total_gain is the true gain of the picked multiset (chain rule of information)
    greedy_gain = _batch_gain(obs, obs_w, cands, res.picks, tgt, tgt_w, sigma2, kappa)
    assert res.total_gain == pytest.approx(greedy_gain, rel=1e-8)
    assert res.total_gain == pytest.approx(sum(s[p] for s, p in zip(res.step_scores, res.picks)), rel=1e-12)
    best = max(
        _batch_gain(obs, obs_w, cands, list(ms), tgt, tgt_w, sigma2, kappa)
        for ms in itertools.combinations_with_replacement(list(cands), batch)
    )
    assert greedy_gain >= (1 - 1 / math.e) * best - 1e-12
    assert greedy_gain <= best + 1e-9


def test_greedy_exact_on_separable_problem():
    """Tasks in orthogonal subspaces: the gain is a sum of concave per-task terms, greedy is optimal."""
    d, sigma2, kappa = 6, 0.4, 1.0
    eye = torch.eye(d, dtype=D)
    cands = {
        "a": (eye[0:2] * 1.0, None),
        "b": (eye[2:4] * 1.5, None),
        "c": (eye[4:6] * 0.7, None),
    }
    tgt = torch.cat([eye[0:2], eye[2:4], eye[4:6]])
    tgt_w = torch.tensor([3.0, 3.0, 1.0, 1.0, 2.0, 2.0], dtype=D)
    post = WeightSpacePosterior(d, sigma2, kappa)
    empty = torch.zeros(0, d, dtype=D)
    empty_w = torch.zeros(0, dtype=D)
    for batch in (2, 3, 4):
        res = greedy64(post, cands, (tgt, tgt_w), batch_size=batch)
        scored = {
            ms: _batch_gain(empty, empty_w, cands, list(ms), tgt, tgt_w, sigma2, kappa)
            for ms in itertools.combinations_with_replacement(sorted(cands), batch)
        }
        best_ms = max(scored, key=scored.get)
        assert res.total_gain == pytest.approx(scored[best_ms], rel=1e-10)
        assert tuple(sorted(res.picks)) == best_ms


def test_unseen_task_beats_well_observed_task():
    gen = torch.Generator().manual_seed(11)
    d = 8
    states_a, states_b = _rand(gen, 4, d), _rand(gen, 4, d)
    post = WeightSpacePosterior(d, 0.5, kernel_scale(torch.cat([states_a, states_b])))
    for _ in range(20):
        post.observe(states_a)
    cands = {"A": (states_a, None), "B": (states_b, None)}  # A listed first: ties would favour it
    res = greedy64(post, cands, (torch.cat([states_a, states_b]), None), batch_size=1)
    assert res.picks == ["B"]
    assert res.step_scores[0]["B"] > 5 * res.step_scores[0]["A"]
    (vb_a, va_a), (vb_b, va_b) = res.first_step_variance["A"], res.first_step_variance["B"]
    assert vb_a == vb_b and (vb_b - va_b) > (vb_a - va_a)


def test_capacity_respected():
    gen = torch.Generator().manual_seed(5)
    d = 6
    big, small = _rand(gen, 5, d) * 3, _rand(gen, 2, d) * 0.3
    cands = {"big": (big, None), "small": (small, None), "none": (small.clone(), None)}
    tgt = torch.cat([big, small])
    post = WeightSpacePosterior(d, 0.5, kernel_scale(tgt))
    free = greedy64(post, cands, (tgt, None), batch_size=3)
    assert free.picks[0] == "big"
    res = greedy64(post, cands, (tgt, None), batch_size=4, allowed={"big": 1, "small": 2, "none": 0})
    assert Counter(res.picks) == {"big": 1, "small": 2}  # stops early: capacity exhausted
    assert res.picks[0] == "big"
    assert all("none" not in s for s in res.step_scores)
    assert "big" not in res.step_scores[1]
    # tasks absent from `allowed` are uncapped
    res2 = greedy64(post, cands, (tgt, None), batch_size=3, allowed={"none": 0, "small": 0})
    assert res2.picks == ["big"] * 3
    assert greedy64(post, cands, (tgt, None), 2, allowed={n: 0 for n in cands}).picks == []


def test_deterministic_and_ties_follow_candidate_order():
    post, _, _, cands, tgt, tgt_w, _, _ = _problem(21, n_tasks=5)
    r1 = greedy64(post, cands, (tgt, tgt_w), batch_size=4)
    r2 = greedy64(post, cands, (tgt, tgt_w), batch_size=4)
    assert r1.picks == r2.picks and r1.step_scores == r2.step_scores

    states = cands["task0"]
    twins = {"x": states, "y": (states[0].clone(), states[1].clone())}
    assert greedy64(post, twins, (tgt, tgt_w), 1).picks == ["x"]
    assert greedy64(post, dict(reversed(list(twins.items()))), (tgt, tgt_w), 1).picks == ["y"]


def test_greedy_does_not_modify_posterior():
    post, _, _, cands, tgt, tgt_w, _, _ = _problem(2)
    before = post.variance(tgt)
    n_before = post.n_observed
    greedy64(post, cands, (tgt, tgt_w), batch_size=3)
    torch.testing.assert_close(post.variance(tgt), before, rtol=0, atol=0)
    assert post.n_observed == n_before


def test_greedy_result_type():
    post, _, _, cands, tgt, tgt_w, _, _ = _problem(9)
    res = greedy64(post, cands, (tgt, tgt_w), batch_size=2)
    assert isinstance(res, GreedyResult)
    assert len(res.step_scores) == 2 and set(res.step_scores[0]) == set(cands)
    # greedy re-scores after fantasising: the picked task's own gain must drop (diminishing returns)
    first = res.picks[0]
    assert res.step_scores[1][first] < res.step_scores[0][first]


def test_float32_scoring_agrees_with_float64():
    # The default scoring product runs in float32; picks and gains match the exact scoring.
    gen = torch.Generator().manual_seed(4)
    d, m = 64, 5000
    cands = {f"t{i}": (_rand(gen, 20, d) * (1 + i / 5), None) for i in range(12)}
    tgt = _rand(gen, m, d)
    post = WeightSpacePosterior(d, 0.5, kernel_scale(tgt))
    post.observe(_rand(gen, 200, d))
    exact = greedy64(post, cands, (tgt, None), batch_size=3)
    fast = greedy_batch(post, cands, (tgt, None), batch_size=3)
    assert fast.picks == exact.picks
    for s32, s64 in zip(fast.step_scores, exact.step_scores):
        for name in s64:
            assert s32[name] == pytest.approx(s64[name], rel=1e-5)
    assert any(fast.step_scores[0][n] != exact.step_scores[0][n] for n in cands)  # it ran in float32


# ---------------------------------------------------------------------------------------------
# expected gain of one demo, and the calibrated noise


def test_a_task_with_12_demos_and_one_with_1_score_equally_when_their_demos_embed_alike():
    gen = torch.Generator().manual_seed(11)
    d = 6
    demo = _rand(gen, 4, d)  # the states a demo of either task visits
    target = _rand(gen, 4, d)  # the task's target states, embedded alike too
    frames = torch.full((4,), 30.0, dtype=D)
    cands = {"twelve": [CandidateDemo(demo, frames, 1 / 12)] * 12, "one": [CandidateDemo(demo, frames, 1.0)]}
    tgt = torch.cat([target] * 12 + [target])  # 12 demos' targets at weight 1/12 each, 1 demo's at 1
    tgt_w = torch.cat([torch.full((48,), 0.5 / 48, dtype=D), torch.full((4,), 0.5 / 4, dtype=D)])
    post = WeightSpacePosterior(d, 2.0, kernel_scale(tgt))
    res = greedy64(post, cands, (tgt, tgt_w), batch_size=1)
    assert res.step_scores[0]["twelve"] == pytest.approx(res.step_scores[0]["one"], rel=1e-9)
    # the sum of the 12 demos' gains (no expectation) would favour the task with more demos
    assert res.step_scores[0]["twelve"] < 2 * res.step_scores[0]["one"]


def test_a_task_scores_the_expected_gain_of_one_demo_not_its_mixture():
    gen = torch.Generator().manual_seed(5)
    d = 8
    demos = [_rand(gen, 3, d) for _ in range(3)]
    tgt, tgt_w = _rand(gen, 10, d), torch.full((10,), 0.1, dtype=D)
    post = WeightSpacePosterior(d, 0.5, kernel_scale(tgt))
    probs = [0.5, 0.3, 0.2]
    task = [CandidateDemo(demo, None, p) for demo, p in zip(demos, probs)]
    expected = greedy64(post, {"task": task}, (tgt, tgt_w), batch_size=1).step_scores[0]["task"]
    singles = [greedy64(post, {"task": (demo, None)}, (tgt, tgt_w), batch_size=1).step_scores[0]["task"]
               for demo in demos]
    assert expected == pytest.approx(sum(p * g for p, g in zip(probs, singles)), rel=1e-9)
    mixture_w = torch.cat([torch.full((3,), p, dtype=D) for p in probs])
    mixture = greedy64(post, {"task": (torch.cat(demos), mixture_w)}, (tgt, tgt_w), batch_size=1).step_scores[0]["task"]
    assert mixture > expected * 1.05  # Jensen: the mixture overstates a task with diverse demos
    # the fantasised pick is the expected precision, i.e. the mixture's update
    res = greedy64(post, {"task": task}, (tgt, tgt_w), batch_size=1)
    after = dense_gp_variance(torch.cat(demos), tgt, 0.5, post.kappa, mixture_w)
    assert res.pick_variance[0]["all"][1] == pytest.approx(float((tgt_w * after).sum() / tgt_w.sum()), rel=1e-8)


def test_calibrated_noise_lets_one_demo_remove_at_most_the_asked_share_of_its_task_variance():
    gen = torch.Generator().manual_seed(2)
    d = 12
    fantasies, own, tgt_rows, groups = {}, {}, [], []
    for i, frames in enumerate((150.0, 40.0, 400.0)):
        centre = _rand(gen, 1, d) * (1 + i)
        fantasies[f"t{i}"] = (centre + 0.3 * _rand(gen, 6, d), torch.full((6,), frames / 6, dtype=D))
        own[f"t{i}"] = (centre + 0.3 * _rand(gen, 8, d), torch.full((8,), 1 / 8, dtype=D))
        tgt_rows.append(own[f"t{i}"][0])
        groups += [f"t{i}"] * 8
    tgt = torch.cat(tgt_rows)
    kappa = kernel_scale(tgt)
    sigma2, fractions = calibrate_noise(fantasies, own, kappa, max_fraction=0.5)
    assert max(fractions.values()) == pytest.approx(0.5, abs=1e-6) and all(f <= 0.5 + 1e-9 for f in fractions.values())
    tgt_w = torch.full((24,), 1 / 24, dtype=D)
    for name in fantasies:  # the greedy's own record of each task's fantasised demo agrees
        res = greedy64(WeightSpacePosterior(d, sigma2, kappa), {name: fantasies[name]}, (tgt, tgt_w), 1,
                       target_groups=groups)
        before, after = res.pick_variance[0]["own"]
        assert 1 - after / before == pytest.approx(fractions[name], rel=1e-6)
    # a smaller σ² than the calibrated one lets some demo remove more than half
    _, more = calibrate_noise(fantasies, own, kappa, max_fraction=0.8)
    assert max(more.values()) == pytest.approx(0.8, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# non-finite embeddings


def test_non_finite_embeddings_stop_selection_naming_the_task():
    from lerobot_amf.selection.gp import WeightSpacePosterior, check_finite_embeddings, greedy_batch

    good = torch.randn(6, 4, dtype=torch.float64)
    bad = good.clone()
    bad[2, 1] = float("nan")
    post = WeightSpacePosterior(4, sigma2=1.0)
    assert greedy_batch(post, {"a": (good, None), "b": (good, None)}, (good, None), 2).picks  # finite: fine
    with pytest.raises(AMFInputError, match=r"candidate embeddings for: b \(1 of 6 rows\)"):
        greedy_batch(post, {"a": (good, None), "b": (bad, None)}, (good, None), 2)
    inf = good.clone()
    inf[0, 0] = float("inf")
    with pytest.raises(AMFInputError, match="target embeddings"):
        greedy_batch(post, {"a": (good, None)}, (inf, None), 1)
    with pytest.raises(AMFInputError, match="reach-v3"):
        check_finite_embeddings({"reach-v3": bad, "drawer-close-v3": good})
