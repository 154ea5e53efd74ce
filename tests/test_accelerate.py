"""The loop distributed over 2 CPU processes: one selects and pulls, both train (DDP).

``accelerate launch --multi_gpu`` and ``torchrun`` start processes with the same environment
contract that ``Accelerator`` reads; on CPU (``--policy.device=cpu``) ``torchrun`` is the
launcher that starts several processes, so the test uses it.
"""

import json
import os
import subprocess
import sys

from conftest import TINY_ARGS, read_jsonl


def test_two_processes_pull_once_and_train_together(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_LEROBOT_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "lerobot_amf.train",
         *TINY_ARGS, "--amf.strategy=uniform", f"--output_dir={out}"],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    records = read_jsonl(out / "amf_ledger.jsonl")
    assert sum(r["event"] == "run_start" for r in records) == 1  # written by one process only
    demos = [d for r in records if r["event"] == "demos_pulled" for d in r["demos"]]
    assert len(demos) == len({d["demo_id"] for d in demos}) == 4
    trains = [r["metrics"] for r in records if r["event"] == "train"]
    assert [t["num_processes"] for t in trains] == [2, 2]
    report = json.loads((out / "amf_report.json").read_text())
    assert report["complete"] and len(report["rounds"]) == 2
