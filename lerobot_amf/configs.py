"""The ``--amf.*`` section and the training config that carries it.

``AMFTrainPipelineConfig`` is LeRobot's ``TrainPipelineConfig`` plus one field, ``amf``, so
every ``lerobot-train`` flag keeps its meaning and the ``amf`` section is saved with the run's
``train_config.json`` in every checkpoint. ``--dataset.repo_id`` names the dataset of
fine-tuning demos the run builds (under ``<output_dir>/demos``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lerobot.configs.default import DatasetConfig
from lerobot.configs.train import TrainPipelineConfig
from lerobot.policies.factory import make_policy  # noqa: F401  (registers the policy config types)

from lerobot_amf.errors import AMFInputError

SOURCES = ("metaworld_expert",)
# shared: one model, all weights, all demos | shared_replay: the same + pretraining frames in
# every batch | lora: one peft LoRA adapter per partition | head: one action-head copy per partition.
ISOLATION_MODES = ("shared", "shared_replay", "lora", "head")
ROUTED_MODES = ("lora", "head")
NORMALIZATION_SOURCES = ("pretrained", "demos")


@dataclass
class PretrainConfig:
    """Pretraining of the embedded default's generalist (used only without ``--policy.path``).

    Allocation: the first ``ceil(n/2)`` tasks of the pool get ``demos_covered`` demos each, the
    rest ``demos_uncovered`` ("skewed" pretraining, the setting where selection matters), or
    an explicit ``demos_per_task`` map.
    """

    demos_covered: int = 12
    demos_uncovered: int = 1
    demos_per_task: dict[str, int] | None = None
    steps: int = 1500
    batch_size: int = 64
    # Where the pretrained checkpoint is cached (default: $HF_LEROBOT_HOME/lerobot_amf_cache).
    cache_dir: str | None = None


@dataclass
class AMFSelectionConfig:
    """``--amf.selection.*``: the amf strategy's kernel, GP and importance-weight settings."""

    # gradient: the training-loss gradient at each demo frame's own expert action chunk (the
    # policy's own sample where no expert action exists: rollout states); self_gradient: the
    # policy's own sample everywhere (self-consistency; the earlier kernel, for ablations);
    # last_layer: the last layer's input features.
    kernel: str = "gradient"
    KERNELS = ("gradient", "self_gradient", "last_layer")
    # Weight layers of the action head the gradient is taken over, counted from the output
    # (diffusion: 2 = the UNet's final 5-tap conv and its 1x1 output conv; ACT and flow heads
    # offer their output layer only).
    kernel_layers: int = 2
    embedding_dim: int = 1024  # random projection target (Johnson-Lindenstrauss), seed below
    projection_seed: int = 0
    # (noise, timestep) draws averaged per state in the kernel (diffusion / flow heads), and in
    # the importance weights' likelihood surrogate; each costs one pass of the action head per
    # state and task.
    n_draws: int = 4
    loglik_draws: int = 1
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
    importance_temperature: float = 1.0  # T_w
    importance_clip: float = 10.0  # log-weights clipped to [-clip, clip]
    loglik_seed: int = 1  # common random numbers of the denoising-loss surrogate
    ess_threshold: float = 1.5  # below: the task's states come from policy rollouts
    fallback_rollouts: int = 4
    rollout_seed: int = 2_000_000
    chunk_size: int = 256  # states embedded per forward pass


@dataclass
class AMFConfig:
    # Which tasks the next demos are for: amf | uniform | random | least_demonstrated | rebalancing.
    strategy: str = "uniform"
    # Task pool, comma-separated (default: the env's task list).
    tasks: str | None = None
    # Target weights mu(c) over the pool (default: uniform). Keys must be pool tasks.
    target_weights: dict[str, float] | None = None
    rounds: int = 3
    demos_per_round: int = 4
    # Total demos to pull over the run (default: rounds * demos_per_round).
    budget: int | None = None
    # Demo source: metaworld_expert (scripted Metaworld experts).
    source: str = "metaworld_expert"
    # Gaussian noise (std) added to the scripted expert's actions.
    action_noise: float = 0.1
    # Optional cap on demos the source may give per task (None: unlimited seeded variations).
    source_demos_per_task: int | None = None
    # Gradient steps per round (the whole demo set so far, from the previous round's weights).
    steps_per_round: int = 400
    # Evaluation protocol: episodes per task, vectorised envs per task, first initial-state seed.
    eval_episodes: int = 10
    eval_batch_size: int = 10
    eval_seed: int = 1_000_000
    # Normalisation stats: the pretrained checkpoint's, or those of the demos trained on.
    normalization: str = "pretrained"
    # Which weights fine-tuning changes (ISOLATION_MODES above). lora/head: base weights frozen,
    # one adapter / head copy per partition, a routing policy picks it by task at inference;
    # LoRA settings are LeRobot's --peft.r / --peft.target_modules.
    isolation: str = "shared"
    # lora/head: per_task | per_suite | clustered | all (one shared adapter) | path to a JSON map.
    partitions: str = "per_task"
    n_partitions: int = 2  # clustered: k of k-means over the pretrained policy's task embeddings
    head_module: str | None = None  # head: the module copied per partition (default per family)
    # shared_replay: share of each batch drawn from the replay dataset (default: the embedded
    # default's pretraining demos; otherwise name a LeRobot dataset).
    replay_fraction: float = 0.5
    replay_repo_id: str | None = None
    replay_root: str | None = None
    # lora/head: a single plain model exported each round next to the routed one and evaluated
    # too: merge (base + sum of partition deltas) | distill (merge, then imitate the routed
    # policy for export_steps) | none.
    export: str = "merge"
    export_steps: int = 300
    selection: AMFSelectionConfig = field(default_factory=AMFSelectionConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def total_budget(self) -> int:
        return self.budget if self.budget is not None else self.rounds * self.demos_per_round

    def validate(self) -> None:
        """One-line errors naming the bad value and the allowed ones."""
        from lerobot_amf.selection import STRATEGY_NAMES

        _check_choice("amf.strategy", self.strategy, STRATEGY_NAMES)
        _check_choice("amf.source", self.source, SOURCES)
        _check_choice("amf.isolation", self.isolation, ISOLATION_MODES)
        _check_choice("amf.normalization", self.normalization, NORMALIZATION_SOURCES)
        if self.rounds < 1:
            raise AMFInputError(f"amf.rounds={self.rounds}: must be at least 1.")
        if self.demos_per_round < 1:
            raise AMFInputError(f"amf.demos_per_round={self.demos_per_round}: must be at least 1.")
        if self.total_budget() < self.demos_per_round:
            raise AMFInputError(
                f"amf.budget={self.total_budget()} is smaller than one round "
                f"(amf.demos_per_round={self.demos_per_round})."
            )
        if self.eval_episodes < 1 or self.eval_batch_size < 1:
            raise AMFInputError("amf.eval_episodes and amf.eval_batch_size must be at least 1.")
        from lerobot_amf.isolation.export import EXPORTS

        _check_choice("amf.export", self.export, EXPORTS)
        if not 0.0 <= self.replay_fraction < 1.0:
            raise AMFInputError(f"amf.replay_fraction={self.replay_fraction}: must be in [0, 1).")
        if self.isolation in ROUTED_MODES and self.normalization != "pretrained":
            raise AMFInputError(f"amf.isolation={self.isolation} keeps the base weights frozen, so it keeps their "
                                "normalisation: use amf.normalization=pretrained.")
        _check_choice("amf.selection.kernel", self.selection.kernel, ("gradient", "last_layer"))
        if self.steps_per_round < 0:
            raise AMFInputError(f"amf.steps_per_round={self.steps_per_round}: must be >= 0.")


def _check_choice(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise AMFInputError(f"Unknown {name}={value!r}. Allowed: {', '.join(allowed)}.")


@dataclass
class AMFTrainPipelineConfig(TrainPipelineConfig):
    dataset: DatasetConfig = field(default_factory=lambda: DatasetConfig(repo_id="local/amf_demos"))
    amf: AMFConfig = field(default_factory=AMFConfig)

    def validate(self) -> None:
        self.amf.validate()
        if not self.resume:
            return super().validate()
        # Resuming an AMF run means continuing from its ledger in output_dir (LeRobot's own
        # resume expects a checkpoint --config_path instead).
        from lerobot_amf.ledger import LEDGER_FILENAME

        if self.output_dir is None or not (Path(self.output_dir) / LEDGER_FILENAME).exists():
            raise AMFInputError(f"--resume=true but no {LEDGER_FILENAME} in --output_dir={self.output_dir}.")
        output_dir, self.output_dir, self.resume = self.output_dir, None, False
        try:
            super().validate()
        finally:
            self.output_dir, self.resume = Path(output_dir), True
