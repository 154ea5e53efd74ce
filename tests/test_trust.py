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
