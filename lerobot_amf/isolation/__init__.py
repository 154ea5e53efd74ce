"""Parameter isolation: which weights a round trains, and for which tasks.

``partitions`` splits the pool; ``routing`` holds one adapter / head copy per partition behind a
policy that routes by task; ``replay`` mixes pretraining data into shared fine-tuning batches;
``export`` turns per-partition weights into one plain LeRobot policy (merge or distill).
"""

from lerobot_amf.isolation.partitions import SCHEMES, Partitions, make_partitions
from lerobot_amf.isolation.routing import MODES, RoutedPolicy, load_routed_policy

__all__ = ["MODES", "SCHEMES", "Partitions", "RoutedPolicy", "load_routed_policy", "make_partitions"]
