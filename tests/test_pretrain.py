"""The embedded pretraining step (``pretrain.py``): its settings' input errors, and its cache: a
stale ``.tmp`` left by a stop is discarded and an entry without its record is not used."""

import logging

import pytest

from conftest import TINY_ARGS
from lerobot_amf.errors import AMFInputError


@pytest.mark.slow
def test_stale_pretraining_tmp_is_discarded_and_incomplete_entries_are_not_used(tmp_path, caplog):
    import draccus
    from accelerate import Accelerator

    import lerobot_amf.envs  # noqa: F401  (registers mw_state)
    from lerobot_amf.configs import AMFTrainPipelineConfig
    from lerobot_amf.pretrain import PRETRAIN_RECORD, ensure_pretrained
    from lerobot_amf.sources.metaworld import MetaworldExpertSource

    cache = tmp_path / "cache"
    cfg = draccus.parse(AMFTrainPipelineConfig, args=[
        *TINY_ARGS, f"--amf.pretrain.cache_dir={cache}", "--amf.pretrain.steps=1", "--amf.pretrain.demos_covered=1",
        "--amf.pretrain.demos_uncovered=0", f"--output_dir={tmp_path / 'run'}"])
    cfg.validate()
    pool = ["reach-v3", "drawer-close-v3"]
    source = MetaworldExpertSource(seed=cfg.seed, namespace="pretrain")
    with caplog.at_level(logging.WARNING):
        first = ensure_pretrained(cfg, pool, Accelerator(cpu=True), source)
    # what a stop during the next pretraining of this entry leaves: a half-written .tmp, and an
    # entry that never got its record (as an interrupted swap or an older version could leave)
    stale = first.with_name(first.name + ".tmp")
    (stale / "checkpoint").mkdir(parents=True)
    (stale / "checkpoint" / "model.safetensors").write_bytes(b"half")
    (first / PRETRAIN_RECORD).unlink()
    (first / "junk").write_text("incomplete entry")
    with caplog.at_level(logging.WARNING):
        again = ensure_pretrained(cfg, pool, Accelerator(cpu=True), source)
    assert again == first and f"Discarding {stale}" in caplog.text
    assert not stale.exists() and (again / PRETRAIN_RECORD).exists() and not (again / "junk").exists()
    assert sorted(p.name for p in cache.iterdir()) == [first.name]


def test_pretraining_settings_are_input_errors():
    from types import SimpleNamespace

    from lerobot_amf.pretrain import pretrain_allocation

    def pcfg(**kw):
        return SimpleNamespace(**{"demos_per_task": None, "demos_covered": 2, "demos_uncovered": 1, "steps": 5,
                                  "batch_size": 4, **kw})

    pool = ["reach-v3", "drawer-close-v3"]
    assert pretrain_allocation(pool, pcfg()) == {"reach-v3": 2, "drawer-close-v3": 1}
    for kw, needle in [({"demos_per_task": {"push-v3": 2}}, "outside the pool: push-v3"),
                       ({"demos_per_task": {"reach-v3": -1}}, "integers >= 0"),
                       ({"demos_covered": -2}, "demos_covered=-2"),
                       ({"demos_covered": 0, "demos_uncovered": 0}, "has no demos"),
                       ({"steps": 0}, "steps=0"), ({"batch_size": 0}, "batch_size=0")]:
        with pytest.raises(AMFInputError, match=needle):
            pretrain_allocation(pool, pcfg(**kw))


def test_the_pretrained_evaluation_is_kept_outside_the_checkpoint_and_keyed_by_its_content(tmp_path):
    """A checkpoint is an input: one from someone else could carry its own "pretrained evaluation"
    (its old name was computable by anyone). The kept evaluation lives in the user's cache, keyed by
    the checkpoint's bytes and the protocol; nothing is read from or written into the checkpoint."""
    import hashlib
    import json

    from lerobot.utils.constants import HF_LEROBOT_HOME

    from lerobot_amf.pretrain import PRETRAIN_RECORD, cached_eval_path, read_cached_eval, write_cached_eval

    ckpt = tmp_path / "generalist"
    ckpt.mkdir()
    (ckpt / PRETRAIN_RECORD).write_text(json.dumps({"demos_per_task": {"reach-v3": 1}}))
    (ckpt / "model.safetensors").write_bytes(b"weights")
    key = [["reach-v3"], {"episodes_per_task": 10}, 1000000, "pretrained"]
    # what the old location would have read: planted by the checkpoint's author, never read now
    old_name = f"amf_eval_{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]}.json"
    (ckpt / old_name).write_text(json.dumps({"overall": {"success_rate": 1.0}}))
    path = cached_eval_path(ckpt, key)
    assert HF_LEROBOT_HOME in path.parents and ckpt not in path.parents
    assert read_cached_eval(cached_eval_path(ckpt, key)) is None
    before = sorted(p.name for p in ckpt.iterdir())
    write_cached_eval(path, {"overall": {"success_rate": 0.4}})
    try:
        assert read_cached_eval(cached_eval_path(ckpt, key)) == {"overall": {"success_rate": 0.4}}
        assert sorted(p.name for p in ckpt.iterdir()) == before  # nothing written into the checkpoint
        (ckpt / "model.safetensors").write_bytes(b"other weights")  # other content: not the same evaluation
        assert cached_eval_path(ckpt, key) != path and read_cached_eval(cached_eval_path(ckpt, key)) is None
        (ckpt / "linked").symlink_to(tmp_path / "elsewhere")  # links are not followed into the digest
        (tmp_path / "elsewhere").write_bytes(b"x")
        digest = cached_eval_path(ckpt, key)
        (tmp_path / "elsewhere").write_bytes(b"y")
        assert cached_eval_path(ckpt, key) == digest
    finally:
        path.unlink(missing_ok=True)
    assert cached_eval_path(tmp_path, key) is None  # not an embedded-default checkpoint: nothing kept
