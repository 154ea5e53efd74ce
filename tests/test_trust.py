"""Files from others are checked before use (``lerobot_amf/trust.py``): a checkpoint's processor
files may name only LeRobot processor steps and state files inside their folder (LeRobot 0.6.1
would import and call anything they name), ``routing.json`` names only plain partition names, and
the numbers they hold (statistics, demo frames) are finite."""

import json
import sys

import pytest
import torch
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
from lerobot.policies.factory import make_pre_post_processors
from lerobot.processor.pipeline import PolicyProcessorPipeline

import lerobot_amf  # noqa: F401  (installs the guard, as every entry point does)
from conftest import features
from lerobot_amf.isolation import load_routed_policy
from lerobot_amf.isolation.partitions import Partitions
from lerobot_amf.trust import UntrustedFileError, check_plain_name

PRE = "policy_preprocessor.json"


def save_checkpoint(path, stats=None):
    """A real LeRobot diffusion checkpoint folder at ``path``: config, weights and both processor files."""
    torch.manual_seed(0)
    cfg = DiffusionConfig(**features(), down_dims=(16, 32), diffusion_step_embed_dim=16, device="cpu",
                          noise_scheduler_type="DDIM", num_inference_steps=3, push_to_hub=False)
    DiffusionPolicy(cfg).save_pretrained(path)
    for processor in make_pre_post_processors(cfg, dataset_stats=stats):
        processor.save_pretrained(path)
    return path


@pytest.fixture
def checkpoint(tmp_path):
    return save_checkpoint(tmp_path / "ckpt")


def eval_errors(path, out, monkeypatch, capsys) -> tuple[int, list[str]]:
    """``lerobot-amf-eval`` of the checkpoint at ``path`` in this process: exit code, its error lines."""
    from lerobot_amf import eval_cli

    monkeypatch.setattr(sys, "argv", ["lerobot-amf-eval", f"--policy.path={path}", "--env.type=mw_state",
                                      "--env.task=reach-v3", "--amf.eval_episodes=1", f"--output_dir={out}"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        eval_cli.main()
    return stop.value.code, [line for line in capsys.readouterr().err.splitlines()
                             if line.startswith("lerobot-amf-eval: error:")]


def add_step(path, step: dict, first: bool = True) -> None:
    config = json.loads((path / PRE).read_text())
    config["steps"] = [step, *config["steps"]] if first else [*config["steps"], step]
    (path / PRE).write_text(json.dumps(config))


def test_an_untouched_checkpoint_loads(checkpoint):
    pipeline = PolicyProcessorPipeline.from_pretrained(checkpoint, config_filename=PRE)
    assert len(pipeline.steps) == len(json.loads((checkpoint / PRE).read_text())["steps"]) > 0


@pytest.mark.parametrize("step, needle", [
    ({"class": "os.system", "config": {"command": "touch {marker}"}}, "'os.system'"),
    ({"class": "subprocess.run", "config": {"args": ["touch", "{marker}"]}}, "'subprocess.run'"),
    ({"class": "builtins.exec", "config": {"source": "open('{marker}', 'w')"}}, "'builtins.exec'"),
    ({"class": "lerobot.utils.utils.init_logging", "config": {}}, "not one of the steps lerobot-amf loads"),
    ({"registry_name": "no_such_step", "config": {}}, "not one of the steps lerobot-amf loads"),
    ({"registry_name": "normalizer_processor", "config": {}, "state_file": "../../../outside.safetensors"},
     "not a plain name"),
])
def test_a_hostile_processor_file_runs_nothing_and_is_one_line(checkpoint, tmp_path, step, needle):
    marker = tmp_path / "marker"
    add_step(checkpoint, json.loads(json.dumps(step).replace("{marker}", str(marker))))
    with pytest.raises(UntrustedFileError, match="refused") as err:
        PolicyProcessorPipeline.from_pretrained(checkpoint, config_filename=PRE)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_lerobot_amf_eval_of_a_hostile_checkpoint_stops_before_the_command_runs(checkpoint, tmp_path,
                                                                               monkeypatch, capsys):
    marker = tmp_path / "marker"
    add_step(checkpoint, {"class": "os.system", "config": {"command": f"touch {marker}"}})
    code, err = eval_errors(checkpoint, tmp_path / "eval", monkeypatch, capsys)
    assert code == 2 and len(err) == 1 and "'os.system'" in err[0], err
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "", "a\\b", 3])
def test_hostile_partition_names_in_routing_json_are_refused(name):
    with pytest.raises(UntrustedFileError, match="not a plain name"):
        Partitions.from_json({"scheme": "per_task", "groups": {name: ["reach-v3"]}})
    with pytest.raises(UntrustedFileError):
        check_plain_name(name, "Partition name")


def test_plain_partition_names_pass():
    for name in ("reach-v3", "libero_10", "cluster0_reach-v3", "suite.v2"):
        assert check_plain_name(name, "Partition name") == name


def test_a_routed_model_whose_routing_json_climbs_out_is_refused_before_reading_files(checkpoint, tmp_path):
    routed = tmp_path / "routed_model"
    (routed / "adapters").mkdir(parents=True)
    (routed / "routing.json").write_text(json.dumps({
        "format": "lerobot_amf.routed/1", "mode": "lora", "base": {"pretrained_path": str(checkpoint)},
        "partitions": {"scheme": "per_task", "groups": {"../../../etc": ["reach-v3"]}},
        "task_of_instruction": {}}))
    with pytest.raises(UntrustedFileError, match="not a plain name"):
        load_routed_policy(routed)


def nan_stats(action=4) -> dict:
    stats = {k: {"mean": torch.zeros(n), "std": torch.ones(n)} for k, n in (("observation.state", 39),
                                                                           ("observation.environment_state", 50))}
    return {**stats, "action": {"mean": torch.full((action,), float("nan")), "std": torch.ones(action)}}


def test_lerobot_amf_eval_of_a_checkpoint_with_nan_statistics_is_one_line_and_writes_nothing(tmp_path, monkeypatch,
                                                                                          capsys):
    """NaN normalisation statistics in a checkpoint evaluated as a quiet 0 % before the check."""
    out = tmp_path / "eval"
    code, err = eval_errors(save_checkpoint(tmp_path / "ckpt", nan_stats()), out, monkeypatch, capsys)
    assert code == 2 and len(err) == 1, err
    assert "'action.mean' holds 4 non-finite value(s)" in err[0] and "NormalizerProcessorStep" in err[0], err
    assert not out.exists()


def test_check_finite_names_the_array_and_passes_finite_ones():
    import numpy as np

    from lerobot_amf.trust import check_finite

    check_finite({"action": np.zeros((3, 4), dtype=np.float32), "index": np.arange(3)}, "demo")
    with pytest.raises(UntrustedFileError, match="demo: 'observation.state' holds 1 non-finite value"):
        check_finite({"action": np.zeros(2), "observation.state": np.array([0.0, np.inf])}, "demo")


# ---- 1. code from a checkpoint: only the reviewed steps, with reviewed configs; remote code never runs
def evil_tokenizer(folder, marker):
    """A tokenizer folder whose ``auto_map`` names a Python file that creates ``marker`` on import."""
    folder.mkdir(parents=True)
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    auto = {"auto_map": {"AutoTokenizer": ["evil.EvilTokenizer", None], "AutoProcessor": "evil.EvilProcessor"}}
    for name in ("tokenizer_config.json", "processor_config.json", "preprocessor_config.json"):
        (folder / name).write_text(json.dumps(auto))
    (folder / "config.json").write_text(json.dumps({"model_type": "evil_model", **auto}))
    return folder


@pytest.mark.parametrize("step", [
    {"registry_name": "action_tokenizer_processor", "config": {"action_tokenizer_name": "{evil}"}},
    {"class": "lerobot.processor.tokenizer_processor.ActionTokenizerProcessorStep",
     "config": {"action_tokenizer_name": "{evil}", "trust_remote_code": True}},
    {"registry_name": "tokenizer_processor", "config": {"tokenizer_name": "{evil}"}},
    {"registry_name": "normalizer_processor", "config": {"eps": 1e-8, "stats": {"action": {"mean": [0.0]}}}},
])
def test_a_registered_step_that_would_load_code_or_read_elsewhere_is_refused(checkpoint, tmp_path, step):
    """LeRobot 0.6.1's own ActionTokenizerProcessorStep loads with trust_remote_code=True; a
    tokenizer named by path is read from anywhere; a config key the step does not save is refused."""
    marker = tmp_path / "marker"
    evil = evil_tokenizer(tmp_path / "attacker", marker)
    add_step(checkpoint, json.loads(json.dumps(step).replace("{evil}", str(evil))))
    with pytest.raises(UntrustedFileError, match="refused") as err:
        PolicyProcessorPipeline.from_pretrained(checkpoint, config_filename=PRE)
    assert "\n" not in str(err.value) and not marker.exists()


def test_a_tokenizer_with_custom_code_inside_the_checkpoint_is_never_run(checkpoint, tmp_path):
    """Inside the folder is allowed for a tokenizer; its custom code still never runs (transformers'
    stdin prompt is off, so there is no "y" to give)."""
    marker = tmp_path / "marker"
    evil = evil_tokenizer(checkpoint / "tokenizer", marker)
    add_step(checkpoint, {"registry_name": "tokenizer_processor", "config": {"tokenizer_name": str(evil)}})
    with pytest.raises(UntrustedFileError, match="custom code"):
        PolicyProcessorPipeline.from_pretrained(checkpoint, config_filename=PRE)
    assert not marker.exists()


def test_the_loadable_policy_types_are_the_families_served():
    from lerobot_amf.families import supported_types
    from lerobot_amf.trust import LOADABLE_POLICY_TYPES

    assert set(LOADABLE_POLICY_TYPES) == set(supported_types())


def edit_config(checkpoint, **changes):
    config = json.loads((checkpoint / "config.json").read_text())
    config.update(changes)
    (checkpoint / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("changes, needle", [
    ({"type": "pi0_fast"}, "lerobot-amf loads only"),  # builds with trust_remote_code=True on a named repo
    ({"type": "evil"}, "lerobot-amf loads only"),
    ({"use_peft": True}, "use_peft"),
    ({"horizon": 10**9}, "horizon=1,000,000,000"),
    ({"num_inference_steps": 10**9}, "num_inference_steps"),
    ({"down_dims": [16] * 5000}, "items"),
    ({"vlm_model_name": "{outside}"}, "outside the checkpoint"),
    ({"input_features": {"observation.state": {"type": "STATE", "shape": [10**5, 10**5]}}}, "values per feature"),
])
def test_a_checkpoint_config_is_checked_before_lerobot_reads_it(checkpoint, tmp_path, changes, needle):
    from lerobot_amf.trust import check_checkpoint

    (tmp_path / "outside").mkdir()
    edit_config(checkpoint, **json.loads(json.dumps(changes).replace("{outside}", str(tmp_path / "outside"))))
    with pytest.raises(UntrustedFileError, match="refused") as err:
        check_checkpoint(checkpoint)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_folder_the_user_names_on_the_command_line_is_allowed(checkpoint, tmp_path):
    from lerobot_amf.trust import check_checkpoint

    (tmp_path / "my_vlm").mkdir()
    edit_config(checkpoint, vlm_model_name=str(tmp_path / "my_vlm"))
    check_checkpoint(checkpoint, user_values={"vlm_model_name": str(tmp_path / "my_vlm")})


# ---- 2. nothing read outside the folder: links, special files, paths the files hold
def finite_stats() -> dict:
    return {k: {"mean": torch.zeros(n), "std": torch.ones(n)}
            for k, n in (("observation.state", 39), ("observation.environment_state", 50), ("action", 4))}


@pytest.mark.parametrize("target", ["model.safetensors", "config.json", "state"])
def test_a_link_out_of_the_checkpoint_is_refused_before_anything_reads_it(tmp_path, target):
    from lerobot_amf.trust import check_checkpoint

    checkpoint = save_checkpoint(tmp_path / "ckpt", finite_stats())
    if target == "state":
        target = next(p.name for p in checkpoint.glob("policy_preprocessor*.safetensors"))
    secret = tmp_path / "secret"
    secret.write_bytes((checkpoint / target).read_bytes())
    (checkpoint / target).unlink()
    (checkpoint / target).symlink_to(secret)
    with pytest.raises(UntrustedFileError, match="is a link to .* outside"):
        check_checkpoint(checkpoint)
    if target.startswith("policy_"):  # LeRobot's own loader path (stock lerobot-eval) is guarded too
        with pytest.raises(UntrustedFileError, match="outside"):
            PolicyProcessorPipeline.from_pretrained(checkpoint, config_filename=PRE)


def test_a_fifo_in_place_of_a_state_file_is_refused_without_blocking(tmp_path):
    import os

    checkpoint = save_checkpoint(tmp_path / "ckpt", finite_stats())
    state = next(checkpoint.glob("policy_preprocessor*.safetensors"))
    state.unlink()
    os.mkfifo(state)
    with pytest.raises(UntrustedFileError, match="not a regular file"):
        PolicyProcessorPipeline.from_pretrained(checkpoint, config_filename=PRE)


def test_a_link_inside_the_folder_and_a_hub_snapshot_pass(checkpoint, tmp_path):
    from lerobot_amf.trust import check_tree

    (checkpoint / "alias.json").symlink_to(checkpoint / "config.json")
    check_tree(checkpoint, "checkpoint")
    repo = tmp_path / "models--me--ckpt"
    snapshot = repo / "snapshots" / "abc"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "blobs" / "123").write_text("{}")
    (snapshot / "config.json").symlink_to("../../blobs/123")
    check_tree(snapshot, "snapshot")  # the Hub cache's own links, into the repo's blobs


def test_the_pretraining_record_cannot_point_its_demos_outside(checkpoint):
    from lerobot_amf.pretrain import PRETRAIN_RECORD, pretrain_demos_ref, read_pretrain_record

    (checkpoint / PRETRAIN_RECORD).write_text(json.dumps(
        {"demos_per_task": {"reach-v3": 1}, "demos": {"repo_id": "x/y", "root": "../../elsewhere"}}))
    with pytest.raises(UntrustedFileError, match="not a relative path inside"):
        pretrain_demos_ref(checkpoint, read_pretrain_record(checkpoint))


# ---- 6. malformed and oversized files: one line, before anything is allocated
def test_json_from_others_is_bounded_in_size_and_depth(tmp_path):
    from lerobot_amf.trust import read_json

    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "big.json").write_text('{"a": "' + "x" * 2_000 + '"}')
    (tmp_path / "bad.json").write_text('{"type": "diffu')
    (tmp_path / "strings.json").write_text(json.dumps({"a": "[[[[" * 100}))  # brackets inside strings do not nest
    with pytest.raises(UntrustedFileError, match="nests 100000 levels"):
        read_json(tmp_path / "deep.json", "f")
    with pytest.raises(UntrustedFileError, match="over the 1,000"):
        read_json(tmp_path / "big.json", "f", max_bytes=1_000)
    with pytest.raises(UntrustedFileError, match="not valid JSON"):
        read_json(tmp_path / "bad.json", "f")
    assert read_json(tmp_path / "strings.json", "f") == {"a": "[[[[" * 100}


@pytest.mark.parametrize("damage", ["truncate", "header_length", "offsets"])
def test_a_damaged_safetensors_file_is_one_line(checkpoint, damage):
    import struct

    from lerobot_amf.trust import check_checkpoint

    path = checkpoint / "model.safetensors"
    data = path.read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "header_length":
        data = struct.pack("<Q", 10**12) + data[8:]
    else:
        n = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8 : 8 + n])
        name = next(k for k in header if k != "__metadata__")
        header[name]["data_offsets"][1] += 4
        raw = json.dumps(header).encode()
        data = struct.pack("<Q", len(raw)) + raw + data[8 + n :]
    path.write_bytes(data)
    with pytest.raises(UntrustedFileError, match="model.safetensors"):
        check_checkpoint(checkpoint)


# ---- 5. resume: every demo record is the run's and is its dataset episode
def test_demo_records_outside_the_pool_twice_or_out_of_order_are_named():
    from lerobot_amf.data import check_demo_records
    from lerobot_amf.errors import AMFInputError

    good = [{"demo_id": f"d{i}", "task": "reach-v3", "episode_index": i, "length": 5} for i in range(3)]
    check_demo_records(good, ["reach-v3"])
    for bad, needle in [({**good[1], "task": "push-v3"}, "record 1 (d1, task 'push-v3') holds a task outside the pool"),
                        ({**good[1], "demo_id": "d0"}, "record 1 (d0, task 'reach-v3') holds a demo recorded twice"),
                        ({**good[1], "episode_index": 7}, "holds episode 7 where 1 belongs")]:
        with pytest.raises(AMFInputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            check_demo_records([good[0], bad, good[2]], ["reach-v3", "drawer-close-v3"])


# ---- 7. one rule for every CLI: a report goes into a new (or empty) folder
def test_lerobot_amf_eval_writes_only_into_a_new_or_empty_output_dir(checkpoint, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"  # what --output_dir=/ or ~ stands for: a folder that holds someone's files
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    code, err = eval_errors(checkpoint, home, monkeypatch, capsys)
    assert code == 2 and len(err) == 1 and "already exists and is not an empty folder" in err[0], err
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt"]
