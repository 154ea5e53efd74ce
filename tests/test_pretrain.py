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
