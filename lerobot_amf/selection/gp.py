"""Gaussian-process posterior in weight space, and greedy batch task selection
(docs/method.md, "Weight-space computation and greedy batch selection").

Model: f(x) = φ(x)ᵀθ / √κ with θ ~ N(0, I_d), i.e. kernel k(x, x') = φ(x)ᵀφ(x') / κ, and
observations with noise σ² / w (w ≥ 0 a fractional-observation weight, default 1). The
posterior precision of θ is

    A = I_d + Φᵀ W Φ / (σ² κ),        var(x) = φ(x)ᵀ A⁻¹ φ(x) / κ.

Everything is computed in float64 through the Cholesky factor L of A (A = L Lᵀ): with the
"whitened" target z = L⁻¹φ, var = ‖z‖² / κ. Adding T rows is a rank-T update A + U Uᵀ, and
by Woodbury  var_after = var − ‖C⁻¹ Vᵀ z‖² / κ  with V = L⁻¹U, C Cᵀ = I_T + VᵀV — so one
candidate costs O(T d² + m d T) against whitened targets that are shared by all candidates.
Information gain depends on the states only (never on the actions), which is what makes it
computable before a demo exists.

Greedy scoring (``greedy_batch``) is dominated by the candidates × targets product
(Σ_c T_c · d · m multiply-adds per pick). The factor algebra (Cholesky, triangular solves,
the r × r inner factors) stays in float64; only that one product — every candidate's
C⁻¹Vᵀ stacked into a single matrix, against the whitened targets in chunks — runs in
``score_dtype`` (float32 by default, twice as fast on CPU). Its result is a sum of squares, so
there is no cancellation; the gain's relative error is ~1e-7 / (1 − reduction/variance).
Pass ``score_dtype=torch.float64`` for the exact reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch

from lerobot_amf.errors import AMFInputError

Tensor = torch.Tensor
ArrayLike = Union[Tensor, Sequence[Sequence[float]]]

_DTYPE = torch.float64
# Relative floor on var_after / var_before: guards log(0) when cancellation wipes a variance.
_MIN_RATIO = 1e-12
# Target columns per chunk of the batched scoring product (bounds its memory to Σr × chunk).
# 512 keeps a chunk's product nearer the cache: at 130 tasks × 50k targets the product took
# 8.7 s with 512 against 9.7 s with 2048 (mean of three runs each, interleaved, 2 cores).
_SCORE_CHUNK = 512

__all__ = [
    "CandidateDemo",
    "GreedyResult",
    "check_finite_embeddings",
    "WeightSpacePosterior",
    "calibrate_noise",
    "dense_gp_variance",
    "fantasised_states",
    "greedy_batch",
    "information_gain",
    "kernel_scale",
    "reduced_fraction",
]


def _as_rows(phi: ArrayLike, device: Optional[torch.device] = None) -> Tensor:
    """Rows of embeddings as a 2-D float64 tensor (a single vector becomes one row)."""
    t = torch.as_tensor(phi)
    t = t.to(dtype=_DTYPE, device=device if device is not None else t.device)
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2:
        raise ValueError(f"expected embeddings of shape (n, d), got {tuple(t.shape)}")
    return t


def check_finite_embeddings(embeddings: Mapping[str, ArrayLike], what: str = "embeddings") -> None:
    """Stop selection with one line when any embedding is NaN / inf (name -> rows).

    A GP fed NaN scores every task NaN and the greedy pick silently becomes the first task;
    non-finite embeddings come from a checkpoint or demos holding NaN / inf values.
    """
    bad = {}
    for name, rows in embeddings.items():
        t = torch.as_tensor(rows)
        if t.numel() == 0:
            continue
        finite = torch.isfinite(t.reshape(t.shape[0], -1) if t.ndim > 1 else t.reshape(1, -1)).all(dim=1)
        if not bool(finite.all()):
            bad[name] = (int((~finite).sum()), int(finite.numel()))
    if bad:
        listed = ", ".join(f"{name} ({n} of {m} rows)" for name, (n, m) in bad.items())
        raise AMFInputError(f"Non-finite (NaN/inf) {what} for: {listed}. The policy checkpoint or the demos hold "
                            "NaN/inf values; selection stopped and nothing was recorded.")


def _as_weights(weights: Optional[ArrayLike], n: int, device: torch.device) -> Tensor:
    """Nonnegative per-row weights (default all ones), validated against the row count."""
    if weights is None:
        return torch.ones(n, dtype=_DTYPE, device=device)
    w = torch.as_tensor(weights).to(dtype=_DTYPE, device=device).reshape(-1)
    if w.numel() != n:
        raise ValueError(f"got {w.numel()} weights for {n} rows")
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError("observation weights must be finite and nonnegative")
    return w


def kernel_scale(phi: ArrayLike) -> float:
    """κ = mean of φᵀφ over the rows, so that the kernel's prior variance is ~1 on the pool.

    Returns 1.0 when the rows are all zero (or there are none), so κ never divides by zero.
    """
    rows = _as_rows(phi)
    if rows.shape[0] == 0:
        return 1.0
    kappa = float((rows * rows).sum(dim=1).mean())
    if not math.isfinite(kappa) or kappa <= 0.0:
        return 1.0
    return kappa


def reduced_fraction(var_before: Tensor, reduction: Tensor) -> Tensor:
    """reduction / var_before in [0, 1 − 1e-12] (0 where the prior variance is 0)."""
    ok = var_before > 0
    safe_before = torch.where(ok, var_before, torch.ones_like(var_before))
    return torch.where(ok, reduction / safe_before, torch.zeros_like(reduction)).clamp(0.0, 1.0 - _MIN_RATIO)


def information_gain(var_before: Tensor, reduction: Tensor, target_weights: Optional[Tensor] = None) -> float:
    """Σ w · ½ log(var_before / var_after), var_after = var_before − reduction: the mutual
    information of the new states with f(targets), as −½ log1p(−reduction / var_before) (stable
    when the reduction is small). Targets with zero prior variance carry no information."""
    vb = torch.as_tensor(var_before, dtype=_DTYPE).reshape(-1)
    red = torch.as_tensor(reduction, dtype=_DTYPE, device=vb.device).reshape(-1)
    w = _as_weights(target_weights, vb.numel(), vb.device)
    return float((w * (-0.5) * torch.log1p(-reduced_fraction(vb, red))).sum())


def dense_gp_variance(
    phi_obs: ArrayLike,
    phi_targets: ArrayLike,
    sigma2: float,
    kappa: float,
    obs_weights: Optional[ArrayLike] = None,
) -> Tensor:
    """Function-space posterior variance K_tt − K_to (K_oo + σ² W⁻¹)⁻¹ K_ot, kernel φφᵀ/κ.

    O(n³) reference for the weight-space form (used by the tests). A weight w acts as noise
    σ²/w; rows with w = 0 are dropped (infinite noise).
    """
    obs = _as_rows(phi_obs)
    tgt = _as_rows(phi_targets, obs.device)
    w = _as_weights(obs_weights, obs.shape[0], obs.device)
    keep = w > 0
    obs, w = obs[keep], w[keep]
    k_tt = (tgt * tgt).sum(dim=1) / kappa
    if obs.shape[0] == 0:
        return k_tt
    k_oo = obs @ obs.T / kappa + torch.diag(sigma2 / w)
    k_ot = obs @ tgt.T / kappa
    chol = torch.linalg.cholesky(k_oo)
    half = torch.linalg.solve_triangular(chol, k_ot, upper=False)
    return k_tt - (half * half).sum(dim=0)


class WeightSpacePosterior:
    """GP posterior kept as the Cholesky factor of A = I + ΦᵀWΦ/(σ²κ) (d × d, float64).

    Cheap to copy and to query; `variance_reductions` answers "what if these states were
    added" without touching the factor, which is what greedy selection needs per candidate.
    """

    def __init__(self, dim: int, sigma2: float, kappa: float = 1.0, device: Union[str, torch.device, None] = None):
        if dim <= 0:
            raise ValueError("dim must be positive")
        if not sigma2 > 0 or not kappa > 0:
            raise ValueError("sigma2 and kappa must be positive")
        self.dim = int(dim)
        self.sigma2 = float(sigma2)
        self.kappa = float(kappa)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        # Accumulated Σ ΦᵀWΦ (unscaled) and the number / total weight of observed rows.
        self._gram = torch.zeros(self.dim, self.dim, dtype=_DTYPE, device=self.device)
        self._chol = torch.eye(self.dim, dtype=_DTYPE, device=self.device)
        self.n_observed = 0
        self.total_weight = 0.0

    # -- state -------------------------------------------------------------------------
    @property
    def noise_scale(self) -> float:
        """σ² κ: the denominator of every observation's contribution to A."""
        return self.sigma2 * self.kappa

    @property
    def cholesky(self) -> Tensor:
        """Lower-triangular L with L Lᵀ = A (read-only view; do not modify)."""
        return self._chol

    def precision(self) -> Tensor:
        """A itself (d × d); for inspection and tests."""
        return torch.eye(self.dim, dtype=_DTYPE, device=self.device) + self._gram / self.noise_scale

    def copy(self) -> "WeightSpacePosterior":
        """Independent copy (fantasised observations on it leave this one untouched)."""
        other = WeightSpacePosterior.__new__(WeightSpacePosterior)
        other.dim, other.sigma2, other.kappa, other.device = self.dim, self.sigma2, self.kappa, self.device
        other._gram = self._gram.clone()
        other._chol = self._chol.clone()
        other.n_observed = self.n_observed
        other.total_weight = self.total_weight
        return other

    def observe(self, phi: ArrayLike, weights: Optional[ArrayLike] = None) -> None:
        """Add observed states (rows of φ, optional fractional weights) and refresh the factor.

        Labels are never needed: the posterior variance depends on the states only.
        """
        rows = self._rows(phi)
        w = _as_weights(weights, rows.shape[0], self.device)
        if rows.shape[0] == 0:
            return
        self._gram += rows.T @ (rows * w.unsqueeze(1))
        self._gram = 0.5 * (self._gram + self._gram.T)
        self._chol = torch.linalg.cholesky(self.precision())
        self.n_observed += rows.shape[0]
        self.total_weight += float(w.sum())

    def _observe_factor(self, factor: Tensor, n_rows: int, total_weight: float) -> None:
        """Add a precomputed update U Uᵀ (U = d × r, already divided by √(σ²κ))."""
        self._gram += (factor @ factor.T) * self.noise_scale
        self._gram = 0.5 * (self._gram + self._gram.T)
        self._chol = torch.linalg.cholesky(self.precision())
        self.n_observed += n_rows
        self.total_weight += total_weight

    # -- queries -----------------------------------------------------------------------
    def whiten(self, phi: ArrayLike) -> Tensor:
        """Z = L⁻¹ φᵀ (d × m): compute once per posterior, reuse for every candidate."""
        rows = self._rows(phi)
        return torch.linalg.solve_triangular(self._chol, rows.T, upper=False)

    def variance(self, phi: ArrayLike) -> Tensor:
        """Posterior variance φᵀA⁻¹φ/κ of each row (m,), via one triangular solve."""
        return self.whitened_variance(self.whiten(phi))

    def whitened_variance(self, z: Tensor) -> Tensor:
        """``variance`` from ``whiten``'s Z, which the variance reductions then reuse."""
        return (z * z).sum(dim=0) / self.kappa

    def update_factor(self, phi_new: ArrayLike, weights_new: Optional[ArrayLike] = None) -> Tensor:
        """U (d × r, r ≤ min(T, d)) with U Uᵀ = Φ'ᵀW'Φ'/(σ²κ): the rank update of adding φ'.

        Zero-weight rows are dropped; when T > d the update is compressed to rank ≤ d through
        an eigendecomposition, so a candidate never costs more than a d-dimensional update.
        """
        rows = self._rows(phi_new)
        w = _as_weights(weights_new, rows.shape[0], self.device)
        keep = w > 0
        rows, w = rows[keep], w[keep]
        if rows.shape[0] == 0:
            return torch.zeros(self.dim, 0, dtype=_DTYPE, device=self.device)
        u = (rows * torch.sqrt(w / self.noise_scale).unsqueeze(1)).T  # d × T
        if u.shape[1] <= self.dim:
            return u
        evals, evecs = torch.linalg.eigh(u @ u.T)
        keep_e = evals > evals.max().clamp_min(0) * 1e-14
        return evecs[:, keep_e] * torch.sqrt(evals[keep_e]).unsqueeze(0)

    def projectors(self, factors: Sequence[Tensor]) -> list[Tensor]:
        """Pᵀ = C⁻¹Vᵀ (r × d) per update factor U, V = L⁻¹U, C Cᵀ = I + VᵀV: adding U reduces
        the variance of a whitened target z by ‖Pᵀz‖²/κ (Woodbury).

        One triangular solve for all factors together (O(Σr d²)), then an r × r Cholesky each;
        no d × d refactorisation.
        """
        if not factors:
            return []
        v_all = torch.linalg.solve_triangular(self._chol, torch.cat(list(factors), dim=1), upper=False)
        out = []
        for v in torch.split(v_all, [f.shape[1] for f in factors], dim=1):  # d × r each
            c = torch.linalg.cholesky(torch.eye(v.shape[1], dtype=_DTYPE, device=self.device) + v.T @ v)
            out.append(torch.linalg.solve_triangular(c, v.T, upper=False))
        return out

    def variance_reductions(self, whitened_targets: Tensor, factors: Sequence[Tensor],
                            score_dtype: torch.dtype = _DTYPE) -> Tensor:
        """var_before − var_after (len(factors), m) of whitened targets Z for each update factor U.

        Each reduction is ‖Pᵀz‖²/κ with Pᵀ = C⁻¹Vᵀ (``projectors``); all Pᵀ are stacked so the
        candidates × targets work is one GEMM per chunk of targets, in ``score_dtype`` (the rest
        of the algebra stays float64).
        """
        z = whitened_targets
        m = z.shape[1]
        red = torch.zeros(len(factors), m, dtype=_DTYPE, device=z.device)
        scored = [i for i, factor in enumerate(factors) if factor.shape[1] > 0]
        projectors = self.projectors([factors[i] for i in scored])
        if projectors:
            stacked = torch.cat(projectors).to(score_dtype)  # Σr × d
            owner = torch.repeat_interleave(torch.arange(len(scored), device=z.device),
                                            torch.as_tensor([p.shape[0] for p in projectors], device=z.device))
            rows = torch.as_tensor(scored, device=z.device)
            for s in range(0, m, _SCORE_CHUNK):
                proj = (stacked @ z[:, s:s + _SCORE_CHUNK].to(score_dtype)).square_()  # Σr × chunk
                summed = torch.zeros(len(scored), proj.shape[1], dtype=score_dtype, device=z.device)
                red[rows, s:s + _SCORE_CHUNK] = summed.index_add_(0, owner, proj).to(_DTYPE)  # each factor's rows
            red /= self.kappa
        return red

    def weighted_reductions(self, whitened_targets: Tensor, target_weights: Tensor, factors: Sequence[Tensor],
                            score_dtype: torch.dtype = _DTYPE) -> Tensor:
        """Σ_j w_j · (var_before − var_after)_j (len(factors),) for each update factor U.

        Equal to ``(w * variance_reductions(...)).sum(1)`` but without the candidates × targets
        product: Σ_j w_j ‖Pᵀz_j‖² = tr(Pᵀ S P) with S = Z W Zᵀ (d × d), made once. So a summary
        for every task costs O(d² m + Σr d²) instead of O(Σr d m); at 130 tasks × 50k targets
        that is ten times less.
        """
        out = torch.zeros(len(factors), dtype=_DTYPE, device=whitened_targets.device)
        scored = [i for i, factor in enumerate(factors) if factor.shape[1] > 0]
        if not scored:
            return out
        zw = (whitened_targets * torch.sqrt(target_weights).unsqueeze(0)).to(score_dtype)
        s = zw @ zw.T  # d × d
        for i, p in zip(scored, self.projectors([factors[i] for i in scored])):
            p = p.to(score_dtype)
            out[i] = float(((p @ s) * p).sum()) / self.kappa
        return out

    def _rows(self, phi: ArrayLike) -> Tensor:
        rows = _as_rows(phi, self.device)
        if rows.shape[1] != self.dim:
            raise ValueError(f"embedding dim {rows.shape[1]} != posterior dim {self.dim}")
        return rows


class CandidateDemo(NamedTuple):
    """One demo a new demo of a task may look like: the states it visits, their observation
    weights (frames each sampled state stands for), and its probability under that task."""

    phi: ArrayLike
    weights: Optional[ArrayLike] = None
    probability: float = 1.0


Candidate = Union[Tuple[ArrayLike, Optional[ArrayLike]], Sequence[CandidateDemo]]


def _as_demos(candidate: Candidate) -> list[CandidateDemo]:
    """A task's candidate demos; a plain (φ, weights) pair is one demo of probability 1."""
    if isinstance(candidate, tuple) and len(candidate) == 2 and not isinstance(candidate[0], CandidateDemo):
        return [CandidateDemo(candidate[0], candidate[1], 1.0)]
    demos = [CandidateDemo(*demo) for demo in candidate]
    if not demos:
        raise ValueError("a candidate task needs at least one demo")
    if any(not demo.probability >= 0 for demo in demos):
        raise ValueError("demo probabilities must be nonnegative")
    return demos


def fantasised_states(candidate: Candidate) -> Tuple[Tensor, Tensor]:
    """(φ, weights) whose observation adds a task's *expected* precision, Σ_i p_i · (demo i's
    states): what a pick fantasises (a demo's states are unknown until it is recorded)."""
    demos = _as_demos(candidate)
    rows = [_as_rows(demo.phi) for demo in demos]
    weights = [demo.probability * _as_weights(demo.weights, r.shape[0], r.device) for demo, r in zip(demos, rows, strict=True)]
    return torch.cat(rows), torch.cat(weights)


@dataclass
class GreedyResult:
    """Outcome of greedy batch selection, with enough detail to explain every pick.

    picks: task names in pick order (a task may repeat).
    step_scores: per step, the score (nats, target-weighted) of every task that still had
        capacity at that step, given the fantasised picks before it: the expected information
        gain of one demo, Σ_i p_i · I(demo i).
    first_step_variance: per task, (weighted mean target variance before, after) the task's
        fantasised demo is added to the initial posterior.
    pick_variance: per pick, the picked task's fantasised demo's effect: weighted mean variance
        of all targets and of the task's own targets (``target_groups``), before and after.
    total_gain: the picked steps' scores summed.
    """

    picks: list[str] = field(default_factory=list)
    step_scores: list[dict[str, float]] = field(default_factory=list)
    first_step_variance: dict[str, Tuple[float, float]] = field(default_factory=dict)
    pick_variance: list[dict] = field(default_factory=list)
    total_gain: float = 0.0


def _weighted_mean(values: Tensor, weights: Tensor) -> float:
    total = float(weights.sum())
    return float((weights * values).sum()) / total if total > 0 else 0.0


def greedy_batch(
    posterior: WeightSpacePosterior,
    candidates: Mapping[str, Candidate],
    targets: Tuple[ArrayLike, Optional[ArrayLike]],
    batch_size: int,
    allowed: Optional[Mapping[str, int]] = None,
    score_dtype: torch.dtype = torch.float32,
    target_groups: Optional[Sequence[str]] = None,
) -> GreedyResult:
    """Greedily pick `batch_size` tasks (repeats allowed) maximising the expected information
    gain of one demo on the targets.

    candidates: task -> the demos a new demo of that task may look like, as ``CandidateDemo``s
        (φ of the states it visits, their weights, its probability), or one (φ, weights) pair
        (a single demo of probability 1). A task scores Σ_i p_i · I(demo i): the expected gain of
        one demo, not the gain of the probability-weighted mixture of all of them (which, by
        Jensen, would favour tasks with many demos in hand).
    targets: (φ of target states, their weights μ(c)·w or None) — shared by all candidates.
    allowed: optional task -> max picks remaining (capacity); tasks absent from it are uncapped.
    target_groups: optional task of each target row, for the own-task variance of each pick.
    After each pick the task's expected precision, Σ_i p_i · (its demo's states), is fantasised
    into a copy of the posterior (no labels needed) and all candidates are re-scored. Ties go
    to the earliest task in `candidates`. Stops early if capacity runs out.
    score_dtype: precision of the candidates × targets product (module docstring).
    The input posterior is not modified.
    """
    if batch_size < 0:
        raise ValueError("batch_size must be nonnegative")
    check_finite_embeddings({name: torch.cat([torch.as_tensor(demo.phi) for demo in _as_demos(candidate)])
                             for name, candidate in candidates.items() if _as_demos(candidate)},
                            "candidate embeddings")
    check_finite_embeddings({"target states": targets[0]}, "target embeddings")
    post = posterior.copy()
    names = list(candidates)
    phi_t = post._rows(targets[0])
    target_w = _as_weights(targets[1], phi_t.shape[0], post.device)
    groups = list(target_groups) if target_groups is not None else None
    if groups is not None and len(groups) != phi_t.shape[0]:
        raise ValueError(f"{len(groups)} target groups for {phi_t.shape[0]} targets")
    demo_factors: dict[str, list[Tensor]] = {}
    probabilities: dict[str, list[float]] = {}
    fantasies: dict[str, Tuple[Tensor, int, float]] = {}
    for name in names:
        demos = _as_demos(candidates[name])
        demo_factors[name] = [post.update_factor(demo.phi, demo.weights) for demo in demos]
        probabilities[name] = [float(demo.probability) for demo in demos]
        rows, expected_w = fantasised_states(demos)
        fantasies[name] = (post.update_factor(rows, expected_w), rows.shape[0], float(expected_w.sum()))
    caps = allowed if allowed is not None else {}
    remaining = {n: int(caps.get(n, batch_size)) for n in names}

    result = GreedyResult()
    for step in range(batch_size):
        live = [n for n in names if remaining[n] > 0]
        if not live:
            break
        z = post.whiten(phi_t)
        var_before = post.whitened_variance(z)
        gains = _expected_gains(post, z, var_before, target_w, live, demo_factors, probabilities, score_dtype)
        best = live[0]
        for n in live[1:]:
            if gains[n] > gains[best]:
                best = n
        red = post.variance_reductions(z, [fantasies[best][0]], score_dtype)[0]
        after = var_before * (1.0 - reduced_fraction(var_before, red))
        mean_before = _weighted_mean(var_before, target_w)
        if step == 0:  # every task's summary, from S = Z W Zᵀ rather than a second full product
            summed = post.weighted_reductions(z, target_w, [fantasies[n][0] for n in live], score_dtype)
            total = float(target_w.sum())
            result.first_step_variance = {
                n: (mean_before, mean_before - float(summed[i]) / total if total > 0 else 0.0)
                for i, n in enumerate(live)}
        record = {"task": best, "all": (mean_before, _weighted_mean(after, target_w))}
        if groups is not None:
            own = torch.as_tensor([g == best for g in groups], device=post.device)
            own_w = target_w * own
            record["own"] = (_weighted_mean(var_before, own_w), _weighted_mean(after, own_w))
        result.pick_variance.append(record)
        result.picks.append(best)
        result.step_scores.append(gains)
        result.total_gain += gains[best]
        remaining[best] -= 1
        post._observe_factor(*fantasies[best])
    return result


def _expected_gains(post: WeightSpacePosterior, z: Tensor, var_before: Tensor, target_w: Tensor,
                    names: Sequence[str], demo_factors: Mapping[str, list[Tensor]],
                    probabilities: Mapping[str, list[float]], score_dtype: torch.dtype) -> dict[str, float]:
    """Σ_i p_i · (information gain of demo i) per named task, all demos in one batched product."""
    flat = [factor for name in names for factor in demo_factors[name]]
    red = post.variance_reductions(z, flat, score_dtype)
    gains, row = {}, 0
    for name in names:
        gains[name] = 0.0
        for p in probabilities[name]:
            if p > 0:
                gains[name] += p * information_gain(var_before, red[row], target_w)
            row += 1
    return gains


def calibrate_noise(
    fantasies: Mapping[str, Tuple[ArrayLike, Optional[ArrayLike]]],
    own_targets: Mapping[str, Tuple[ArrayLike, Optional[ArrayLike]]],
    kappa: float,
    max_fraction: float = 0.5,
) -> Tuple[float, dict[str, float]]:
    """σ² at which one fantasised demo of any task removes at most ``max_fraction`` of its own
    targets' prior (weighted) variance; returns (σ², fraction per task at that σ²).

    fantasies: task -> (φ, weights) of its fantasised demo (its expected precision);
    own_targets: task -> (φ, weights) of its target states. On the prior (A = I) the removed
    variance of task c at noise scale s = σ²κ is Σ_j a_j / (s + γ_j) / κ, with γ_j the
    eigenvalues of the fantasy's weighted Gram and a_j the targets' weighted energy along its
    eigenvectors — so the fraction is monotone in s and one eigendecomposition per task makes
    every bisection step O(rank). Where even σ² → 0 would remove less than ``max_fraction`` of
    a task's variance (targets mostly outside what its demos span), the calibration aims at
    0.9 of that ceiling instead.
    """
    if not 0 < max_fraction < 1:
        raise ValueError("max_fraction must be in (0, 1)")
    spectra = {}
    for name, (phi_c, w_c) in fantasies.items():
        rows = _as_rows(phi_c)
        w = _as_weights(w_c, rows.shape[0], rows.device)
        scaled = rows * w.sqrt().unsqueeze(1)  # r × d
        tgt = _as_rows(own_targets[name][0], rows.device)
        tw = _as_weights(own_targets[name][1], tgt.shape[0], rows.device)
        if scaled.shape[0] <= scaled.shape[1]:
            gamma, vecs = torch.linalg.eigh(scaled @ scaled.T)  # r-space
            energy = ((vecs.T @ (scaled @ tgt.T)) ** 2 * tw).sum(dim=1)
        else:
            gamma, vecs = torch.linalg.eigh(scaled.T @ scaled)  # d-space
            energy = gamma.clamp_min(0) * ((vecs.T @ tgt.T) ** 2 * tw).sum(dim=1)
        keep = gamma > gamma.max().clamp_min(0) * 1e-12
        prior = float((tw * (tgt * tgt).sum(dim=1)).sum())
        spectra[name] = (gamma[keep], energy[keep], prior)

    def fraction(name: str, s: float) -> float:
        gamma, energy, prior = spectra[name]
        return float((energy / (s + gamma)).sum()) / prior if prior > 0 else 0.0

    ceiling = max((fraction(n, 0.0) for n in spectra), default=0.0)
    goal = min(max_fraction, 0.9 * ceiling)
    if goal <= 0:
        return 1.0, {n: 0.0 for n in spectra}
    lo, hi = -60.0, 60.0  # log s: max_c fraction(s) is decreasing in s
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if max(fraction(n, math.exp(mid)) for n in spectra) > goal:
            lo = mid
        else:
            hi = mid
    s = math.exp(hi)  # the side where every fraction is at most the goal
    return s / kappa, {n: fraction(n, s) for n in spectra}
