"""Parameter isolation: partitions, per-partition adapters / head copies, routing, save/load,
replay mixing, single-model export — on real LeRobot diffusion policies and peft adapters."""

import json

import numpy as np
import pytest
import torch
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
from torch.utils.data import SequentialSampler

from conftest import TINY_ARGS, diffusion_batch, features, read_jsonl, run_cli, run_cli_here
from lerobot_amf.envs.metaworld_state import MetaworldCatalog, task_description
from lerobot_amf.errors import AMFInputError
from lerobot_amf.isolation import RoutedPolicy, load_routed_policy, make_partitions
from lerobot_amf.isolation.export import merge
from lerobot_amf.isolation.partitions import cluster_tasks
from lerobot_amf.isolation.replay import MixedBatchSampler
from lerobot_amf.report import change_kind

POOL = ["reach-v3", "drawer-close-v3", "window-open-v3"]


def tiny_policy(tmp_path=None) -> DiffusionPolicy:
    torch.manual_seed(0)
    cfg = DiffusionConfig(**features(), down_dims=(16, 32), diffusion_step_embed_dim=16, n_obs_steps=2, horizon=16,
                          n_action_steps=8, noise_scheduler_type="DDIM", num_inference_steps=3, device="cpu")
    policy = DiffusionPolicy(cfg)
    if tmp_path is not None:  # a real base checkpoint to reference
        policy.save_pretrained(tmp_path / "base")
        policy.config.pretrained_path = str(tmp_path / "base")
    else:
        policy.config.pretrained_path = "base"
    return policy


def routed(mode: str, tmp_path=None, scheme: str = "per_task") -> RoutedPolicy:
    return RoutedPolicy(tiny_policy(tmp_path), make_partitions(scheme, POOL), mode,
                        MetaworldCatalog().vocabulary(POOL).task_of_instruction)


def snapshot(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------- partitions
def test_partition_schemes_cover_the_pool_once():
    assert make_partitions("per_task", POOL).groups == {t: [t] for t in POOL}
    assert make_partitions("all", POOL).groups == {"all": POOL}
    metaworld = make_partitions("per_suite", ["reach-v3", "assembly-v3"], suite_of=MetaworldCatalog().suite_of)
    assert metaworld.groups == {"easy": ["reach-v3"], "hard": ["assembly-v3"]}
    libero = make_partitions("per_suite", ["libero_10/put_the_pot", "libero_spatial/pick", "libero_10/open_it"])
    assert libero.groups == {"libero_10": ["libero_10/put_the_pot", "libero_10/open_it"],
                             "libero_spatial": ["libero_spatial/pick"]}


def test_clustered_partitions_follow_the_task_embeddings():
    e = {"reach-v3": np.array([1.0, 0.0]), "drawer-close-v3": np.array([0.0, 1.0]),
         "window-open-v3": np.array([0.1, 0.9])}
    groups = cluster_tasks(e, POOL, k=2, seed=0)
    assert sorted(map(sorted, groups.values())) == [["drawer-close-v3", "window-open-v3"], ["reach-v3"]]
    assert make_partitions("clustered", POOL, task_embeddings=e, n_partitions=2).groups == groups


@pytest.mark.parametrize("content, needle", [
    ({"reach-v3": "a", "drawer-close-v3": "b"}, "in no partition: window-open-v3"),
    ({"a": POOL, "b": []}, "no tasks: b"),
    ({"a": [*POOL, "push-v3"]}, "outside the pool: push-v3"),
    ({"a": POOL, "b": ["reach-v3"]}, "in two partitions"),
    ({"a": 3}, "expected"),
])
def test_bad_partition_maps_are_clear_errors(tmp_path, content, needle):
    path = tmp_path / "map.json"
    path.write_text(json.dumps(content))
    with pytest.raises(AMFInputError, match=needle):
        make_partitions(str(path), POOL)


def test_partition_map_in_both_json_forms(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"reach-v3": "easy", "drawer-close-v3": "drawer", "window-open-v3": "easy"}))
    b.write_text(json.dumps({"easy": ["window-open-v3", "reach-v3"], "drawer": ["drawer-close-v3"]}))
    assert make_partitions(str(a), POOL).groups == make_partitions(str(b), POOL).groups == \
        {"easy": ["reach-v3", "window-open-v3"], "drawer": ["drawer-close-v3"]}


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


# ---------------------------------------------------------------- adapters and routing
@pytest.mark.parametrize("mode", ["lora", "head"])
def test_training_one_partition_leaves_the_others_and_the_base_bit_identical(mode):
    policy = routed(mode)
    before = snapshot(policy)
    policy.activate("drawer-close-v3")
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=1e-2, weight_decay=0.1)
    for step in range(3):
        loss, _ = policy.forward(diffusion_batch(b=4, seed=step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = snapshot(policy)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "the active partition did not train"
    # only the active partition's tensors moved: the other partitions and the base are bit-identical
    assert all(".drawer-close-v3." in k for k in changed), sorted(changed)[:5]


def test_routing_activates_the_partition_of_the_observation_task():
    policy = routed("lora")
    batch = diffusion_batch(b=2)
    obs = {k: v[:, -1] for k, v in batch.items() if k.startswith("observation.")}
    for task in ["window-open-v3", "reach-v3"]:
        policy.reset()
        policy.select_action({**obs, "task": [task_description(task)] * 2})
        assert policy.active == task
    policy.select_action({**obs, "task": ["drawer-close-v3", "drawer-close-v3"]})  # task names work too
    assert policy.active == "drawer-close-v3"
    with pytest.raises(ValueError, match="several partitions"):
        policy.select_action({**obs, "task": [task_description("reach-v3"), task_description("window-open-v3")]})
    with pytest.raises(ValueError, match="Cannot route"):
        policy.select_action({**obs, "task": ["push the puck"] * 2})


def test_routed_policy_outputs_are_its_partitions_own():
    """A partition whose head copy was changed acts differently; the others act as the base."""
    policy, base = routed("head"), tiny_policy()
    with torch.no_grad():
        for p in policy._heads().copies["window-open-v3"].parameters():
            p.add_(0.5)
    batch = diffusion_batch(b=2)

    def chunk(model, task):
        model.reset()
        torch.manual_seed(7)
        inputs = {k: v[:, -1] for k, v in batch.items() if k.startswith("observation.")}
        if task is not None:
            inputs["task"] = [task] * 2
        return model.select_action(inputs)

    assert torch.equal(chunk(policy, "reach-v3"), chunk(base, None))
    assert not torch.allclose(chunk(policy, "window-open-v3"), chunk(base, None))


def test_mw_state_vector_env_gives_lerobot_the_task_to_route_by():
    from lerobot.envs.utils import add_envs_task

    from lerobot_amf.envs.metaworld_state import MetaworldStateEnvConfig
    from lerobot_amf.evaluation import task_vec_env

    with task_vec_env(MetaworldStateEnvConfig(task="drawer-close-v3", episode_length=5), "drawer-close-v3", 2) as vec:
        obs = add_envs_task(vec, {})
    assert obs["task"] == [task_description("drawer-close-v3")] * 2


@pytest.mark.parametrize("mode", ["lora", "head"])
def test_save_load_round_trip_reproduces_actions_exactly(tmp_path, mode):
    policy = routed(mode, tmp_path)
    policy.activate("reach-v3")
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=1e-2)
    for step in range(2):
        loss, _ = policy.forward(diffusion_batch(b=4, seed=step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    policy.save(tmp_path / "routed_model")
    loaded, preprocessor, _ = load_routed_policy(tmp_path / "routed_model")
    assert preprocessor is None  # none was saved with it here; runs save theirs
    obs = {k: v[:, -1] for k, v in diffusion_batch(b=2).items() if k.startswith("observation.")}
    for task in POOL:
        outs = []
        for model in (policy, loaded):
            model.eval()
            model.reset()
            torch.manual_seed(3)
            outs.append(model.select_action({**obs, "task": [task] * 2}))
        assert torch.equal(outs[0], outs[1]), task
    assert json.loads((tmp_path / "routed_model" / "routing.json").read_text())["base"]["pretrained_path"] == \
        str(tmp_path / "base")


# ---------------------------------------------------------------- replay, export, report
@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.3])
def test_replay_share_holds_per_batch_and_over_many_batches(fraction):
    n_demo, n_replay, batch = 100, 300, 16
    sampler = MixedBatchSampler(SequentialSampler(range(n_demo)), SequentialSampler(range(n_replay)), n_demo,
                                batch, fraction, seed=0, n_batches=2000)
    shares = []
    for indices in sampler:
        assert len(indices) == batch
        replayed = sum(i >= n_demo for i in indices)
        assert abs(replayed - fraction * batch) < 1  # stochastic rounding: floor or ceil
        assert all(0 <= i < n_demo + n_replay for i in indices)
        shares.append(replayed / batch)
    assert abs(np.mean(shares) - fraction) < 0.005


@pytest.mark.parametrize("mode", ["lora", "head"])
def test_merge_of_one_trained_partition_is_that_partition(mode):
    policy = routed(mode)
    policy.activate("window-open-v3")
    with torch.no_grad():
        for p in policy.get_optim_params():
            p.add_(0.05 * torch.randn_like(p))
    single = merge(policy, ["window-open-v3"])
    assert type(single) is DiffusionPolicy
    batch = diffusion_batch(b=3)
    torch.manual_seed(1)
    a, _ = policy.forward(batch)
    torch.manual_seed(1)
    b, _ = single.forward(batch)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_change_kinds_need_separated_intervals():
    pre = {"ci95": [0.4, 0.8]}
    assert change_kind(pre, {"ci95": [0.85, 1.0]}) == "gained"
    assert change_kind(pre, {"ci95": [0.0, 0.3]}) == "lost"
    assert change_kind(pre, {"ci95": [0.5, 0.9]}) == "retained"


# ---------------------------------------------------------------- in the round loop
@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, lerobot_home):
    out = tmp_path_factory.mktemp("iso") / "lora"
    run_cli([*TINY_ARGS, f"--output_dir={out}", "--amf.strategy=rebalancing", "--amf.isolation=lora"], lerobot_home)
    return out


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
    loaded, pre, post = load_routed_policy(lora_run / "checkpoints/last/routed_model")
    assert isinstance(loaded, RoutedPolicy) and loaded.partitions.names == ["reach-v3", "drawer-close-v3"]
    assert pre is not None and post is not None
    assert (lora_run / "checkpoints/last/pretrained_model/model.safetensors").exists()  # the merged single model
