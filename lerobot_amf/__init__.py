"""lerobot-amf: Active Multi-task Fine-tuning for LeRobot policies.

Importing the package registers its LeRobot env configs (``--env.type=mw_state``), which is
what ``--env.discover_packages_path=lerobot_amf`` relies on, and puts the processor-file guard
in front of LeRobot's loader (``trust.guard_processor_loading``), and shortens LeRobot log
lines and dependency warnings that would bury ours (``quiet_logs``; peft's before anything
imports it).
"""

from lerobot_amf.quiet_logs import quiet_lerobot_logs, quiet_peft_transformers_deprecation

quiet_peft_transformers_deprecation()

from lerobot_amf import envs  # noqa: E402,F401
from lerobot_amf.trust import guard_processor_loading  # noqa: E402

# LeRobot 0.6.1 imports whatever a checkpoint's processor file names: from here on, only processor steps.
guard_processor_loading()
quiet_lerobot_logs()

__version__ = "0.1.0"
