"""The run plan of ``train.py`` (``plan_run``: pool, rounds, weights, partitions, checked before
anything is written) and its check that a checkpoint fits the env. The CLI itself, end to end:
test_train_cli.py."""

import pytest
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

from lerobot_amf.configs import AMFConfig, AMFTrainPipelineConfig
from lerobot_amf.envs.metaworld_state import MetaworldCatalog, MetaworldStateEnvConfig
from lerobot_amf.errors import AMFInputError
from lerobot_amf.sources.metaworld import MetaworldExpertSource
from lerobot_amf.train import plan_run

POOL = ["reach-v3", "drawer-close-v3", "window-open-v3"]


def config(**amf) -> AMFTrainPipelineConfig:
    return AMFTrainPipelineConfig(policy=DiffusionConfig(), env=MetaworldStateEnvConfig(task=",".join(POOL)),
                                  amf=AMFConfig(**amf))


def plan(source=None, **amf):
    return plan_run(config(**amf), source or MetaworldExpertSource(), MetaworldCatalog())


def test_plan_splits_the_budget_into_rounds_and_normalises_weights():
    p = plan(rounds=3, demos_per_round=4, budget=10, target_weights={"reach-v3": 2.0, "drawer-close-v3": 1.0,
                                                                      "window-open-v3": 1.0})
    assert p.pool == POOL and p.rounds == [4, 4, 2] and p.budget == 10
    assert p.target_weights == {"reach-v3": 0.5, "drawer-close-v3": 0.25, "window-open-v3": 0.25}
    assert p.vocabulary.one_hot[0] == "assembly-v3" and len(p.vocabulary.one_hot) == 50
    assert set(p.vocabulary.task_of_instruction.values()) == set(POOL)
    assert p.partitions.groups == {"all": POOL}  # shared weights: one partition


def test_plan_pool_from_amf_tasks_strips_spaces_and_keeps_order():
    p = plan(tasks=" window-open-v3 , reach-v3,reach-v3")
    assert p.pool == ["window-open-v3", "reach-v3"]


def test_partial_target_weights_give_the_other_tasks_zero():
    p = plan(target_weights={"reach-v3": 3.0})
    assert p.target_weights == {"reach-v3": 1.0, "drawer-close-v3": 0.0, "window-open-v3": 0.0}


@pytest.mark.parametrize("amf, needle", [
    ({"tasks": "reach-v3,Reach-V3x"}, "Reach-V3x"),
    ({"tasks": "Reach-v3"}, "did you mean reach-v3"),
    ({"tasks": " , "}, "pool is empty"),
    ({"target_weights": {"push-v3": 1.0}}, "push-v3"),
    ({"target_weights": {"reach-v3": -1.0}}, ">= 0"),
    ({"target_weights": {"reach-v3": 0.0}}, "positive sum"),
    ({"budget": 13, "rounds": 3, "demos_per_round": 4}, "cannot be spent"),
])
def test_plan_rejects_bad_input_with_one_line(amf, needle):
    with pytest.raises(AMFInputError, match=needle.replace("(", r"\(")):
        plan(**amf)


def test_plan_rejects_a_budget_beyond_the_source():
    with pytest.raises(AMFInputError, match="exceeds what source"):
        plan(source=MetaworldExpertSource(demos_per_task=1), rounds=1, demos_per_round=4)


def test_per_suite_partitions_come_from_the_env_catalogue():
    p = plan_run(config(isolation="lora", partitions="per_suite"), MetaworldExpertSource(), MetaworldCatalog())
    assert p.partitions.groups == {"easy": ["reach-v3", "drawer-close-v3", "window-open-v3"]}
    assert plan_run(config(isolation="lora", partitions="clustered"), MetaworldExpertSource(),
                    MetaworldCatalog()).partitions is None  # decided later, from the pretrained policy


def test_a_pool_with_two_tasks_of_one_instruction_is_refused():
    pytest.importorskip("libero")
    from lerobot_amf.envs.libero import LiberoCatalog

    catalog = LiberoCatalog()
    twins = catalog.instruction_collisions(catalog.all_tasks())
    pair = next(iter(twins.values()))[:2]
    cfg = config(tasks=",".join(pair))
    with pytest.raises(AMFInputError, match="same instruction"):
        plan_run(cfg, MetaworldExpertSource(), catalog)


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_the_env_is_one_line(tiny_run):
    """A Metaworld checkpoint (39-dim state, one-hot task) asked to act in LIBERO (8-dim state)."""
    pytest.importorskip("libero")
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.envs.configs import LiberoEnv

    from lerobot_amf.envs.metaworld_state import MetaworldStateEnvConfig
    from lerobot_amf.errors import AMFInputError
    from lerobot_amf.train import check_policy_fits_env

    ckpt = tiny_run / "checkpoints" / "last" / "pretrained_model"
    policy_cfg = PreTrainedConfig.from_pretrained(ckpt)
    check_policy_fits_env(policy_cfg, MetaworldStateEnvConfig(task="reach-v3"))  # its own env: fits
    with pytest.raises(AMFInputError) as err:
        check_policy_fits_env(policy_cfg, LiberoEnv(task="libero_spatial"))
    message = str(err.value)
    assert "does not fit --env.type=libero" in message and "\n" not in message
    assert "observation.environment_state is missing" in message
