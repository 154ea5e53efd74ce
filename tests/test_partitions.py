"""Task partitions (``isolation/partitions.py``): the schemes, clustering by task embeddings,
partition maps as a file or inline JSON (also through the ``--amf.partitions`` flag), and their
one-line errors."""

import json

import numpy as np
import pytest

from lerobot_amf.envs.metaworld_state import MetaworldCatalog
from lerobot_amf.errors import AMFInputError
from lerobot_amf.isolation import make_partitions
from lerobot_amf.isolation.partitions import cluster_tasks

POOL = ["reach-v3", "drawer-close-v3", "window-open-v3"]


def test_partition_schemes_cover_the_pool_once():
    assert make_partitions("per_task", POOL).groups == {t: [t] for t in POOL}
    assert make_partitions("all", POOL).groups == {"all": POOL}
    metaworld = make_partitions("per_suite", ["reach-v3", "assembly-v3"], suite_of=MetaworldCatalog().suite_of)
    assert metaworld.groups == {"easy": ["reach-v3"], "hard": ["assembly-v3"]}
    libero = make_partitions("per_suite", ["libero_10/put_the_pot", "libero_spatial/pick", "libero_10/open_it"])
    assert libero.groups == {"libero_10": ["libero_10/put_the_pot", "libero_10/open_it"],
                             "libero_spatial": ["libero_spatial/pick"]}


def test_clustered_partitions_follow_the_task_embeddings():
    e = {"reach-v3": np.array([1.0, 0.0]), "drawer-close-v3": np.array([0.0, 1.0]),
         "window-open-v3": np.array([0.1, 0.9])}
    groups = cluster_tasks(e, POOL, k=2, seed=0)
    assert sorted(map(sorted, groups.values())) == [["drawer-close-v3", "window-open-v3"], ["reach-v3"]]
    assert make_partitions("clustered", POOL, task_embeddings=e, n_partitions=2).groups == groups


@pytest.mark.parametrize("content, needle", [
    ({"reach-v3": "a", "drawer-close-v3": "b"}, "in no partition: window-open-v3"),
    ({"a": POOL, "b": []}, "no tasks: b"),
    ({"a": [*POOL, "push-v3"]}, "outside the pool: push-v3"),
    ({"a": POOL, "b": ["reach-v3"]}, "in two partitions"),
    ({"a": 3}, "expected"),
])
def test_bad_partition_maps_are_clear_errors(tmp_path, content, needle):
    path = tmp_path / "map.json"
    path.write_text(json.dumps(content))
    with pytest.raises(AMFInputError, match=needle):
        make_partitions(str(path), POOL)


def test_partition_map_in_both_json_forms(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"reach-v3": "easy", "drawer-close-v3": "drawer", "window-open-v3": "easy"}))
    b.write_text(json.dumps({"easy": ["window-open-v3", "reach-v3"], "drawer": ["drawer-close-v3"]}))
    assert make_partitions(str(a), POOL).groups == make_partitions(str(b), POOL).groups == \
        {"easy": ["reach-v3", "window-open-v3"], "drawer": ["drawer-close-v3"]}


def test_inline_partition_maps_equal_the_file_form(tmp_path):
    from lerobot_amf.isolation.partitions import make_partitions

    data = {"easy": ["window-open-v3", "reach-v3"], "drawer": ["drawer-close-v3"]}
    path = tmp_path / "map.json"
    path.write_text(json.dumps(data))
    want = {"easy": ["reach-v3", "window-open-v3"], "drawer": ["drawer-close-v3"]}
    assert make_partitions(str(path), POOL).groups == want
    assert make_partitions(json.dumps(data), POOL).groups == want
    assert make_partitions(str(data), POOL).groups == want  # what draccus hands over for a {...} flag
    by_task = {"reach-v3": "easy", "drawer-close-v3": "drawer", "window-open-v3": "easy"}
    assert make_partitions(json.dumps(by_task), POOL).groups == want


def test_cli_inline_map_reaches_the_partitions_as_given():
    import draccus

    from lerobot_amf.configs import AMFConfig
    from lerobot_amf.isolation.partitions import make_partitions

    cfg = draccus.parse(AMFConfig, args=['--partitions={"a": ["reach-v3", "window-open-v3"], "b": ["drawer-close-v3"]}'])
    assert make_partitions(cfg.partitions, POOL).groups == {"a": ["reach-v3", "window-open-v3"], "b": ["drawer-close-v3"]}


@pytest.mark.parametrize("spec, needle", [
    ('{"a": ["reach-v3"], "b": ["window-open-v3"]}', "in no partition: drawer-close-v3"),
    ('{"reach-v3": "a"}', "in no partition: drawer-close-v3, window-open-v3"),
    ('{"a": ["reach-v3",', "not valid JSON"),
])
def test_partial_or_broken_inline_map_names_the_problem(spec, needle):
    from lerobot_amf.isolation.partitions import make_partitions

    with pytest.raises(AMFInputError, match=needle) as err:
        make_partitions(spec, POOL)
    assert str(err.value).startswith("amf.partitions=") and "\n" not in str(err.value)
