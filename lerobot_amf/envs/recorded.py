"""``--env.type=recorded``: a real robot's tasks, named by their instruction strings, with no simulator.

A team that records demos by hand (``--amf.source=request``) has no LeRobot env for its robot: this
config carries only the pool (``--env.task``: the instructions, comma-separated) and its catalogue
(``envs.tasks.RecordedTasks``) says there is nothing to roll out in. The loop then evaluates
nothing, and amf selects from the demos in hand alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.configs.types import PolicyFeature
from lerobot.envs.configs import EnvConfig

from lerobot_amf.envs.tasks import RecordedTasks, register_catalog


@EnvConfig.register_subclass("recorded")
@dataclass
class RecordedEnvConfig(EnvConfig):
    """``--env.type=recorded --env.task="<instruction>,<instruction>"``: no simulator."""

    task: str = ""
    fps: int = 30
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=dict)
    episode_length: int | None = None

    @property
    def gym_kwargs(self) -> dict:
        return {}


register_catalog("recorded")(RecordedTasks)
