"""Demo sources behind one interface (``DemoSource``)."""

from lerobot_amf.sources.base import Demo, DemoSource
from lerobot_amf.sources.metaworld import MetaworldExpertSource


def make_source(amf_cfg, env_cfg, seed: int) -> DemoSource:
    """The demo source named by ``--amf.source``."""
    if amf_cfg.source == "metaworld_expert":
        return MetaworldExpertSource(
            seed=seed,
            action_noise=amf_cfg.action_noise,
            demos_per_task=amf_cfg.source_demos_per_task,
        )
    raise ValueError(f"Unknown amf.source={amf_cfg.source!r}. Allowed: metaworld_expert.")


__all__ = ["Demo", "DemoSource", "MetaworldExpertSource", "make_source"]
