"""The loop distributed over 2 CPU processes: both select (amf splits its embedding pass), one
records and pulls, both train (DDP).

``accelerate launch --multi_gpu`` and ``torchrun`` start processes with the same environment
contract that ``Accelerator`` reads; on CPU (``--policy.device=cpu``) ``torchrun`` is the
launcher that starts several processes, so the test uses it.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import AMF_ARGS, TINY_ARGS, read_jsonl

pytestmark = pytest.mark.slow  # two training processes


def run_two_processes(args, home):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_LEROBOT_HOME": str(home), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "lerobot_amf.train",
         *TINY_ARGS, *args],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_two_processes_pull_once_and_train_together(tmp_path):
    out = tmp_path / "ddp"
    run_two_processes(["--amf.strategy=uniform", f"--output_dir={out}"], tmp_path / "home")
    records = read_jsonl(out / "amf_ledger.jsonl")
    assert sum(r["event"] == "run_start" for r in records) == 1  # written by one process only
    demos = [d for r in records if r["event"] == "demos_pulled" for d in r["demos"]]
    assert len(demos) == len({d["demo_id"] for d in demos}) == 4
    trains = [r["metrics"] for r in records if r["event"] == "train"]
    assert [t["num_processes"] for t in trains] == [2, 2]
    report = json.loads((out / "amf_report.json").read_text())
    assert report["complete"] and len(report["rounds"]) == 2


def test_amf_selection_on_two_processes_equals_one_process(tiny_amf_run, lerobot_home, tmp_path):
    # Same cached generalist, same seed: round 1's selection (made before any training) must be
    # the one-process run's, although each process embedded only its share of the states.
    out = tmp_path / "ddp_amf"
    run_two_processes([*AMF_ARGS, "--amf.rounds=1", f"--output_dir={out}"], lerobot_home)
    (two,) = [r for r in read_jsonl(out / "amf_ledger.jsonl") if r["event"] == "selection"]
    one = next(r for r in read_jsonl(tiny_amf_run / "amf_ledger.jsonl") if r["event"] == "selection" and r["round"] == 0)
    assert two["details"]["processes"] == 2 and one["details"]["processes"] == 1
    assert two["tasks"] == one["tasks"]
    assert two["scores"] == pytest.approx(one["scores"], rel=1e-6, abs=1e-9)
    assert two["details"]["ess"] == pytest.approx(one["details"]["ess"], rel=1e-6)
    assert two["details"]["kappa"] == pytest.approx(one["details"]["kappa"], rel=1e-6)
    # the same passes over all processes (each ran its share; the record counts the selection's)
    assert two["details"]["passes"] == one["details"]["passes"] and two["details"]["caps"] == one["details"]["caps"]
