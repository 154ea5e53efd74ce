"""Loss-gradient embeddings of a policy's action head: the common machinery (AMF §2).

For a last layer ŷ = W h + b applied at positions t (action-chunk steps) and a per-state loss
L = (1/K) Σ_k L_k(ŷ_k) averaged over K fixed (noise, timestep) draws, the gradient is

    dL/dW = (1/K) Σ_k Σ_t g_{k,t} ⊗ h_{k,t},      dL/db = (1/K) Σ_k Σ_t g_{k,t},

with g_{k,t} = dL_k/dŷ_{k,t} (for ½·mean-squared error: the residual divided by the number of
averaged entries). It needs h and ŷ from one forward pass, captured with a forward hook on the
last layer, and no backward pass. φ(x) = [vec(dL/dW), dL/db] (row-major, the order of
``weight.flatten()``), then a fixed seeded projection (``projection.py``) to ``dim``.

Family specifics (which layer, which loss, which pseudo-target) live in each family's module
(``lerobot_amf.families``); the features-only ablation kernel in ``last_layer.py``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping

import torch
from torch import nn

from lerobot_amf.embeddings.last_layer import last_layer_features
from lerobot_amf.embeddings.projection import RandomProjection

Tensor = torch.Tensor

__all__ = ["Capture", "Embedder", "KINDS", "DRAW_SEED_OFFSET", "linear_head_gradient", "capture_io", "eval_mode"]

KINDS = ("gradient", "last_layer")
# The (noise, timestep) draws use their own generator, seeded with seed + DRAW_SEED_OFFSET, so
# they are not the same random numbers as the projection matrix (seeded with seed).
DRAW_SEED_OFFSET = 104_729


def linear_head_gradient(g: Tensor, h: Tensor, bias: bool = True) -> Tensor:
    """Closed-form [vec(dL/dW), dL/db] of a (1×1-conv or linear) last layer.

    g: (B, K, T, A) dL_k/dŷ per draw k and position t; h: (B, K, T, C) the layer's input.
    Returns (B, A*C [+ A]) — the draws are averaged (L = mean_k L_k).
    """
    if g.ndim != 4 or h.ndim != 4 or g.shape[:3] != h.shape[:3]:
        raise ValueError(f"expected g (B,K,T,A) and h (B,K,T,C), got {tuple(g.shape)} and {tuple(h.shape)}")
    k = g.shape[1]
    g = g.float()
    h = h.float()
    gw = torch.einsum("bkta,bktc->bac", g, h) / k
    parts = [gw.flatten(1)]
    if bias:
        parts.append(g.sum(dim=(1, 2)) / k)
    return torch.cat(parts, dim=1)


@dataclass
class Capture:
    """What one embedding pass yields. h: (B, K, T, C) last-layer inputs; g: (B, K, T, A)
    per-draw loss gradients w.r.t. the last layer's output (None for features only)."""

    h: Tensor
    g: Tensor | None = None


@contextmanager
def capture_io(layer: nn.Module) -> Iterator[dict]:
    """Forward hook storing the (last call's) input[0] and output of ``layer``, detached."""
    store: dict = {}

    def hook(_module, inputs, output):
        store["input"] = inputs[0].detach()
        store["output"] = output.detach()

    handle = layer.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Evaluation mode for the duration; restores every submodule's own training flag after."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def unwrap_policy(policy: nn.Module) -> nn.Module:
    """The LeRobot policy under a peft ``PeftModel`` wrapper (itself otherwise)."""
    get_base = getattr(policy, "get_base_model", None)
    if callable(get_base) and type(policy).__name__.startswith("Peft"):
        return get_base()
    return policy


def layer_shape(layer: nn.Module) -> tuple[int, int, bool]:
    """(out A, in C, has_bias) of a Linear or 1×1 Conv1d (or a peft wrapper of one)."""
    base = getattr(layer, "base_layer", layer)
    w = base.weight
    if isinstance(base, nn.Conv1d):
        if w.shape[-1] != 1:
            raise ValueError(f"last layer must be a 1x1 Conv1d, got kernel size {w.shape[-1]}")
    elif not isinstance(base, nn.Linear):
        raise TypeError(f"last layer must be nn.Linear or 1x1 nn.Conv1d, got {type(base).__name__}")
    return int(w.shape[0]), int(w.shape[1]), base.bias is not None


class Embedder:
    """φ(x) for a batch of states: ``embed(batch) -> (B, dim)``.

    ``batch`` is a *preprocessed* LeRobot batch (what the policy's preprocessor returns:
    normalised tensors under the dataset keys). Actions are not needed: the loss uses the
    policy's own prediction as pseudo-target (see each family's docstring). Tensors are moved
    to the policy's device. Every state's embedding is independent of the rest of the batch
    (common random numbers: the same draws for every state).

    Attributes: ``kind`` ("gradient" | "last_layer"), ``raw_dim`` (before projection), ``dim``
    (after), ``seed`` (projection seed; draws use ``seed + DRAW_SEED_OFFSET``), ``n_draws``,
    ``layer`` (the hooked last layer), ``projection``.
    """

    family: str = ""
    loss_name: str = ""

    def __init__(self, policy: nn.Module, kind: str = "gradient", dim: int = 2048, seed: int = 0, n_draws: int = 4):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if int(n_draws) < 1:
            raise ValueError(f"n_draws must be >= 1, got {n_draws}")
        self.policy = unwrap_policy(policy)
        self.kind = kind
        self.seed = int(seed)
        self.n_draws = int(n_draws)
        self.layer = self.last_layer_of(self.policy)
        self.out_features, self.in_features, self.has_bias = layer_shape(self.layer)
        self.projection = RandomProjection(self.raw_dim, dim, self.seed)

    # ---- family hooks -------------------------------------------------------------------
    @staticmethod
    def last_layer_of(policy: nn.Module) -> nn.Module:
        """The family's last layer of the (unwrapped) policy: a Linear or 1×1 Conv1d."""
        raise NotImplementedError

    def _capture(self, batch: dict[str, Tensor]) -> Capture:
        """One pass over the batch (already on device, in eval mode, no grad)."""
        raise NotImplementedError

    @property
    def grad_rows(self) -> int:
        """Output rows of the last layer that the loss touches (flow heads drop padded dims)."""
        return self.out_features

    # ---- public API -------------------------------------------------------------------------
    @property
    def draw_seed(self) -> int:
        return self.seed + DRAW_SEED_OFFSET

    def draw_generator(self) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(self.draw_seed)

    @property
    def raw_dim(self) -> int:
        if self.kind == "last_layer":
            return self.in_features
        return self.grad_rows * self.in_features + (self.grad_rows if self.has_bias else 0)

    @property
    def dim(self) -> int:
        return self.projection.dim

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    def _to_device(self, batch: Mapping) -> dict:
        dev = self.device
        return {k: (v.to(dev) if isinstance(v, Tensor) else v) for k, v in batch.items()}

    @torch.no_grad()
    def raw(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Unprojected φ, (B, raw_dim) float32."""
        batch = self._to_device(batch)
        with eval_mode(self.policy):
            cap = self._capture(batch)
        if self.kind == "last_layer":
            out = last_layer_features(cap.h)
        else:
            g = cap.g[..., : self.grad_rows]
            out = linear_head_gradient(g, cap.h, bias=self.has_bias)
        if out.shape[1] != self.raw_dim:  # pragma: no cover - internal consistency
            raise RuntimeError(f"raw embedding has {out.shape[1]} dims, expected {self.raw_dim}")
        return out

    def embed(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Projected φ, (B, dim) float32."""
        return self.projection(self.raw(batch))

    __call__ = embed

    def record(self) -> dict:
        """What a run record needs to reproduce the kernel."""
        return {
            "family": self.family,
            "kind": self.kind,
            "loss": self.loss_name,
            "n_draws": self.n_draws,
            "seed": self.seed,
            "draw_seed": self.draw_seed,
            **self.projection.record(),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kind={self.kind!r}, raw_dim={self.raw_dim}, dim={self.dim}, "
            f"seed={self.seed}, n_draws={self.n_draws})"
        )
