"""``--amf.source=request``: three rounds across process restarts, demos recorded between them the
way ``lerobot-record`` writes them (``LeRobotDataset.create`` / ``resume``, ``add_frame``, ``save_episode``,
one ``single_task`` per session): a wrong label refused with nothing consumed, a partial fill that
waits and then, with ``accept_partial``, goes on with its shortfall recorded, and a SIGKILL while
the intake is written into the run, resumed with nothing lost or counted twice."""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess

import pytest

from benchmarks.common import cli_env, start_cli
from conftest import TINY_ARGS, read_jsonl, run_cli

INTAKE_REPO = "local/tiny_intake"


def record_session(root, instruction: str, demos):
    """One lerobot-record session: ``demos`` (frames) saved as episodes of ``instruction``."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_amf.sources.metaworld import MetaworldExpertSource

    if (root / "meta" / "info.json").exists():
        dataset = LeRobotDataset.resume(INTAKE_REPO, root=root)
    else:
        source = MetaworldExpertSource()
        dataset = LeRobotDataset.create(INTAKE_REPO, fps=source.fps, features=source.features(), root=root,
                                        use_videos=False)
    for demo in demos:
        for t in range(demo.length):
            dataset.add_frame({**{k: v[t] for k, v in demo.frames.items()}, "task": instruction})
        dataset.save_episode()
    dataset.finalize()


def expert_demos(task: str, k: int, used: set):
    """``k`` new scripted demos of ``task`` standing in for teleoperated ones (seeds of their own)."""
    from lerobot_amf.sources.metaworld import MetaworldExpertSource

    demos = MetaworldExpertSource(seed=7, namespace="teleop").pull(task, k, used)
    used.update(d.demo_id for d in demos)
    return demos


def instruction(task):
    from lerobot_amf.envs.tasks import task_catalog

    return task_catalog("mw_state").instruction(task)


def ledger(run):
    return read_jsonl(run / "amf_ledger.jsonl")


def request(run, r):
    return json.loads((run / "requests" / f"round_{r:02d}.json").read_text())


@pytest.mark.slow
def test_three_rounds_filled_by_people_across_restarts(tmp_path, lerobot_home, tiny_run):
    run, intake, used = tmp_path / "run", tmp_path / "intake", set()
    args = [*TINY_ARGS, "--amf.rounds=3", "--amf.strategy=uniform", "--amf.source=request",
            f"--amf.source_root={intake}", f"--amf.source_repo_id={INTAKE_REPO}", "--amf.request_min_frames=5",
            f"--output_dir={run}"]
    resume = [*args, "--resume=true"]

    def pulled():
        return [rec for rec in ledger(run) if rec["event"] == "demos_pulled"]

    # Round 1: the request is written and the run waits, exit 0, one line
    first = run_cli(args, lerobot_home)
    assert "Waiting for demos in the intake dataset" in first.stderr.strip().splitlines()[-1]
    wanted = request(run, 1)
    assert {t["task"]: t["demos"] for t in wanted["tasks"]} == {"reach-v3": 1, "drawer-close-v3": 1}
    assert wanted["intake"]["root"] == str(intake)
    for t in wanted["tasks"]:
        assert t["instruction"] == instruction(t["task"]) and "--dataset.num_episodes=1" in t["command"]
    assert "lerobot-record" in (run / "requests" / "round_01.md").read_text()

    # ... recorded, with one more episode under a wrong task string: refused in one line, nothing consumed
    for t in wanted["tasks"]:
        record_session(intake, t["instruction"], expert_demos(t["task"], t["demos"], used))
    record_session(intake, "open the drawr", expert_demos("reach-v3", 1, used))
    before = (run / "amf_ledger.jsonl").read_bytes()
    wrong = run_cli(resume, lerobot_home, check=False)
    last = wrong.stderr.strip().splitlines()[-1]
    assert wrong.returncode == 2 and "2 ('open the drawr')" in last and "modify_tasks" in last, wrong.stderr[-2000:]
    assert (run / "amf_ledger.jsonl").read_bytes() == before and not (run / "demos").exists()
    # the delete command the line prints removes that episode from the folder it names (run on a copy)
    copy = intake.with_name("intake_copy")
    shutil.copytree(intake, copy)
    delete = shlex.split(re.search(r"delete them \((lerobot-edit-dataset .*?)\), then resume", last).group(1))
    subprocess.run([arg.replace(str(intake), str(copy)) for arg in delete], check=True, capture_output=True,
                   env=cli_env(lerobot_home))
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    kept = LeRobotDatasetMetadata(INTAKE_REPO, root=copy)
    assert kept.total_episodes == 2 and "open the drawr" not in set(kept.tasks.index)
    shutil.rmtree(copy)
    # relabelled with LeRobot's own lerobot-edit-dataset, as the line says: an extra reach demo now
    subprocess.run(["lerobot-edit-dataset", f"--repo_id={INTAKE_REPO}", f"--root={intake}",
                    "--operation.type=modify_tasks",
                    f"--operation.episode_tasks={json.dumps({'2': instruction('reach-v3')})}"],
                   check=True, capture_output=True, env=cli_env(lerobot_home))

    # Round 1 goes through (the extra reach episode is left for later); round 2 waits for its demos
    proc = run_cli(resume, lerobot_home)
    assert "Waiting for demos" in proc.stderr.strip().splitlines()[-1]
    assert len(pulled()) == 1 and len(pulled()[0]["demos"]) == 2
    assert pulled()[0]["intake"]["left_extra"] == {"reach-v3": 1} and pulled()[0]["intake"]["shortfall"] == {}
    assert {t["task"]: t["demos"] for t in request(run, 2)["tasks"]} == {"reach-v3": 1, "drawer-close-v3": 1}

    # Round 2 partly filled (the extra reach episode only): it waits, consuming nothing ...
    waiting = run_cli(resume, lerobot_home)
    line = waiting.stderr.strip().splitlines()[-1]
    assert "reach-v3 1/1" in line and "drawer-close-v3 0/1" in line and "accept_partial" in line, line
    assert len(pulled()) == 1
    # ... and with accept_partial it takes what is there and records the shortfall
    run_cli([*resume, "--amf.accept_partial=true"], lerobot_home)
    assert pulled()[1]["intake"]["taken"] == {"reach-v3": 1, "drawer-close-v3": 0}
    assert pulled()[1]["intake"]["shortfall"] == {"drawer-close-v3": 1}

    # Round 3: filled, then the run is killed while it writes the intake into its demo dataset
    third = request(run, 3)
    for t in third["tasks"]:
        record_session(intake, t["instruction"], expert_demos(t["task"], t["demos"], used))
    env = cli_env(lerobot_home, LEROBOT_AMF_PHASE_MARKERS="1")
    proc = start_cli(resume, env, stdout=subprocess.DEVNULL, text=True, own_group=True)
    for line in proc.stderr:
        if "amf-phase: begin writing_demos" in line:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    assert proc.wait() == -signal.SIGKILL
    done = run_cli(resume, lerobot_home)
    records = ledger(run)
    assert records[-1]["event"] == "run_end", done.stderr[-2000:]

    # nothing lost, nothing counted twice: each consumed intake episode once, all in the demo dataset
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    consumed = [d["demo_id"] for rec in pulled() for d in rec["demos"]]
    assert len(consumed) == len(set(consumed)) == 2 + 1 + sum(t["demos"] for t in third["tasks"])
    assert all(d.startswith(f"intake/{INTAKE_REPO}/") for d in consumed)
    assert LeRobotDatasetMetadata("x", root=run / "demos").total_episodes == len(consumed)
    assert len(json.loads((run / "amf_report.json").read_text())["rounds"]) == 3


def test_an_intake_on_the_hub_is_read_as_pushed_at_each_start(tmp_path, monkeypatch):
    """The team records with --dataset.push_to_hub=true; every start of the run copies the repo as it
    is then into <output_dir>/intake (only the network is replaced: huggingface_hub's own downloads)."""
    import shutil

    from huggingface_hub import constants as hf_constants

    from benchmarks.local_hub import LocalHub
    from lerobot_amf.envs.tasks import task_catalog
    from lerobot_amf.sources import WaitingForDemos
    from lerobot_amf.sources.request import RequestSource

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    vocabulary = task_catalog("mw_state").vocabulary(["reach-v3", "drawer-close-v3"]).task_of_instruction
    pushed, used = tmp_path / "pushed", set()  # what the team's lerobot-record has pushed so far
    pushed.mkdir()

    def start():  # a new process of the run: a new source
        src = RequestSource("team/intake", tmp_path / "run" / "intake", vocabulary, 5, False, None, from_hub=True)
        src.validate_pool(["reach-v3", "drawer-close-v3"])
        return src

    with LocalHub({"team/intake": pushed}):
        first = start()
        request = first.announce(0, ["reach-v3", "reach-v3"], tmp_path / "run")
        assert "--dataset.push_to_hub=true" in json.loads(request.read_text())["tasks"][0]["command"]
        with pytest.raises(WaitingForDemos, match="team/intake: nothing recorded yet"):
            first.check_round({"reach-v3": 2}, set())
        shutil.rmtree(pushed)
        record_session(pushed, instruction("reach-v3"), expert_demos("reach-v3", 1, used))
        with pytest.raises(WaitingForDemos, match="reach-v3 1/2"):
            start().check_round({"reach-v3": 2}, set())
        record_session(pushed, instruction("reach-v3"), expert_demos("reach-v3", 1, used))
        later = start()
        assert later.check_round({"reach-v3": 2}, set()) == {"reach-v3": 2}
        demos = later.pull("reach-v3", 2, set())
    assert [d.info["episode_index"] for d in demos] == [0, 1]
    assert len({d.demo_id for d in demos}) == 2 and all(d.demo_id.startswith("intake/team/intake/") for d in demos)


@pytest.mark.slow
def test_a_robot_with_no_simulator_runs_the_loop_on_recorded_tasks(tmp_path, lerobot_home, tiny_run):
    """--env.type=recorded: the pool is the instruction strings, nothing is evaluated or rolled out, amf
    selects from the demos in hand, and the report, tables and plots say there is no evaluation."""
    start = next(r for r in ledger(tiny_run) if r["event"] == "run_start")
    run, intake, used = tmp_path / "run", tmp_path / "intake", set()
    tasks = {instruction(t): t for t in ("reach-v3", "drawer-close-v3")}
    args = [f"--policy.path={start['model']['pretrained_path']}", "--policy.device=cpu", "--env.type=recorded",
            f"--env.task={','.join(tasks)}", "--amf.rounds=2", "--amf.demos_per_round=2", "--amf.steps_per_round=6",
            "--batch_size=8", "--num_workers=0", "--amf.strategy=amf", "--amf.selection.chunk_size=8",
            "--amf.source=request", f"--amf.source_root={intake}", "--amf.request_min_frames=5",
            "--dataset.repo_id=local/robot_demos", f"--output_dir={run}"]
    for r in (1, 2):
        proc = run_cli(args if r == 1 else [*args, "--resume=true"], lerobot_home)
        assert "Waiting for demos" in proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]
        for t in request(run, r)["tasks"]:
            assert t["instruction"] == t["task"] and t["task"] in tasks  # the pool is the instructions
            record_session(intake, t["instruction"], expert_demos(tasks[t["task"]], t["demos"], used))
    done = run_cli([*args, "--resume=true"], lerobot_home)
    records = ledger(run)
    assert records[-1]["event"] == "run_end", done.stderr[-2000:]
    assert not [r for r in records if r["event"] == "eval"]  # nothing evaluated, not even the pretrained policy
    selections = [r for r in records if r["event"] == "selection"]
    assert len(selections) == 2 and all(s["reason"].startswith("amf") for s in selections)
    assert all(s["details"]["rollout_fallback"] == [] for s in selections)
    report = json.loads((run / "amf_report.json").read_text())
    assert report["eval_protocol"]["success"] == "not evaluated (no simulator)"
    assert [r["demos_total"] for r in report["rounds"]] == [2, 4]
    assert "no simulator" in done.stdout + done.stderr
