"""Crash safety of the run directory (ledger, demos, atomic files, pretraining cache) and the
bad-input checks that live outside the CLI: real files, real LeRobot datasets, real processes
stopped with SIGKILL where a stop is what is tested."""

import json
import logging
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

from conftest import TINY_ARGS
from lerobot_amf.atomic import new_dir_atomic, recover_dir, replace_dir_atomic, symlink_atomic, write_json_atomic
from lerobot_amf.data import READY_SUFFIX, _stage, count_episodes, repair_demo_dataset, write_demos
from lerobot_amf.errors import AMFInputError
from lerobot_amf.ledger import Ledger
from lerobot_amf.sources.base import Demo
from lerobot_amf.sources.metaworld import demo_features

ROOT = Path(__file__).resolve().parents[1]
FEATURES = demo_features()


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


# ---------------------------------------------------------------- ledger
@pytest.mark.parametrize("torn", [
    b'{"event": "demos_pulled", "round": 1, "demos": [{"demo_id"',  # stopped mid-line
    b'{"event": "round_end", "round": 1}',  # stopped before the newline: not a record yet
    b'\x00\x00\x00\x00\n',  # zero-filled tail after a power loss
])
def test_torn_last_line_is_truncated_before_the_next_append(tmp_path, caplog, torn):
    ledger = Ledger(tmp_path)
    ledger.append("run_start", pool=["a"])
    ledger.append("round_end", round=0)
    intact = ledger.path.read_bytes()
    with open(ledger.path, "ab") as f:
        f.write(torn)
    assert Ledger(tmp_path).state().rounds_done == 1  # readers skip it
    resumed = Ledger(tmp_path)
    with caplog.at_level(logging.WARNING):
        resumed.append("selection", round=1, tasks=["a"])
    assert "torn last line" in caplog.text
    data = ledger.path.read_bytes()
    assert data.startswith(intact) and data.endswith(b"\n")
    lines = [json.loads(line) for line in data.decode().splitlines()]  # every line parses
    assert [r["event"] for r in lines] == ["run_start", "round_end", "selection"]


def test_corrupt_middle_line_is_an_input_error_naming_the_line(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append("run_start", pool=["a"])
    ledger.append("round_end", round=0)
    ledger.append("round_end", round=1)
    lines = ledger.path.read_text().splitlines(keepends=True)
    lines[1] = '{"event": "round_end", "rou\n'
    ledger.path.write_text("".join(lines))
    with pytest.raises(AMFInputError, match=r"line 2 of 3"):
        Ledger(tmp_path).state()
    before = ledger.path.read_bytes()
    with pytest.raises(AMFInputError, match="line 2"):
        list(Ledger(tmp_path).records("run_start"))
    assert ledger.path.read_bytes() == before  # reading never rewrites it


# ---------------------------------------------------------------- demos
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


def test_demos_stopped_mid_write_are_dropped_on_repair(tmp_path):
    """A real process writing demos is SIGKILLed while the episodes are half-written."""
    run, root = tmp_path / "run", tmp_path / "run" / "demos"
    ledger = Ledger(run)
    write_round(ledger, root, 0, [fake_demo(0), fake_demo(1)])
    committed = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    script = textwrap.dedent(f"""
        import sys; sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / 'tests')!r}]
        from pathlib import Path
        from test_crash_safety import FEATURES, fake_demo
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
    with pytest.raises(AMFInputError, match="episode 1 has 11 frames, the ledger records 99"):
        repair_demo_dataset(root, [episodes[0], {**episodes[1], "length": 99}], "local/test")


# ---------------------------------------------------------------- atomic files
WRITER = textwrap.dedent("""
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("atomic", sys.argv[2])  # the module alone: a fast start
    atomic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(atomic)
    write_json_atomic = atomic.write_json_atomic
    blobs = [{"v": c * 500_000} for c in "ab"]
    i = 0
    while True:
        write_json_atomic(sys.argv[1], blobs[i % 2])
        i += 1
""")


def test_atomic_write_never_shows_a_partial_file_even_when_killed(tmp_path):
    path = tmp_path / "state.json"
    write_json_atomic(path, {"v": "start"})
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(ROOT / "lerobot_amf" / "atomic.py")])
    seen, reads = set(), 0  # reads while the writer runs (plain writes fail ~all of them)
    deadline = time.time() + 60
    while (reads < 200 or not {"a", "b"} <= seen) and time.time() < deadline:
        seen.add(json.loads(path.read_text())["v"][:1])  # raises on a partial file
        reads += bool(seen - {"s"})
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert {"a", "b"} <= seen
    assert json.loads(path.read_text())["v"][:1] in "sab"  # the last complete version
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["state.json"]


def test_directory_replacement_stopped_between_renames_is_recovered(tmp_path):
    final, new = tmp_path / "ckpt", tmp_path / "new"
    final.mkdir(), new.mkdir()
    (final / "v").write_text("old"), (new / "v").write_text("new")
    os.rename(final, tmp_path / "ckpt.old")  # the stop: old moved aside, new not yet in place
    assert "restored" in recover_dir(final) and (final / "v").read_text() == "old"
    replace_dir_atomic(new, final)
    assert (final / "v").read_text() == "new" and not new.exists() and not (tmp_path / "ckpt.old").exists()
    symlink_atomic(tmp_path / "last", "ckpt")
    symlink_atomic(tmp_path / "last", "ckpt")  # re-pointing an existing link
    assert (tmp_path / "last" / "v").read_text() == "new" and os.readlink(tmp_path / "last") == "ckpt"


def test_a_new_run_directory_appears_whole_or_not_at_all_and_never_replaces_one(tmp_path):
    out = tmp_path / "run"
    (tmp_path / "run.tmp").mkdir()
    (tmp_path / "run.tmp" / "stale").write_text("a start stopped before its rename")
    with pytest.raises(RuntimeError):  # a stop (here: an error) inside: nothing appears, nothing is left
        with new_dir_atomic(out) as starting:
            Ledger(starting).append("run_start")
            raise RuntimeError("stopped")
    assert not out.exists() and not (tmp_path / "run.tmp").exists()
    with new_dir_atomic(out) as starting:
        Ledger(starting).append("run_start")
        assert not out.exists()  # not before its first line is written
    assert [r["event"] for r in Ledger(out).records()] == ["run_start"] and os.listdir(out) == ["amf_ledger.jsonl"]
    before = (out / "amf_ledger.jsonl").read_bytes()
    with pytest.raises(FileExistsError, match="choose another --output_dir"):
        with new_dir_atomic(out) as starting:
            Ledger(starting).append("run_start", other=True)
    assert (out / "amf_ledger.jsonl").read_bytes() == before and not (tmp_path / "run.tmp").exists()


# ---------------------------------------------------------------- pretraining cache
def test_stale_pretraining_tmp_is_discarded_and_incomplete_entries_are_not_used(tmp_path, caplog):
    import draccus
    from accelerate import Accelerator

    import lerobot_amf.envs  # noqa: F401  (registers mw_state)
    from lerobot_amf.configs import AMFTrainPipelineConfig
    from lerobot_amf.pretrain import PRETRAIN_RECORD, ensure_pretrained
    from lerobot_amf.sources.metaworld import MetaworldExpertSource

    cache = tmp_path / "cache"
    cfg = draccus.parse(AMFTrainPipelineConfig, args=[
        *TINY_ARGS, f"--amf.pretrain.cache_dir={cache}", "--amf.pretrain.steps=1", "--amf.pretrain.demos_covered=1",
        "--amf.pretrain.demos_uncovered=0", f"--output_dir={tmp_path / 'run'}"])
    cfg.validate()
    pool = ["reach-v3", "drawer-close-v3"]
    source = MetaworldExpertSource(seed=cfg.seed, namespace="pretrain")
    with caplog.at_level(logging.WARNING):
        first = ensure_pretrained(cfg, pool, Accelerator(cpu=True), source)
    # what a stop during the next pretraining of this entry leaves: a half-written .tmp, and an
    # entry that never got its record (as an interrupted swap or an older version could leave)
    stale = first.with_name(first.name + ".tmp")
    (stale / "checkpoint").mkdir(parents=True)
    (stale / "checkpoint" / "model.safetensors").write_bytes(b"half")
    (first / PRETRAIN_RECORD).unlink()
    (first / "junk").write_text("incomplete entry")
    with caplog.at_level(logging.WARNING):
        again = ensure_pretrained(cfg, pool, Accelerator(cpu=True), source)
    assert again == first and f"Discarding {stale}" in caplog.text
    assert not stale.exists() and (again / PRETRAIN_RECORD).exists() and not (again / "junk").exists()
    assert sorted(p.name for p in cache.iterdir()) == [first.name]


def test_pretraining_settings_are_input_errors():
    from types import SimpleNamespace

    from lerobot_amf.pretrain import pretrain_allocation

    def pcfg(**kw):
        return SimpleNamespace(**{"demos_per_task": None, "demos_covered": 2, "demos_uncovered": 1, "steps": 5,
                                  "batch_size": 4, **kw})

    pool = ["reach-v3", "drawer-close-v3"]
    assert pretrain_allocation(pool, pcfg()) == {"reach-v3": 2, "drawer-close-v3": 1}
    for kw, needle in [({"demos_per_task": {"push-v3": 2}}, "outside the pool: push-v3"),
                       ({"demos_per_task": {"reach-v3": -1}}, "integers >= 0"),
                       ({"demos_covered": -2}, "demos_covered=-2"),
                       ({"demos_covered": 0, "demos_uncovered": 0}, "has no demos"),
                       ({"steps": 0}, "steps=0"), ({"batch_size": 0}, "batch_size=0")]:
        with pytest.raises(AMFInputError, match=needle):
            pretrain_allocation(pool, pcfg(**kw))


# ---------------------------------------------------------------- partitions
POOL = ["reach-v3", "drawer-close-v3", "window-open-v3"]


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


# ---------------------------------------------------------------- embeddings, LoRA targets
def test_non_finite_embeddings_stop_selection_naming_the_task():
    from lerobot_amf.selection.gp import WeightSpacePosterior, check_finite_embeddings, greedy_batch

    good = torch.randn(6, 4, dtype=torch.float64)
    bad = good.clone()
    bad[2, 1] = float("nan")
    post = WeightSpacePosterior(4, sigma2=1.0)
    assert greedy_batch(post, {"a": (good, None), "b": (good, None)}, (good, None), 2).picks  # finite: fine
    with pytest.raises(AMFInputError, match=r"candidate embeddings for: b \(1 of 6 rows\)"):
        greedy_batch(post, {"a": (good, None), "b": (bad, None)}, (good, None), 2)
    inf = good.clone()
    inf[0, 0] = float("inf")
    with pytest.raises(AMFInputError, match="target embeddings"):
        greedy_batch(post, {"a": (good, None)}, (inf, None), 1)
    with pytest.raises(AMFInputError, match="reach-v3"):
        check_finite_embeddings({"reach-v3": bad, "drawer-close-v3": good})


def test_lora_targets_missing_from_the_policy_are_one_line():
    from test_isolation import tiny_policy

    from lerobot_amf.isolation.lora_targets import check_lora_targets
    from lerobot_amf.families import family_of

    policy = tiny_policy()
    assert check_lora_targets(policy, family_of("diffusion").lora_targets)  # the defaults fit
    # peft itself adapts the one that exists and says nothing about the other
    policy.wrap_with_peft(peft_cli_overrides={"target_modules": ["final_conv.1", "q_proj"]})
    policy = tiny_policy()
    for targets, needle in [(["final_conv.1", "q_proj"], "not in the policy: q_proj"),
                            (r"diffusion\.nothing\..*", "matches no module"),
                            (["final_conv.0.block.1"], "cannot wrap: diffusion.unet.final_conv.0.block.1 (GroupNorm)"),
                            ("([", "not a valid regular expression")]:
        with pytest.raises(AMFInputError, match=None) as err:
            check_lora_targets(policy, targets)
        assert needle in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- the fault-injection benchmark's pieces
def _faults():
    import importlib.util

    spec = importlib.util.spec_from_file_location("faults", ROOT / "benchmarks" / "faults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_phase_markers_tell_where_a_run_is(capfd, monkeypatch):
    from lerobot_amf.phases import ENV_VAR, phase

    faults = _faults()
    with phase("selecting"):  # off by default: prints nothing
        pass
    assert capfd.readouterr().err == ""
    monkeypatch.setenv(ENV_VAR, "1")
    with phase("pretraining"):
        with phase("writing_demos"):
            pass
    with phase("writing_demos"):
        with phase("selecting"):
            pass
    err = capfd.readouterr().err.splitlines()
    markers = faults.parse_markers(err + ["noise", "amf-phase: begin training 12.5"])
    assert faults.open_phases(markers) == ["training"]
    assert faults.open_phases(markers[:5]) == ["writing_demos"]
    occ = faults.occurrences(markers)
    assert [(o["phase"], o["index"]) for o in occ] == [("pretraining", 0), ("writing_demos", 0), ("training", 0)]
    assert occ[0]["seconds"] >= 0 and occ[-1]["seconds"] is None
    with pytest.raises(ValueError, match="unknown phase"):
        with phase("napping"):
            pass


def test_ledger_comparison_counts_lost_and_duplicated_demos(tmp_path):
    faults = _faults()

    def ledger_with(rounds, selections, where):
        ledger = Ledger(tmp_path / where)
        for r, tasks in enumerate(selections):
            ledger.append("selection", round=r, tasks=tasks)
        for r, ids in enumerate(rounds):
            ledger.append("demos_pulled", round=r, demos=[{"demo_id": i, "task": "a"} for i in ids])
        return faults.compared_records(ledger.path)

    ref = ledger_with([["x", "y"], ["z"]], [["a", "a"], ["a"]], "ref")
    time.sleep(0.01)  # other timestamps: ignored
    assert faults.compare(ref, ledger_with([["x", "y"], ["z"]], [["a", "a"], ["a"]], "same"), 3) == {
        "demos_recorded": 3, "episodes_on_disk": 3, "demos_lost": 0, "demos_duplicated": 0,
        "selections_identical": True, "demos_pulled_identical": True}
    bad = faults.compare(ref, ledger_with([["x", "y"], ["x"]], [["a", "a"], ["a"], ["a"]], "bad"), 4)
    assert (bad["demos_lost"], bad["demos_duplicated"], bad["selections_identical"]) == (1, 2, False)
    summary = faults.summarize([
        {"killed": True, "killed_in": "training", "survived": True, "demos_lost": 0, "demos_duplicated": 0,
         "selections_identical": True, "demos_pulled_identical": True},
        {"killed": True, "killed_in": faults.BETWEEN, "survived": False, "demos_lost": 1, "demos_duplicated": 2,
         "selections_identical": False, "demos_pulled_identical": False},
        {"killed": False, "killed_in": faults.BETWEEN, "survived": True, "demos_lost": 0, "demos_duplicated": 0,
         "selections_identical": False, "demos_pulled_identical": False}])
    assert summary == {"kills": 2, "distinct_points": 1, "points": {"training": 1, faults.BETWEEN: 1}, "survived": 1,
                       "demos_lost": 1, "demos_duplicated": 2, "selections_identical": 1}
