"""The LIBERO task catalogue (``envs/libero.py``, from the benchmark definitions inside the ``libero``
package): pool parsing and its errors, one-task env configs, the protocol. No rendering here: these
run in seconds (the simulator itself: test_libero_env.py)."""

import collections

import pytest
from lerobot.envs.configs import LiberoEnv as LiberoEnvConfig

from lerobot_amf.envs.libero import (
    LIBERO_SUITES,
    LiberoCatalog,
    libero_tasks,
)
from lerobot_amf.errors import AMFInputError

CATALOG = LiberoCatalog()
SUITE_SIZES = {"libero_spatial": 10, "libero_object": 10, "libero_goal": 10, "libero_10": 10, "libero_90": 90}


def test_catalogue_holds_the_130_tasks_of_the_five_suites_in_lerobot_order():
    from lerobot.envs.libero import _get_suite

    tasks = CATALOG.all_tasks()
    assert len(tasks) == len(set(tasks)) == 130
    assert collections.Counter(CATALOG.suite_of(t) for t in tasks) == SUITE_SIZES
    for suite in LIBERO_SUITES:  # the suite objects LeRobot's LiberoEnv builds its tasks from
        lerobot_suite = _get_suite(suite)
        ours = [t for t in libero_tasks().values() if t.suite == suite]
        assert [t.task_id for t in ours] == list(range(SUITE_SIZES[suite]))
        for t in ours:
            task = lerobot_suite.get_task(t.task_id)  # LeRobot: task_description = task.language
            assert (t.name, t.instruction, t.init_states_file) == (task.name, task.language, task.init_states_file)
            assert t.pool_name == f"{suite}/{task.name}" and CATALOG.instruction(t.pool_name) == task.language


def test_instructions_are_unique_per_10_task_suite_and_libero_90_repeats_some():
    main40 = [t for t in CATALOG.all_tasks() if CATALOG.suite_of(t) != "libero_90"]
    assert len({CATALOG.instruction(t) for t in main40}) == 40
    assert CATALOG.instruction_collisions(main40) == {}
    for suite in LIBERO_SUITES[:4]:
        pool = CATALOG.parse_pool(suite)
        assert len({CATALOG.instruction(t) for t in pool}) == 10
    libero_90 = CATALOG.parse_pool("libero_90")
    assert len({CATALOG.instruction(t) for t in libero_90}) == 74  # 90 scenes-and-goals, 74 distinct sentences
    clashes = CATALOG.instruction_collisions(["libero_goal/turn_on_the_stove", *libero_90])
    assert clashes["turn on the stove"] == ["libero_goal/turn_on_the_stove", "libero_90/KITCHEN_SCENE3_turn_on_the_stove",
                                            "libero_90/KITCHEN_SCENE9_turn_on_the_stove"]
    assert CATALOG.one_hot_vocabulary() is None  # language-conditioned


def test_shared_instructions_name_the_10_task_suites_task_first():
    vocab = CATALOG.vocabulary(CATALOG.all_tasks())
    assert vocab.one_hot is None
    assert vocab.task_of_instruction["turn on the stove"] == "libero_goal/turn_on_the_stove"
    main40 = [t for t in CATALOG.all_tasks() if CATALOG.suite_of(t) != "libero_90"]
    assert all(vocab.task_of_instruction[CATALOG.instruction(t)] == t for t in main40)
    only_90 = CATALOG.vocabulary(CATALOG.parse_pool("libero_90"))
    assert only_90.task_of_instruction["turn on the stove"] == "libero_90/KITCHEN_SCENE3_turn_on_the_stove"


def test_fixture_task_strings_are_catalogue_instructions():
    from benchmarks.libero_dataset import LIBERO_TASKS

    task_of = CATALOG.vocabulary(CATALOG.all_tasks()).task_of_instruction
    assert [CATALOG.instruction(task_of[s]) for s in LIBERO_TASKS] == LIBERO_TASKS


def test_pools_accept_suites_ids_and_names_in_order_without_repeats():
    goal = CATALOG.parse_pool("libero_goal")
    assert len(goal) == 10 and all(t.startswith("libero_goal/") for t in goal)
    pool = CATALOG.parse_pool(" libero_10/3 , libero_goal/open_the_middle_drawer_of_the_cabinet,libero_10/3")
    assert pool == [CATALOG.parse_pool("libero_10")[3], "libero_goal/open_the_middle_drawer_of_the_cabinet"]
    assert CATALOG.parse_pool(["libero_spatial/0", "libero_spatial"]) == CATALOG.parse_pool("libero_spatial")
    assert CATALOG.parse_pool(pool) == pool  # canonical names parse to themselves


@pytest.mark.parametrize("spec, named", [
    ("libero_spatal", "'libero_spatal' (did you mean libero_spatial?)"),
    ("libero_10/10", "'libero_10/10' (libero_10 task ids are 0..9)"),
    ("libero_goal/open_the_midle_drawer_of_the_cabinet",
     "did you mean libero_goal/open_the_middle_drawer_of_the_cabinet?"),
    ("libero_goal,metaworld/reach-v3", "'metaworld/reach-v3'"),
    (" , ", "empty"),
])
def test_bad_pool_names_are_one_line_errors_naming_them_and_the_suites(spec, named):
    with pytest.raises(AMFInputError) as err:
        CATALOG.parse_pool(spec)
    message = str(err.value)
    assert named in message and "\n" not in message
    assert all(suite in message for suite in LIBERO_SUITES)


def test_env_for_builds_exactly_one_task_of_its_suite():
    cfg = LiberoEnvConfig(task="libero_spatial,libero_10", episode_length=7)
    task = CATALOG.parse_pool("libero_10/4")[0]
    one = CATALOG.env_for(cfg, task)
    assert (one.type, one.task, one.task_ids, one.episode_length) == ("libero", "libero_10", [4], 7)
    assert one.gym_kwargs["task_ids"] == [4]
    assert (cfg.task, cfg.task_ids) == ("libero_spatial,libero_10", None)  # the run's config is untouched
    with pytest.raises(AMFInputError, match="Unknown LIBERO task 'libero_10/4'"):
        CATALOG.env_for(cfg, "libero_10/4")  # env_for takes canonical pool names only


def test_the_configured_camera_size_reaches_the_env_and_the_policy_features():
    """LeRobot 0.6.1 passes observation_height/width to LiberoEnv (gym_kwargs): any size is rendered."""
    task = CATALOG.parse_pool("libero_10/4")[0]
    one = CATALOG.env_for(LiberoEnvConfig(task="libero_10", observation_height=128, observation_width=96), task)
    assert (one.gym_kwargs["observation_height"], one.gym_kwargs["observation_width"]) == (128, 96)
    assert one.features["pixels/agentview_image"].shape == (128, 96, 3)
    features = CATALOG.policy_features(one)
    assert features["observation.images.image"].shape == features["observation.images.image2"].shape == (3, 128, 96)
    assert features["observation.state"].shape == (8,) and features["action"].shape == (7,)
    assert CATALOG.protocol(one)["image_size"] == [128, 96]


def test_default_pool_reads_env_task_and_task_ids():
    assert CATALOG.default_pool(LiberoEnvConfig(task="libero_spatial,libero_goal")) == \
        CATALOG.parse_pool("libero_spatial") + CATALOG.parse_pool("libero_goal")
    assert CATALOG.default_pool(LiberoEnvConfig(task="libero_10", task_ids=[2, 0])) == \
        CATALOG.parse_pool("libero_10/2,libero_10/0")
    with pytest.raises(AMFInputError, match="task_ids selects tasks of whole suites.*libero_10/1"):
        CATALOG.default_pool(LiberoEnvConfig(task="libero_goal,libero_10/1", task_ids=[0]))


def test_protocol_records_steps_initial_states_images_and_cameras():
    proto = CATALOG.protocol(LiberoEnvConfig(task="libero_10", observation_height=256, observation_width=256))
    assert proto["max_steps"] == {"libero_spatial": 280, "libero_object": 280, "libero_goal": 300,
                                  "libero_10": 520, "libero_90": 400}
    assert proto["image_size"] == [256, 256]
    assert proto["lerobot_fixes"] == ["use_npz_init_states", "freeze_finished_sub_envs"]
    assert (proto["control_freq_hz"], proto["hard_reset"]) == (20, True)
    assert proto["cameras"] == {"observation.images.image": "agentview_image",
                                "observation.images.image2": "robot0_eye_in_hand_image"}
    assert "e mod 50" in proto["initial_states"]
    assert CATALOG.protocol(LiberoEnvConfig(task="libero_10", episode_length=9))["max_steps"] == 9
    assert "random" in CATALOG.protocol(LiberoEnvConfig(task="libero_10", init_states=False))["initial_states"]
