"""Does what a demo source or an env gives fit what a policy reads and predicts?"""

from __future__ import annotations

from lerobot.configs.types import FeatureType


def feature_mismatches(have: dict, policy_config, where: str, images: bool = True) -> list[str]:
    """Problems (one phrase each) between features ``have`` (key -> PolicyFeature) and the
    policy's input and output features; empty when everything fits. ``images=False`` leaves
    camera features out (an env renders at its own size; the policy's processors adapt it)."""
    wanted = {**(policy_config.input_features or {}), **(policy_config.output_features or {})}
    problems = []
    for key, feature in wanted.items():
        if not images and feature.type is FeatureType.VISUAL:
            continue
        got = have.get(key)
        if got is None:
            problems.append(f"{key} is missing")
        elif not _fits(got, feature, policy_config):
            problems.append(f"{key} is {tuple(got.shape)} in {where}, {tuple(feature.shape)} in the policy")
    return problems


def _fits(have, wanted, policy_config) -> bool:
    """Same shape, or a shape the policy adapts itself: SmolVLA / pi0 / GR00T pad state and action
    to ``max_state_dim`` / ``max_action_dim`` and resize images to a fixed resolution."""
    if tuple(have.shape) == tuple(wanted.shape):
        return True
    if have.type is FeatureType.VISUAL:
        resizes = getattr(policy_config, "resize_imgs_with_padding", None) or getattr(
            policy_config, "image_resolution", None)
        return bool(resizes) and have.shape[0] == wanted.shape[0]
    pad = {FeatureType.STATE: "max_state_dim", FeatureType.ACTION: "max_action_dim"}.get(have.type)
    return pad is not None and len(have.shape) == 1 and have.shape[0] <= getattr(policy_config, pad, 0)
