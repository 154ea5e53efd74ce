import numpy as np
import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.datasets.sampler import EpisodeAwareSampler

from lerobot_amf.data import episode_aware_sampler, episodes_stats, fast_window_reads, read_frames, write_demos
from lerobot_amf.sources.metaworld import MetaworldExpertSource


def _build(tmp_path):
    src = MetaworldExpertSource(seed=1)
    root = tmp_path / "demos"
    a = src.pull("reach-v3", 2, set())
    b = src.pull("drawer-close-v3", 2, set())
    rec1 = write_demos("local/test", root, src.fps, src.features(), a)
    rec2 = write_demos("local/test", root, src.fps, src.features(), b)  # appended by a later call
    return root, a + b, rec1 + rec2


def test_demos_appended_across_calls_are_all_readable(tmp_path):
    root, demos, records = _build(tmp_path)
    ds = LeRobotDataset("local/test", root=root)
    assert ds.num_episodes == 4
    assert [r["episode_index"] for r in records] == [0, 1, 2, 3]
    assert ds.num_frames == sum(d.length for d in demos)
    first_of_third = ds[ds.meta.episodes[2]["dataset_from_index"]]
    np.testing.assert_allclose(first_of_third["observation.state"].numpy(), demos[2].frames["observation.state"][0])
    assert first_of_third["task"] == demos[2].instruction


def test_sampler_workaround_yields_only_selected_episodes(tmp_path):
    root, demos, _ = _build(tmp_path)
    subset = LeRobotDataset("local/test", root=root, episodes=[2, 3])
    ours = list(episode_aware_sampler(subset, drop_n_last_frames=0, shuffle=False))
    assert len(ours) == demos[2].length + demos[3].length == len(subset)
    assert {int(subset[i]["episode_index"]) for i in ours} == {2, 3}
    # LeRobot 0.4.4's sampler, built the way lerobot-train builds it, yields indices that are
    # wrong for this dataset (the bug the workaround exists for).
    raw = EpisodeAwareSampler(
        subset.meta.episodes["dataset_from_index"], subset.meta.episodes["dataset_to_index"],
        episode_indices_to_use=subset.episodes,
    )
    assert max(raw.indices) >= len(subset)


def test_sampler_drops_last_frames_per_episode(tmp_path):
    root, demos, _ = _build(tmp_path)
    ds = LeRobotDataset("local/test", root=root)
    assert len(episode_aware_sampler(ds, drop_n_last_frames=3)) == ds.num_frames - 3 * 4


def test_episode_stats_are_those_of_the_selected_episodes_only(tmp_path):
    root, demos, _ = _build(tmp_path)
    subset = LeRobotDataset("local/test", root=root, episodes=[2, 3])
    stats = episodes_stats(subset, [2, 3])
    actions = np.concatenate([demos[2].frames["action"], demos[3].frames["action"]])
    np.testing.assert_allclose(stats["action"]["min"], actions.min(0), rtol=1e-5)
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0), rtol=1e-4)
    full = episodes_stats(LeRobotDataset("local/test", root=root))
    assert not np.allclose(full["observation.state"]["mean"], stats["observation.state"]["mean"])


def test_read_frames_equals_getitem_with_history_and_padding(tmp_path):
    root, _, _ = _build(tmp_path)
    delta = {"observation.state": [-0.1, 0.0], "observation.environment_state": [-0.1, 0.0],
             "action": [i / 10 for i in range(16)]}
    ds = LeRobotDataset("local/test", root=root, delta_timestamps=delta)
    ep = ds.meta.episodes[2]
    # an episode's first frame (history padded), a middle one, and the last (future padded)
    positions = [ep["dataset_from_index"], ep["dataset_from_index"] + 5, ep["dataset_to_index"] - 1, 0]
    fast, slow = read_frames(ds, positions), [ds[i] for i in positions]
    assert fast[0]["observation.state_is_pad"].tolist() == [True, False]
    assert fast[2]["action_is_pad"].any()
    for a, b in zip(fast, slow):
        assert set(a) == set(b)
        for key in b:
            if isinstance(b[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key


@pytest.mark.parametrize("episodes", [None, [1, 3]])
def test_fast_window_reads_give_getitems_items_bit_for_bit(tmp_path, episodes):
    # [1, 3]: a subset, whose rows are indexed relative to the episodes loaded
    import pickle

    root, _, _ = _build(tmp_path)
    delta = {"observation.state": [-0.1, 0.0], "observation.environment_state": [-0.1, 0.0],
             "action": [i / 10 for i in range(16)]}
    plain = LeRobotDataset("local/test", root=root, delta_timestamps=delta, episodes=episodes)
    fast = fast_window_reads(LeRobotDataset("local/test", root=root, delta_timestamps=delta, episodes=episodes))
    some = [0, 1, len(plain) // 2, len(plain) - 1]  # episode starts and ends: padded windows
    for i in some:
        a, b = fast[i], plain[i]
        assert set(a) == set(b)
        for key in b:
            assert torch.equal(a[key], b[key]) if isinstance(b[key], torch.Tensor) else a[key] == b[key], key
    assert fast._query_hf_dataset.columns is not None  # the columns were read, and are reused
    again = pickle.loads(pickle.dumps(fast))  # DataLoader workers started by spawn pickle the dataset
    assert torch.equal(again[some[2]]["action"], plain[some[2]]["action"])
