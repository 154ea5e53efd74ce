"""Demo sources behind one interface (``DemoSource``); ``make_source`` maps ``--amf.source``.

The implementations load on use (a Hub run never builds a Metaworld expert, and validating a
config imports neither).
"""

from lerobot_amf.errors import AMFInputError
from lerobot_amf.sources.base import DEFAULT_MAX_BYTES_PER_ROUND, Demo, DemoSource, WaitingForDemos

# metaworld_expert: Metaworld's scripted experts (the embedded default) | hub: episodes of a
# LeRobot dataset on the Hub (e.g. lerobot/libero), pulled per task | request: recorded by people
# with lerobot-record into an intake dataset, one collection request per round.
SOURCES = ("metaworld_expert", "hub", "request")


def make_source(amf_cfg, env_cfg, seed: int, catalog, role: str = "finetune", output_dir=None) -> DemoSource:
    """The demo source named by ``--amf.source``.

    role: "finetune" (the run's pulls) or "pretrain" (the embedded default's pretraining
    demos; a scripted expert draws them from their own seeds, so they never repeat a pull).
    The request source's pretraining demos (no --policy.path) are the scripted expert's, in the
    Metaworld env only: nobody records a generalist's pretraining by hand.
    """
    if amf_cfg.source == "request":
        if role == "finetune":
            from lerobot_amf.sources.request import make_request_source

            tasks = catalog.all_tasks() or catalog.run_pool(getattr(amf_cfg, "tasks", None), env_cfg)  # recorded: the pool
            return make_request_source(amf_cfg, output_dir, catalog.vocabulary(tasks).task_of_instruction)
        if env_cfg.type != "mw_state":
            raise AMFInputError("amf.source=request starts from a generalist: give --policy.path (the embedded "
                                "default pretrains one only in the Metaworld env).")
    if amf_cfg.source in ("metaworld_expert", "request"):
        from lerobot_amf.sources.metaworld import MetaworldExpertSource

        return MetaworldExpertSource(seed=seed, action_noise=amf_cfg.action_noise,
                                     demos_per_task=amf_cfg.source_demos_per_task if role == "finetune" else None,
                                     namespace=role)
    if amf_cfg.source == "hub":
        from lerobot_amf.sources.hub import make_hub_source

        return make_hub_source(amf_cfg, seed, catalog.vocabulary(catalog.all_tasks()).task_of_instruction)
    raise AMFInputError(f"Unknown amf.source={amf_cfg.source!r}. Allowed: {', '.join(SOURCES)}.")


__all__ = ["DEFAULT_MAX_BYTES_PER_ROUND", "Demo", "DemoSource", "SOURCES", "WaitingForDemos", "make_source"]
