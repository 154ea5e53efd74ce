"""The Metaworld scripted-expert demo source (``sources/metaworld.py``): successful, distinct,
deterministic demos, and its capacity per task."""

import numpy as np
import pytest

from lerobot_amf.sources.metaworld import MetaworldExpertSource


def test_expert_source_gives_successful_distinct_deterministic_demos():
    src = MetaworldExpertSource(seed=3, action_noise=0.1)
    demos = src.pull("reach-v3", 3, exclude=set())
    assert len({d.demo_id for d in demos}) == 3
    assert all(d.task == "reach-v3" and d.length > 5 for d in demos)
    assert all(d.frames["observation.state"].shape == (d.length, 39) for d in demos)
    # never the same episode twice: excluding what was pulled yields new ids
    more = src.pull("reach-v3", 2, exclude={d.demo_id for d in demos})
    assert not {d.demo_id for d in more} & {d.demo_id for d in demos}
    assert not np.allclose(more[0].frames["observation.state"][0], demos[0].frames["observation.state"][0])
    # the same id is the same episode
    again = MetaworldExpertSource(seed=3, action_noise=0.1).pull("reach-v3", 1, exclude=set())[0]
    assert again.demo_id == demos[0].demo_id
    np.testing.assert_array_equal(again.frames["action"], demos[0].frames["action"])


def test_expert_source_capacity_is_enforced():
    src = MetaworldExpertSource(seed=0, demos_per_task=2)
    first = src.pull("reach-v3", 2, exclude=set())
    assert src.remaining("reach-v3", {d.demo_id for d in first}) == 0
    with pytest.raises(ValueError, match="left"):
        src.pull("reach-v3", 1, exclude={d.demo_id for d in first})
