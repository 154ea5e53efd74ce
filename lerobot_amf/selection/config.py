"""``--amf.selection.*``: the amf strategy's settings, next to the strategy they configure
(``lerobot_amf.configs`` nests them under ``--amf``; importing this module imports no model code)."""

from __future__ import annotations

from dataclasses import dataclass

# gradient: loss-gradient embeddings of the action head; last_layer: its input features (ablation).
KERNELS = ("gradient", "last_layer")


@dataclass
class AMFSelectionConfig:
    """``--amf.selection.*``: the amf strategy's kernel, GP and importance-weight settings."""

    # gradient: loss-gradient embeddings of the action head's last layer; last_layer: its input features.
    kernel: str = "gradient"
    embedding_dim: int = 1024  # random projection target (Johnson-Lindenstrauss), seed below
    projection_seed: int = 0
    # (noise, timestep) draws averaged per state (diffusion / flow heads); each costs one pass of
    # the action head, as does the importance weights' denoising-loss surrogate per draw.
    n_draws: int = 1
    # Denoising steps of the policy's own pseudo-target action (diffusion / flow heads): one pass
    # each. Diffusion: 1 = one DDIM step from a fixed noise at alpha_bar = 0.2 (embeddings/diffusion.py).
    pseudo_target_steps: int = 1
    noise: float = 1.0  # observation noise sigma^2 of the GP
    states_per_demo: int = 16  # frames sampled per demo in hand
    importance_temperature: float = 1.0  # T_w
    importance_clip: float = 10.0  # log-weights clipped to [-clip, clip]
    loglik_seed: int = 1  # common random numbers of the denoising-loss surrogate
    ess_threshold: float = 1.5  # below: the task's states come from policy rollouts
    fallback_rollouts: int = 4
    rollout_seed: int = 2_000_000
    chunk_size: int = 256  # states embedded per forward pass
