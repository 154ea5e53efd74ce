"""LeRobot env configs registered by the plugin (import registers them)."""

from lerobot_amf.envs.metaworld_state import (  # noqa: F401
    METAWORLD_TASKS,
    MT10_TASKS,
    MetaworldStateEnv,
    MetaworldStateEnvConfig,
    parse_task_list,
)
from lerobot_amf.envs.recorded import RecordedEnvConfig  # noqa: F401
