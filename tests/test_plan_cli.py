"""``lerobot-amf-plan``: the loop's selection without the loop, on the tiny embedded default's cached
generalist and its demos: with an env (rollouts, evaluation, every baseline) its amf picks are the
loop's round-1 picks; without one (a real robot) it still answers, rolling out nothing."""

import json
import subprocess
import sys

import pytest

from conftest import AMF_ARGS, read_jsonl

TINY_ENV = ["--env.type=mw_state", "--env.task=reach-v3,drawer-close-v3", "--env.episode_length=40"]


def plan_cli(args, env=None):
    return subprocess.run([sys.executable, "-m", "lerobot_amf.plan_cli", *args], capture_output=True, text=True,
                          timeout=600, env=env)


def loop_round(run_dir, r):
    start = next(rec for rec in read_jsonl(run_dir / "amf_ledger.jsonl") if rec["event"] == "run_start")
    selection = next(rec for rec in read_jsonl(run_dir / "amf_ledger.jsonl")
                     if rec["event"] == "selection" and rec["round"] == r)
    return start, selection


@pytest.mark.slow
def test_plan_with_an_env_picks_what_the_loop_picked_and_shows_every_baseline(tiny_amf_run, tmp_path):
    start, selection = loop_round(tiny_amf_run, 0)
    chunk = [a for a in AMF_ARGS if "chunk_size" in a]
    out = tmp_path / "plan"
    proc = plan_cli([f"--policy.path={start['model']['pretrained_path']}", "--policy.device=cpu", *TINY_ENV,
                     "--amf.demos=2", "--amf.eval_episodes=2", "--amf.eval_batch_size=2", *chunk,
                     f"--seed={start['seed']}", f"--output_dir={out}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads((out / "amf_plan.json").read_text())
    assert plan["amf"]["tasks"] == selection["tasks"] and plan["amf"]["scores"] == selection["scores"]
    assert set(plan["compared"]) == {"uniform", "least_demonstrated", "rebalancing", "lowest_success", "amf_eval"}
    assert all(sum(c["per_task"].values()) == 2 for c in plan["compared"].values())
    # the cached generalist knows its pretraining demos; success was measured on 2 episodes per task
    assert {t: r["pretraining_demos"] for t, r in plan["per_task"].items()} == \
        {t: n for t, n in start["pretrain_counts"].items() if t in plan["pool"]}
    assert all(r["success"]["episodes"] == 2 for r in plan["per_task"].values())
    assert (out / "amf_plan.png").stat().st_size > 10_000
    assert "The next 2 demos, per strategy" in proc.stdout and "lowest_success" in proc.stdout


@pytest.mark.slow
def test_plan_without_an_env_rolls_out_nothing_and_says_what_it_cannot_show(tiny_amf_run, tmp_path):
    start, selection = loop_round(tiny_amf_run, 0)
    out = tmp_path / "plan"
    args = [f"--policy.path={start['model']['pretrained_path']}", "--policy.device=cpu", "--amf.demos=2",
            f"--seed={start['seed']}", f"--output_dir={out}", "--amf.tasks=reach-v3,drawer-close-v3"]
    # a one-hot policy needs to be told how its tasks are encoded
    refused = plan_cli(args)
    assert refused.returncode == 2 and "--amf.catalog=<env type>" in refused.stderr.strip().splitlines()[-1]
    assert not out.exists()
    proc = plan_cli([*args, "--amf.catalog=mw_state"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads((out / "amf_plan.json").read_text())
    assert plan["simulator"] is False and plan["amf"]["details"]["rollout_fallback"] == []
    assert set(plan["compared"]) == {"uniform", "least_demonstrated", "rebalancing"}
    assert set(plan["not_compared"]) == {"lowest_success", "amf_eval"}
    assert all(r["success"] is None for r in plan["per_task"].values())
    if not selection["details"]["rollout_fallback"]:  # nothing in the loop's pick came from a simulator
        assert plan["amf"]["tasks"] == selection["tasks"]
    # an output directory that holds a plan is never written over
    again = plan_cli([*args, "--amf.catalog=mw_state"])
    assert again.returncode == 2 and "already exists and is not an empty folder" in again.stderr
