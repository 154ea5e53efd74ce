"""``evaluation.py``: Wilson intervals, success pooled over tasks, and the env processors' camera resizing."""

import pytest

from lerobot_amf.evaluation import pooled, wilson_interval


def test_wilson_interval_matches_reference_values():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)


def test_pooled_success_over_tasks():
    per_task = {"a": {"successes": 3, "episodes": 10}, "b": {"successes": 7, "episodes": 10}}
    out = pooled(per_task, ["a", "b"])
    assert out["success_rate"] == 0.5 and out["episodes"] == 20


@pytest.mark.parametrize("rendered, resized", [(64, {"observation.images.image": (32, 32),
                                                     "observation.images.image2": (32, 32)}), (32, None)])
def test_env_processors_resize_only_cameras_rendered_at_another_size(rendered, resized):
    """LeRobot 0.6.1 renders LIBERO at the config's size: frames are resized only when it is not the
    policy's (a policy trained on 256x256 frames, LIBERO's default 360x360 render)."""
    pytest.importorskip("libero")
    from types import SimpleNamespace

    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.envs.configs import LiberoEnv as LiberoEnvConfig
    from lerobot.processor import LiberoProcessorStep

    from lerobot_amf.evaluation import ResizeImages, env_processors

    camera = PolicyFeature(FeatureType.VISUAL, (3, 32, 32))
    policy_cfg = SimpleNamespace(input_features={"observation.images.image": camera,
                                                 "observation.images.image2": camera,
                                                 "observation.state": PolicyFeature(FeatureType.STATE, (8,))})
    env_pre, _ = env_processors(LiberoEnvConfig(task="libero_10", observation_height=rendered,
                                                observation_width=rendered), policy_cfg)
    assert isinstance(env_pre.steps[0], LiberoProcessorStep)
    if resized is None:
        assert len(env_pre.steps) == 1
        return
    step = env_pre.steps[-1]
    assert isinstance(step, ResizeImages) and step.sizes == resized
    frames = {"observation.images.image": torch.rand(2, 3, rendered, rendered),
              "observation.images.image2": torch.rand(2, 3, 32, 32)}
    out = step.observation(frames)
    assert out["observation.images.image"].shape == (2, 3, 32, 32)
    assert out["observation.images.image2"] is frames["observation.images.image2"]  # already the policy's size
