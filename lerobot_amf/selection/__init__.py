"""Selection strategies behind one interface; ``make_strategy`` maps ``--amf.strategy``."""

from lerobot_amf.selection.base import Selection, SelectionContext, Strategy
from lerobot_amf.selection.baselines import (
    LeastDemonstratedStrategy,
    RandomStrategy,
    RebalancingStrategy,
    UniformStrategy,
)

BASELINES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (UniformStrategy, RandomStrategy, LeastDemonstratedStrategy, RebalancingStrategy)
}


STRATEGY_NAMES = (*BASELINES, "amf")


def make_strategy(name: str, selection_cfg=None) -> Strategy:
    """The strategy named ``name``; ``selection_cfg`` (``AMFSelectionConfig``) configures amf."""
    if name in BASELINES:
        return BASELINES[name]()
    if name == "amf":
        from lerobot_amf.selection.amf import AMFStrategy

        return AMFStrategy(selection_cfg)
    raise ValueError(f"Unknown amf.strategy={name!r}. Allowed: {', '.join(STRATEGY_NAMES)}.")


__all__ = ["Selection", "SelectionContext", "Strategy", "make_strategy", "BASELINES", "STRATEGY_NAMES"]
