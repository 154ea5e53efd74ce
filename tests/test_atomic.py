"""Atomic files and directories (``atomic.py``): a JSON write never shows a partial file, even to a
writer killed with SIGKILL; a directory replacement stopped between its renames is recovered; a new
run directory appears whole or not at all."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lerobot_amf.atomic import new_dir_atomic, recover_dir, replace_dir_atomic, symlink_atomic, write_json_atomic
from lerobot_amf.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]

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


@pytest.mark.slow
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
