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
def test_a_parse_reads_each_config_class_source_once(monkeypatch):
    """Every CLI parse builds each flag's help text from its class's source. draccus 0.10 (LeRobot
    0.4.4) re-read the source for every flag (seconds before a bad flag's one-line error, so the
    project carried a cache of its own); draccus 0.11 (LeRobot 0.6.1) caches it, and the project's
    cache is gone. This holds the dependency to that."""
    import inspect

    import draccus
    from draccus.wrappers import docstring

    reads, texts = [], []
    getsource = inspect.getsource
    original = docstring.get_attribute_docstring

    def recorded(cls, name):
        texts.append(cls)
        return original(cls, name)

    monkeypatch.setattr(inspect, "getsource", lambda obj, *a, **k: reads.append(obj) or getsource(obj, *a, **k))
    monkeypatch.setattr(docstring, "get_attribute_docstring", recorded)
    docstring._get_class_source.cache_clear()
    draccus.parse(AMFTrainPipelineConfig, args=["--policy.type=diffusion", "--env.type=mw_state"])
    assert len(texts) > 500 and len(reads) <= 2 * len(set(texts)) < len(texts) / 5
