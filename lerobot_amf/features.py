"""Does what a demo source or an env gives fit what a policy reads and predicts?"""

from __future__ import annotations

from lerobot.configs.types import FeatureType


def feature_mismatches(have: dict, policy_config, where: str, images: bool = True) -> list[str]:
    """Problems (one phrase each) between features ``have`` (key -> PolicyFeature) and the
    policy's input and output features; empty when everything fits. ``images=False``: camera
    features must be there with the policy's channels, at any height and width (an env renders at
    its own size; ``resized_images`` brings it to the policy's)."""
    wanted = {**(policy_config.input_features or {}), **(policy_config.output_features or {})}
    problems = []
    for key, feature in wanted.items():
        got = have.get(key)
        if got is None:
            problems.append(f"{key} is missing")
        elif not images and feature.type is FeatureType.VISUAL:
            if got.shape[0] != feature.shape[0]:
                problems.append(f"{key} has {got.shape[0]} channels in {where}, {feature.shape[0]} in the policy")
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


def resized_images(have: dict, policy_config) -> dict[str, tuple[int, int]]:
    """Camera key -> the (height, width) the policy reads, for cameras ``have`` gives at another size
    that the policy does not resize itself (its image encoder was built for its own size)."""
    out = {}
    for key, feature in (policy_config.input_features or {}).items():
        got = have.get(key)
        if feature.type is FeatureType.VISUAL and got is not None and not _fits(got, feature, policy_config):
            out[key] = tuple(feature.shape[1:])
    return out
