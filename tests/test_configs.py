"""The configuration classes: the amf selection settings' range checks (``selection/config.py``)
and the memoised help texts of the CLI's config parsing (``configs.py``)."""

import pytest

from lerobot_amf.configs import AMFTrainPipelineConfig
from lerobot_amf.errors import AMFInputError
from lerobot_amf.selection.config import AMFSelectionConfig


@pytest.mark.parametrize("setting, needle", [
    ({"kernel": "hessian"}, "Allowed: gradient, self_gradient, last_layer"),
    ({"n_draws": 0}, "n_draws=0: must be at least 1"),
    ({"states_per_demo": 1}, "states_per_demo=1: must be at least 2"),
    ({"max_variance_removed": 1.0}, "max_variance_removed=1.0: must be in (0, 1)"),
    ({"target_mass_floor": -0.1}, "target_mass_floor=-0.1: must be in [0, 1)"),
    ({"noise": 0.0}, "noise=0.0: must be > 0"),
    ({"max_candidate_states": 0}, "max_candidate_states=0: must be at least 1"),
])
def test_amf_selection_settings_out_of_range_are_one_line_errors(setting, needle):
    with pytest.raises(AMFInputError) as err:
        AMFSelectionConfig(**setting).validate()
    assert needle in str(err.value) and "\n" not in str(err.value)
    AMFSelectionConfig().validate()  # the defaults are valid


@pytest.mark.slow
def test_memoised_help_sources_give_the_same_help_texts_reading_each_class_once(monkeypatch):
    """LeRobot 0.4.4's draccus re-reads a config class's source for every one of its flags; the
    workaround reads it once per class and must not change a single help text."""
    import inspect

    import draccus
    from draccus.wrappers import docstring

    from lerobot_amf.configs import memoise_help_sources

    original = docstring.get_attribute_docstring
    texts = []

    def recorded(cls, name):
        texts.append((cls, name, original(cls, name)))
        return texts[-1][2]

    monkeypatch.setattr(docstring, "get_attribute_docstring", recorded)
    monkeypatch.setattr(docstring, "inspect", inspect)  # as LeRobot 0.4.4 ships it
    args = ["--policy.type=diffusion", "--env.type=mw_state"]
    draccus.parse(AMFTrainPipelineConfig, args=args)
    plain, texts[:] = list(texts), []
    memoise_help_sources()
    memoise_help_sources()  # idempotent: the same cache
    draccus.parse(AMFTrainPipelineConfig, args=args)
    assert texts == plain and len(plain) > 500  # the same help text for every flag
    reads = docstring.inspect.getsource.cache_info()
    classes = {cls for cls, _, _ in plain}
    # every help text looked its class (or a base class) up; each class's source was read once
    assert reads.hits + reads.misses >= len(plain) and reads.misses <= 2 * len(classes) < len(plain) / 10
