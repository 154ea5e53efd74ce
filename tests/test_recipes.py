"""The ready-made recipes (``--config_path=recipes/...``) parse into ``AMFTrainPipelineConfig`` and
build offline: the pool through the env's task catalogue, the partitions, the policy config with
the recipe's settings (also under ``--policy.path``) and the demo source's settings."""

import sys
from pathlib import Path

import pytest
import yaml
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

from lerobot_amf.configs import AMFTrainPipelineConfig, wrap
from lerobot_amf.envs.tasks import task_catalog
from lerobot_amf.isolation.modes import plan_partitions
from lerobot_amf.train import check_policy_fits_env

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
LIBERO_SUITES = ["libero_spatial", "libero_object", "libero_goal", "libero_10"]


@wrap()
def parse(cfg: AMFTrainPipelineConfig) -> AMFTrainPipelineConfig:
    cfg.validate()
    return cfg


def load(monkeypatch, tmp_path, recipe: str, *flags: str):
    """The recipe as ``lerobot-amf-train --config_path=...`` reads it, and what it builds offline."""
    monkeypatch.setattr(sys, "argv", ["lerobot-amf-train", f"--config_path={RECIPES / recipe}",
                                      f"--output_dir={tmp_path / 'out'}", *flags])
    cfg = parse()
    catalog = task_catalog(cfg.env)
    pool = catalog.default_pool(cfg.env)
    return cfg, catalog, pool, plan_partitions(cfg, pool, catalog)


@pytest.fixture
def smolvla_base(tmp_path):
    """A checkpoint config shaped as lerobot/smolvla_base's (three cameras camera1..3, 6-dim state
    and action, LeRobot's push_to_hub default), to stand for it offline."""
    camera = PolicyFeature(FeatureType.VISUAL, (3, 256, 256))
    config = SmolVLAConfig(
        input_features={**{f"observation.images.camera{i}": camera for i in (1, 2, 3)},
                        "observation.state": PolicyFeature(FeatureType.STATE, (6,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))}, push_to_hub=True)
    (tmp_path / "smolvla_base").mkdir()
    config._save_pretrained(tmp_path / "smolvla_base")
    return tmp_path / "smolvla_base"


def test_libero_smolvla_recipe_over_smolvla_base(monkeypatch, tmp_path, smolvla_base):
    cfg, catalog, pool, partitions = load(monkeypatch, tmp_path, "libero_smolvla.yaml",
                                          f"--policy.path={smolvla_base}", "--policy.optimizer_lr=3e-5")
    assert cfg.env.type == "libero" and len(pool) == 40
    assert [catalog.suite_of(t) for t in pool] == [s for s in LIBERO_SUITES for _ in range(10)]
    assert cfg.amf.isolation == "lora" and partitions.scheme == "per_suite"
    assert {name: len(tasks) for name, tasks in partitions.groups.items()} == {s: 10 for s in LIBERO_SUITES}
    # The checkpoint's policy, with the recipe's settings on top (LeRobot alone would drop them
    # under --policy.path), and the command line's on top of both.
    policy = cfg.policy
    assert isinstance(policy, SmolVLAConfig) and str(policy.pretrained_path) == str(smolvla_base)
    assert policy.push_to_hub is False
    assert policy.optimizer_lr == 3e-5
    assert {k: (f.type, tuple(f.shape)) for k, f in policy.input_features.items()} == {
        "observation.images.image": (FeatureType.VISUAL, (3, 256, 256)),
        "observation.images.image2": (FeatureType.VISUAL, (3, 256, 256)),
        "observation.state": (FeatureType.STATE, (8,))}
    assert tuple(policy.output_features["action"].shape) == (7,)
    check_policy_fits_env(policy, cfg.env)  # what LIBERO's processors give the policy
    amf = cfg.amf
    assert (amf.strategy, amf.source, amf.source_repo_id, amf.normalization) == ("amf", "hub", "lerobot/libero",
                                                                                "source")
    assert amf.push_to_hub is False and amf.rounds * amf.demos_per_round == 200


def test_libero_diffusion_recipe(monkeypatch, tmp_path):
    cfg, catalog, pool, partitions = load(monkeypatch, tmp_path, "libero_diffusion.yaml")
    assert len(pool) == 10 and {catalog.suite_of(t) for t in pool} == {"libero_10"}
    assert partitions.scheme == "per_task" and list(partitions.groups.values()) == [[t] for t in pool]
    policy = cfg.policy
    assert isinstance(policy, DiffusionConfig) and policy.pretrained_path is None  # pretrained by the run
    assert policy.push_to_hub is False and tuple(policy.crop_shape) == (224, 224)
    assert tuple(policy.down_dims) == (256, 512, 1024) and policy.noise_scheduler_type == "DDIM"
    # pinned against LeRobot 0.6's defaults: the same architecture, and no ResNet download at construction
    assert (policy.horizon, policy.n_action_steps, policy.pretrained_backbone_weights, policy.use_group_norm,
            policy.use_separate_rgb_encoder_per_camera, policy.resize_shape) == (16, 8, None, True, False, None)
    amf = cfg.amf
    assert (amf.strategy, amf.source, amf.source_repo_id) == ("amf", "hub", "lerobot/libero")
    # skewed pretraining pulled from the same source: 20 demos for the first 5 tasks, 2 for the rest
    from lerobot_amf.pretrain import pretrain_allocation

    assert list(pretrain_allocation(pool, amf.pretrain).values()) == [20] * 5 + [2] * 5
    assert amf.push_to_hub is False


def test_metaworld_default_recipe(monkeypatch, tmp_path):
    cfg, _, pool, partitions = load(monkeypatch, tmp_path, "metaworld_default.json")
    assert cfg.env.type == "mw_state"
    assert pool == ["reach-v3", "window-open-v3", "drawer-close-v3", "button-press-topdown-v3"]
    assert partitions.groups == {"all": pool}
    assert isinstance(cfg.policy, DiffusionConfig) and cfg.policy.push_to_hub is False
    # the strategy the hard study's preregistered rule picked (benchmarks/results/sample_efficiency_hard.json)
    assert (cfg.amf.strategy, cfg.amf.source) == ("amf_eval", "metaworld_expert")
    # concentrating the budget must not make the single model forget (benchmarks/results/forgetting.json)
    assert (cfg.amf.isolation, cfg.amf.replay_fraction) == ("shared_replay", 0.5)


def test_a_recipe_with_an_unknown_key_is_one_line_and_exit_2(monkeypatch, tmp_path, capsys):
    from lerobot_amf import train

    recipe = yaml.safe_load((RECIPES / "libero_diffusion.yaml").read_text())
    recipe["amf"]["demos_per_rounds"] = 10
    bad = tmp_path / "recipe.yaml"
    bad.write_text(yaml.safe_dump(recipe))
    monkeypatch.setattr(sys, "argv", ["lerobot-amf-train", f"--config_path={bad}", f"--output_dir={tmp_path / 'out'}"])
    with pytest.raises(SystemExit) as stop:
        train.main()
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("lerobot-amf-train: error: ")]
    assert stop.value.code == 2 and "Traceback" not in err and err.strip().endswith(line)
    assert line.startswith("lerobot-amf-train: error: `amf`") and "demos_per_rounds" in line
    assert "Allowed in amf: " in line and "demos_per_round," in line
    assert not (tmp_path / "out").exists()


def test_the_embedded_recipe_runs_the_strategy_the_hard_study_picks_by_its_preregistered_rule():
    """Until the hard study is complete the recipe keeps the privileged rebalancing; then it must run the
    strategy the study's ``recipe_strategy`` names (written before any verdict)."""
    import json

    summary = json.loads((RECIPES.parent / "benchmarks" / "results" / "sample_efficiency_hard.json").read_text())
    strategy = json.loads((RECIPES / "metaworld_default.json").read_text())["amf"]["strategy"]
    chosen = summary["headline"]["recipe_strategy"]["strategy"]
    if summary["partial"]:
        assert chosen is None and strategy == "rebalancing"
    else:
        assert strategy == chosen, f"recipes/metaworld_default.json runs {strategy}; the hard study picks {chosen}"
