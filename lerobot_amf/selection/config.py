"""``--amf.selection.*``: the amf strategy's settings, next to the strategy they configure
(``lerobot_amf.configs`` nests them under ``--amf``; importing this module imports no model code)."""

from __future__ import annotations

from dataclasses import dataclass

from lerobot_amf.embeddings.kinds import DEFAULT_DIM, DEFAULT_DRAWS, KINDS
from lerobot_amf.errors import AMFInputError

ROLLOUT_ROLES = ("frames", "rollouts")


@dataclass
class AMFSelectionConfig:
    """``--amf.selection.*``: the amf strategy's kernel, GP and importance-weight settings."""

    # gradient: the training-loss gradient at each demo frame's own expert action chunk (the
    # policy's own sample where no expert action exists: rollout states); self_gradient: the
    # policy's own sample everywhere (self-consistency; the earlier kernel, for ablations);
    # last_layer: the last layer's input features.
    kernel: str = "gradient"
    # Weight layers of the action head the gradient is taken over, counted from the output; unset:
    # the family's measured default (diffusion 2 = the UNet's final 5-tap conv and its 1x1 output
    # conv; flow heads 1 = action_out_proj, 2 adds the last action-expert layer's MLP output
    # projection; ACT offers its output layer only).
    kernel_layers: int | None = None
    embedding_dim: int = DEFAULT_DIM  # random projection target (Johnson-Lindenstrauss), seed below
    projection_seed: int = 0
    # (noise, timestep) draws averaged per state in the kernel (diffusion / flow heads), and in
    # the importance weights' likelihood surrogate; each costs one pass of the action head per
    # state and task.
    n_draws: int = DEFAULT_DRAWS
    loglik_draws: int = 1
    # Frames per demo the likelihood surrogate scores under every task, evenly spread over the
    # demo's sampled frames (None: all ``states_per_demo``). Its passes are frames x distinct
    # tasks, which dominates at many tasks (LIBERO: 112 instructions).
    loglik_states_per_demo: int | None = None
    # Denoising steps of the policy's own pseudo-target action (diffusion / flow heads, states
    # without an expert action): one pass each. Diffusion: 1 = one DDIM step from a fixed noise
    # at alpha_bar = 0.2 (families/diffusion.py).
    pseudo_target_steps: int = 1
    # Observation noise sigma^2 of the GP; None: calibrated each round so that one fantasised
    # demo removes at most max_variance_removed of its task's prior target variance.
    noise: float | None = None
    max_variance_removed: float = 0.5
    # Frames sampled per demo in hand: half its target states, half the states a new demo like
    # it would visit (never the same frames).
    states_per_demo: int = 16
    # false: no likelihood surrogate, each demo informs its own task only (the ablation of
    # docs/method.md, "Importance weights and effective sample size")
    importance_weights: bool = True
    importance_temperature: float = 1.0  # T_w
    importance_clip: float = 10.0  # log-weights clipped to [-clip, clip]
    # A task's lightest target states, together at most this share of its target weight, are
    # dropped (and not embedded under it); 0 keeps every state with a non-zero weight.
    target_mass_floor: float = 1e-3
    # What one selection embeds and scores, over all tasks together: target states, and candidate
    # states (the frames of the demos a new demo may resemble). A task holding more than its share
    # (the cap / pool size) keeps it by systematic resampling on its weights (docs/method.md, "Caps
    # on what a selection holds"): memory and greedy time then grow with the caps, not with tasks
    # x demos (LIBERO's 130 tasks under weights that spread every demo over every task). None: no
    # cap. Neither binds at the hard study's size (12 tasks: 4,166 targets and 85 candidate demos of
    # 8 states per task allowed; at most 63 demos in hand) nor at the embedded default's.
    max_target_states: int | None = 50_000
    max_candidate_states: int | None = 8_192
    # Likelihood passes (frames scored x distinct tasks x loglik draws) one selection runs: above it,
    # fewer frames per demo are scored, shared out evenly (at least one). Does not bind at the hard
    # study's size (63 demos x 12 tasks x 16 frames = 12,096) nor the embedded default's; at LIBERO's
    # 130 tasks (1,820 demos x 112 instructions) it scores one frame per demo. None: no cap.
    max_likelihood_passes: int | None = 262_144
    # Frames sampled over all demos in hand (each read, and embedded under its task): above it,
    # fewer per demo, shared out evenly (at least 2). Does not bind at the hard study's size (at most
    # 63 demos x 16 = 1,008) nor the embedded default's; at LIBERO's 1,820 demos it samples 4 each.
    max_sampled_frames: int | None = 8_192
    loglik_seed: int = 1  # common random numbers of the denoising-loss surrogate
    ess_threshold: float = 1.5  # below: the task's states come from policy rollouts
    fallback_rollouts: int = 4
    # Rollout-fallback tasks: frames (every rollout's frames alternate between target and candidate
    # states) | rollouts (whole rollouts are targets or candidates, so no candidate is from the
    # rollout of its own targets; needs >= 2 fallback_rollouts).
    rollout_roles: str = "frames"
    # Condition the GP on the generalist's pretraining demos too (where they are known: the
    # embedded pretraining record), so covered tasks start at the posterior after pretraining
    # instead of their prior; false: on the fine-tuning demos only (what the 38-cell study ran).
    # On since benchmarks/results/amf_options_pilot.json chose it (rule fixed before it ran).
    condition_on_pretraining: bool = True
    # false: selection reads nothing from a simulator (the real-robot case): no rollout fallback
    # and no evaluation of the run's model (amf_eval is then amf); the loop still evaluates, to report.
    simulator: bool = True
    rollout_seed: int = 2_000_000
    chunk_size: int = 256  # states embedded per forward pass

    def validate(self) -> None:
        """One-line errors for values outside their ranges (before anything is written)."""
        if self.kernel not in KINDS:
            raise AMFInputError(f"Unknown amf.selection.kernel={self.kernel!r}. Allowed: {', '.join(KINDS)}.")
        if self.rollout_roles not in ROLLOUT_ROLES:
            raise AMFInputError(f"Unknown amf.selection.rollout_roles={self.rollout_roles!r}. "
                                f"Allowed: {', '.join(ROLLOUT_ROLES)}.")
        if self.rollout_roles == "rollouts" and self.fallback_rollouts < 2:
            raise AMFInputError(f"amf.selection.rollout_roles=rollouts needs amf.selection.fallback_rollouts >= 2 "
                                f"(got {self.fallback_rollouts}): one rollout cannot be both.")
        for name in ("kernel_layers", "embedding_dim", "n_draws", "loglik_draws", "loglik_states_per_demo",
                     "pseudo_target_steps", "fallback_rollouts", "chunk_size", "max_target_states",
                     "max_candidate_states", "max_likelihood_passes", "max_sampled_frames"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise AMFInputError(f"amf.selection.{name}={getattr(self, name)}: must be at least 1.")
        if self.states_per_demo < 2:
            raise AMFInputError(f"amf.selection.states_per_demo={self.states_per_demo}: must be at least 2 "
                                "(half target, half candidate states).")
        if not 0 < self.max_variance_removed < 1:
            raise AMFInputError(f"amf.selection.max_variance_removed={self.max_variance_removed}: must be in (0, 1).")
        if not 0 <= self.target_mass_floor < 1:
            raise AMFInputError(f"amf.selection.target_mass_floor={self.target_mass_floor}: must be in [0, 1).")
        if self.noise is not None and not self.noise > 0:
            raise AMFInputError(f"amf.selection.noise={self.noise}: must be > 0 (or unset: calibrated).")
        if not self.importance_temperature > 0 or not self.importance_clip > 0:
            raise AMFInputError("amf.selection.importance_temperature and importance_clip must be > 0.")
