"""What one round's fine-tuning touches, per ``--amf.isolation``: the round loop's view.

``make_isolation`` returns an ``Isolation``: ``SharedWeights`` (``shared``, ``shared_replay``)
or ``PartitionedWeights`` (``lora``, ``head``). The round loop calls the same steps on both and
never asks which one it holds.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from pathlib import Path

import torch
from huggingface_hub.constants import SAFETENSORS_SINGLE_FILE
from lerobot.utils.constants import PRETRAINED_MODEL_DIR
from lerobot.common.train_utils import save_checkpoint
from safetensors.torch import load_model

from lerobot_amf.data import DatasetRef, open_dataset
from lerobot_amf.errors import AMFInputError
from lerobot_amf.evaluation import PER_PARTITION as ROUTED
from lerobot_amf.evaluation import SINGLE_MODEL as SINGLE
from lerobot_amf.evaluation import evaluate_tasks
from lerobot_amf.families import kernel_embedder
from lerobot_amf.isolation import ROUTED_MODES
from lerobot_amf.isolation.export import distill, merge
from lerobot_amf.isolation.partitions import Partitions, make_partitions
from lerobot_amf.isolation.routing import ROUTED_DIR, RoutedPolicy, acting_policy
from lerobot_amf.training import train_steps


def replay_ref(cfg, pretrain_ref: DatasetRef | None) -> DatasetRef:
    if cfg.amf.replay_repo_id:
        return DatasetRef(cfg.amf.replay_repo_id, None if cfg.amf.replay_root is None else Path(cfg.amf.replay_root))
    if pretrain_ref is None:
        raise AMFInputError("amf.isolation=shared_replay needs pretraining data: pass --amf.replay_repo_id "
                            "(and --amf.replay_root for a local dataset); this checkpoint keeps no pretraining demos.")
    return pretrain_ref


def episodes_of(records: list[dict], tasks) -> list[int]:
    tasks = set(tasks)
    return sorted(rec["episode_index"] for rec in records if rec["task"] in tasks)


class Isolation(abc.ABC):
    """The steps of a round that depend on which weights fine-tuning touches."""

    module: torch.nn.Module  # what trains (``accelerator.prepare``d in ``prepare``)

    @abc.abstractmethod
    def describe(self) -> dict:
        """The run record's "model" entry: what the numbers are of."""

    @abc.abstractmethod
    def resume(self, checkpoint: Path) -> None:
        """Load the weights a finished round saved in ``checkpoints/round_XX``."""

    @abc.abstractmethod
    def prepare(self, accelerator) -> torch.nn.Module:
        """Hand the trainable module to ``accelerate`` (DDP when several processes)."""

    @abc.abstractmethod
    def selection_policy(self, accelerator) -> contextlib.AbstractContextManager:
        """Context: the policy a strategy scores with."""

    @abc.abstractmethod
    def train(self, demos: DatasetRef, accelerator, preprocessor, episodes: list[dict], new_tasks, desc: str) -> dict:
        """Fine-tune on the demos so far (``episodes``: the ledger's records); training metrics."""

    def export(self, demos: DatasetRef, preprocessor, episodes: list[dict]) -> dict | None:
        """Build the single plain model evaluated next to the run's own; its metrics, or None."""
        return None

    @abc.abstractmethod
    def save(self, ckpt: Path, step: int, accelerator, preprocessor, postprocessor) -> Path:
        """Write ``checkpoints/round_XX`` (LeRobot layout); the path the run record points at."""

    @abc.abstractmethod
    def evaluate(self, accelerator, preprocessor, postprocessor, env_cfg, episodes: int) -> list[tuple[str, dict]]:
        """[(variant, per-task result)]: "single model" and/or "per-partition", ``episodes`` per task."""

    @abc.abstractmethod
    def outputs(self, last: Path) -> str:
        """Where the final model(s) are, in one line for the user."""


class SharedWeights(Isolation):
    """One model, all weights trained on all demos (+ replay frames in ``shared_replay``)."""

    def __init__(self, cfg, policy, plan, pretrain_ref: DatasetRef | None):
        self.cfg, self.policy, self.plan = cfg, policy, plan
        self.replay = None
        if cfg.amf.isolation == "shared_replay":
            self.replay_ref = replay_ref(cfg, pretrain_ref)
            self.replay = open_dataset(cfg, self.replay_ref, what="replay dataset")
        self.module = policy
        self.optimizer = self.scheduler = None

    def describe(self) -> dict:
        if self.replay is None:
            kind = "single model (shared weights, all tasks)"
        else:
            kind = (f"single model (shared weights, all tasks) + replay: {self.cfg.amf.replay_fraction:.0%} of each "
                    f"batch from {self.replay_ref.repo_id}")
        return {"isolation": kind, "mode": self.cfg.amf.isolation, "partitions": {"all": self.plan.pool},
                "replay": None if self.replay is None else {"fraction": self.cfg.amf.replay_fraction,
                                                            "repo_id": self.replay_ref.repo_id,
                                                            "episodes": self.replay.num_episodes}}

    def resume(self, checkpoint: Path) -> None:
        load_model(self.policy, str(Path(checkpoint) / PRETRAINED_MODEL_DIR / SAFETENSORS_SINGLE_FILE),
                   device=str(next(self.policy.parameters()).device))

    def prepare(self, accelerator):
        self.module = accelerator.prepare(self.policy)
        return self.module

    @contextlib.contextmanager
    def selection_policy(self, accelerator):
        yield accelerator.unwrap_model(self.module)

    def train(self, demos, accelerator, preprocessor, episodes, new_tasks, desc):
        train_set = open_dataset(self.cfg, demos, what="demo dataset")
        metrics, self.optimizer, self.scheduler = train_steps(
            self.cfg, self.module, train_set, preprocessor, accelerator, self.cfg.amf.steps_per_round,
            desc=f"{desc} on {train_set.num_episodes} demos", replay=self.replay,
            replay_fraction=self.cfg.amf.replay_fraction)
        return metrics

    def save(self, ckpt: Path, step: int, accelerator, preprocessor, postprocessor) -> Path:
        save_checkpoint(ckpt, step=step, cfg=self.cfg, policy=accelerator.unwrap_model(self.module),
                        optimizer=self.optimizer, scheduler=self.scheduler,
                        preprocessor=preprocessor, postprocessor=postprocessor)
        return ckpt / PRETRAINED_MODEL_DIR

    def evaluate(self, accelerator, preprocessor, postprocessor, env_cfg, episodes):
        policy = accelerator.unwrap_model(self.module)
        return [(SINGLE, evaluate_tasks(policy, preprocessor, postprocessor, env_cfg, self.plan.pool, self.cfg.amf,
                                        episodes))]

    def outputs(self, last: Path) -> str:
        return f"final checkpoint: {last / PRETRAINED_MODEL_DIR}"


class PartitionedWeights(Isolation):
    """Frozen base + one LoRA adapter / head copy per partition, each trained on its tasks' demos only."""

    def __init__(self, cfg, policy, plan, partitions: Partitions, pretrain_ref: DatasetRef | None):
        self.cfg, self.plan, self.partitions = cfg, plan, partitions
        self.pretrain_ref = pretrain_ref
        peft_overrides = dataclasses.asdict(cfg.peft) if cfg.peft is not None else None
        self.routed_policy = RoutedPolicy(policy, partitions, cfg.amf.isolation, plan.vocabulary.task_of_instruction,
                                          peft_overrides=peft_overrides, head_module=cfg.amf.head_module)
        self.module = self.routed_policy
        self.single = None

    def describe(self) -> dict:
        what, plural = (("LoRA adapter", "LoRA adapters") if self.cfg.amf.isolation == "lora"
                        else ("action-head copy", "action-head copies"))
        n = len(self.partitions.groups)
        kind = (f"per-partition {plural} ({self.partitions.scheme}: {n} partitions), routed by task"
                if n > 1 else f"one shared {what} (all tasks), base weights frozen")
        return {"isolation": kind, "mode": self.cfg.amf.isolation, "partitions": self.partitions.groups,
                "partition_scheme": self.partitions.scheme, "export": self.cfg.amf.export,
                "lora": getattr(self.routed_policy, "lora_settings", None),
                "head_module": getattr(self.routed_policy, "head_module", None)}

    def resume(self, checkpoint: Path) -> None:
        self.routed_policy.load_partition_weights(Path(checkpoint) / ROUTED_DIR)

    def prepare(self, accelerator):
        self.routed_policy.set_all_trainable()  # DDP registers every partition's weights
        self.module = accelerator.prepare(self.routed_policy)
        self.routed_policy.activate(self.partitions.names[0])
        return self.module

    @contextlib.contextmanager
    def selection_policy(self, accelerator):
        """Strategies score with the current routed policy: amf embeds each task with its
        partition's weights active (``routing.serving``)."""
        yield self.routed_policy

    def train(self, demos, accelerator, preprocessor, episodes, new_tasks, desc):
        """Train each partition that got new demos this round, on all demos of its tasks so far."""
        metrics = {}
        for name, tasks in self.partitions.groups.items():
            if not set(tasks) & set(new_tasks):
                continue
            subset = open_dataset(self.cfg, demos, episodes=episodes_of(episodes, tasks), what="demo dataset")
            self.routed_policy.activate(name)
            metrics[name], _, _ = train_steps(
                self.cfg, self.module, subset, preprocessor, accelerator, self.cfg.amf.steps_per_round,
                desc=f"{desc}: partition {name} on {subset.num_episodes} demos")
        return {"partitions_trained": list(metrics), "per_partition": metrics,
                "steps": self.cfg.amf.steps_per_round * len(metrics),
                "seconds": round(sum(m["seconds"] for m in metrics.values()), 2)}

    def export(self, demos, preprocessor, episodes):
        """The single plain model (``--amf.export``): built, kept for ``save``/``evaluate``; its metrics."""
        if self.cfg.amf.export == "none":
            return None
        trained = [n for n, tasks in self.partitions.groups.items() if episodes_of(episodes, tasks)]
        self.single = merge(self.routed_policy, trained)
        if self.cfg.amf.export == "merge":
            return {"method": "merge", "partitions": trained}
        loaders = self._partition_batches(demos, preprocessor, episodes)
        return {"method": "distill (from merge)", **distill(
            self.routed_policy, self.single, loaders, self.cfg.amf.export_steps, self.cfg.optimizer,
            seed=self.cfg.seed or 0)}

    def _partition_batches(self, demos: DatasetRef, preprocessor, episodes: list[dict]) -> dict:
        """partition -> endless preprocessed batches of its tasks' frames (collected + pretraining demos)."""
        from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

        pretrain_eps: dict[str, list[int]] = {}
        if self.pretrain_ref is not None:
            meta = LeRobotDatasetMetadata(self.pretrain_ref.repo_id, root=self.pretrain_ref.root)
            pretrain_eps = self.plan.vocabulary.episodes_by_task(meta)
        out = {}
        for name, tasks in self.partitions.groups.items():
            parts = []
            demo_eps = episodes_of(episodes, tasks)
            if demo_eps:
                parts.append(open_dataset(self.cfg, demos, episodes=demo_eps, what="demo dataset"))
            pre_eps = sorted(ep for task in tasks for ep in pretrain_eps.get(task, []))
            if pre_eps:
                parts.append(open_dataset(self.cfg, self.pretrain_ref, episodes=pre_eps, what="pretraining demos"))
            if not parts:
                continue
            data = torch.utils.data.ConcatDataset(parts)
            loader = torch.utils.data.DataLoader(
                data, batch_size=self.cfg.batch_size, num_workers=0,
                sampler=torch.utils.data.RandomSampler(data, replacement=True, num_samples=10**9,
                                                       generator=torch.Generator().manual_seed(self.cfg.seed or 0)))
            out[name] = {"frames": len(data), "batches": (preprocessor(b) for b in loader)}
        return out

    def save(self, ckpt: Path, step: int, accelerator, preprocessor, postprocessor) -> Path:
        routed_dir = self.routed_policy.save(ckpt / ROUTED_DIR, preprocessor, postprocessor)
        if self.single is not None:
            save_checkpoint(ckpt, step=step, cfg=self.cfg, policy=self.single, optimizer=None,
                            preprocessor=preprocessor, postprocessor=postprocessor)
        return routed_dir

    def evaluate(self, accelerator, preprocessor, postprocessor, env_cfg, episodes):
        results = [(ROUTED, evaluate_tasks(self.routed_policy, preprocessor, postprocessor, env_cfg,
                                           self.plan.pool, self.cfg.amf, episodes))]
        if self.single is not None:
            results.append((SINGLE, evaluate_tasks(self.single, preprocessor, postprocessor, env_cfg,
                                                   self.plan.pool, self.cfg.amf, episodes)))
        return results

    def outputs(self, last: Path) -> str:
        single = f", single model: {last / PRETRAINED_MODEL_DIR}" if self.cfg.amf.export != "none" else ""
        return f"routed policy: {last / ROUTED_DIR} (lerobot_amf.isolation.load_routed_policy){single}"


def mean_task_embeddings(cfg, policy, preprocessor, pretrain_ref: DatasetRef | None, pool: list[str],
                         vocabulary, frames_per_task: int = 64) -> dict:
    """Each pool task's mean AMF embedding under the pretrained policy, over its pretraining frames."""
    import numpy as np

    if pretrain_ref is None:
        raise AMFInputError("amf.partitions=clustered needs the pretraining demos of the pool's tasks "
                            "(kept with the embedded default's checkpoint); pass a JSON map otherwise.")
    dataset = open_dataset(cfg, pretrain_ref, what="pretraining demos")
    episodes = vocabulary.episodes_by_task(dataset.meta)
    sel = cfg.amf.selection
    embedder = kernel_embedder(acting_policy(policy), sel)
    rng = np.random.default_rng(cfg.seed or 0)
    out = {}
    for task in pool:
        rows = [dataset.meta.episodes[i] for i in episodes.get(task, [])]
        if not rows:
            raise AMFInputError(f"amf.partitions=clustered: no pretraining demos of {task!r} to embed; pass a JSON map.")
        frames = np.concatenate([np.arange(r["dataset_from_index"], r["dataset_to_index"]) for r in rows])
        pick = np.sort(rng.choice(frames, size=min(frames_per_task, len(frames)), replace=False))
        batch = preprocessor(torch.utils.data.default_collate([dataset[int(i)] for i in pick]))
        with torch.no_grad():
            out[task] = embedder.embed(batch).mean(0).cpu().numpy()
    return out


def plan_partitions(cfg, pool: list[str], catalog) -> Partitions | None:
    """Partitions that need no policy (checked before anything is written); None for clustered."""
    if cfg.amf.isolation not in ROUTED_MODES:
        return Partitions({"all": list(pool)}, "all")
    if cfg.amf.partitions == "clustered":
        return None
    return make_partitions(cfg.amf.partitions, pool, suite_of=catalog.suite_of)


def make_isolation(cfg, policy, plan, preprocessor, pretrain_ref: DatasetRef | None) -> Isolation:
    """The run's ``Isolation``; clustered partitions are decided here, from the pretrained policy."""
    if cfg.amf.isolation not in ROUTED_MODES:
        return SharedWeights(cfg, policy, plan, pretrain_ref)
    partitions = plan.partitions
    if partitions is None:
        embeddings = mean_task_embeddings(cfg, policy, preprocessor, pretrain_ref, plan.pool, plan.vocabulary)
        partitions = make_partitions("clustered", plan.pool, task_embeddings=embeddings,
                                     n_partitions=cfg.amf.n_partitions, seed=cfg.seed or 0)
    return PartitionedWeights(cfg, policy, plan, partitions, pretrain_ref)
