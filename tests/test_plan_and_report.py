"""The run plan (checked before anything is written) and the report rebuilt from a ledger."""

import pytest
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

from lerobot_amf.configs import AMFConfig, AMFTrainPipelineConfig
from lerobot_amf.envs.metaworld_state import MetaworldCatalog, MetaworldStateEnvConfig
from lerobot_amf.errors import AMFInputError
from lerobot_amf.selection.config import AMFSelectionConfig
from lerobot_amf.evaluation import pooled, summarise
from lerobot_amf.ledger import Ledger
from lerobot_amf.report import build_report
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


@pytest.mark.parametrize("setting, needle", [
    ({"kernel": "hessian"}, "Allowed: gradient, self_gradient, last_layer"),
    ({"n_draws": 0}, "n_draws=0: must be at least 1"),
    ({"states_per_demo": 1}, "states_per_demo=1: must be at least 2"),
    ({"max_variance_removed": 1.0}, "max_variance_removed=1.0: must be in (0, 1)"),
    ({"target_mass_floor": -0.1}, "target_mass_floor=-0.1: must be in [0, 1)"),
    ({"noise": 0.0}, "noise=0.0: must be > 0"),
])
def test_amf_selection_settings_out_of_range_are_one_line_errors(setting, needle):
    with pytest.raises(AMFInputError) as err:
        AMFSelectionConfig(**setting).validate()
    assert needle in str(err.value) and "\n" not in str(err.value)
    AMFSelectionConfig().validate()  # the defaults are valid


def test_plan_rejects_a_budget_beyond_the_source():
    with pytest.raises(AMFInputError, match="exceeds what source"):
        plan(source=MetaworldExpertSource(demos_per_task=1), rounds=1, demos_per_round=4)


def test_per_suite_partitions_come_from_the_env_catalogue():
    p = plan_run(config(isolation="lora", partitions="per_suite"), MetaworldExpertSource(), MetaworldCatalog())
    assert p.partitions.groups == {"easy": ["reach-v3", "drawer-close-v3", "window-open-v3"]}
    assert plan_run(config(isolation="lora", partitions="clustered"), MetaworldExpertSource(),
                    MetaworldCatalog()).partitions is None  # decided later, from the pretrained policy


# ---------------------------------------------------------------- report from a synthetic ledger
def _eval(rates: dict[str, int], n: int = 10) -> dict:
    per_task = {t: summarise(s, n) for t, s in rates.items()}
    return {"per_task": per_task, "overall": pooled(per_task, list(rates))}


def test_report_is_rebuilt_from_the_ledger(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append("run_start", pool=["a", "b", "c"], target_weights={"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, budget=4,
                  demos_per_round=[2, 2], strategy="uniform", seed=3, source={"name": "x"},
                  model={"isolation": "single model (shared weights, all tasks)"}, pretrain_counts={"a": 5, "b": 1, "c": 1},
                  eval_protocol={"episodes_per_task": 10})
    ledger.append("eval", round=-1, variant="pretrained", **_eval({"a": 9, "b": 0, "c": 8}))
    for r, (picks, counts, rates) in enumerate([(["b", "b"], {"a": 0, "b": 2, "c": 0}, {"a": 9, "b": 5, "c": 8}),
                                                (["b", "a"], {"a": 1, "b": 3, "c": 0}, {"a": 9, "b": 10, "c": 1})]):
        ledger.append("selection", round=r, tasks=picks, scores={"a": 0.1}, details={}, reason="why")
        ledger.append("train", round=r, metrics={"steps": 5})
        ledger.append("eval", round=r, variant="single model", **_eval(rates))
        ledger.append("round_end", round=r, demos_per_task=counts, checkpoint=f"round_{r}")
    report = build_report(tmp_path)
    assert report["complete"] is False  # no run_end yet
    assert [r["selected"] for r in report["rounds"]] == [["b", "b"], ["b", "a"]]
    assert report["demos_per_task"] == {"pretraining": {"a": 5, "b": 1, "c": 1}, "fine_tuning": {"a": 1, "b": 3, "c": 0}}
    assert report["rounds"][1]["demos_total"] == 4
    final = report["final"]
    assert final["fine_tuned_tasks"] == ["a", "b"]
    assert final["pretrained_on_fine_tuned_tasks"]["successes"] == 9  # a 9 + b 0
    assert final["fine_tuned_on_fine_tuned_tasks"]["successes"] == 19  # a 9 + b 10
    assert final["improved_beyond_intervals"] is True
    kinds = {t: c["kind"] for t, c in final["per_task_change"].items()}
    assert kinds == {"a": "retained", "b": "gained", "c": "lost"}
    assert final["not_fine_tuned_tasks"]["final"]["successes"] == 1
    ledger.append("run_end")
    assert build_report(tmp_path)["complete"] is True


def test_a_pool_with_two_tasks_of_one_instruction_is_refused():
    pytest.importorskip("libero")
    from lerobot_amf.envs.libero import LiberoCatalog, instruction_collisions, libero_tasks

    catalog = LiberoCatalog()
    twins = instruction_collisions(list(libero_tasks()))
    pair = next(iter(twins.values()))[:2]
    cfg = config(tasks=",".join(pair))
    with pytest.raises(AMFInputError, match="same instruction"):
        plan_run(cfg, MetaworldExpertSource(), catalog)
