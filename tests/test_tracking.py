"""The rounds in W&B (``lerobot_amf/tracking.py``) through LeRobot's own logger, with
``--wandb.mode=offline`` and no network: the offline run's records are read back with wandb's own
reader and compared with the run's report; ``--resume=true`` continues the same W&B run."""

import json
from pathlib import Path

import pytest

from conftest import TINY_ARGS, run_cli

pytestmark = pytest.mark.slow  # two tiny runs of the CLI

WANDB = ["--wandb.enable=true", "--wandb.mode=offline", "--wandb.project=amf-tests"]


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def history(offline_run: Path) -> dict[int, dict]:
    """step -> {key: value} of an offline W&B run, read from its ``.wandb`` file by wandb's reader."""
    from wandb.proto import wandb_internal_pb2 as pb
    from wandb.sdk.internal import datastore

    (path,) = offline_run.glob("run-*.wandb")
    store = datastore.DataStore()
    store.open_for_scan(str(path))
    steps, artifacts = {}, 0
    while (data := store.scan_data()) is not None:
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            steps.setdefault(int(row["_step"]), {}).update(row)
        artifacts += kind == "artifact"
    return {"steps": steps, "artifacts": artifacts}


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, lerobot_home):
    out = tmp_path_factory.mktemp("tracked") / "run"
    run_cli([*TINY_ARGS, *WANDB, f"--output_dir={out}"], lerobot_home)
    return out


def test_every_round_is_logged_as_the_report_says(tracked_run):
    report = json.loads((tracked_run / "amf_report.json").read_text())
    (offline,) = offline_runs(tracked_run)
    logged = history(offline)
    steps = logged["steps"]
    assert sorted(steps) == [0, 1, 2]  # the pretrained evaluation, then one step per round
    for task, entry in report["pretrained"]["per_task"].items():
        assert steps[0][f"eval/pretrained/{task}/success"] == pytest.approx(entry["success_rate"])
    for entry in report["rounds"]:
        row = steps[entry["round"] + 1]
        picked = {t: entry["selected"].count(t) for t in set(entry["selected"])}
        assert {k.rsplit("/", 1)[1]: v for k, v in row.items() if k.startswith("train/selection/picked/")} == picked
        assert row["train/selection/reason"] == entry["reason"]
        assert row["train/demos/total"] == entry["demos_total"]
        assert row["train/loss_last"] == pytest.approx(entry["train"]["loss_last"])
        assert row["train/steps"] == entry["train"]["steps"]
        for task, rate in entry["eval"]["per_task"].items():
            prefix = f"eval/single_model/{task}"
            assert row[f"{prefix}/success"] == pytest.approx(rate["success_rate"])
            assert (row[f"{prefix}/ci_low"], row[f"{prefix}/ci_high"]) == pytest.approx(tuple(rate["ci95"]))
        assert row["eval/single_model/all/success"] == pytest.approx(entry["eval"]["overall"]["success_rate"])
        for plot in ("success_vs_demos", "selections_per_round"):  # the run's two plots, as images
            assert row[f"plots/{plot}/_type"] == "image-file" and row[f"plots/{plot}/format"] == "png"
    assert logged["artifacts"] == len(report["rounds"])  # each round's checkpoint, as LeRobot logs one


def test_resume_continues_the_same_wandb_run(tracked_run, lerobot_home, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tracked_run, run, symlinks=True)
    ledger = run / "amf_ledger.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    cut = max(i for i, line in enumerate(lines) if '"round_end"' in line and '"round": 0' in line)
    ledger.write_text("".join(lines[: cut + 1]))  # stopped after round 1 of 2
    run_cli([*TINY_ARGS, *WANDB, f"--output_dir={run}", "--resume=true"], lerobot_home)
    first, resumed = offline_runs(run)
    assert first.name.rsplit("-", 1)[1] == resumed.name.rsplit("-", 1)[1]  # the same W&B run id
    assert sorted(history(resumed)["steps"]) == [2]  # only the round that ran again
