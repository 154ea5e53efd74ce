"""Loss-gradient embeddings of a policy's action head: the common machinery
(docs/method.md, "Kernel: loss-gradient embeddings").

φ(x) is the gradient of the policy's own training loss at state x w.r.t. the weights of the
last ``layers`` weight layers of its action head (Linear / Conv1d, in forward order), averaged
over K fixed (noise, timestep) draws:

    φ(x) = (1/K) Σ_k [vec(dL_k/dW_l), dL_k/db_l]_{l = layers},

flattened in the order of ``weight.flatten()``, then a fixed seeded projection
(``projection.py``) to ``dim``. Per layer the gradient is closed form from the layer's input
x and the loss gradient g w.r.t. its output, Σ_t g_t ⊗ x_t (a Conv1d unfolds its input over
the kernel window), so one forward pass with hooks on the chosen layers and one backward pass
from the loss to their outputs (all parameters frozen for the pass, so nothing upstream of
the first chosen layer is differentiated) give every state's gradient at once: rows of the
batch never mix in these policies (eval mode, per-sample normalisation), so the gradient of
the summed loss w.r.t. a row's output is that row's own.

Which loss target (``target``):
- ``"expert"``: the batch's own action chunk — the policy's training loss at that data, large
  where the policy is wrong (kind ``"gradient"``, the AMF kernel where a demo exists);
- ``"self"``: the policy's own sample as pseudo-target — self-consistency, for states without
  an expert action (rollouts) and the ``"self_gradient"`` ablation.
``kind="last_layer"`` is the features-only ablation (``last_layer.py``).

Family specifics (which layers, which loss, which pseudo-target) live in each family's module
(``lerobot_amf.families``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

import torch
import torch.nn.functional as F  # noqa: N812
from lerobot.utils.constants import ACTION
from torch import nn

from lerobot_amf.embeddings.kinds import DEFAULT_DIM, DEFAULT_DRAWS, DEFAULT_LAYERS, DEFAULT_TARGET, KINDS, TARGETS
from lerobot_amf.embeddings.last_layer import layer_input_features
from lerobot_amf.embeddings.projection import RandomProjection

Tensor = torch.Tensor

__all__ = [
    "DEFAULT_DIM",
    "DEFAULT_DRAWS",
    "DEFAULT_LAYERS",
    "DEFAULT_TARGET",
    "DRAW_SEED_OFFSET",
    "Embedder",
    "KINDS",
    "TARGETS",
    "capture_io",
    "eval_mode",
    "layer_gradient",
    "running_module",
    "unwrap_policy",
    "weight_layers",
]

# The (noise, timestep) draws use their own generator, seeded with seed + DRAW_SEED_OFFSET, so
# they are not the same random numbers as the projection matrix (seeded with seed).
DRAW_SEED_OFFSET = 104_729


def _weight_layer(layer: nn.Module) -> nn.Module:
    """The Linear / Conv1d doing the work (under a peft LoRA wrapper: its base layer)."""
    base = getattr(layer, "base_layer", layer)
    if isinstance(base, nn.Conv1d):
        if base.stride != (1,) or base.dilation != (1,) or base.groups != 1 or base.padding_mode != "zeros" \
                or isinstance(base.padding, str):
            raise ValueError(f"Conv1d layers need stride 1, dilation 1, one group and int zero padding: {base}")
    elif not isinstance(base, nn.Linear):
        raise TypeError(f"embedding layers must be nn.Linear or nn.Conv1d, got {type(base).__name__}")
    return base


def layer_size(layer: nn.Module, out_rows: int | None = None) -> int:
    """Coordinates of ``layer_gradient`` for this layer (weights, then bias)."""
    base = _weight_layer(layer)
    rows = base.weight.shape[0] if out_rows is None else out_rows
    per_row = base.weight[0].numel()
    return rows * per_row + (rows if base.bias is not None else 0)


def layer_gradient(layer: nn.Module, x: Tensor, g: Tensor, out_rows: int | None = None, draws: int = 1) -> Tensor:
    """Per-row [vec(dL/dW), dL/db] of a Linear or Conv1d from its input x and dL/d(output) g.

    Linear: x (N, ..., C), g (N, ..., A). Conv1d: x (N, C, T), g (N, A, T'). ``out_rows`` keeps
    the first output rows only (flow heads: the padded action dims are outside the loss).
    ``draws``: the N rows are that many (noise, timestep) draws of N / draws states, draw-major;
    the mean over the draws is taken inside the contraction, so no (N, layer_size) array is made.
    Returns (N / draws, layer_size) float32.
    """
    base = _weight_layer(layer)
    x, g = x.float(), g.float()
    if isinstance(base, nn.Linear):
        if out_rows is not None:
            g = g[..., :out_rows]
        x = x.reshape(draws, x.shape[0] // draws, -1, x.shape[-1])
        g = g.reshape(draws, g.shape[0] // draws, -1, g.shape[-1])
        gw = torch.einsum("dnta,dntc->nac", g, x)
        gb = g.sum(dim=(0, 2))
    else:
        if out_rows is not None:
            g = g[:, :out_rows]
        (k,), (pad,) = base.kernel_size, base.padding
        patches = F.pad(x, (pad, pad)).unfold(2, k, 1)  # (N, C, T', k)
        patches = patches.reshape(draws, patches.shape[0] // draws, *patches.shape[1:])
        g = g.reshape(draws, g.shape[0] // draws, *g.shape[1:])
        gw = torch.einsum("dnat,dnctk->nack", g, patches)
        gb = g.sum(dim=(0, 3))
    if draws > 1:
        gw, gb = gw / draws, gb / draws
    parts = [gw.flatten(1)]
    if base.bias is not None:
        parts.append(gb)
    return torch.cat(parts, dim=1)


@contextmanager
def capture_io(layers: list[nn.Module], differentiable: bool = False) -> Iterator[list[dict]]:
    """Forward hooks storing each layer's (last call's) input[0] (detached) and output.

    ``differentiable``: each output is kept in the graph (made a leaf that requires grad when
    nothing upstream does), so the loss can be differentiated w.r.t. it; the module then passes
    on a copy of it, so that an in-place operation downstream (SmolVLA's expert adds its residual
    into the MLP's output in place) changes neither that leaf nor what it is the gradient of.
    """
    stores: list[dict] = [{} for _ in layers]

    def hook_for(store):
        def hook(_module, inputs, output):
            store["input"] = inputs[0].detach()
            if differentiable and torch.is_grad_enabled():
                if not output.requires_grad:
                    output.requires_grad_(True)
                store["output"] = output
                return output.clone()
            store["output"] = output.detach()
            return None

        return hook

    handles = [layer.register_forward_hook(hook_for(store)) for layer, store in zip(layers, stores, strict=True)]
    try:
        yield stores
    finally:
        for handle in handles:
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


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """No parameter requires grad for the duration (each one's flag restored after)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def unwrap_policy(policy: nn.Module) -> nn.Module:
    """The LeRobot policy under a peft ``PeftModel`` wrapper (itself otherwise)."""
    get_base = getattr(policy, "get_base_model", None)
    if callable(get_base) and type(policy).__name__.startswith("Peft"):
        return get_base()
    return policy


def running_module(module: nn.Module) -> nn.Module:
    """The module that runs in ``module``'s place: a per-partition container (head copies)
    exposes the active one as ``running``; any other module runs itself."""
    return getattr(module, "running", module)


def weight_layers(module: nn.Module) -> list[nn.Module]:
    """The Linear / Conv1d layers under ``module`` in registration order, as they run: a peft
    LoRA wrapper counts as its layer (its output includes the adapter), a per-partition
    container as its running module."""
    module = running_module(module)
    if isinstance(getattr(module, "base_layer", None), (nn.Linear, nn.Conv1d)) or \
            type(module) in (nn.Linear, nn.Conv1d):
        return [module]
    return [layer for child in module.children() for layer in weight_layers(child)]


class Embedder:
    """φ(x) for a batch of states: ``embed(batch, target=None) -> (B, dim)``.

    ``batch`` is a *preprocessed* LeRobot batch (what the policy's preprocessor returns:
    normalised tensors under the dataset keys); with ``target="expert"`` it must carry the
    expert action chunk under ``action``. ``target=None`` uses the kind's default
    (``DEFAULT_TARGET``). Tensors are moved to the policy's device. Every state's embedding is
    independent of the rest of the batch (common random numbers: the same draws for every state).

    Attributes: ``kind`` (``KINDS``), ``n_layers`` (how many weight layers, counted from the
    output: as many as asked and the family offers; ``layers()`` names them), ``raw_dim`` (before projection), ``dim`` (after), ``seed`` (projection seed; draws
    use ``seed + DRAW_SEED_OFFSET``), ``n_draws``, ``projection``.
    """

    family: str = ""
    loss_name: str = ""

    def __init__(self, policy: nn.Module, kind: str = "gradient", dim: int = DEFAULT_DIM, seed: int = 0,
                 n_draws: int = DEFAULT_DRAWS, layers: int = DEFAULT_LAYERS):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if int(n_draws) < 1:
            raise ValueError(f"n_draws must be >= 1, got {n_draws}")
        self.policy = unwrap_policy(policy)
        self.kind = kind
        self.seed = int(seed)
        self.n_draws = int(n_draws)
        if int(layers) < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        # as many as asked and the family offers; features take the output layer's input
        self.n_layers = 1 if kind == "last_layer" else min(int(layers), len(self.head_layers(self.policy)))
        self.projection = RandomProjection(self.raw_dim, dim, self.seed)

    # ---- family hooks -------------------------------------------------------------------
    @staticmethod
    def head_layers(policy: nn.Module) -> list[nn.Module]:
        """The action head's weight layers (Linear / Conv1d) in forward order, the output layer last."""
        raise NotImplementedError

    def _row_losses(self, batch: dict[str, Tensor], target: str) -> tuple[Tensor, int]:
        """Per-row training losses (K·B,), draw-major (row k·B + i is draw k of state i), and K.

        Called in eval mode with the chosen layers hooked; the loss must be differentiable
        w.r.t. their outputs.
        """
        raise NotImplementedError

    @property
    def grad_rows(self) -> int | None:
        """Output rows of the output layer that the loss touches (None: all; flow heads drop padded dims)."""
        return None

    # ---- public API -------------------------------------------------------------------------
    def layers(self) -> list[nn.Module]:
        """The weight layers φ differentiates, resolved now (head copies: the active one)."""
        return self.head_layers(self.policy)[-self.n_layers:]

    @property
    def layer(self) -> nn.Module:
        """The output layer."""
        return self.head_layers(self.policy)[-1]

    @property
    def draw_seed(self) -> int:
        return self.seed + DRAW_SEED_OFFSET

    def draw_generator(self) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(self.draw_seed)

    @property
    def raw_dim(self) -> int:
        layers = self.head_layers(self.policy)[-self.n_layers:]
        if self.kind == "last_layer":
            return int(_weight_layer(layers[-1]).weight.shape[1])
        return sum(layer_size(layer, self.grad_rows if i == len(layers) - 1 else None)
                   for i, layer in enumerate(layers))

    @property
    def dim(self) -> int:
        return self.projection.dim

    @property
    def device(self) -> torch.device:
        return next(self.policy.parameters()).device

    def _to_device(self, batch: Mapping) -> dict:
        dev = self.device
        return {k: (v.to(dev) if isinstance(v, Tensor) else v) for k, v in batch.items()}

    def target_for(self, target: str | None) -> str:
        target = DEFAULT_TARGET[self.kind] if target is None else target
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        return target

    def raw(self, batch: Mapping[str, Tensor], target: str | None = None) -> Tensor:
        """Unprojected φ, (B, raw_dim) float32."""
        target = self.target_for(target)
        if target == "expert" and ACTION not in batch:
            raise ValueError("target='expert' needs the expert action chunk under 'action' in the batch "
                             "(states without one take target='self')")
        batch = self._to_device(batch)
        layers = self.layers()
        with eval_mode(self.policy), frozen(self.policy), torch.enable_grad(), \
                capture_io(layers, differentiable=self.kind != "last_layer") as io:
            losses, k = self._row_losses(batch, target)
            if self.kind == "last_layer":
                out = layer_input_features(layers[-1], io[-1]["input"])
                out = out.reshape(k, -1, out.shape[1]).mean(dim=0)
            else:
                grads = torch.autograd.grad(losses.sum(), [store["output"] for store in io])
                out = torch.cat([
                    layer_gradient(layer, store["input"], grad, self.grad_rows if i == len(layers) - 1 else None,
                                   draws=k)
                    for i, (layer, store, grad) in enumerate(zip(layers, io, grads, strict=True))], dim=1)
        if out.shape[1] != self.raw_dim:  # pragma: no cover - internal consistency
            raise RuntimeError(f"raw embedding has {out.shape[1]} dims, expected {self.raw_dim}")
        return out.detach()

    def embed(self, batch: Mapping[str, Tensor], target: str | None = None) -> Tensor:
        """Projected φ, (B, dim) float32."""
        return self.projection(self.raw(batch, target))

    __call__ = embed

    def record(self) -> dict:
        """What a run record needs to reproduce the kernel."""
        return {
            "family": self.family,
            "kind": self.kind,
            "loss": self.loss_name,
            "layers": [_layer_name(self.policy, layer) for layer in self.layers()],
            "n_draws": self.n_draws,
            "seed": self.seed,
            "draw_seed": self.draw_seed,
            **self.projection.record(),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kind={self.kind!r}, layers={self.n_layers}, raw_dim={self.raw_dim}, "
            f"dim={self.dim}, seed={self.seed}, n_draws={self.n_draws})"
        )


def _layer_name(policy: nn.Module, layer: nn.Module) -> str:
    for name, module in policy.named_modules():
        if module is layer:
            return name
    return type(layer).__name__
