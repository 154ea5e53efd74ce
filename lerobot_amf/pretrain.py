"""The embedded default's pretrained generalist: demos from the run's demo source (a scripted
expert, or a Hub dataset) on a skewed allocation of the task pool, a LeRobot policy trained
from scratch on them, saved as a normal LeRobot checkpoint
and cached (keyed by everything that shapes it) so the next run skips it.

Users with their own generalist pass ``--policy.path`` instead and this module is not used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
from pathlib import Path

import draccus
import lerobot
from lerobot.policies.factory import make_policy, make_pre_post_processors
from lerobot.utils.constants import HF_LEROBOT_HOME

from lerobot_amf import __version__
from lerobot_amf.data import DatasetRef, write_demos
from lerobot_amf.training import train_steps

PRETRAIN_RECORD = "amf_pretrain.json"
PRETRAIN_DEMOS_DIR = "pretrain_demos"  # inside the cached checkpoint: a LeRobotDataset


def pretrain_allocation(pool: list[str], pcfg) -> dict[str, int]:
    if pcfg.demos_per_task is not None:
        missing = [t for t in pcfg.demos_per_task if t not in pool]
        if missing:
            raise ValueError(f"amf.pretrain.demos_per_task names tasks outside the pool: {', '.join(missing)}.")
        return {t: int(pcfg.demos_per_task.get(t, 0)) for t in pool}
    covered = math.ceil(len(pool) / 2)
    return {t: pcfg.demos_covered if i < covered else pcfg.demos_uncovered for i, t in enumerate(pool)}


def read_pretrain_record(checkpoint: Path) -> dict | None:
    path = Path(checkpoint) / PRETRAIN_RECORD
    return json.loads(path.read_text()) if path.exists() else None


def pretrain_demos_ref(checkpoint, record: dict | None) -> DatasetRef | None:
    """The pretraining demos kept with an embedded-default checkpoint (None when unknown)."""
    if not record or "demos" not in record:
        return None
    root = Path(checkpoint) / record["demos"]["root"]
    return DatasetRef(record["demos"]["repo_id"], root) if root.exists() else None


def ensure_pretrained(cfg, pool: list[str], accelerator, source) -> Path:
    """Path of the cached pretrained checkpoint for this config, training it if needed."""
    pcfg = cfg.amf.pretrain
    allocation = pretrain_allocation(pool, pcfg)
    key_material = {
        "allocation": allocation,
        "seed": cfg.seed,
        **source.cache_key(),
        "episode_length": cfg.env.episode_length,
        "policy": draccus.encode(cfg.policy),
        "steps": pcfg.steps,
        "batch_size": pcfg.batch_size,
        "versions": [lerobot.__version__, __version__],
    }
    key = hashlib.sha256(json.dumps(key_material, sort_keys=True, default=str).encode()).hexdigest()[:16]
    cache_root = Path(pcfg.cache_dir) if pcfg.cache_dir else HF_LEROBOT_HOME / "lerobot_amf_cache"
    final = cache_root / f"pretrained_{cfg.policy.type}_{key}"
    if (final / PRETRAIN_RECORD).exists():
        logging.info(f"Using cached pretrained policy {final}")
        return final
    _pretrain(cfg, allocation, key_material, cache_root, final, accelerator, source)
    return final


def _pretrain(cfg, allocation, key_material, cache_root: Path, final: Path, accelerator, source) -> None:
    """Main process records the demos; every process trains (DDP); main saves atomically."""
    from lerobot.datasets.factory import make_dataset

    work = cache_root / f"{final.name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(work, ignore_errors=True)
        logging.info(f"Pretraining: pulling demos {allocation} from {source.name}")
        demos = [demo for task, k in allocation.items() if k for demo in source.pull(task, k, set())]
        write_demos("local/amf_pretrain_demos", work / "demos", source.fps, source.features(), demos)
        demo_ids = [demo.demo_id for demo in demos]
        del demos  # their frames are on disk now
    accelerator.wait_for_everyone()
    pre_cfg = dataclasses.replace(
        cfg, steps=cfg.amf.pretrain.steps, batch_size=cfg.amf.pretrain.batch_size,
        dataset=dataclasses.replace(cfg.dataset, repo_id="local/amf_pretrain_demos", root=str(work / "demos"), episodes=None),
    )
    train_set = make_dataset(pre_cfg)
    policy_cfg = dataclasses.replace(cfg.policy, pretrained_path=None)
    policy = make_policy(policy_cfg, ds_meta=train_set.meta)
    preprocessor, postprocessor = make_pre_post_processors(policy_cfg, dataset_stats=train_set.meta.stats)
    policy = accelerator.prepare(policy)
    metrics, _, _ = train_steps(pre_cfg, policy, train_set, preprocessor, accelerator,
                                pre_cfg.steps, desc="Pretraining generalist")
    if accelerator.is_main_process:
        out = work / "checkpoint"
        accelerator.unwrap_model(policy).save_pretrained(out)
        preprocessor.save_pretrained(out)
        postprocessor.save_pretrained(out)
        record = {
            "demos_per_task": allocation,
            "train": metrics,
            "cache_key": key_material,
            "note": f"embedded default generalist: demos from source {source.name!r}, trained from scratch",
            "source": source.describe(),
            "demos": {"repo_id": "local/amf_pretrain_demos", "root": PRETRAIN_DEMOS_DIR},
            # a source's demo ids: fine-tuning never pulls these again (a Hub dataset's episodes are finite)
            "demo_ids": demo_ids,
        }
        (out / PRETRAIN_RECORD).write_text(json.dumps(record, indent=2, default=str))
        # The pretraining demos stay with the checkpoint (AMF's state estimates and replay use them).
        os.replace(work / "demos", out / PRETRAIN_DEMOS_DIR)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(out, final)  # atomic: a crash leaves no half-written cache entry
        shutil.rmtree(work, ignore_errors=True)
    accelerator.wait_for_everyone()
