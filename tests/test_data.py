"""The run's demo dataset (``data.py``): demos appended across calls, LeRobot's episode-aware sampler
on a subset of episodes, per-episode stats, fast frame and window reads equal to ``__getitem__``,
uint8 video frames made float as ``lerobot-train`` does; and its crash safety: demos written but
never recorded in the ledger are dropped on repair (also when a real writer is stopped with SIGKILL
mid-write), recorded but not swapped demos are put in place."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_amf.data import (READY_SUFFIX, _stage, cameras_as_float, count_episodes, episode_sampler, episodes_stats,
                              fast_window_reads, read_frames, repair_demo_dataset, write_demos)
from lerobot_amf.errors import AMFInputError
from lerobot_amf.ledger import Ledger
from lerobot_amf.sources.base import Demo
from lerobot_amf.sources.metaworld import MetaworldExpertSource, demo_features

ROOT = Path(__file__).resolve().parents[1]
FEATURES = demo_features()


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


def test_sampler_yields_only_selected_episodes_in_an_order_of_its_seed(tmp_path):
    root, demos, _ = _build(tmp_path)
    subset = LeRobotDataset("local/test", root=root, episodes=[2, 3])
    order = list(episode_sampler(subset, 0, seed=5))
    assert sorted(order) == list(range(len(subset))) and len(order) == demos[2].length + demos[3].length
    assert {int(subset[i]["episode_index"]) for i in order} == {2, 3}
    torch.manual_seed(0)  # the order is the seed's alone, not the global generator's
    again = episode_sampler(subset, 0, seed=5)
    torch.manual_seed(1)
    assert list(again) == order and list(episode_sampler(subset, 0, seed=6)) != order
    assert list(again) != order  # the next epoch: another order


def test_sampler_drops_last_frames_per_episode(tmp_path):
    root, demos, _ = _build(tmp_path)
    ds = LeRobotDataset("local/test", root=root)
    assert len(episode_sampler(ds, 3, seed=0)) == ds.num_frames - 3 * 4


def test_episode_stats_are_those_of_the_selected_episodes_only(tmp_path):
    root, demos, _ = _build(tmp_path)
    subset = LeRobotDataset("local/test", root=root, episodes=[2, 3])
    stats = episodes_stats(subset, [2, 3])
    actions = np.concatenate([demos[2].frames["action"], demos[3].frames["action"]])
    np.testing.assert_allclose(stats["action"]["min"], actions.min(0), rtol=1e-5)
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0), rtol=1e-4)
    full = episodes_stats(LeRobotDataset("local/test", root=root))
    assert not np.allclose(full["observation.state"]["mean"], stats["observation.state"]["mean"])


def assert_same_items(fast: list[dict], slow: list[dict]) -> None:
    """Items equal key for key, tensors bit for bit."""
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow):
        assert set(a) == set(b)
        for key in b:
            if isinstance(b[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), key
            else:
                assert a[key] == b[key], key


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
    assert_same_items(fast, slow)


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
    assert fast.reader._query_hf_dataset.columns is not None  # the columns were read, and are reused
    again = pickle.loads(pickle.dumps(fast))  # DataLoader workers started by spawn pickle the dataset
    assert torch.equal(again[some[2]]["action"], plain[some[2]]["action"])


# ------------------------------------------------------------- crash safety of the demo dataset
def fake_demo(i: int, task: str = "reach-v3", length: int | None = None) -> Demo:
    """A demo with the embedded source's features and recognisable values (row t of demo i = i + t/1000)."""
    length = length or 10 + i
    frames = {k: (i + np.arange(length)[:, None] / 1000 + np.zeros((length, *f["shape"]))).astype(np.float32)
              for k, f in FEATURES.items()}
    return Demo(f"test/{task}/{i}", task, f"do {task}", frames, {"seed": i})


def write_round(ledger: Ledger, root: Path, r: int, demos: list[Demo]) -> list[dict]:
    """One round's demos, written and recorded the way the round loop does it."""
    return write_demos("local/test", root, 10, FEATURES, demos,
                       record=lambda records: ledger.append("demos_pulled", round=r, demos=records))


def frames_of(root: Path) -> dict[str, np.ndarray]:
    ds = LeRobotDataset("local/test", root=root)
    cols = ds.hf_dataset.with_format("numpy")
    return {k: np.asarray(cols[k]) for k in ("observation.state", "action", "episode_index", "index", "task_index")}


def test_a_demo_with_a_nan_action_is_refused_before_anything_is_written_or_recorded(tmp_path):
    from lerobot_amf.errors import AMFInputError

    ledger, root = Ledger(tmp_path / "run"), tmp_path / "demos"
    (tmp_path / "run").mkdir()
    write_round(ledger, root, 0, [fake_demo(0)])
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    bad = fake_demo(1)
    bad.frames["action"][3, 2] = np.nan
    with pytest.raises(AMFInputError, match=r"Demo test/reach-v3/1 \(reach-v3\): 'action' holds 1 non-finite"):
        write_round(ledger, root, 1, [fake_demo(2), bad])
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert len(list(ledger.records("demos_pulled"))) == 1 and not root.with_name("demos.tmp").exists()


def test_unrecorded_complete_episode_is_removed_and_lerobot_reopens_the_rest(tmp_path):
    root, ledger = tmp_path / "run" / "demos", Ledger(tmp_path / "run")
    demos = [fake_demo(i) for i in range(5)]
    write_round(ledger, root, 0, demos[:2])
    write_round(ledger, root, 1, demos[2:4])
    write_demos("local/test", root, 10, FEATURES, demos[4:])  # written in place, never recorded
    assert count_episodes(root) == 5
    report = repair_demo_dataset(root, ledger.state().episodes, "local/test")
    assert report.changed and report.on_disk_before == 5
    ds = LeRobotDataset("local/test", root=root)
    assert ds.num_episodes == 4 and ds.num_frames == sum(d.length for d in demos[:4])
    reference = tmp_path / "reference"
    write_demos("local/test", reference, 10, FEATURES, demos[:4])
    got, want = frames_of(root), frames_of(reference)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    np.testing.assert_allclose(ds.meta.stats["action"]["max"], LeRobotDataset("local/test", root=reference).meta.stats["action"]["max"])
    assert not repair_demo_dataset(root, ledger.state().episodes, "local/test").changed  # idempotent


@pytest.mark.slow
def test_demos_stopped_mid_write_are_dropped_on_repair(tmp_path):
    """A real process writing demos is SIGKILLed while the episodes are half-written."""
    run, root = tmp_path / "run", tmp_path / "run" / "demos"
    ledger = Ledger(run)
    write_round(ledger, root, 0, [fake_demo(0), fake_demo(1)])
    committed = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    script = textwrap.dedent(f"""
        import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]
        from pathlib import Path
        from test_data import FEATURES, fake_demo
        from lerobot_amf.data import write_demos
        from lerobot_amf.ledger import Ledger
        ledger = Ledger({str(run)!r})
        write_demos("local/test", Path({str(root)!r}), 10, FEATURES, [fake_demo(i, length=40) for i in range(2, 400)],
                    record=lambda recs: ledger.append("demos_pulled", round=1, demos=recs))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    tmp = root.with_name("demos.tmp")
    deadline = time.time() + 120
    while not (tmp / "data").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # some episodes into the new data file
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert tmp.exists() and proc.returncode == -signal.SIGKILL, "the stop did not land mid-write"
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == committed  # never written in place
    report = repair_demo_dataset(root, ledger.state().episodes, "local/test")
    assert not tmp.exists() and "never recorded" in str(report)
    ds = LeRobotDataset("local/test", root=root)
    assert ds.num_episodes == 2 and ds.num_frames == fake_demo(0).length + fake_demo(1).length
    # the resumed round writes the same demos again: each exactly once
    write_round(ledger, root, 1, [fake_demo(2)])
    assert LeRobotDataset("local/test", root=root).num_episodes == 3 == len(ledger.state().episodes)


@pytest.mark.parametrize("half_swapped", [False, True])
def test_recorded_but_not_swapped_demos_are_put_in_place(tmp_path, half_swapped):
    run, root = tmp_path / "run", tmp_path / "run" / "demos"
    ledger = Ledger(run)
    write_round(ledger, root, 0, [fake_demo(0)])
    ready, records = _stage("local/test", root, 10, FEATURES, [fake_demo(1), fake_demo(2)])
    ledger.append("demos_pulled", round=1, demos=records)  # the stop comes after the record ...
    if half_swapped:  # ... or even between the two renames of the swap
        os.rename(root, root.with_name("demos.old"))
    report = repair_demo_dataset(root, ledger.state().episodes, "local/test")
    assert report.changed and not ready.exists() and not root.with_name("demos.old").exists()
    assert LeRobotDataset("local/test", root=root).num_episodes == 3


def test_unrecorded_ready_demos_are_dropped(tmp_path):
    run, root = tmp_path / "run", tmp_path / "run" / "demos"
    ledger = Ledger(run)
    write_round(ledger, root, 0, [fake_demo(0)])
    _stage("local/test", root, 10, FEATURES, [fake_demo(1)])  # written, stop before the record
    repair_demo_dataset(root, ledger.state().episodes, "local/test")
    assert not root.with_name("demos" + READY_SUFFIX).exists() and count_episodes(root) == 1


def test_a_recorded_tmp_whose_rename_a_power_loss_undid_is_put_in_place_not_deleted(tmp_path):
    """The ledger line is on disk but the directory entry of ``.tmp`` -> ``.ready`` was lost: the
    staged copy holds exactly the recorded episodes, so repair commits it instead of deleting it."""
    run, root = tmp_path / "run", tmp_path / "run" / "demos"
    ledger = Ledger(run)
    write_round(ledger, root, 0, [fake_demo(0)])
    ready, records = _stage("local/test", root, 10, FEATURES, [fake_demo(1), fake_demo(2)])
    ledger.append("demos_pulled", round=1, demos=records)
    os.rename(ready, root.with_name("demos.tmp"))  # what the disk holds if the rename never reached it
    report = repair_demo_dataset(root, ledger.state().episodes, "local/test")
    assert "put demos.tmp in place" in str(report) and not root.with_name("demos.tmp").exists()
    assert LeRobotDataset("local/test", root=root).num_episodes == 3


def test_an_unrecorded_tmp_is_still_dropped(tmp_path):
    run, root = tmp_path / "run", tmp_path / "run" / "demos"
    ledger = Ledger(run)
    write_round(ledger, root, 0, [fake_demo(0)])
    ready, _ = _stage("local/test", root, 10, FEATURES, [fake_demo(1)])  # complete, never recorded
    os.rename(ready, root.with_name("demos.tmp"))
    report = repair_demo_dataset(root, ledger.state().episodes, "local/test")
    assert "removed demos.tmp" in str(report) and count_episodes(root) == 1


def test_the_rename_to_ready_is_fsynced_before_the_record(tmp_path, monkeypatch):
    """The parent directory is fsynced after ``.tmp`` -> ``.ready`` and before the ledger line."""
    import lerobot_amf.data as data

    events = []
    real_rename, real_fsync_dir = os.rename, data.fsync_dir
    monkeypatch.setattr(data.os, "rename", lambda a, b: (events.append(("rename", Path(b).name)), real_rename(a, b)))
    monkeypatch.setattr(data, "fsync_dir", lambda d: (events.append(("fsync_dir", Path(d).name)), real_fsync_dir(d)))
    root = tmp_path / "run" / "demos"
    write_demos("local/test", root, 10, FEATURES, [fake_demo(0)], record=lambda recs: events.append(("record",)))
    renamed = events.index(("rename", "demos" + READY_SUFFIX))
    assert events[renamed + 1] == ("fsync_dir", "run") and events[renamed + 2] == ("record",)


def test_staging_leaves_the_committed_files_untouched(tmp_path):
    """The staging copy hard-links data files: LeRobot must never write into them."""
    root, ledger = tmp_path / "run" / "demos", Ledger(tmp_path / "run")
    write_round(ledger, root, 0, [fake_demo(0), fake_demo(1)])
    before = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    ready, _ = _stage("local/test", root, 10, FEATURES, [fake_demo(2)])
    assert {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert LeRobotDataset("local/test", root=ready).num_episodes == 3


def test_missing_recorded_demos_and_wrong_lengths_are_input_errors(tmp_path):
    root, ledger = tmp_path / "run" / "demos", Ledger(tmp_path / "run")
    write_round(ledger, root, 0, [fake_demo(0), fake_demo(1)])
    episodes = ledger.state().episodes
    with pytest.raises(AMFInputError, match="episodes 2..2 are missing"):
        repair_demo_dataset(root, [*episodes, {**episodes[1], "episode_index": 2}], "local/test")
    with pytest.raises(AMFInputError, match="episode 1 has 11 frames, the ledger.s demo record 1 .* says 99"):
        repair_demo_dataset(root, [episodes[0], {**episodes[1], "length": 99}], "local/test")


def test_read_frames_reads_only_the_image_rows_its_windows_need(tmp_path, monkeypatch):
    """Camera frames (stored as images) with a two-frame history: the items equal LeRobot's own
    ``__getitem__``, and the image column is read at the windows' rows only, never whole (memory
    grows with the frames sampled, not with the dataset)."""
    from datasets.arrow_dataset import Column

    from benchmarks.libero_dataset import CAMERAS, LIBERO_TASKS, build_libero_dataset

    root = build_libero_dataset(tmp_path / "libero", LIBERO_TASKS[:2], episodes_per_task=3, frames_per_episode=10,
                                video=False)
    delta = {CAMERAS[0]: [-0.1, 0.0], "observation.state": [-0.1, 0.0], "action": [0.0, 0.1, 0.2]}
    ds = LeRobotDataset("lerobot/libero", root=root, delta_timestamps=delta)
    positions = [0, 13, 27, 59]
    slow = [ds[i] for i in positions]
    rows_read = []
    original = Column.__getitem__

    def recording(self, key):  # what the image column is asked for (read-only; answers unchanged)
        if self.column_name == CAMERAS[0]:
            rows_read.append(len(key) if isinstance(key, (list, range)) else 1)
        return original(self, key)

    monkeypatch.setattr(Column, "__getitem__", recording)
    fast = read_frames(ds, positions)
    monkeypatch.undo()
    assert_same_items(fast, slow)
    assert fast[0][CAMERAS[0]].shape == (2, 3, 16, 16) and fast[0][f"{CAMERAS[0]}_is_pad"].tolist() == [True, False]
    # the camera read once, at the rows of the windows only: 4 frames + the 3 histories that are
    # not padding (frame 0's is), of 60 frames
    assert rows_read == [7] and len(ds) == 60


class _CountingContainer:
    """A PyAV container that notes each seek (read-only: everything else is the container's)."""

    def __init__(self, container, seeks: list):
        self._container, self._seeks = container, seeks

    def __enter__(self):
        self._container.__enter__()
        return self

    def __exit__(self, *exc):
        return self._container.__exit__(*exc)

    def seek(self, offset, **kwargs):
        self._seeks.append(offset)
        return self._container.seek(offset, **kwargs)

    def __getattr__(self, name):
        return getattr(self._container, name)


def _count_pyav(monkeypatch) -> tuple[list, list]:
    """(files opened, seeks) of every PyAV open from now on."""
    import av

    opened, seeks, original = [], [], av.open
    monkeypatch.setattr(av, "open", lambda path, *a, **k: opened.append(path) or _CountingContainer(
        original(path, *a, **k), seeks))
    return opened, seeks


@pytest.mark.parametrize("uint8", [False, True])
def test_read_frames_decodes_each_video_file_once_and_equals_getitem(tmp_path, monkeypatch, uint8):
    """Cameras stored as MP4 (as ``lerobot/libero`` stores them, several episodes a file), with a
    two-frame history: the items equal LeRobot's own ``__getitem__`` (float frames, or uint8 ones as
    ``make_dataset`` asks for), and each video file is opened once per camera for all the sampled
    frames of its episodes (``__getitem__`` opens it once per frame)."""
    from benchmarks.libero_dataset import CAMERAS, LIBERO_TASKS, build_libero_dataset

    root = build_libero_dataset(tmp_path / "libero", LIBERO_TASKS[:2], episodes_per_task=2, frames_per_episode=8,
                                episodes_per_file=2)
    delta = {CAMERAS[0]: [-0.1, 0.0], "observation.state": [-0.1, 0.0], "action": [0.0, 0.1]}
    ds = LeRobotDataset("lerobot/libero", root=root, delta_timestamps=delta, return_uint8=uint8)
    positions = [0, 3, 7, 9, 12, 30]  # episode 0 thrice (its first frame padded), 1 twice, 3 once
    slow = [ds[i] for i in positions]
    opened, seeks = _count_pyav(monkeypatch)
    fast = read_frames(ds, positions)
    monkeypatch.undo()
    assert_same_items(fast, slow)
    assert fast[0][CAMERAS[0]].shape == (2, 3, 16, 16) and fast[1][CAMERAS[1]].shape == (3, 16, 16)
    assert fast[0][CAMERAS[0]].dtype == (torch.uint8 if uint8 else torch.float32)
    # 2 files (episodes 0-1, episodes 2-3) x 2 cameras, each opened once and read in one run: file 0
    # needs episode 0's frames 0, 2, 3, 6, 7 (0's history pads with 0) and episode 1's 0, 1, 3, 4
    assert len(opened) == len(set(opened)) == 4 and len(seeks) == 4


def test_read_frames_decodes_far_apart_frames_of_a_file_in_separate_runs(tmp_path, monkeypatch):
    """PyAV decodes every frame between a seek and the last timestamp asked for: one frame from
    each of a file's episodes (a likelihood pass) is read by one open of the file and a seek per
    stretch of nearby frames, not by decoding the whole file, and the items still equal
    ``__getitem__``'s."""
    from benchmarks.libero_dataset import CAMERAS, LIBERO_TASKS, build_libero_dataset
    from lerobot_amf.data import PYAV_NEW_RUN_GAP_FRAMES, decode_runs

    root = build_libero_dataset(tmp_path / "libero", LIBERO_TASKS[:2], episodes_per_task=2, frames_per_episode=24,
                                episodes_per_file=4)
    ds = LeRobotDataset("lerobot/libero", root=root)
    assert ds.reader._video_backend == "pyav"  # the decoder the runs are for
    positions = [1, 2, 30, 50, 56, 90]  # episode 0's frames 1, 2; 1's 6; 2's 2, 8; 3's 18
    opened, seeks = _count_pyav(monkeypatch)
    fast = read_frames(ds, positions)
    monkeypatch.undo()
    assert_same_items(fast, [ds[i] for i in positions])
    # one file, per camera: runs {1, 2}, {30}, {50, 56}, {90} (gaps of 28, 20 and 34 frames cut, 6 not)
    assert 6 <= PYAV_NEW_RUN_GAP_FRAMES < 20
    assert len(opened) == len(CAMERAS) and len(seeks) == 4 * len(CAMERAS)
    fps = ds.fps
    assert decode_runs([f / fps for f in (1, 2, 30, 50, 56, 90)], fps) == [
        [1 / fps, 2 / fps], [30 / fps], [50 / fps, 56 / fps], [90 / fps]]
    assert decode_runs([], fps) == []


def test_read_frames_looks_up_each_episodes_video_file_once_per_dataset(tmp_path, monkeypatch):
    """Where an episode's frames lie in its video file is read from ``meta.episodes`` once per
    dataset object, episode and camera: a second read of the same frames looks up nothing and
    gives the same items (``__getitem__``'s)."""
    from benchmarks.libero_dataset import CAMERAS, LIBERO_TASKS, build_libero_dataset

    root = build_libero_dataset(tmp_path / "libero", LIBERO_TASKS[:2], episodes_per_task=2, frames_per_episode=8,
                                episodes_per_file=2)
    ds = LeRobotDataset("lerobot/libero", root=root, delta_timestamps={CAMERAS[0]: [-0.1, 0.0]})
    positions = [0, 3, 9, 12, 30]  # episodes 0, 1 and 3
    first = read_frames(ds, positions)
    lookups = []
    original = ds.meta.get_video_file_path
    monkeypatch.setattr(ds.meta, "get_video_file_path", lambda ep, key: lookups.append(ep) or original(ep, key))
    again = read_frames(ds, positions)
    assert lookups == []
    assert_same_items(again, first)
    monkeypatch.undo()
    assert_same_items(first, [ds[i] for i in positions])
    fresh = LeRobotDataset("lerobot/libero", root=root, delta_timestamps={CAMERAS[0]: [-0.1, 0.0]})
    monkeypatch.setattr(fresh.meta, "get_video_file_path", lambda ep, key: lookups.append(ep) or original(ep, key))
    read_frames(fresh, positions)
    assert sorted(set(lookups)) == [0, 1, 3] and len(lookups) == 3 * len(CAMERAS)


def test_uint8_video_frames_are_made_float_as_lerobot_train_does(tmp_path):
    """``make_dataset`` returns video frames as uint8; ``cameras_as_float`` gives the float frames a
    dataset opened without ``return_uint8`` decodes, bit for bit, on an item or a collated batch;
    float frames and other keys are left as they are."""
    from benchmarks.libero_dataset import CAMERAS, LIBERO_TASKS, build_libero_dataset

    root = build_libero_dataset(tmp_path / "libero", LIBERO_TASKS[:2], episodes_per_task=1, frames_per_episode=6)
    delta = {CAMERAS[0]: [-0.1, 0.0], "action": [0.0, 0.1]}
    raw = LeRobotDataset("lerobot/libero", root=root, delta_timestamps=delta, return_uint8=True)
    decoded = LeRobotDataset("lerobot/libero", root=root, delta_timestamps=delta)
    positions = [0, 4, 7]
    items = [raw[i] for i in positions]
    assert items[0][CAMERAS[0]].dtype == torch.uint8 and items[0][CAMERAS[1]].dtype == torch.uint8
    batch = cameras_as_float(torch.utils.data.default_collate(items), raw.meta.camera_keys)
    one = cameras_as_float(raw[4], raw.meta.camera_keys)
    want = torch.utils.data.default_collate([decoded[i] for i in positions])
    for key in CAMERAS:
        assert batch[key].dtype == torch.float32 and torch.equal(batch[key], want[key]), key
        assert torch.equal(one[key], decoded[4][key]), key
    assert torch.equal(batch["action"], want["action"])
    assert cameras_as_float(want, raw.meta.camera_keys)[CAMERAS[0]] is want[CAMERAS[0]]  # float: untouched
