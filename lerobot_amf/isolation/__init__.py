"""Parameter isolation: which weights a round trains, and for which tasks.

``partitions`` splits the pool; ``routing`` holds one adapter / head copy per partition behind a
policy that routes by task, and says which policy acts for a task (``acting_policy``,
``serving``); ``export`` turns per-partition weights into one plain LeRobot policy (merge or
distill); ``modes`` is the round loop's view of each ``--amf.isolation`` (replay mixing, for
``shared_replay``, lives with the training steps: ``lerobot_amf.training.replay``).

The choices are declared here, without importing torch or peft, so that validating a config
imports no model code; ``RoutedPolicy`` and ``load_routed_policy`` load on first use.
"""

# shared: one model, all weights, all demos | shared_replay: the same + pretraining frames in
# every batch | lora: one peft LoRA adapter per partition | head: one action-head copy per partition.
ISOLATION_MODES = ("shared", "shared_replay", "lora", "head")
ROUTED_MODES = ("lora", "head")  # frozen base + per-partition weights behind a routing policy
# The single plain model built from per-partition weights each round (--amf.export).
EXPORTS = ("merge", "distill", "none")

_LAZY = {"RoutedPolicy": "lerobot_amf.isolation.routing", "load_routed_policy": "lerobot_amf.isolation.routing",
         "Partitions": "lerobot_amf.isolation.partitions", "make_partitions": "lerobot_amf.isolation.partitions",
         "SCHEMES": "lerobot_amf.isolation.partitions"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lerobot_amf.isolation' has no attribute {name!r}")


__all__ = ["EXPORTS", "ISOLATION_MODES", "ROUTED_MODES", *_LAZY]
