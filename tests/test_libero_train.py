"""``lerobot-amf-train --env.type=libero`` end to end: a LIBERO-shaped dataset served as
``lerobot/libero`` by a local Hub (only the network replaced), a tiny ACT generalist pretrained by
the embedded pretraining step on a skewed allocation pulled from that source, normalised with the
source dataset's stats, one amf round with the rollout fallback for the under-covered task, and
every evaluation in the real LIBERO simulator (a few steps, one episode per task)."""

import json
import sys
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from huggingface_hub import constants as hf_constants
from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

from benchmarks.local_hub import LocalHub
from benchmarks.libero_dataset import build_libero_dataset
from lerobot_amf.envs.libero import LiberoCatalog

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread", "libero_rendering")]

CATALOG = LiberoCatalog()
POOL = CATALOG.parse_pool("libero_spatial/0,libero_spatial/1")
INSTRUCTIONS = [CATALOG.instruction(t) for t in POOL]
REPO, IMAGE, STEPS = "lerobot/libero", 32, 4
EPISODES_PER_TASK = 4
# Pretraining: 3 demos of the first task, 1 of the second (whose importance weights then collapse,
# ESS 1 < 1.5, so amf takes its target states from one rollout of the policy in the simulator).
PRETRAIN = {POOL[0]: 3, POOL[1]: 1}
RENDERED = 64  # the simulator's camera size (LeRobot 0.6.1 passes it to the env); the policy sees IMAGE

ARGS = [
    "--policy.type=act", "--policy.chunk_size=4", "--policy.n_action_steps=4", "--policy.dim_model=32",
    "--policy.n_heads=2", "--policy.dim_feedforward=64", "--policy.n_encoder_layers=1",
    "--policy.n_decoder_layers=1", "--policy.use_vae=false", "--policy.pretrained_backbone_weights=null",
    "--policy.device=cpu", "--policy.push_to_hub=false",
    "--env.type=libero", f"--env.task={','.join(POOL)}", f"--env.episode_length={STEPS}",
    f"--env.observation_height={RENDERED}", f"--env.observation_width={RENDERED}", "--amf.source=hub", f"--amf.source_repo_id={REPO}",
    "--amf.strategy=amf", "--amf.rounds=1", "--amf.demos_per_round=2", "--amf.steps_per_round=3",
    "--amf.eval_episodes=1", "--amf.eval_batch_size=1", "--amf.selection.fallback_rollouts=1",
    "--amf.normalization=source",
    "--amf.pretrain.steps=3", "--amf.pretrain.batch_size=8", "--amf.pretrain.demos_covered=3",
    "--amf.pretrain.demos_uncovered=1", "--batch_size=8", "--num_workers=0", "--seed=1",
]


@pytest.fixture(scope="module")
def libero_run(tmp_path_factory):
    """The CLI's ``main`` in this process (so the network can be replaced and the policy watched)."""
    from lerobot.policies.act.modeling_act import ACT

    from lerobot_amf import train

    root = tmp_path_factory.mktemp("libero_train")
    repo = build_libero_dataset(root / "hub", INSTRUCTIONS, EPISODES_PER_TASK, frames_per_episode=8,
                                image_size=IMAGE, episodes_per_file=2)
    seen = []

    def record(module, args):  # what the network receives when acting (not training or embedding)
        batch = args[0] if isinstance(module, ACT) else {}
        if "task" in batch and batch.get("action") is None:
            seen.append({"task": list(batch["task"]), "state": tuple(batch["observation.state"].shape),
                         **{k: tuple(v.shape) for k, v in batch.items() if k.startswith("observation.images.")}})

    out = root / "run"
    argv = ["lerobot-amf-train", *ARGS, f"--amf.source_root={root / 'source_cache'}",
            f"--amf.pretrain.cache_dir={root / 'pretrained'}", f"--output_dir={out}"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        mp.setattr(hf_constants, "HF_HUB_CACHE", str(root / "hf_cache"))
        mp.setattr(sys, "argv", argv)
        with LocalHub({REPO: repo}) as hub:
            handle = torch.nn.modules.module.register_module_forward_pre_hook(record)
            try:
                train.main()
            finally:
                handle.remove()
    (pretrained,) = (root / "pretrained").glob("pretrained_act_*")
    return SimpleNamespace(out=out, hub=hub, repo=repo, seen=seen, pretrained=pretrained,
                           report=json.loads((out / "amf_report.json").read_text()),
                           ledger=[json.loads(line) for line in (out / "amf_ledger.jsonl").read_text().splitlines()])


def test_pretraining_and_fine_tuning_pull_disjoint_demos_from_the_hub_source(libero_run):
    report, ledger = libero_run.report, libero_run.ledger
    assert report["source"] == {"name": "hub", "repo_id": REPO, "revision": "v3.0", "rename_map": {}}
    record = json.loads((libero_run.pretrained / "amf_pretrain.json").read_text())
    assert record["demos_per_task"] == PRETRAIN == report["demos_per_task"]["pretraining"]
    pretrain_ids = set(record["demo_ids"])
    (pulled,) = [r for r in ledger if r["event"] == "demos_pulled"]
    fine_ids = {d["demo_id"] for d in pulled["demos"]}
    assert len(pretrain_ids) == 4 and len(fine_ids) == 2 and not pretrain_ids & fine_ids
    assert sum(report["demos_per_task"]["fine_tuning"].values()) == 2
    # Only the files holding the pulled episodes crossed the network (besides meta/).
    meta = LeRobotDatasetMetadata(REPO, root=libero_run.repo)
    episodes = {int(i.rsplit("_", 1)[1]) for i in pretrain_ids | fine_ids}
    needed = {str(meta.get_data_file_path(e)) for e in episodes} | {
        str(meta.get_video_file_path(e, key)) for e in episodes for key in meta.video_keys}
    downloaded = set(libero_run.hub.downloads())
    assert {f for f in downloaded if not f.startswith("meta/")} == needed


def test_amf_round_selects_with_the_rollout_fallback_in_the_simulator(libero_run):
    (rnd,) = libero_run.report["rounds"]
    details = rnd["details"]
    assert rnd["reason"].startswith("amf:") and len(rnd["selected"]) == 2
    assert details["ess"] == {POOL[0]: 3.0, POOL[1]: 1.0}
    assert details["rollout_fallback"] == [POOL[1]] and details["kernel"]["family"] == "act"
    assert set(rnd["scores"]) == set(POOL)


def test_every_evaluation_ran_in_the_libero_simulator_per_task_and_per_suite(libero_run):
    evals = [r for r in libero_run.ledger if r["event"] == "eval"]
    assert [(e["round"], e["variant"]) for e in evals] == [(-1, "pretrained"), (0, "single model")]
    for e in evals:
        assert list(e["per_task"]) == POOL
        assert all(t["episodes"] == 1 and t["successes"] in (0, 1) for t in e["per_task"].values())
        assert list(e["per_suite"]) == ["libero_spatial"] and e["per_suite"]["libero_spatial"]["episodes"] == 2
    proto = libero_run.report["eval_protocol"]
    assert proto["env"] == "libero" and proto["max_steps"] == STEPS and proto["episodes_per_task"] == 1
    assert proto["image_size"] == [RENDERED, RENDERED]
    assert proto["images_resized_to"] == {k: [IMAGE, IMAGE] for k in ("observation.images.image",
                                                                      "observation.images.image2")}
    # What the policy received from the simulator: both instructions, the 8-dim state, and both
    # cameras resized from the rendered size to the size it was trained at.
    assert {s["task"][0] for s in libero_run.seen} == set(INSTRUCTIONS)
    for s in libero_run.seen:
        assert s["state"] == (1, 8)
        assert s["observation.images.image"] == s["observation.images.image2"] == (1, 3, IMAGE, IMAGE)
    config = json.loads((libero_run.out / "checkpoints" / "last" / "pretrained_model" / "config.json").read_text())
    assert config["input_features"]["observation.images.image"]["shape"] == [3, IMAGE, IMAGE]
    assert libero_run.report["complete"]


def test_the_run_is_normalised_with_the_source_datasets_stats(libero_run):
    """Not the pretraining demos' stats the generalist was saved with: the whole source dataset's."""
    def state_mean(folder):
        (stats,) = folder.glob("policy_preprocessor_step_*_normalizer_processor.safetensors")
        return load_file(stats)["observation.state.mean"]

    source = LeRobotDatasetMetadata(REPO, root=libero_run.repo).stats["observation.state"]["mean"]
    run = state_mean(libero_run.out / "checkpoints" / "last" / "pretrained_model")
    torch.testing.assert_close(run, torch.as_tensor(source, dtype=run.dtype))
    assert not torch.allclose(state_mean(libero_run.pretrained), run)


def test_a_dataset_whose_frames_do_not_fit_the_policy_stops_the_run_before_any_write(libero_run, tmp_path,
                                                                                   monkeypatch, capsys):
    from lerobot_amf import train

    # The generalist reads observation.images.image; renamed away, the dataset no longer has it.
    policy_flags = [a for a in ARGS if not a.startswith("--policy.")]
    out = tmp_path / "run"
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(sys, "argv", [
        "lerobot-amf-train", *policy_flags, f"--policy.path={libero_run.pretrained}",
        '--amf.source_rename_map={"observation.images.image": "observation.images.top"}',
        f"--amf.source_root={tmp_path / 'source_cache'}", f"--output_dir={out}"])
    capsys.readouterr()
    with LocalHub({REPO: libero_run.repo}), pytest.raises(SystemExit) as stop:
        train.main()
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lerobot-amf-train: error:")]
    assert stop.value.code == 2 and len(err) == 1, err  # (the Hub download's progress bars may come before it)
    assert "does not match the policy's features: observation.images.image is missing" in err[0]
    assert not out.exists() and not out.with_name("run.tmp").exists()


def _ledger_bytes(run):
    return (run / "amf_ledger.jsonl").read_bytes()


def _main_once(argv, repo, tmp_path, monkeypatch, capsys) -> tuple[int, list[str]]:
    """``lerobot-amf-train`` in this process against the local Hub: (exit code, its error lines)."""
    from lerobot_amf import train

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(sys, "argv", ["lerobot-amf-train", *argv])
    capsys.readouterr()
    code = 0
    with LocalHub({REPO: repo}):
        try:
            train.main()
        except SystemExit as stop:
            code = stop.code
    return code, [line for line in capsys.readouterr().err.splitlines() if line.startswith("lerobot-amf-train: error:")]


def test_resume_with_another_revision_of_the_source_is_refused(libero_run, tmp_path, monkeypatch, capsys):
    """A demo id names its revision: resuming on another one would pull the same episodes again."""
    before = _ledger_bytes(libero_run.out)
    argv = [*ARGS, f"--amf.source_root={tmp_path / 'main_cache'}", "--amf.source_revision=main",
            f"--amf.pretrain.cache_dir={libero_run.pretrained.parent}", f"--output_dir={libero_run.out}",
            "--resume=true"]
    code, err = _main_once(argv, libero_run.repo, tmp_path, monkeypatch, capsys)
    assert code == 2 and len(err) == 1, err
    assert "was run with source.revision=v3.0, not main" in err[0]
    assert _ledger_bytes(libero_run.out) == before


def test_a_round_over_the_byte_cap_stops_with_its_selection_kept_and_resumes(libero_run, tmp_path, monkeypatch,
                                                                          capsys):
    """The cap stops round 1 before any of its files is downloaded (one line, exit 2); what was
    collected (the pretrained evaluation, the selection) stays, and a resume with room pulls
    exactly the recorded selection."""
    policy_flags = [a for a in ARGS if not a.startswith(("--policy.", "--amf.strategy", "--amf.selection"))]
    out = tmp_path / "run"
    argv = [*policy_flags, f"--policy.path={libero_run.pretrained}", "--amf.strategy=uniform",
            f"--amf.source_root={tmp_path / 'source_cache'}", f"--output_dir={out}"]
    code, err = _main_once([*argv, "--amf.source_max_bytes_per_round=1"], libero_run.repo, tmp_path, monkeypatch,
                           capsys)
    assert code == 2 and len(err) == 1, err
    assert "over amf.source_max_bytes_per_round=1: nothing was downloaded" in err[0]
    events = [json.loads(line)["event"] for line in (out / "amf_ledger.jsonl").read_text().splitlines()]
    assert events == ["run_start", "eval", "selection"]
    selected = json.loads((out / "amf_ledger.jsonl").read_text().splitlines()[-1])["tasks"]
    assert not list((tmp_path / "source_cache").glob("data/**/*.parquet"))
    code, err = _main_once([*argv, "--resume=true"], libero_run.repo, tmp_path, monkeypatch, capsys)
    assert code == 0, err
    ledger = [json.loads(line) for line in (out / "amf_ledger.jsonl").read_text().splitlines()]
    (pulled,) = [r for r in ledger if r["event"] == "demos_pulled"]
    assert sorted(d["task"] for d in pulled["demos"]) == sorted(selected)
    assert [r["event"] for r in ledger].count("selection") == 1
