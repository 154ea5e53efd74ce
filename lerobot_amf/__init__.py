"""lerobot-amf: Active Multi-task Fine-tuning for LeRobot policies.

Importing the package registers its LeRobot env configs (``--env.type=mw_state``), which is
what ``--env.discover_packages_path=lerobot_amf`` relies on.
"""

from lerobot_amf import envs  # noqa: F401

__version__ = "0.1.0"
