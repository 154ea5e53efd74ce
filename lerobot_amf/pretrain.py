"""The embedded default's pretrained generalist: demos from the run's demo source (a scripted
expert, or a Hub dataset) on a skewed allocation of the task pool, a LeRobot policy trained
from scratch on them, saved as a normal LeRobot checkpoint
and cached (keyed by everything that shapes it) so the next run skips it.

Users with their own generalist pass ``--policy.path`` instead and this module is not used.

The cache entry is used only when complete: everything is built under ``<entry>.tmp`` and
renamed into place (``atomic.replace_dir_atomic``) with its ``amf_pretrain.json`` inside, so a
stop during pretraining leaves at most a ``.tmp`` (or a half-done swap), which the next run for
the same entry discards (or undoes) before it pretrains again. Bad settings are one-line
``AMFInputError``s, raised before anything is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import shutil
from pathlib import Path

import draccus
import lerobot
from lerobot.policies.factory import make_policy, make_pre_post_processors
from lerobot.utils.constants import HF_LEROBOT_HOME

from lerobot_amf import __version__
from lerobot_amf.atomic import TMP_SUFFIX, read_json_or_none, recover_dir, replace_dir_atomic, write_json_atomic
from lerobot_amf.data import DatasetRef, fast_window_reads, write_demos
from lerobot_amf.errors import AMFInputError
from lerobot_amf.locks import exclusive
from lerobot_amf.phases import phase
from lerobot_amf.training import train_steps
from lerobot_amf.trust import UntrustedFileError, check_inside, read_json

PRETRAIN_RECORD = "amf_pretrain.json"
PRETRAIN_DEMOS_DIR = "pretrain_demos"  # inside the cached checkpoint: a LeRobotDataset


def pretrain_allocation(pool: list[str], pcfg) -> dict[str, int]:
    """Pretraining demos per pool task; bad ``--amf.pretrain.*`` settings are ``AMFInputError``s."""
    for name in ("steps", "batch_size"):
        value = getattr(pcfg, name)
        if not isinstance(value, int) or value < 1:
            raise AMFInputError(f"amf.pretrain.{name}={value!r}: must be an integer >= 1.")
    if pcfg.demos_per_task is not None:
        outside = [t for t in pcfg.demos_per_task if t not in pool]
        if outside:
            raise AMFInputError(f"amf.pretrain.demos_per_task names task(s) outside the pool: {', '.join(outside)}. "
                                f"Pool: {', '.join(pool)}.")
        bad = {t: k for t, k in pcfg.demos_per_task.items() if not isinstance(k, int) or k < 0}
        if bad:
            raise AMFInputError(f"amf.pretrain.demos_per_task={bad}: demo counts must be integers >= 0.")
        allocation = {t: int(pcfg.demos_per_task.get(t, 0)) for t in pool}
    else:
        for name in ("demos_covered", "demos_uncovered"):
            value = getattr(pcfg, name)
            if not isinstance(value, int) or value < 0:
                raise AMFInputError(f"amf.pretrain.{name}={value!r}: must be an integer >= 0.")
        covered = math.ceil(len(pool) / 2)
        allocation = {t: pcfg.demos_covered if i < covered else pcfg.demos_uncovered for i, t in enumerate(pool)}
    if sum(allocation.values()) == 0:
        raise AMFInputError(f"amf.pretrain: the allocation {allocation} has no demos; the generalist needs at least one "
                            "(set amf.pretrain.demos_covered / demos_per_task, or pass --policy.path).")
    return allocation


def read_pretrain_record(checkpoint: Path) -> dict | None:
    """The embedded default's pretraining record kept in ``checkpoint`` (None: none there). A
    checkpoint is an input: the record is read bounded and its counts checked (``trust.read_json``)."""
    path = Path(checkpoint) / PRETRAIN_RECORD
    if not path.exists() and not path.is_symlink():
        return None
    record = read_json(path, f"Checkpoint {Path(checkpoint).name}/")
    counts = record.get("demos_per_task") if isinstance(record, dict) else None
    if not isinstance(counts, dict) or not all(isinstance(t, str) and isinstance(n, int) and 0 <= n <= 10**6
                                               for t, n in counts.items()):
        raise UntrustedFileError(f"Checkpoint {Path(checkpoint).name}/{PRETRAIN_RECORD}: 'demos_per_task' must map "
                                 "task names to counts in 0..1,000,000: refused.")
    return record


def cached_eval_path(checkpoint: Path, key_material) -> Path | None:
    """Where the evaluation of this embedded-default checkpoint under ``key_material`` (anything
    JSON-able that fixes the protocol) is kept: in the user's cache, keyed by the checkpoint's
    content and the protocol, never inside the checkpoint. A checkpoint is an input: one from
    someone else could carry an "evaluation" of its own (the key is computable by anyone), which
    would have become the run's pretrained row. None for checkpoints without a pretraining record."""
    if read_pretrain_record(checkpoint) is None:
        return None
    key = hashlib.sha256(json.dumps(key_material, sort_keys=True).encode()).hexdigest()[:12]
    return HF_LEROBOT_HOME / "lerobot_amf_cache" / "evaluations" / f"{content_digest(checkpoint)}_{key}.json"


def content_digest(folder: Path) -> str:
    """A digest of a folder's regular files (names and bytes). Links and special files are not
    followed: they could point outside the folder."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and not path.is_symlink():
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:24]


def read_cached_eval(path: Path | None) -> dict | None:
    """The evaluation kept at ``path`` (from ``cached_eval_path``), or None (none kept, nothing to keep
    for this checkpoint, or torn by an older version's plain write: redone)."""
    result = read_json_or_none(path) if path is not None else None
    return result if isinstance(result, dict) else None


def write_cached_eval(path: Path | None, result: dict) -> None:
    """Keep an evaluation at ``path`` (from ``cached_eval_path``; None: nothing is kept), atomically
    (a stop mid-write leaves the old state)."""
    if path is not None:
        write_json_atomic(path, result, indent=None)


def pretrain_demos_ref(checkpoint, record: dict | None) -> DatasetRef | None:
    """The pretraining demos kept with an embedded-default checkpoint (None when unknown)."""
    if not record or "demos" not in record:
        return None
    demos = record["demos"] if isinstance(record["demos"], dict) else {}
    root = check_inside(Path(checkpoint), demos.get("root"),
                        f"Checkpoint {Path(checkpoint).name}/{PRETRAIN_RECORD}: the pretraining demos' root")
    return DatasetRef(str(demos.get("repo_id")), root) if root.exists() else None


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
    # Two runs of one config would pretrain into one entry: the second is refused while the first holds it.
    with exclusive(final, "Pretraining cache entry") if accelerator.is_main_process else contextlib.nullcontext():
        if accelerator.is_main_process:
            recover_dir(final)  # a stop between the two renames of the swap below
        accelerator.wait_for_everyone()
        if (final / PRETRAIN_RECORD).exists():
            logging.info(f"Using cached pretrained policy {final}")
            return final
        with phase("pretraining"):
            _pretrain(cfg, allocation, key_material, final, accelerator, source)
    return final


def _pretrain(cfg, allocation, key_material, final: Path, accelerator, source) -> None:
    """Main process records the demos; every process trains (DDP); main saves atomically."""
    from lerobot.datasets.factory import make_dataset

    from lerobot.utils.random_utils import set_seed

    set_seed(cfg.seed or 0, accelerator=accelerator)  # the generalist depends on its config, not on what ran before
    work = final.with_name(final.name + TMP_SUFFIX)
    if accelerator.is_main_process:
        if work.exists():
            logging.warning(f"Discarding {work}: an earlier pretraining was stopped before it finished.")
        shutil.rmtree(work, ignore_errors=True)
        logging.info(f"Pretraining: pulling demos {allocation} from {source.name}")
        source.check_round({task: k for task, k in allocation.items() if k}, set(), pretraining=True)
        demos = [demo for task, k in allocation.items() if k for demo in source.pull(task, k, set())]
        write_demos("local/amf_pretrain_demos", work / "demos", source.fps, source.features(), demos)
        demo_ids = [demo.demo_id for demo in demos]
        del demos  # their frames are on disk now
    accelerator.wait_for_everyone()
    pre_cfg = dataclasses.replace(
        cfg, steps=cfg.amf.pretrain.steps, batch_size=cfg.amf.pretrain.batch_size,
        dataset=dataclasses.replace(cfg.dataset, repo_id="local/amf_pretrain_demos", root=str(work / "demos"), episodes=None),
    )
    train_set = fast_window_reads(make_dataset(pre_cfg))
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
        (work / "demos").rename(out / PRETRAIN_DEMOS_DIR)
        replace_dir_atomic(out, final)  # fsynced, then renamed: a stop leaves no half-written entry
        shutil.rmtree(work, ignore_errors=True)
    accelerator.wait_for_everyone()
