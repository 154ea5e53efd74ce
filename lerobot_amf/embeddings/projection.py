"""Fixed, seeded Johnson–Lindenstrauss projection of raw loss-gradient embeddings
(docs/method.md, "Draws and projection").

φ ∈ R^raw_dim is mapped to φ·P with P ∈ R^(raw_dim × d) i.i.d. N(0, 1) / sqrt(d), drawn from a
``torch.Generator`` seeded with ``seed`` (on the CPU, so the matrix is the same on every
device). E[(φP)·(ψP)] = φ·ψ, so kernels are preserved up to O(1/sqrt(d)) relative error. When
raw_dim <= d the projection is the identity (nothing to compress) and ``dim == raw_dim``.

The seed is an attribute so the run record can store it (``record()``).
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor

__all__ = ["RandomProjection"]


class RandomProjection:
    """x (..., raw_dim) -> x @ P (..., dim); identity when raw_dim <= requested dim."""

    def __init__(self, raw_dim: int, dim: int, seed: int = 0):
        raw_dim, dim = int(raw_dim), int(dim)
        if raw_dim < 1:
            raise ValueError(f"raw_dim must be positive, got {raw_dim}")
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.raw_dim = raw_dim
        self.requested_dim = dim
        self.seed = int(seed)
        self.identity = raw_dim <= dim
        self.dim = raw_dim if self.identity else dim
        self._cpu: Tensor | None = None
        self._cache: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    @property
    def matrix(self) -> Tensor | None:
        """The (raw_dim, dim) float32 CPU matrix, or None for the identity."""
        if self.identity:
            return None
        if self._cpu is None:
            gen = torch.Generator(device="cpu").manual_seed(self.seed)
            self._cpu = torch.randn(self.raw_dim, self.dim, generator=gen, dtype=torch.float32)
            self._cpu /= math.sqrt(self.dim)
        return self._cpu

    def __call__(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.raw_dim:
            raise ValueError(f"expected last dim {self.raw_dim}, got {tuple(x.shape)}")
        if self.identity:
            return x
        key = (x.device, x.dtype)
        mat = self._cache.get(key)
        if mat is None:
            mat = self.matrix.to(device=x.device, dtype=x.dtype)
            self._cache[key] = mat
        return x @ mat

    def record(self) -> dict:
        return {
            "projection": "identity" if self.identity else "gaussian_jl",
            "raw_dim": self.raw_dim,
            "dim": self.dim,
            "projection_seed": self.seed,
        }

    def __repr__(self) -> str:
        kind = "identity" if self.identity else "gaussian"
        return f"RandomProjection({self.raw_dim} -> {self.dim}, {kind}, seed={self.seed})"
