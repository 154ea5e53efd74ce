"""``lerobot-amf-train`` end to end: the whole loop through the CLI (pretraining, rounds, ledger,
report, checkpoints, the pretraining cache, resume, ``lerobot-eval`` on its checkpoint, a ``lora``
run), and bad input, which stops with one line before anything is written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from conftest import TINY_ARGS, read_jsonl, run_cli, run_cli_here
from lerobot_amf.isolation import RoutedPolicy, load_routed_policy


# --------------------------------------------------------- bad input: one line, nothing written
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--env.task=reach-v3,flying-v3"], "flying-v3"),
        (["--amf.tasks=reach-v3,nope-v3"], "nope-v3"),
        (["--amf.strategy=greedy"], "greedy"),
        (["--amf.budget=1"], "smaller than one round"),
        (["--amf.budget=50"], "cannot be spent"),
        (["--amf.source_demos_per_task=1", "--amf.budget=4"], "exceeds what source"),
        (["--amf.target_weights={\"push-v3\": 1.0}"], "push-v3"),
        (["--policy.path=/nonexistent/ckpt"], "Cannot specify both --policy.path and --policy.type"),
        (["--amf.isolation=everything"], "shared_replay"),
        (["--amf.selection.target_mass_floor=1"], "target_mass_floor=1.0: must be in [0, 1)"),
        (["--amf.push_to_hub=true"], "needs --amf.repo_id"),
        (["--amf.isolation=lora", "--peft.target_modules=unet\\.nothing.*"], "matches no module"),
        (["--amf.push_to_hub=true", "--amf.repo_id=me/tiny"], "HF_HUB_OFFLINE is set"),
        (["--amf.partitions={\"a\": [\"reach-v3\"]}", "--amf.isolation=lora"], "drawer-close-v3"),
        (["--amf.eval_seed=-1"], "amf.eval_seed=-1: must be >= 0"),
        (["--seed=-1"], "--seed=-1: must be in 0..4294967295"),
        (["--seed=99999999999"], "--seed=99999999999: must be in 0..4294967295"),
        (["--amf.eval_seed=4294967295"], "amf.eval_seed=4294967295: must be at most"),
        (["--amf.n_partitions=0"], "amf.n_partitions=0: must be at least 1"),
        (["--amf.final_eval_episodes=0"], "amf.final_eval_episodes=0: must be at least 1"),
        (["--amf.learning_progress_demos=0"], "amf.learning_progress_demos=0: must be at least 1"),
        (["--amf.learning_progress_min_gain=2"], "amf.learning_progress_min_gain=2.0: must be in [0, 1]"),
        (["--amf.selection_eval_episodes=3"], "amf.selection_eval_episodes=3: must be between 1 and amf.eval_episodes=2"),
        (["--amf.partitions={\"../up\": [\"reach-v3\", \"drawer-close-v3\"]}", "--amf.isolation=lora"],
         "not a plain name"),
        (["--amf.selection.rollout_roles=mixed"], "Unknown amf.selection.rollout_roles='mixed'. Allowed: frames, rollouts"),
        (["--amf.selection.rollout_roles=rollouts", "--amf.selection.fallback_rollouts=1"],
         "needs amf.selection.fallback_rollouts >= 2"),
        # lerobot-train flags (LeRobot 0.6.1) that this tool would otherwise ignore in silence
        (["--job.target=a10g-small"], "--job.target='a10g-small': not carried out by lerobot-amf-train"),
        (["--eval_steps=10"], "--eval_steps=10: not carried out"),
        (["--dataset.repo_id=local/amf_demos", "--dataset.eval_split=0.1"], "--dataset.eval_split=0.1: not carried out"),
        (["--save_checkpoint_to_hub=true"], "use --amf.push_to_hub=true"),
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(args, needle, lerobot_home, tmp_path, monkeypatch, capsys):
    out = tmp_path / "bad"
    code, err = run_cli_here([*TINY_ARGS, f"--output_dir={out}", *args], lerobot_home, monkeypatch, capsys)
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("lerobot-amf-train: error:") and needle in last, err[-2000:]
    assert not out.exists()


@pytest.mark.parametrize("flag, needle", [
    ("--amf.strategyy=amf", "unrecognized arguments: --amf.strategyy=amf. Allowed in amf: accept_partial, action_noise"),
    ("--amf.selection.kernell=rbf", "Allowed in amf.selection: chunk_size, condition_on_pretraining"),
    ("--eval_freq=5", "unrecognized arguments: --eval_freq=5. Allowed: amf, batch_size"),  # renamed env_eval_freq
])
def test_an_unknown_flag_is_one_line_naming_the_allowed_keys(flag, needle, lerobot_home, tmp_path, monkeypatch,
                                                              capsys):
    out = tmp_path / "bad"
    code, err = run_cli_here([*TINY_ARGS, f"--output_dir={out}", flag], lerobot_home, monkeypatch, capsys)
    lines = [line for line in err.strip().splitlines() if not line.startswith(("INFO", "WARNING"))]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err[-2000:]  # no argparse usage dump
    assert not out.exists()


@pytest.mark.parametrize("recipe, needle", [
    ("[" * 100_000 + "]" * 100_000, "nests 100000 levels deep"),
    ("#" + "x" * (2**20 + 1), "over the 1,048,576"),
])
def test_a_recipe_file_is_bounded_before_it_is_parsed(recipe, needle, lerobot_home, tmp_path, monkeypatch, capsys):
    """A recipe is copied into the ledger and every checkpoint's config: a 1 MB cap, and no nesting
    that would exhaust the parser."""
    (tmp_path / "recipe.yaml").write_text(recipe)
    out = tmp_path / "bad"
    code, err = run_cli_here([f"--config_path={tmp_path / 'recipe.yaml'}", f"--output_dir={out}"], lerobot_home,
                             monkeypatch, capsys)
    assert code == 2 and needle in err.strip().splitlines()[-1], err[-2000:]
    assert not out.exists()


def test_an_output_dir_that_is_a_file_is_one_line_and_the_file_is_untouched(lerobot_home, tmp_path,
                                                                             monkeypatch, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    code, err = run_cli_here([*TINY_ARGS, f"--output_dir={out}"], lerobot_home, monkeypatch, capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and "is a file, not a run directory" in last, err[-2000:]
    assert out.read_text() == "mine" and not out.with_name("notes.txt.tmp").exists()


def test_a_recipe_with_an_unknown_key_or_a_wrong_type_is_one_line(lerobot_home, tmp_path, monkeypatch, capsys):
    for body, needle in [({"amf": {"strategyy": "amf"}}, "strategyy"), ({"amf": {"eval_seed": "soon"}}, "amf.eval_seed")]:
        recipe = tmp_path / "recipe.json"
        recipe.write_text(json.dumps(body))
        code, err = run_cli_here([*TINY_ARGS, f"--config_path={recipe}", f"--output_dir={tmp_path / 'out'}"],
                                 lerobot_home, monkeypatch, capsys)
        last = err.strip().splitlines()[-1]
        assert code == 2 and needle in last, err[-2000:]
        assert not (tmp_path / "out").exists()
    assert "Allowed: action_noise, budget" in last or "Couldn't parse" in last


def test_a_missing_checkpoint_is_one_line(lerobot_home, tmp_path, monkeypatch, capsys):
    args = [a for a in TINY_ARGS if not a.startswith("--policy.")]
    monkeypatch.chdir(tmp_path)  # a two-part local path that is no folder from here is said to be neither
    for path, needle in [("/nonexistent/ckpt", "not a directory with config.json, and not a Hub repo id"),
                         (str(tmp_path), "has no config.json"),
                         ("base/pretrained_model", f"no folder 'base/pretrained_model' here (seen from {tmp_path}), "
                                                   "and no Hub repo base/pretrained_model (offline, and not in the "
                                                   "Hub cache)")]:
        code, err = run_cli_here([*args, f"--policy.path={path}", f"--output_dir={tmp_path / 'out'}"],
                                 lerobot_home, monkeypatch, capsys)
        last = err.strip().splitlines()[-1]
        assert code == 2 and needle in last, err[-2000:]
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, needle", [
    ({"reach-v3": "a"}, "in no partition: drawer-close-v3"),
    ({"a": ["reach-v3", "drawer-close-v3", "nope-v3"]}, "outside the pool: nope-v3"),
    ({"a": ["reach-v3", "drawer-close-v3"], "b": []}, "no tasks: b"),
])
def test_cli_rejects_bad_partition_maps_before_writing(tmp_path, lerobot_home, content, needle, monkeypatch, capsys):
    path, out = tmp_path / "map.json", tmp_path / "out"
    path.write_text(json.dumps(content))
    code, err = run_cli_here([*TINY_ARGS, f"--output_dir={out}", "--amf.isolation=lora", f"--amf.partitions={path}"],
                             lerobot_home, monkeypatch, capsys)
    assert code == 2 and needle in err.strip().splitlines()[-1], err[-2000:]
    assert not out.exists()


# --------------------------------------------------------------------------------- the tiny run
@pytest.mark.slow
def test_report_states_model_strategy_demos_and_protocol(tiny_run):
    report = json.loads((tiny_run / "amf_report.json").read_text())
    assert report["complete"] is True
    assert report["model"]["isolation"].startswith("single model")
    assert report["strategy"] == "rebalancing"
    assert report["demos_per_task"]["pretraining"] == {"reach-v3": 2, "drawer-close-v3": 1}
    assert sum(report["demos_per_task"]["fine_tuning"].values()) == 4
    assert report["eval_protocol"]["episodes_per_task"] == 2
    assert len(report["rounds"]) == 2
    for r in [report["pretrained"], *[r["eval"] for r in report["rounds"]]]:
        for task in ("reach-v3", "drawer-close-v3"):
            entry = r["per_task"][task]
            assert entry["episodes"] == 2 and 0 <= entry["ci95"][0] <= entry["ci95"][1] <= 1
    assert report["final"]["fine_tuned_tasks"]
    assert (tiny_run / "success_vs_demos.png").stat().st_size > 1000
    assert (tiny_run / "selections_per_round.png").stat().st_size > 1000


@pytest.mark.slow
def test_rebalancing_fills_the_uncovered_task_first(tiny_run):
    selections = [r for r in read_jsonl(tiny_run / "amf_ledger.jsonl") if r["event"] == "selection"]
    # pretraining: reach 2, drawer-close 1 -> the first pick is drawer-close
    assert selections[0]["tasks"][0] == "drawer-close-v3"


@pytest.mark.slow
def test_ledger_and_dataset_agree_and_no_demo_is_pulled_twice(tiny_run):
    records = read_jsonl(tiny_run / "amf_ledger.jsonl")
    demos = [d for r in records if r["event"] == "demos_pulled" for d in r["demos"]]
    assert len(demos) == len({d["demo_id"] for d in demos}) == 4
    ds = LeRobotDataset("local/amf_demos", root=tiny_run / "demos")
    assert ds.num_episodes == 4
    assert [d["episode_index"] for d in demos] == list(range(4))
    assert ds.num_frames == sum(d["length"] for d in demos)
    events = [r["event"] for r in records]
    assert events[0] == "run_start" and events[-1] == "run_end"
    assert events.count("round_end") == 2


@pytest.mark.slow
def test_checkpoints_are_lerobot_checkpoints_with_the_amf_config(tiny_run):
    last = tiny_run / "checkpoints" / "last" / "pretrained_model"
    assert (last / "model.safetensors").exists() and (last / "config.json").exists()
    train_cfg = json.loads((last / "train_config.json").read_text())
    assert train_cfg["amf"]["strategy"] == "rebalancing" and train_cfg["amf"]["rounds"] == 2


@pytest.mark.slow
def test_second_run_reuses_the_cached_pretrained_policy(tiny_run, lerobot_home, tmp_path):
    run_cli([*TINY_ARGS, f"--output_dir={tmp_path / 'again'}", "--amf.strategy=uniform", "--amf.rounds=1",
                    "--amf.budget=2"], lerobot_home)
    second_start = read_jsonl(tmp_path / "again" / "amf_ledger.jsonl")[0]
    first_start = read_jsonl(tiny_run / "amf_ledger.jsonl")[0]
    assert second_start["model"]["pretrained_path"] == first_start["model"]["pretrained_path"]  # the cached generalist
    cache = lerobot_home / "lerobot_amf_cache"
    assert [p.name for p in cache.iterdir() if p.name.startswith("pretrained_")] == \
        [Path(first_start["model"]["pretrained_path"]).name]  # nothing was pretrained again
    assert next(r for r in read_jsonl(tmp_path / "again" / "amf_ledger.jsonl") if r["event"] == "eval")["cached"]
    first = json.loads((tiny_run / "amf_report.json").read_text())
    second = json.loads((tmp_path / "again" / "amf_report.json").read_text())
    assert second["pretrained"] == first["pretrained"]
    assert second["strategy"] == "uniform" and sorted(second["rounds"][0]["selected"]) == ["drawer-close-v3", "reach-v3"]


@pytest.mark.slow
def test_lowest_success_selects_from_the_first_episodes_of_the_latest_evaluation(tiny_run, lerobot_home, tmp_path):
    """lowest_success on a small evaluation (``--amf.selection_eval_episodes=1`` of the 2 every round
    evaluates): its scores come from each task's first episode of the latest evaluation, and the
    report counts the episodes it read in the run's human cost; a rebalancing run's is its demos."""
    out = tmp_path / "lowest"
    run_cli([*TINY_ARGS, f"--output_dir={out}", "--amf.strategy=lowest_success", "--amf.selection_eval_episodes=1"],
            lerobot_home)
    records = read_jsonl(out / "amf_ledger.jsonl")
    selections = [r for r in records if r["event"] == "selection"]
    assert [s["round"] for s in selections] == [0, 1]
    for sel in selections:
        before = [r for r in records if r["event"] == "eval" and r["round"] == sel["round"] - 1][0]  # -1: pretrained
        for task, entry in before["per_task"].items():
            outcomes = entry["per_episode_success"]
            assert len(outcomes) == entry["episodes"] == 2 and sum(outcomes) == entry["successes"]
            failures = 1 - outcomes[0]  # the first episode (seed amf.eval_seed) only
            assert sel["scores"][task] == pytest.approx((failures + 1) / (1 + 2), abs=1e-4)
        assert sel["reason"].startswith("lowest_success") and sel["evaluation_episodes_read"] == 2  # 2 tasks x 1
    assert sum(len(r["demos"]) for r in records if r["event"] == "demos_pulled") == 4
    report = json.loads((out / "amf_report.json").read_text())
    assert report["human_cost"] == {"demos": 4, "evaluation_episodes": 4, "rollout_episodes": 0, "total": 8}
    assert [r["human_cost"]["total"] for r in report["rounds"]] == [4, 4]
    assert report["eval_protocol"]["episodes_read_by_selection"] == "the first 1 per task (lowest_success, amf_eval)"
    rebalancing = json.loads((tiny_run / "amf_report.json").read_text())
    assert rebalancing["human_cost"] == {"demos": 4, "evaluation_episodes": 0, "rollout_episodes": 0, "total": 4}


@pytest.mark.slow
def test_learning_progress_holds_back_a_task_its_demos_did_not_move(tiny_run, lerobot_home, tmp_path):
    """uniform with all the target weight on reach-v3 would give it both demos; with learning
    progress (any gain below 1.0 counts as none) its first demo did not move it enough, so the
    second goes to the other task. Reading the evaluations is counted in the human cost."""
    out = tmp_path / "progress"
    run_cli([*TINY_ARGS, f"--output_dir={out}", "--amf.strategy=uniform", "--amf.demos_per_round=1", "--amf.budget=2",
             '--amf.target_weights={"reach-v3": 1.0, "drawer-close-v3": 0.0}', "--amf.learning_progress_demos=1",
             "--amf.learning_progress_min_gain=1.0"], lerobot_home)
    selections = [r for r in read_jsonl(out / "amf_ledger.jsonl") if r["event"] == "selection"]
    assert [s["tasks"] for s in selections] == [["reach-v3"], ["drawer-close-v3"]]
    assert selections[0]["held_back"] == {} and set(selections[1]["held_back"]) == {"reach-v3"}
    assert selections[1]["held_back"]["reach-v3"]["demos_since"] == 1
    report = json.loads((out / "amf_report.json").read_text())
    assert report["human_cost"] == {"demos": 2, "evaluation_episodes": 8, "rollout_episodes": 0, "total": 10}
    assert report["rounds"][1]["held_back"] == selections[1]["held_back"]
    from lerobot_amf.publish import render_model_card

    card = render_model_card(out, "me/progress")
    assert "(held back, no learning progress: reach-v3)" in card
    assert "2 demos + 8 evaluation episodes + 0 rollouts read by selection = 10" in card


@pytest.mark.slow
def test_resume_continues_from_the_ledger_without_pulling_again(tiny_run, lerobot_home, tmp_path):
    out = tmp_path / "resumed"
    run_cli([*TINY_ARGS, f"--output_dir={out}", "--amf.strategy=least_demonstrated"], lerobot_home)
    ledger = out / "amf_ledger.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    # simulate a crash right after round 0 ended
    cut = max(i for i, line in enumerate(lines) if '"round_end"' in line and '"round": 0' in line)
    ledger.write_text("".join(lines[: cut + 1]))
    import shutil

    shutil.rmtree(out / "demos")
    first_round_demos = [d for r in read_jsonl(ledger) if r["event"] == "demos_pulled" for d in r["demos"]]
    from lerobot_amf.sources.metaworld import MetaworldExpertSource
    from lerobot_amf.data import write_demos

    src = MetaworldExpertSource(seed=1000)
    pulled = [src.pull(d["task"], 1, set())[0] for d in first_round_demos]
    write_demos("local/amf_demos", out / "demos", src.fps, src.features(), pulled)
    run_cli([*TINY_ARGS, f"--output_dir={out}", "--amf.strategy=least_demonstrated", "--resume=true"], lerobot_home)
    records = read_jsonl(ledger)
    assert [r["round"] for r in records if r["event"] == "round_end"] == [0, 1]
    demos = [d for r in records if r["event"] == "demos_pulled" for d in r["demos"]]
    assert len(demos) == len({d["demo_id"] for d in demos}) == 4


@pytest.mark.slow
def test_existing_output_dir_is_not_overwritten(tiny_run, lerobot_home):
    before = (tiny_run / "amf_ledger.jsonl").read_text()
    proc = run_cli([*TINY_ARGS, f"--output_dir={tiny_run}"], lerobot_home, check=False, timeout=120)
    assert proc.returncode == 2 and "already exists" in proc.stderr.strip().splitlines()[-1]
    assert (tiny_run / "amf_ledger.jsonl").read_text() == before


@pytest.mark.slow
def test_stock_lerobot_eval_runs_on_the_output_checkpoint(tiny_run, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "lerobot.scripts.lerobot_eval",
         f"--policy.path={tiny_run / 'checkpoints' / 'last' / 'pretrained_model'}",
         "--env.type=mw_state", "--env.task=reach-v3,drawer-close-v3", "--env.episode_length=20",
         "--env.discover_packages_path=lerobot_amf", "--eval.n_episodes=2", "--eval.batch_size=2",
         "--policy.device=cpu", f"--output_dir={tmp_path / 'eval'}"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "eval" / "eval_info.json").read_text())
    assert "pc_success" in info["overall"] and info["overall"]["n_episodes"] == 2


@pytest.mark.slow
def test_pretrained_checkpoint_keeps_its_demos_and_counts(tiny_run, lerobot_home):
    (ckpt,) = [p for p in (lerobot_home / "lerobot_amf_cache").iterdir() if p.name.startswith("pretrained_")]
    record = json.loads((ckpt / "amf_pretrain.json").read_text())
    assert record["demos_per_task"] == {"reach-v3": 2, "drawer-close-v3": 1}
    demos = LeRobotDataset(record["demos"]["repo_id"], root=ckpt / record["demos"]["root"])
    assert demos.num_episodes == 3
    assert sorted(demos.meta.tasks.index) == ["Push and close a drawer", "Reach a goal position"]


@pytest.mark.slow
def test_amf_strategy_runs_in_the_loop_and_reports_why(tiny_amf_run):
    report = json.loads((tiny_amf_run / "amf_report.json").read_text())
    assert report["strategy"] == "amf" and len(report["rounds"]) == 2
    for r in report["rounds"]:
        assert set(r["scores"]) == {"reach-v3", "drawer-close-v3"}
        assert set(r["details"]["ess"]) == {"reach-v3", "drawer-close-v3"}
        assert r["details"]["kernel"]["family"] == "diffusion" and "projection_seed" in r["details"]["kernel"]
        assert r["reason"].startswith("amf:")
        assert r["details"]["processes"] == 1
    # the second round knows the first round's demos: D is not empty any more
    assert report["rounds"][1]["details"]["n_demos_in_d"] == 2


@pytest.mark.slow
def test_the_last_round_is_evaluated_on_the_final_episodes(tiny_amf_run):
    report = json.loads((tiny_amf_run / "amf_report.json").read_text())
    first, last = report["rounds"]
    assert {v["episodes"] for v in first["eval"]["per_task"].values()} == {2}
    assert {v["episodes"] for v in last["eval"]["per_task"].values()} == {3}
    assert {v["episodes"] for v in report["pretrained"]["per_task"].values()} == {2}
    assert report["eval_protocol"]["final_episodes_per_task"] == 3
    from lerobot_amf.report import what_the_numbers_are

    assert "eval: 2 (3 in the last round) episodes/task" in what_the_numbers_are(report)


@pytest.mark.slow
def test_resume_with_other_settings_is_refused_and_changes_nothing(tiny_run, lerobot_home):
    before = {p: p.read_bytes() for p in tiny_run.rglob("*") if p.is_file()}
    proc = run_cli([*TINY_ARGS, f"--output_dir={tiny_run}", "--amf.strategy=uniform", "--resume=true"], lerobot_home,
                   check=False, timeout=120)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "strategy=rebalancing, not uniform" in last, proc.stderr[-2000:]
    assert {p: p.read_bytes() for p in tiny_run.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_a_run_records_its_software_and_resumes_only_on_the_same_lerobot_release(tiny_run, lerobot_home, tmp_path):
    import shutil

    import lerobot

    report = json.loads((tiny_run / "amf_report.json").read_text())
    assert report["software"]["lerobot"] == lerobot.__version__ and report["software"]["python"].startswith("3.")
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run, symlinks=True)
    ledger = run / "amf_ledger.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    start = json.loads(lines[0])
    start["software"]["lerobot"] = "0.4.4"  # as if started before the port
    ledger.write_text(json.dumps(start) + "\n" + "".join(lines[1:]))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    proc = run_cli([*TINY_ARGS, f"--output_dir={run}", "--amf.strategy=rebalancing", "--resume=true"], lerobot_home,
                   check=False, timeout=180)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and f"was run on LeRobot 0.4.4, this is LeRobot {lerobot.__version__}" in last, \
        proc.stderr[-2000:]
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_resume_on_a_corrupt_ledger_is_one_line_and_changes_nothing(tiny_run, lerobot_home, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run, symlinks=True)
    ledger = run / "amf_ledger.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    lines[2] = '{"event": "selection", "round": 0, "tas\n'  # damaged in the middle, not a torn tail
    ledger.write_text("".join(lines))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    proc = run_cli([*TINY_ARGS, f"--output_dir={run}", "--amf.strategy=rebalancing", "--resume=true"], lerobot_home,
                   check=False, timeout=180)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Corrupt ledger" in last and "line 3" in last, proc.stderr[-2000:]
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


# ------------------------------------------------------------------ isolation in the round loop
@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, lerobot_home):
    out = tmp_path_factory.mktemp("iso") / "lora"
    run_cli([*TINY_ARGS, f"--output_dir={out}", "--amf.strategy=rebalancing", "--amf.isolation=lora"], lerobot_home)
    return out


@pytest.mark.slow
def test_lora_run_trains_only_selected_partitions_and_reports_both_models(lora_run):
    from safetensors.torch import load_file

    report = json.loads((lora_run / "amf_report.json").read_text())
    assert report["model"]["isolation"].startswith("per-partition LoRA adapters")
    assert report["model"]["partitions"] == {"reach-v3": ["reach-v3"], "drawer-close-v3": ["drawer-close-v3"]}
    last = report["rounds"][-1]
    assert last["eval"]["variant"] == "per-partition" and last["eval_single_model"]["variant"] == "single model"
    assert set(report["final"]["per_task_change"]) == {"reach-v3", "drawer-close-v3"}
    trains = {r["round"]: r["metrics"] for r in read_jsonl(lora_run / "amf_ledger.jsonl") if r["event"] == "train"}
    pulled = {r["round"]: {d["task"] for d in r["demos"]} for r in read_jsonl(lora_run / "amf_ledger.jsonl")
              if r["event"] == "demos_pulled"}
    for r, metrics in trains.items():
        assert set(metrics["partitions_trained"]) == pulled[r]
    # a partition not trained in round 1 is bit-identical between round 0 and round 1
    untouched = [p for p in ("reach-v3", "drawer-close-v3") if p not in trains[1]["partitions_trained"]]
    for p in untouched:
        w0 = load_file(str(lora_run / "checkpoints/round_00/routed_model/adapters" / p / "adapter_model.safetensors"))
        w1 = load_file(str(lora_run / "checkpoints/round_01/routed_model/adapters" / p / "adapter_model.safetensors"))
        assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    routed_dir = lora_run / "checkpoints/last/routed_model"
    base = json.loads((routed_dir / "routing.json").read_text())["base"]["pretrained_path"]
    loaded, pre, post = load_routed_policy(routed_dir, base_path=base)  # a local base: named by its user
    assert isinstance(loaded, RoutedPolicy) and loaded.partitions.names == ["reach-v3", "drawer-close-v3"]
    assert pre is not None and post is not None
    assert (lora_run / "checkpoints/last/pretrained_model/model.safetensors").exists()  # the merged single model
