"""The Hub demo source on LIBERO-shaped datasets served by a local Hub (only the network replaced)."""

import shutil
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
from huggingface_hub import constants as hf_constants
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.datasets.video_utils import decode_video_frames
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig

from lerobot_amf.data import write_demos
from lerobot_amf.errors import AMFInputError
from lerobot_amf.sources import hub as hub_module
from lerobot_amf.sources.hub import HubDatasetSource, make_hub_source
from lerobot_amf.trust import UntrustedFileError
from benchmarks.local_hub import LocalHub
from benchmarks.libero_dataset import CAMERAS, LIBERO_TASKS, build_libero_dataset, episode_frame

REPO = "lerobot/libero"
TASKS = LIBERO_TASKS[:3]  # episode e is of task e % 3; 2 episodes per data / video file
EPISODES_PER_TASK, FRAMES = 4, 5
SPATIAL, OBJECT, GOAL = TASKS


@pytest.fixture(scope="module")
def libero_repo(tmp_path_factory):
    return build_libero_dataset(tmp_path_factory.mktemp("hub") / "libero", TASKS, EPISODES_PER_TASK, FRAMES)


@pytest.fixture
def hub(libero_repo, tmp_path, monkeypatch):
    """Online, with the Hub at 127.0.0.1 and huggingface_hub's cache in the test's folder."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    with LocalHub({REPO: libero_repo}) as served:
        yield served


def go_offline(monkeypatch):
    """``HF_HUB_OFFLINE=1`` from now on: huggingface_hub 1.x reads it on every request (its client's
    request hook), so the client made online refuses from now on too."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)


def source(tmp_path, **kwargs) -> HubDatasetSource:
    return HubDatasetSource(REPO, root=tmp_path / "cache", **kwargs)


def files_of(episodes, source_):
    return {f for e in episodes for f in source_.files_of(e)}


def test_index_comes_from_the_metadata_alone(hub, tmp_path):
    src = source(tmp_path)
    assert src.tasks() == TASKS
    assert src.episodes_of_task == {task: [i, i + 3, i + 6, i + 9] for i, task in enumerate(TASKS)}
    assert all(src.remaining(task, set()) == EPISODES_PER_TASK for task in TASKS)
    assert hub.downloads() and all(f.startswith("meta/") for f in hub.downloads())
    assert src.fps == 10
    features = src.features()
    assert list(features) == [*CAMERAS, "observation.state", "action"]
    assert {features[c]["dtype"] for c in CAMERAS} == {"image"}  # the run's dataset stores frames
    assert features["observation.state"]["shape"] == (8,) and features["action"]["shape"] == (7,)


def test_pulls_are_seeded_without_replacement_and_fetch_only_their_episodes_files(hub, tmp_path, libero_repo):
    src = source(tmp_path, seed=3)
    before = len(hub.requests)
    first = src.pull(SPATIAL, 2, set())
    episodes = [d.info["episode_index"] for d in first]
    assert episodes == src.order(SPATIAL)[:2] and set(episodes) <= set(src.episodes_of_task[SPATIAL])
    assert [d.demo_id for d in first] == [f"hub/{REPO}@v3.0/episode_{e}" for e in episodes]
    # only the data and video files holding these two episodes were sent, each once
    sent = [r.file for r in hub.requests[before:] if r.bytes_sent]
    assert sorted(sent) == sorted(files_of(episodes, src))
    every_file = {f for f in hub.files(REPO) if not f.startswith("meta/")}
    assert len(sent) == 6 < len(every_file) == 18
    assert sum(d.info["bytes_fetched"] for d in first) == hub.bytes_sent() - sum(
        r.bytes_sent for r in hub.requests[:before]) == sum((libero_repo / f).stat().st_size for f in sent)
    for demo, episode in zip(first, episodes):
        assert demo.task == demo.instruction == SPATIAL
        np.testing.assert_array_equal(demo.frames["observation.state"][:, :2],
                                      [[episode, t] for t in range(FRAMES)])
        assert demo.frames[CAMERAS[0]].shape == (FRAMES, 16, 16, 3) and demo.frames[CAMERAS[0]].dtype == np.uint8

    taken = {d.demo_id for d in first}
    assert src.remaining(SPATIAL, taken) == 2
    second = src.pull(SPATIAL, 2, taken)
    assert {d.demo_id for d in second}.isdisjoint(taken)
    assert sorted(d.info["episode_index"] for d in first + second) == src.episodes_of_task[SPATIAL]
    assert src.remaining(SPATIAL, taken | {d.demo_id for d in second}) == 0

    # same seed, same order (and the same demos); another seed, another order
    again = source(tmp_path / "again", seed=3)
    assert [d.demo_id for d in again.pull(SPATIAL, 2, set())] == [d.demo_id for d in first]
    other = source(tmp_path / "other", seed=4)
    assert [other.order(t) for t in TASKS] != [src.order(t) for t in TASKS]


def test_episodes_in_files_already_cached_cost_nothing(hub, tmp_path, libero_repo):
    src = source(tmp_path)
    src.pull(SPATIAL, EPISODES_PER_TASK, set())  # episodes 0 3 6 9: files 0 1 3 4
    before = len(hub.requests)
    demos = src.pull(OBJECT, EPISODES_PER_TASK, set())  # episodes 1 4 7 10: files 0 2 3 5
    sent = sorted(r.file for r in hub.requests[before:] if r.bytes_sent)
    new = files_of([4, 10], src)
    assert sent == sorted(new)
    bytes_of = {d.info["episode_index"]: d.info["bytes_fetched"] for d in demos}
    assert bytes_of[1] == bytes_of[7] == 0
    assert bytes_of[4] + bytes_of[10] == sum((libero_repo / f).stat().st_size for f in new)
    assert src.bytes_fetched == sum(r.bytes_sent for r in hub.requests if r.file and not r.file.startswith("meta/"))


def test_frames_are_lerobots_own_frames(hub, tmp_path, libero_repo):
    src = source(tmp_path)
    demo = src.pull(GOAL, 1, set())[0]
    reference = LeRobotDataset(REPO, root=libero_repo)
    start = reference.meta.episodes[demo.info["episode_index"]]["dataset_from_index"]
    for t in range(FRAMES):
        item = reference[start + t]
        for key in CAMERAS:
            expected = (item[key] * 255).round().byte().permute(1, 2, 0).numpy()
            np.testing.assert_array_equal(demo.frames[key][t], expected)
        np.testing.assert_array_equal(demo.frames["action"][t], item["action"].numpy())


def test_video_backend_decodes_here(libero_repo):
    from lerobot.utils.import_utils import get_safe_default_video_backend

    video = next((libero_repo / "videos" / CAMERAS[0]).rglob("*.mp4"))
    frames = decode_video_frames(video, [0.0, 0.1], 1e-4, get_safe_default_video_backend())
    assert frames.shape == (2, 3, 16, 16)


def test_written_demos_carry_their_own_stats_and_renamed_cameras(hub, tmp_path):
    rename = {"observation.images.image2": "observation.images.wrist"}
    src = source(tmp_path, rename_map=rename)
    assert list(src.features()) == ["observation.images.image", "observation.images.wrist",
                                    "observation.state", "action"]
    demos = src.pull(SPATIAL, 2, set()) + src.pull(GOAL, 1, set())
    assert all("observation.images.wrist" in d.frames and "observation.images.image2" not in d.frames for d in demos)
    root = tmp_path / "run_demos"
    records = write_demos("local/run", root, src.fps, src.features(), demos)
    assert [r["source_episode_index"] for r in records] == [d.info["episode_index"] for d in demos]
    local = LeRobotDataset("local/run", root=root)
    state = np.concatenate([d.frames["observation.state"] for d in demos])
    np.testing.assert_allclose(local.meta.stats["observation.state"]["mean"], state.mean(0), rtol=1e-5)
    np.testing.assert_allclose(local.meta.stats["observation.state"]["max"], state.max(0))
    assert not np.allclose(local.meta.stats["observation.state"]["mean"], src.meta.stats["observation.state"]["mean"])
    assert local.meta.features["observation.images.wrist"]["dtype"] == "image"
    np.testing.assert_array_equal((local[1]["observation.images.wrist"] * 255).round().byte().permute(1, 2, 0).numpy(),
                                  demos[0].frames["observation.images.wrist"][1])
    assert local[0]["task"] == SPATIAL


def test_images_stored_in_parquet_come_back_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    repo = build_libero_dataset(tmp_path / "png", TASKS[:2], 2, 3, image_size=8, video=False)
    with LocalHub({"HuggingFaceVLA/libero": repo}):
        src = HubDatasetSource("HuggingFaceVLA/libero", root=tmp_path / "cache")
        demo = src.pull(OBJECT, 1, set())[0]
    episode = demo.info["episode_index"]
    for t in range(3):
        expected = episode_frame(episode, t, 8)
        for key in CAMERAS:
            np.testing.assert_array_equal(demo.frames[key][t], expected[key])


def test_task_names_map_to_pool_tasks(hub, tmp_path):
    pool = {SPATIAL: "libero_spatial/0", GOAL: "libero_goal/0"}
    src = source(tmp_path, task_of_instruction=pool)
    assert src.tasks() == ["libero_spatial/0", "libero_goal/0"]
    demo = src.pull("libero_goal/0", 1, set())[0]
    assert (demo.task, demo.instruction) == ("libero_goal/0", GOAL)
    with pytest.raises(AMFInputError, match="Task\\(s\\) 'pick up the alphabet soup"):
        src.validate_pool([OBJECT])


def test_revision_names_the_demos(hub, tmp_path):
    src = source(tmp_path, revision="main")
    assert src.pull(SPATIAL, 1, set())[0].demo_id.startswith(f"hub/{REPO}@main/episode_")
    assert any(r.path == f"/api/datasets/{REPO}/revision/main" for r in hub.requests)


def test_make_hub_source_reads_the_amf_config(hub, tmp_path):
    cfg = SimpleNamespace(source_repo_id=REPO, source_root=str(tmp_path / "cache"),
                          source_rename_map={"action": "action.joints"})
    src = make_hub_source(cfg, seed=0, task_of_instruction=None)
    assert (src.revision, src.root, "action.joints" in src.features()) == ("v3.0", tmp_path / "cache", True)
    with pytest.raises(AMFInputError) as err:
        make_hub_source(SimpleNamespace(), seed=0, task_of_instruction=None)
    assert str(err.value) == "amf.source=hub needs amf.source_repo_id (a LeRobot dataset, e.g. lerobot/libero)."


# --- errors, one line each -------------------------------------------------------------------------
def message(call) -> str:
    with pytest.raises(AMFInputError) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


def test_a_pool_task_absent_from_the_dataset(hub, tmp_path):
    src = source(tmp_path)
    assert message(lambda: src.validate_pool([SPATIAL, "put the wine bottle on top of the cabinet"])) == (
        "Task(s) 'put the wine bottle on top of the cabinet' not in dataset lerobot/libero@v3.0; its 3 tasks: "
        "'pick up the black bowl between the plate and th…', 'pick up the alphabet soup and place it in the b…', "
        "'open the middle drawer of the cabinet'."
    )


def test_exhausted_task_says_how_many_remain(hub, tmp_path):
    src = source(tmp_path)
    taken = {src.demo_id(e) for e in src.episodes_of_task[SPATIAL][:3]}
    before = len(hub.requests)
    assert message(lambda: src.pull(SPATIAL, 2, taken)) == (
        f"Dataset lerobot/libero@v3.0 has 1 episode(s) of task {SPATIAL!r} left (of 4); 2 were asked for."
    )
    assert len(hub.requests) == before  # nothing fetched
    assert src.pull(SPATIAL, 0, taken) == [] and len(hub.requests) == before


def test_dataset_without_task_labels(hub, tmp_path, libero_repo):
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(libero_repo, unlabelled)
    for path in (unlabelled / "meta" / "episodes").rglob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["tasks"]), path)
    assert message(lambda: HubDatasetSource(REPO, root=unlabelled)) == (
        "Dataset lerobot/libero@v3.0 has no task labels (no episode with one task string in meta/episodes): "
        "the hub source pulls demos by task and needs them."
    )


def test_offline_and_not_cached(hub, tmp_path, monkeypatch):
    go_offline(monkeypatch)
    root = tmp_path / "cache"
    assert message(lambda: source(tmp_path)) == (
        f"Dataset lerobot/libero@v3.0 is not cached in {root} (no meta/) and HF_HUB_OFFLINE=1 forbids "
        f"downloading it: run `hf download --repo-type dataset lerobot/libero --revision v3.0 --local-dir {root}` "
        f"while online, or unset HF_HUB_OFFLINE (or point amf.source_root at a local copy)."
    )
    assert hub.requests == [] and not root.exists()


def test_offline_with_metadata_cached_but_not_the_episodes(hub, tmp_path, monkeypatch):
    source(tmp_path)  # online: metadata only
    go_offline(monkeypatch)
    src = source(tmp_path)
    before = len(hub.requests)
    episode = src.order(GOAL)[0]
    missing = sorted(src.files_of(episode))
    assert message(lambda: src.pull(GOAL, 1, set())) == (
        f"Dataset lerobot/libero@v3.0 is not cached in {tmp_path / 'cache'} (missing 3 file(s) of the chosen "
        f"episodes: {', '.join(map(repr, missing))}) and HF_HUB_OFFLINE=1 forbids downloading it: run `hf download "
        f"--repo-type dataset lerobot/libero --revision v3.0 --local-dir {tmp_path / 'cache'}` while online, or "
        f"unset HF_HUB_OFFLINE (or point amf.source_root at a local copy)."
    )
    assert len(hub.requests) == before


def test_offline_with_everything_cached_needs_no_network(hub, tmp_path, monkeypatch):
    online = source(tmp_path)
    pulled = online.pull(GOAL, 2, set())
    go_offline(monkeypatch)
    src = source(tmp_path)
    before = len(hub.requests)
    again = src.pull(GOAL, 2, set())
    assert [d.demo_id for d in again] == [d.demo_id for d in pulled]
    assert [d.info["bytes_fetched"] for d in again] == [0, 0] and len(hub.requests) == before


def test_the_local_hub_is_reached_only_inside_its_block(libero_repo, tmp_path, monkeypatch):
    """huggingface_hub's own client (``get_session``) sends Hub requests to the local server inside
    the block; leaving it closes that client and puts huggingface_hub's own factory back."""
    from huggingface_hub import get_session

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    url = f"{hf_constants.ENDPOINT}/api/datasets/{REPO}/refs"
    with LocalHub({REPO: libero_repo}) as served:
        inside = get_session()
        assert inside.get(url).json()["tags"][0]["name"] == "v3.0"
        assert [r.path for r in served.requests] == [f"/api/datasets/{REPO}/refs"]
    assert inside.is_closed and get_session() is not inside


def test_a_metadata_file_missing_from_the_repo_is_one_line(hub, tmp_path, libero_repo):
    src = source(tmp_path)
    episode = src.order(GOAL)[0]
    gone = src.files_of(episode)[0]
    served = tmp_path / "served"
    shutil.copytree(libero_repo, served)
    (served / gone).unlink()
    hub.repos[REPO] = served
    assert message(lambda: src.pull(GOAL, 1, set())) == (
        f"Dataset lerobot/libero@v3.0: its metadata names file(s) the Hub repo does not hold: {gone!r}."
    )


def test_metadata_lerobot_refuses_is_one_line(hub, tmp_path, libero_repo):
    """LeRobot 0.6.1 validates ``meta/info.json`` as it reads it (``DatasetInfo``: fps > 0)."""
    import json

    broken = tmp_path / "broken"
    shutil.copytree(libero_repo, broken)
    info = json.loads((broken / "meta" / "info.json").read_text())
    (broken / "meta" / "info.json").write_text(json.dumps({**info, "fps": 0}))
    hub.repos["someone/broken"] = broken
    assert message(lambda: HubDatasetSource("someone/broken", root=tmp_path / "copy")) == (
        f"Dataset someone/broken@v3.0: LeRobot cannot read its meta/ in {tmp_path / 'copy'} "
        "(ValueError: fps must be positive, got 0)."
    )


def test_unknown_repo_and_revision(hub, tmp_path):
    assert message(lambda: HubDatasetSource("lerobot/nope", root=tmp_path / "nope")) == (
        "No dataset 'lerobot/nope' on the Hub (amf.source_repo_id)."
    )
    assert message(lambda: source(tmp_path, revision="nope")) == (
        "Dataset 'lerobot/libero' has no revision 'nope' (amf.source_revision)."
    )
    assert message(lambda: HubDatasetSource("lerobot/no such", root=tmp_path / "bad")).startswith(
        "'lerobot/no such' is not a Hub dataset repo id (amf.source_repo_id): "
    )


def test_bad_rename_map(hub, tmp_path):
    assert message(lambda: source(tmp_path, rename_map={"observation.images.wrist_image": "observation.images.image2"})) == (
        "amf.source_rename_map renames 'observation.images.wrist_image', not a feature of dataset lerobot/libero@v3.0. "
        "Its features: observation.images.image, observation.images.image2, observation.state, action."
    )
    assert message(lambda: source(tmp_path, rename_map={"observation.images.image": "observation.images.image2"})) == (
        "amf.source_rename_map gives several features the name(s) observation.images.image2."
    )


def test_features_checked_against_the_policy(hub, tmp_path):
    src = source(tmp_path, rename_map={"observation.images.image2": "observation.images.wrist"})
    image = PolicyFeature(FeatureType.VISUAL, (3, 16, 16))
    fits = DiffusionConfig(
        input_features={"observation.state": PolicyFeature(FeatureType.STATE, (8,)),
                        "observation.images.image": image, "observation.images.wrist": image},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (7,))},
    )
    src.check_features(fits)
    wrong = DiffusionConfig(
        input_features={"observation.state": PolicyFeature(FeatureType.STATE, (9,)),
                        "observation.images.image2": image},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (7,))},
    )
    assert message(lambda: src.check_features(wrong)) == (
        "Dataset lerobot/libero@v3.0 does not match the policy's features: observation.state is (8,) in the "
        "dataset, (9,) in the policy; observation.images.image2 is missing. Dataset features (after "
        "amf.source_rename_map): observation.images.image, observation.images.wrist, observation.state, action."
    )
    # SmolVLA pads state and action (max_state_dim, max_action_dim) and resizes images itself
    big = PolicyFeature(FeatureType.VISUAL, (3, 512, 512))
    src.check_features(SmolVLAConfig(
        input_features={"observation.state": PolicyFeature(FeatureType.STATE, (6,)), "observation.images.image": big},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
    ))


# --- hostile or mismatched copies -----------------------------------------------------------------
def test_the_default_cache_is_one_folder_per_revision(hub, tmp_path, monkeypatch):
    monkeypatch.setattr(hub_module, "HF_LEROBOT_HOME", tmp_path / "lerobot_home")
    tagged, main = HubDatasetSource(REPO), HubDatasetSource(REPO, revision="main")
    assert tagged.root == tmp_path / "lerobot_home" / f"{REPO}@v3.0"
    assert main.root == tmp_path / "lerobot_home" / f"{REPO}@main"
    assert (tagged.root / "meta" / "info.json").is_file() and (main.root / "meta" / "info.json").is_file()


def test_a_local_copy_of_another_revision_is_refused(hub, tmp_path):
    source(tmp_path)  # the copy now holds v3.0
    before = sorted(p for p in (tmp_path / "cache").rglob("*"))
    assert message(lambda: source(tmp_path, revision="main")) == (
        f"{tmp_path / 'cache'} holds dataset lerobot/libero@v3.0 (.cache/lerobot_amf/source.json), not "
        "lerobot/libero@main: point amf.source_root at a folder of its own for this revision (or leave it unset: "
        "one per revision)."
    )
    assert sorted(p for p in (tmp_path / "cache").rglob("*")) == before


@pytest.mark.parametrize("key, template", [
    ("data_path", "/etc/passwd"),
    ("data_path", "../../outside/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"),
    ("video_path", "videos/{video_key}/../../../../outside/{chunk_index}-{file_index}.mp4"),
    ("video_path", "~/videos/{video_key}/{chunk_index}-{file_index}.mp4"),
])
def test_hostile_path_templates_in_info_json_are_refused_before_any_read(hub, tmp_path, libero_repo, key, template):
    import json

    hostile = tmp_path / "hostile"
    shutil.copytree(libero_repo, hostile)
    info = json.loads((hostile / "meta" / "info.json").read_text())
    info[key] = template
    (hostile / "meta" / "info.json").write_text(json.dumps(info))
    with LocalHub({"someone/hostile": hostile}) as served:
        with pytest.raises(UntrustedFileError) as err:
            HubDatasetSource("someone/hostile", root=tmp_path / "copy")
    assert f"meta/info.json {key} {template!r} is not a relative path inside copy/: refused" in str(err.value)
    assert all(f.startswith("meta/") for f in served.downloads())  # no episode file was fetched
    assert not (tmp_path / "copy" / hub_module.REVISION_MARKER).exists()  # and nothing written into the copy


def test_a_round_over_the_byte_cap_stops_before_downloading_and_names_the_cap(hub, tmp_path):
    src = source(tmp_path, max_bytes_per_round=1000)
    wanted = {SPATIAL: 2, GOAL: 1}
    episodes = [e for task, k in wanted.items() for e in src.order(task)[:k]]
    files = sorted(files_of(episodes, src))
    before = hub.downloads()
    with pytest.raises(AMFInputError) as err:
        src.check_round(wanted, set())
    line = str(err.value)
    assert "\n" not in line and f"in {len(files)} file(s)" in line
    assert "over amf.source_max_bytes_per_round=1000: nothing was downloaded" in line
    assert hub.downloads() == before and not any((src.root / f).exists() for f in files)
    sizes = sum((hub.repos[REPO] / f).stat().st_size for f in files)  # what HEAD said, exactly
    assert f"would download {sizes:,} bytes" in line
    roomy = source(tmp_path, max_bytes_per_round=sizes)
    roomy.check_round(wanted, set())  # exactly at the cap: allowed
    assert sum(d.info["bytes_fetched"] for task, k in wanted.items() for d in roomy.pull(task, k, set())) == sizes


def test_a_round_asking_more_episodes_than_left_is_refused_before_any_pull(hub, tmp_path):
    src = source(tmp_path)
    before = hub.downloads()
    assert message(lambda: src.check_round({SPATIAL: 1, GOAL: EPISODES_PER_TASK + 1}, set())) == (
        f"Dataset lerobot/libero@v3.0 has {EPISODES_PER_TASK} episode(s) of task {GOAL!r} left "
        f"(of {EPISODES_PER_TASK}); {EPISODES_PER_TASK + 1} were asked for."
    )
    assert hub.downloads() == before


def test_a_local_copy_with_a_data_file_linked_from_elsewhere_is_refused_before_its_rows_are_read(hub, tmp_path,
                                                                                               libero_repo):
    """An extra parquet file linked into data/ put another folder's rows into a run's demos."""
    copy = tmp_path / "copy"
    shutil.copytree(libero_repo, copy)
    first = next((copy / "data").rglob("*.parquet"))
    elsewhere = tmp_path / "elsewhere.parquet"
    shutil.copy(first, elsewhere)
    (first.parent / "file-999.parquet").symlink_to(elsewhere)
    with pytest.raises(UntrustedFileError, match="is a link to .* outside copy/"):
        HubDatasetSource(REPO, root=copy)


def test_an_episode_index_the_copy_does_not_hold_is_refused(tmp_path, libero_repo):
    """Metadata claiming episodes it does not hold (or negative indices) is one line at open, before
    the run directory exists."""
    import pandas as pd

    copy = tmp_path / "copy"
    shutil.copytree(libero_repo, copy)
    for path in (copy / "meta" / "episodes").rglob("*.parquet"):
        table = pd.read_parquet(path)
        table.loc[table.index[0], "episode_index"] = -3
        table.to_parquet(path)
        break
    with pytest.raises(UntrustedFileError, match="episode index -3"):
        HubDatasetSource(REPO, root=copy)


def test_nan_statistics_in_a_dataset_copy_are_refused_at_open(tmp_path, libero_repo):
    """With --amf.normalization=source they trained an all-NaN generalist before any check."""
    import json

    copy = tmp_path / "copy"
    shutil.copytree(libero_repo, copy)
    stats = json.loads((copy / "meta" / "stats.json").read_text())
    stats["action"]["mean"] = [float("nan")] * len(stats["action"]["mean"])
    (copy / "meta" / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(UntrustedFileError, match=r"meta/stats.json, action: 'mean' holds 7 non-finite"):
        HubDatasetSource(REPO, root=copy)
