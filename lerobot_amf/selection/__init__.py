"""Selection strategies behind one interface; ``make_strategy`` maps ``--amf.strategy``."""

from lerobot_amf.selection.base import Selection, SelectionContext, Strategy
from lerobot_amf.selection.baselines import (
    LeastDemonstratedStrategy,
    LowestSuccessStrategy,
    RandomStrategy,
    RebalancingStrategy,
    UniformStrategy,
)

BASELINES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (UniformStrategy, RandomStrategy, LeastDemonstratedStrategy, RebalancingStrategy,
                LowestSuccessStrategy)
}


MODEL_BASED = ("amf", "amf_eval")  # need --amf.selection and the policy; amf_eval: amf aimed at what fails
STRATEGY_NAMES = (*BASELINES, *MODEL_BASED)


def make_strategy(name: str, selection_cfg=None) -> Strategy:
    """The strategy ``--amf.strategy=name``. selection_cfg: the amf strategy's settings
    (``--amf.selection``, an ``AMFSelectionConfig``); required for amf, unused by the baselines."""
    if name in BASELINES:
        return BASELINES[name]()
    if name in MODEL_BASED:
        if selection_cfg is None:
            raise ValueError(f"amf.strategy={name} needs its settings: pass the AMFSelectionConfig (--amf.selection).")
        from lerobot_amf.selection.amf import AMFEvalStrategy, AMFStrategy  # model code, only when chosen

        return (AMFStrategy if name == "amf" else AMFEvalStrategy)(selection_cfg)
    raise ValueError(f"Unknown amf.strategy={name!r}. Allowed: {', '.join(STRATEGY_NAMES)}.")


__all__ = ["Selection", "SelectionContext", "Strategy", "make_strategy", "BASELINES", "STRATEGY_NAMES"]
