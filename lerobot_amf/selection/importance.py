"""Demo importance weights: which demos look like task c' to the current policy
(docs/method.md, "Importance weights and effective sample size").

Neither the target state distribution d_c nor the states of a future demo of c' are known, so
they are estimated from demos in hand, re-weighted by how much more (or less) likely the
policy finds demo i's actions when conditioned on c' instead of its own task c_i:

    w_i(c') ∝ exp( (loglik[i, c'] − loglik[i, c_i]) / T_w ),

log-weights clipped to [−clip, clip] and self-normalised over demos for each c'. For
diffusion / flow heads `loglik` is the negative denoising loss with common random numbers.
The effective sample size (Σw)²/Σw² per task says when the estimate has collapsed onto a few
demos, which triggers the rollout fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

Tensor = torch.Tensor

__all__ = [
    "ImportanceSummary",
    "effective_sample_size",
    "importance_log_weights",
    "importance_weights",
    "summarize_importance",
    "systematic_resample",
]


def _check_inputs(loglik: Tensor, demo_task: Union[Tensor, Sequence[int]]) -> tuple[Tensor, Tensor]:
    ll = torch.as_tensor(loglik).to(torch.float64)
    if ll.ndim != 2:
        raise ValueError(f"loglik must be (n_demos, n_tasks), got {tuple(ll.shape)}")
    if not torch.isfinite(ll).all():
        raise ValueError("loglik must be finite")
    idx = torch.as_tensor(demo_task, dtype=torch.long, device=ll.device).reshape(-1)
    if idx.numel() != ll.shape[0]:
        raise ValueError(f"demo_task has {idx.numel()} entries for {ll.shape[0]} demos")
    if idx.numel() and (idx.min() < 0 or idx.max() >= ll.shape[1]):
        raise ValueError("demo_task index out of range")
    return ll, idx


def importance_log_weights(
    loglik: Tensor,
    demo_task: Union[Tensor, Sequence[int]],
    temperature: float = 1.0,
    clip: float = 10.0,
) -> Tensor:
    """Clipped, unnormalised log-weights (loglik[i, c'] − loglik[i, c_i]) / T_w, shape (n, C).

    The own-task entry of each demo is exactly 0 (weight 1 before normalisation).
    """
    if not temperature > 0:
        raise ValueError("temperature must be positive")
    if not clip > 0:
        raise ValueError("clip must be positive")
    ll, idx = _check_inputs(loglik, demo_task)
    own = ll.gather(1, idx.unsqueeze(1))
    return ((ll - own) / temperature).clamp(-clip, clip)


def importance_weights(
    loglik: Tensor,
    demo_task: Union[Tensor, Sequence[int]],
    temperature: float = 1.0,
    clip: float = 10.0,
) -> Tensor:
    """Self-normalised importance weights (n_demos, n_tasks); every column sums to 1.

    Clipping bounds the ratio of any two weights in a column by exp(2·clip), so one demo with
    a wild likelihood cannot take all the mass.
    """
    logw = importance_log_weights(loglik, demo_task, temperature=temperature, clip=clip)
    if logw.shape[0] == 0:
        return logw
    return torch.softmax(logw, dim=0)


def effective_sample_size(weights: Tensor) -> Tensor:
    """Kish ESS (Σw)² / Σw² per column (n_tasks,); 0 for an all-zero column."""
    w = torch.as_tensor(weights).to(torch.float64)
    if w.ndim == 1:
        w = w.unsqueeze(1)
    s1 = w.sum(dim=0)
    s2 = (w * w).sum(dim=0)
    return torch.where(s2 > 0, s1 * s1 / torch.where(s2 > 0, s2, torch.ones_like(s2)), torch.zeros_like(s2))


@dataclass
class ImportanceSummary:
    """Per-task effective sample size, for the round log and the rollout-fallback decision."""

    ess: Tensor  # (n_tasks,)
    n_demos: int
    task_names: Optional[list[str]] = None

    def collapsed(self, threshold: float) -> Tensor:
        """Bool mask of tasks whose ESS is below `threshold` (``--amf.selection.ess_threshold``)."""
        return self.ess < threshold

    def as_dict(self) -> dict[str, float]:
        """Task name (or index) -> ESS, for logging."""
        names = self.task_names or [str(i) for i in range(self.ess.numel())]
        return {name: float(v) for name, v in zip(names, self.ess.tolist())}


def summarize_importance(weights: Tensor, task_names: Optional[Sequence[str]] = None) -> ImportanceSummary:
    """ESS summary of a weight matrix (n_demos, n_tasks)."""
    w = torch.as_tensor(weights)
    if w.ndim != 2:
        raise ValueError("weights must be (n_demos, n_tasks)")
    names = list(task_names) if task_names is not None else None
    if names is not None and len(names) != w.shape[1]:
        raise ValueError(f"{len(names)} task names for {w.shape[1]} tasks")
    return ImportanceSummary(ess=effective_sample_size(w), n_demos=int(w.shape[0]), task_names=names)


def systematic_resample(weights: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """k draws from the categorical distribution ``weights`` by systematic resampling at the
    stratum midpoints ((j + ½)/k, j < k): deterministic, and index i is drawn ⌊k·p_i⌋ or ⌈k·p_i⌉
    times, so a weighted sum over the draws, each of weight Σw/k, keeps the total and differs from
    the full sum by at most one draw's weight per index. Returns the distinct indices drawn (in
    order) and how often each was; an index of weight 0 is never drawn."""
    w = torch.as_tensor(weights, dtype=torch.float64).clamp_min(0.0)
    if k < 1 or w.numel() == 0 or not float(w.sum()) > 0:
        raise ValueError(f"systematic_resample needs k >= 1 and a positive total weight (k={k}, n={w.numel()})")
    cdf = torch.cumsum(w, 0) / w.sum()
    points = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    drawn = torch.searchsorted(cdf, points, right=True).clamp_max(w.numel() - 1)
    return torch.unique(drawn, return_counts=True)
