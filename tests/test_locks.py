"""One run per run directory and per pretraining cache entry (``lerobot_amf/locks.py``): a second
run is refused with one line naming the holder; a lock left by a dead process is taken over."""

import json
import logging
import os
import subprocess
import sys

import pytest

from conftest import TINY_ARGS, run_cli_here
from lerobot_amf.locks import InUseError, exclusive, lock_path


def test_a_held_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    run = tmp_path / "run"
    with exclusive(run, "Run directory"):
        holder = json.loads(lock_path(run).read_text())
        assert holder["pid"] == os.getpid() and holder["host"]
        with pytest.raises(InUseError, match=f"Run directory .* is in use by pid {os.getpid()} on host"):
            with exclusive(run, "Run directory"):
                pass
        probe = ("import sys; from lerobot_amf.locks import exclusive\n"
                 "try:\n    with exclusive(sys.argv[1], 'Run directory'): print('taken')\n"
                 "except Exception as err: print(type(err).__name__, err)")
        other = subprocess.run([sys.executable, "-c", probe, str(run)], capture_output=True, text=True, timeout=120)
        assert other.stdout.startswith("InUseError") and f"pid {os.getpid()}" in other.stdout, other.stderr
    assert not lock_path(run).exists()  # released: removed
    with exclusive(run, "Run directory"):  # and free again
        pass


def test_a_lock_left_by_a_dead_process_is_taken_over_and_said(tmp_path, caplog):
    run = tmp_path / "run"
    lock_path(run).write_text(json.dumps({"pid": 999_999_999, "host": "gone", "since": "yesterday"}))
    with caplog.at_level(logging.WARNING), exclusive(run, "Run directory"):
        assert json.loads(lock_path(run).read_text())["pid"] == os.getpid()
    assert "taking over the lock of pid 999999999 on host gone since yesterday" in caplog.text
    assert not lock_path(run).exists()


def test_a_second_run_on_a_live_run_directory_is_one_line_and_writes_nothing(lerobot_home, tmp_path,
                                                                             monkeypatch, capsys):
    out = tmp_path / "live"
    with exclusive(out, "Run directory"):  # a first run holds it
        code, err = run_cli_here([*TINY_ARGS, f"--output_dir={out}"], lerobot_home, monkeypatch, capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and "is in use by pid" in last and last.startswith("lerobot-amf-train: error:"), err[-2000:]
    assert not out.exists() and not out.with_name("live.tmp").exists()


@pytest.mark.slow
def test_resume_on_a_live_run_is_refused_and_its_ledger_and_demos_are_intact(tiny_run, lerobot_home,
                                                                            monkeypatch, capsys):
    ledger = (tiny_run / "amf_ledger.jsonl").read_bytes()
    demos = sorted(p.relative_to(tiny_run) for p in (tiny_run / "demos").rglob("*"))
    with exclusive(tiny_run, "Run directory"):
        code, err = run_cli_here([*TINY_ARGS, f"--output_dir={tiny_run}", "--amf.strategy=rebalancing",
                                  "--resume=true"], lerobot_home, monkeypatch, capsys)
    assert code == 2 and "is in use by pid" in err.strip().splitlines()[-1], err[-2000:]
    assert (tiny_run / "amf_ledger.jsonl").read_bytes() == ledger
    assert sorted(p.relative_to(tiny_run) for p in (tiny_run / "demos").rglob("*")) == demos
