"""A real LeRobot SmolVLA (tiny, random weights, built offline by ``benchmarks/tiny_smolvla.py``)
through what lerobot-amf does with it: the flow family's loss-gradient embedding against
autograd, per-partition LoRA with routing by the task strings exactly as SmolVLA's own
pre-processor delivers them (it appends a newline), and a routed save / load."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from lerobot.policies.factory import make_pre_post_processors
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
from lerobot.utils.constants import ACTION, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE

from benchmarks.tiny_smolvla import tiny_smolvla_config
from lerobot_amf.families import make_embedder
from lerobot_amf.families.flow import FlowEmbedder
from lerobot_amf.isolation import RoutedPolicy, load_routed_policy
from lerobot_amf.isolation.partitions import Partitions

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMAGES = ("observation.images.image", "observation.images.image2")
INSTRUCTIONS = {"open the middle drawer of the cabinet": "libero_goal/0",
                "put the bowl on the stove": "libero_goal/1",
                "pick up the alphabet soup and place it in the basket": "libero_object/0"}
SUITES = Partitions({"libero_goal": ["libero_goal/0", "libero_goal/1"], "libero_object": ["libero_object/0"]},
                    "per_suite")
STATS = {OBS_STATE: {"mean": torch.zeros(8), "std": torch.ones(8)},
         ACTION: {"mean": torch.zeros(7), "std": torch.ones(7)}}


@pytest.fixture(scope="module")
def smolvla(tmp_path_factory):
    """(policy, pre-processor, post-processor) of a tiny real SmolVLA on LIBERO's features, loaded
    from its checkpoint folder (as every base of a routed policy is)."""
    root = tmp_path_factory.mktemp("smolvla")
    base = root / "base"
    cfg = tiny_smolvla_config(base / "tiny_smolvlm")  # its VLM folder inside it: a checkpoint reads nothing elsewhere
    torch.manual_seed(0)
    pre, post = make_pre_post_processors(cfg, dataset_stats=STATS)
    for part in (SmolVLAPolicy(cfg), pre, post):
        part.save_pretrained(base)
    policy = SmolVLAPolicy.from_pretrained(base)
    policy.config.pretrained_path = base
    policy.eval()
    return policy, *make_pre_post_processors(policy.config, pretrained_path=str(base))


def observation(instruction: str, b: int = 1, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    obs = {key: torch.rand(b, 3, 64, 64, generator=g) for key in IMAGES}
    return {**obs, OBS_STATE: torch.randn(b, 8, generator=g), "task": [instruction] * b}


def training_batch(pre, instructions: list[str], seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    b = len(instructions)
    raw = {**{key: torch.rand(b, 3, 64, 64, generator=g) for key in IMAGES}, OBS_STATE: torch.randn(b, 8, generator=g),
           ACTION: torch.randn(b, 4, 7, generator=g), "task": list(instructions)}
    return pre(raw)


# ---- the embedding ----------------------------------------------------------------------------
def one_state(batch: dict, i: int) -> dict:
    return {k: v[i : i + 1] if isinstance(v, (torch.Tensor, list)) else v for k, v in batch.items()}


def own_training_loss(policy, emb, state: dict, target: str) -> torch.Tensor:
    """(1/K) Σ_k ½·``SmolVLAPolicy.forward`` of one state at the embedder's k-th (noise, time) draw:
    LeRobot's own training loss, its padding mask and real-action-dim truncation included; target
    "self": the action is the policy's own estimate held fixed, nothing padded."""
    if target == "self":
        a_star = emb.pseudo_target(state).detach()[..., : emb.action_dim]
        state = {**{k: v for k, v in state.items() if k != "action_is_pad"}, ACTION: a_star}
    return torch.stack([0.5 * policy.forward(dict(state), noise=emb.noise[k : k + 1], time=emb.times[k : k + 1])[0]
                        for k in range(emb.n_draws)]).mean()


@pytest.mark.parametrize("target", ["expert", "self"])
def test_flow_embedding_of_the_real_smolvla_is_the_gradient_of_its_training_loss(smolvla, target):
    policy, pre, _ = smolvla
    emb = make_embedder(policy, dim=4096, seed=2, n_draws=3, layers=1)
    assert isinstance(emb, FlowEmbedder) and emb.family == "smolvla"
    layer = policy.model.action_out_proj
    a_dim = 7
    assert emb.raw_dim == a_dim * layer.in_features + a_dim
    batch = training_batch(pre, list(INSTRUCTIONS)[:2])
    batch["action_is_pad"] = torch.tensor([[False, False, True, True], [False] * 4])
    phi = emb.embed(batch, target=target)
    assert phi.shape == (2, emb.raw_dim)
    for i in range(2):
        policy.zero_grad()
        own_training_loss(policy, emb, one_state(batch, i), target).backward()
        ref = torch.cat([layer.weight.grad[:a_dim].flatten(), layer.bias.grad[:a_dim]])
        assert ref.norm() > 0 and layer.weight.grad[a_dim:].abs().max() == 0  # padded dims: outside the loss
        err = (phi[i] - ref).norm() / ref.norm()
        assert err < 1e-4, (i, float(err))
    policy.zero_grad()
    # SmolVLA's forward masks padded steps out of the expert's loss; the self target is a full chunk
    unpadded = emb.embed({**batch, "action_is_pad": torch.zeros(2, 4, dtype=torch.bool)}, target=target)
    torch.testing.assert_close(unpadded[1], phi[1], rtol=1e-5, atol=1e-7)
    assert torch.allclose(unpadded[0], phi[0], rtol=1e-5, atol=1e-7) is (target == "self")


def test_the_likelihood_surrogate_is_minus_smolvlas_own_flow_matching_loss_with_common_draws(smolvla):
    """The importance weights' log π(a | s) for the flow heads: LeRobot's own per-element loss at
    the same seeded (noise, time) draws for every call, real action dims, padded steps masked."""
    from lerobot_amf.families import family_of

    policy, pre, _ = smolvla
    family = family_of(policy)
    batch = training_batch(pre, list(INSTRUCTIONS))
    batch["action_is_pad"] = torch.tensor([[False] * 4, [False, False, True, True], [False] * 4])
    ll = family.loglik(policy, batch, 3, 5)
    assert ll.shape == (3,) and torch.equal(ll, family.loglik(policy, batch, 3, 5))  # common random numbers
    assert not torch.equal(ll, family.loglik(policy, batch, 3, 6))
    gen = torch.Generator().manual_seed(5)
    times = np.random.default_rng(5).beta(1.5, 1.0, size=3) * 0.999 + 0.001  # SmolVLA's time law
    images, img_masks = policy.prepare_images(batch)
    inputs = (images, img_masks, batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK],
              policy.prepare_state(batch))
    actions = F.pad(batch[ACTION], (0, policy.config.max_action_dim - 7))
    own = []
    with torch.no_grad():
        for k in range(3):
            noise = torch.randn(actions.shape[1:], generator=gen).expand_as(actions)
            losses = policy.model(*inputs, actions, noise=noise, time=torch.full((3,), float(times[k])))
            own.append(losses[..., :7].mean(-1))  # (B, chunk)
    own = torch.stack(own).mean(0)
    expected = -torch.stack([own[0].mean(), own[1, :2].mean(), own[2].mean()])
    torch.testing.assert_close(ll, expected, rtol=1e-5, atol=1e-6)


def test_the_distillation_teacher_is_smolvlas_own_sampled_chunk(smolvla):
    from lerobot_amf.isolation.export import teacher_of

    policy, pre, _ = smolvla
    batch = training_batch(pre, list(INSTRUCTIONS)[:2])
    torch.manual_seed(9)
    with torch.no_grad():
        chunk = teacher_of(policy)(policy, batch)
    torch.manual_seed(9)
    with torch.no_grad():
        images, img_masks = policy.prepare_images(batch)
        own = policy.model.sample_actions(images, img_masks, batch[OBS_LANGUAGE_TOKENS],
                                          batch[OBS_LANGUAGE_ATTENTION_MASK], policy.prepare_state(batch))
    assert chunk.shape == (2, 4, 7) and torch.equal(chunk, own[..., :7])


def test_the_two_layer_flow_kernel_is_the_expert_mlp_and_output_gradients_of_each_state(smolvla):
    """kernel_layers=2: the last action-expert layer's ``mlp.down_proj`` and ``action_out_proj``,
    each state's gradient equal to autograd's (through SmolVLA's in-place residual adds). Unset,
    the flow family's measured default is the output projection alone."""
    policy, pre, _ = smolvla
    assert make_embedder(policy).n_layers == 1
    emb = make_embedder(policy, dim=64, seed=2, n_draws=2, layers=2)
    down = policy.model.vlm_with_expert.lm_expert.layers[-1].mlp.down_proj
    out = policy.model.action_out_proj
    assert emb.layers() == [down, out] and emb.record()["layers"][0].endswith("lm_expert.layers.1.mlp.down_proj")
    a_dim = 7
    assert emb.raw_dim == down.weight.numel() + (0 if down.bias is None else down.bias.numel()) + a_dim * (out.in_features + 1)
    batch = training_batch(pre, list(INSTRUCTIONS)[:2])
    batch["action_is_pad"] = torch.tensor([[False] * 4, [False, False, False, True]])
    raw = emb.raw(batch, target="expert")
    params = [down.weight, *([down.bias] if down.bias is not None else []), out.weight, out.bias]
    trainable = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        for i in range(2):
            grads = torch.autograd.grad(own_training_loss(policy, emb, one_state(batch, i), "expert"), params)
            ref = torch.cat([*(g.flatten() for g in grads[:-2]), grads[-2][:a_dim].flatten(), grads[-1][:a_dim]])
            err = (raw[i] - ref).norm() / ref.norm()
            assert err < 1e-4, (i, float(err))
    finally:
        for p, flag in zip(params, trainable):
            p.requires_grad_(flag)


# ---- LoRA per partition and routing -----------------------------------------------------------
def routed(policy) -> RoutedPolicy:
    """Per-suite LoRA adapters over a fresh copy of the base (peft wraps the policy it is given)."""
    base = SmolVLAPolicy.from_pretrained(policy.config.pretrained_path)
    base.config.pretrained_path = policy.config.pretrained_path
    torch.manual_seed(3)
    return RoutedPolicy(base, SUITES, "lora", INSTRUCTIONS)


def test_the_pre_processor_appends_a_newline_and_routing_still_finds_the_task(smolvla):
    """LeRobot's SmolVLA pre-processor delivers 'open the middle drawer of the cabinet\\n':
    routing compares task strings with the whitespace normalised, and refuses a real mismatch."""
    policy, pre, _ = smolvla
    router = routed(policy)
    for instruction, task in INSTRUCTIONS.items():
        batch = pre(observation(instruction))
        assert batch["task"] == [instruction + "\n"]  # what the router receives
        router.reset()
        router.select_action(batch)
        assert router.active == SUITES.of(task)
    with pytest.raises(ValueError, match="Cannot route task 'open the top drawer of the cabinet\\\\n'"):
        router.select_action(pre(observation("open the top drawer of the cabinet")))


def changed_by_training(router: RoutedPolicy, pre, partition: str) -> set[str]:
    """Two optimizer steps of ``partition`` (activated) on a batch of two instructions; the names of
    the parameters that changed."""
    before = {k: v.detach().clone() for k, v in router.model.named_parameters()}
    router.activate(partition)
    router.train()
    optimizer = torch.optim.AdamW(router.get_optim_params(), lr=1e-2)
    for step in range(2):
        loss, _ = router.forward(training_batch(pre, list(INSTRUCTIONS)[:2], seed=step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    router.eval()
    return {k for k, v in router.model.named_parameters() if not torch.equal(v, before[k])}


def test_training_one_suites_adapter_leaves_the_other_and_the_base_bit_identical(smolvla):
    policy, pre, _ = smolvla
    changed = changed_by_training(routed(policy), pre, "libero_goal")
    assert changed and all(".libero_goal." in k and "lora_" in k for k in changed), sorted(changed)[:5]


def test_a_saved_routed_smolvla_loads_and_acts_exactly_as_saved(smolvla, tmp_path):
    policy, pre, post = smolvla
    router = routed(policy)
    with torch.no_grad():  # make the two adapters differ from each other and from the base
        for name, p in router.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05 if ".libero_goal." in name else -0.05)
    router.save(tmp_path / "routed_model", pre, post)
    loaded, pre2, _ = load_routed_policy(tmp_path / "routed_model", base_path=policy.config.pretrained_path)

    def chunk(model, processor, instruction):
        model.reset()
        torch.manual_seed(11)
        return model.predict_action_chunk(processor(observation(instruction)))

    for instruction in INSTRUCTIONS:
        assert torch.equal(chunk(router, pre, instruction), chunk(loaded, pre2, instruction))
    goal, obj = (chunk(loaded, pre2, i) for i in ("open the middle drawer of the cabinet",
                                                   "pick up the alphabet soup and place it in the basket"))
    torch.manual_seed(11)
    assert not torch.equal(goal, obj)


def test_per_suite_head_copies_train_apart_and_a_saved_routed_smolvla_acts_as_saved(smolvla, tmp_path):
    """``--amf.isolation=head`` on SmolVLA: one copy of ``model.action_out_proj`` per suite; training one
    suite's copy changes nothing else, and the routed folder reloads acting exactly as saved."""
    policy, pre, post = smolvla
    base = SmolVLAPolicy.from_pretrained(policy.config.pretrained_path)
    base.config.pretrained_path = policy.config.pretrained_path
    router = RoutedPolicy(base, SUITES, "head", INSTRUCTIONS)
    assert router.head_module == "model.action_out_proj"
    changed = changed_by_training(router, pre, "libero_goal")
    assert changed and all("action_out_proj" in k and "libero_goal" in k for k in changed), sorted(changed)[:5]
    router.save(tmp_path / "routed_model", pre, post)
    loaded, pre2, _ = load_routed_policy(tmp_path / "routed_model", base_path=policy.config.pretrained_path)
    for instruction in INSTRUCTIONS:
        chunks = []
        for model, processor in ((router, pre), (loaded, pre2)):
            model.reset()
            torch.manual_seed(11)
            chunks.append(model.predict_action_chunk(processor(observation(instruction))))
        assert torch.equal(*chunks)


# ---- the headline path: lerobot-amf-train on LIBERO with per-suite LoRA ------------------------
E2E_TASKS = "libero_spatial/0,libero_goal/0"  # one task of each of two suites


@pytest.mark.slow
@pytest.mark.usefixtures("libero_rendering")
def test_smolvla_per_suite_lora_on_libero_from_the_hub_trains_routes_and_evaluates(smolvla, tmp_path, monkeypatch,
                                                                                   capsys, make_hub):
    """The SmolVLA recipe's path on a LIBERO-shaped ``lerobot/libero`` served by the local Hub:
    amf selects with the flow family's kernel and likelihood surrogate, demos are pulled, one LoRA
    adapter per suite is trained, and the routed policy and the distilled single model (merge,
    then imitation of the routed teacher) are evaluated in the LIBERO
    simulator, each task routed to its suite's adapter through SmolVLA's own pre-processor (which
    appends a newline to the task); then ``lerobot-amf-eval`` of both outputs, and the push of the run
    through ``huggingface_hub.HfApi`` to a Hub stand-in."""
    import json
    import sys

    from huggingface_hub import constants as hf_constants

    from benchmarks.libero_dataset import build_libero_dataset
    from benchmarks.local_hub import LocalHub
    from lerobot_amf import eval_cli, train
    from lerobot_amf.envs.libero import LiberoCatalog

    catalog = LiberoCatalog()
    pool = catalog.parse_pool(E2E_TASKS)
    instructions = [catalog.instruction(t) for t in pool]
    repo = build_libero_dataset(tmp_path / "hub", instructions, episodes_per_task=3, frames_per_episode=6,
                                image_size=32, episodes_per_file=2)
    base = smolvla[0].config.pretrained_path
    out = tmp_path / "run"
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(sys, "argv", [
        "lerobot-amf-train", f"--policy.path={base}", "--policy.device=cpu", "--policy.push_to_hub=false",
        "--env.type=libero", f"--env.task={','.join(pool)}", "--env.episode_length=3",
        "--amf.source=hub", "--amf.source_repo_id=lerobot/libero", f"--amf.source_root={tmp_path / 'cache'}",
        "--amf.strategy=amf", "--amf.selection.fallback_rollouts=1", "--amf.isolation=lora",
        "--amf.partitions=per_suite", "--amf.export=distill", "--amf.export_steps=2", "--amf.normalization=source",
        "--amf.rounds=2", "--amf.demos_per_round=1", "--amf.steps_per_round=2", "--amf.eval_episodes=1",
        "--amf.eval_batch_size=1", "--batch_size=4", "--num_workers=0", "--seed=1", f"--output_dir={out}"])
    with LocalHub({"lerobot/libero": repo}):
        train.main()
    report = json.loads((out / "amf_report.json").read_text())
    assert report["complete"] and report["model"]["mode"] == "lora" and "per_suite" in report["model"]["isolation"]
    assert report["model"]["partitions"] == {"libero_spatial": [pool[0]], "libero_goal": [pool[1]]}
    first, second = report["rounds"]
    assert "cold start" in first["reason"]  # no demos in hand: amf starts as uniform
    kernel = second["details"]["kernel"]  # then the flow family's kernel over the real SmolVLA
    assert second["reason"].startswith("amf:") and kernel["family"] == "smolvla", second["reason"]
    assert second["details"]["importance"] == "likelihood surrogate, common random numbers"  # the flow one
    assert set(second["details"]["ess"]) == set(pool)
    for rnd in report["rounds"]:
        assert rnd["eval"]["variant"] == "per-partition" and set(rnd["eval"]["per_task"]) == set(pool)
        assert set(rnd["eval_single_model"]["per_task"]) == set(pool)  # the distilled export, evaluated too
    assert report["model"]["export"] == "distill"
    routed_dir = out / "checkpoints" / "last" / "routed_model"
    monkeypatch.setattr(sys, "argv", [
        "lerobot-amf-eval", f"--policy.path={routed_dir}", f"--amf.base_path={base}",  # a local base: named here
        "--policy.device=cpu", "--env.type=libero",
        f"--env.task={pool[1]}", "--env.episode_length=3", "--amf.eval_episodes=1", "--amf.eval_batch_size=1",
        f"--output_dir={tmp_path / 'eval'}"])
    eval_cli.main()
    evaluated = json.loads((tmp_path / "eval" / eval_cli.REPORT_FILENAME).read_text())
    assert evaluated["eval"]["routed_to_partition"] == {pool[1]: "libero_goal"}
    assert evaluated["model"]["variant"] == "per-partition"
    # the distilled single model is a plain LeRobot SmolVLA checkpoint
    monkeypatch.setattr(sys, "argv", [
        "lerobot-amf-eval", f"--policy.path={out / 'checkpoints' / 'last' / 'pretrained_model'}",
        f"--policy.vlm_model_name={smolvla[0].config.vlm_model_name}",  # its VLM folder lies in the base: named here
        "--policy.device=cpu", "--env.type=libero", f"--env.task={pool[0]}", "--env.episode_length=3",
        "--amf.eval_episodes=1", "--amf.eval_batch_size=1", f"--output_dir={tmp_path / 'eval_plain'}"])
    eval_cli.main()
    plain = json.loads((tmp_path / "eval_plain" / eval_cli.REPORT_FILENAME).read_text())
    assert plain["model"]["variant"] == "single model" and plain["model"]["type"] == "smolvla"
    # the push: one commit of both models and the card, through huggingface_hub's own HfApi, no local path
    from lerobot_amf.publish import push_run, upload_plan

    hub = make_hub()
    result = push_run(out, "someone/smolvla-libero-amf", backoff_s=0)
    pushed = hub.commits[0]["files"]
    assert len(hub.commits) == 1 and sorted(pushed) == result["files"] == \
        [f.path_in_repo for f in upload_plan(out, "someone/smolvla-libero-amf")]
    assert {"README.md", "config.json", "model.safetensors", "routed_model/routing.json"} <= set(pushed)
    assert any(p.startswith("routed_model/adapters/libero_goal/") for p in pushed)
    card = pushed["README.md"].decode()
    assert "per-partition adapters" in card and "libero_goal" in card and "smolvla" in card
    for name, data in pushed.items():
        if name.endswith((".json", ".jsonl", ".md")):
            assert str(tmp_path) not in data.decode(), name


def six_frames(smolvla, tmp_path, instructions: list[str]):
    """(dataset, DemoStates, rows) of one 6-frame LIBERO-shaped episode per instruction, the first
    episode's frames as the states in hand (recorded for the task "own")."""
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata

    from benchmarks.libero_dataset import build_libero_dataset
    from lerobot_amf.selection.amf import DemoStates

    policy, pre, _ = smolvla
    root = build_libero_dataset(tmp_path / "libero", instructions, episodes_per_task=1, frames_per_episode=6,
                                video=False)
    delta = resolve_delta_timestamps(policy.config, LeRobotDatasetMetadata("lerobot/libero", root=root))
    ds = LeRobotDataset("lerobot/libero", root=root, delta_timestamps=delta)
    rows = np.arange(6)
    states = DemoStates([ds], np.zeros(6, dtype=int), rows, pre, np.zeros(6, dtype=int), rows % 2 == 1, ["own"],
                        np.array([6]), np.array([6]), np.array([False]))
    return ds, states, rows


def test_frames_conditioned_on_another_instruction_carry_its_tokens_and_likelihood(smolvla, tmp_path):
    """amf scores every demo's frames under every task. SmolVLA reads the token ids the
    pre-processor made, not the string: frames recorded for one instruction and conditioned on
    another must carry the other's tokens, and have the likelihood of the same frames
    pre-processed with it (not their own)."""

    from lerobot_amf.data import read_frames
    from lerobot_amf.families import family_of
    from lerobot_amf.selection.amf import condition_on_task

    policy, pre, _ = smolvla
    own, other = list(INSTRUCTIONS)[:2]
    ds, states, rows = six_frames(smolvla, tmp_path, [own, other])  # episode 0: recorded for ``own``
    recorded = states.batch(rows)
    conditioned = condition_on_task(recorded, "other", None, other, states.language_of(other))
    direct = pre(torch.utils.data.default_collate([{**item, "task": other} for item in read_frames(ds, rows)]))
    for key in (OBS_LANGUAGE_TOKENS, OBS_LANGUAGE_ATTENTION_MASK):
        assert torch.equal(conditioned[key], direct[key]) and not torch.equal(conditioned[key], recorded[key])
    loglik = family_of(policy).loglik
    torch.testing.assert_close(loglik(policy, conditioned, 2, 0), loglik(policy, direct, 2, 0))
    assert not torch.allclose(loglik(policy, conditioned, 2, 0), loglik(policy, recorded, 2, 0))


def test_tasks_sharing_an_instruction_share_one_likelihood_pass(smolvla, tmp_path, monkeypatch):
    """LIBERO names 130 tasks with 112 instructions. SmolVLA cannot tell two tasks with one
    instruction apart, so amf scores the frames once per distinct instruction, and both tasks
    get that likelihood (the same importance weights)."""
    from benchmarks.libero_dataset import build_libero_dataset
    from lerobot_amf.data import DatasetRef
    from lerobot_amf.envs.libero import LiberoCatalog
    from lerobot_amf.families import family_of
    from lerobot_amf.selection.amf import AMFStrategy
    from lerobot_amf.selection.base import SelectionContext

    policy, pre, post = smolvla
    pool = ["libero_goal/turn_on_the_stove", "libero_90/KITCHEN_SCENE3_turn_on_the_stove",
            "libero_goal/put_the_bowl_on_the_stove"]
    vocabulary = LiberoCatalog().vocabulary(pool)
    instructions = [vocabulary.instructions[t] for t in pool]
    assert instructions[0] == instructions[1] != instructions[2]
    root = build_libero_dataset(tmp_path / "libero", sorted(set(instructions)), episodes_per_task=2,
                                frames_per_episode=6, video=False)
    family = family_of(policy)
    calls = []

    def counted(policy_, batch, draws, seed):
        calls.append(batch["task"][0])
        return real(policy_, batch, draws, seed)

    real = family.loglik
    monkeypatch.setattr(family, "loglik", counted)
    ctx = SelectionContext(round_index=1, pool=pool, target_weights={t: 1 / 3 for t in pool}, counts={t: 0 for t in pool},
                           capacity={t: None for t in pool}, rng=np.random.default_rng(0), policy=policy,
                           preprocessor=pre, postprocessor=post, demo_dataset=DatasetRef("lerobot/libero", root),
                           vocabulary=vocabulary)
    strategy = AMFStrategy()
    weighting = strategy.importance(ctx, strategy.demo_states(ctx))
    chunks = len(calls) // 2
    assert chunks >= 1 and len(calls) == 2 * chunks  # two distinct instructions, not three tasks
    assert sorted(set(calls)) == sorted(set(instructions))
    torch.testing.assert_close(weighting.weights[:, 0], weighting.weights[:, 1], rtol=0, atol=0)
    assert not torch.equal(weighting.weights[:, 0], weighting.weights[:, 2])


def test_scoring_one_chunk_under_several_instructions_encodes_its_images_once(smolvla, tmp_path, monkeypatch):
    """The likelihood pass scores a chunk of frames under every instruction; only the language
    changes, so SmolVLA's images are encoded once per camera, with likelihoods bit-identical to
    encoding them every time, and the policy is as it was after the block."""
    from lerobot.policies.smolvla.smolvlm_with_expert import SmolVLMWithExpertModel

    from lerobot_amf.families import family_of
    from lerobot_amf.selection.amf import condition_on_task

    policy, pre, _ = smolvla
    instructions = list(INSTRUCTIONS)
    _, states, rows = six_frames(smolvla, tmp_path, instructions[:1])
    batch = states.batch(rows)
    conditioned = [condition_on_task(batch, "t", None, text, states.language_of(text)) for text in instructions]
    family = family_of(policy)
    every_time = [family.loglik(policy, c, 1, 0) for c in conditioned]
    encoded = []
    real = SmolVLMWithExpertModel.embed_image
    monkeypatch.setattr(SmolVLMWithExpertModel, "embed_image", lambda self, image: encoded.append(1) or real(self, image))
    with family.observations_encoded_once(policy):
        once = [family.loglik(policy, c, 1, 0) for c in conditioned]
    cameras = len(policy.config.image_features)
    assert len(encoded) == cameras  # not cameras x instructions
    for a, b in zip(every_time, once, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(once[0], once[1])  # the instructions still differ
    assert "prepare_images" not in vars(policy) and "embed_image" not in vars(policy.model.vlm_with_expert)
    family.loglik(policy, conditioned[0], 1, 0)
    assert len(encoded) == 2 * cameras  # outside the block: encoded again


def test_frames_of_several_tasks_embedded_together_equal_each_task_embedded_alone(smolvla, tmp_path, monkeypatch):
    """amf's embedding pass sends the (task, frame) pairs of a chunk through the embedder together,
    a few pairs a call, whatever task each pair is for: each pair's embedding equals the one it
    gets embedded alone under its task (the draws are the same for every state; tokens of
    different lengths are right-padded and masked, as in a training batch of mixed instructions)."""
    from lerobot_amf.selection.amf import condition_on_task, embed_pairs, take_rows

    policy, pre, _ = smolvla
    instructions = list(INSTRUCTIONS)
    _, states, rows = six_frames(smolvla, tmp_path, instructions[:1])
    batch = states.batch(rows)
    embedder = make_embedder(policy, dim=64, n_draws=2)

    def conditioned(task, take):
        return condition_on_task(take_rows(batch, take), task, None, task, states.language_of(task))

    assert len({states.language_of(t)[OBS_LANGUAGE_TOKENS].shape[1] for t in instructions}) == 3  # 8, 7, 12
    pairs = [(instructions[0], np.array([0, 2, 4])), (instructions[1], np.array([1, 2, 3, 5])),
             (instructions[2], np.array([0, 5]))]
    alone = {task: embedder.embed(conditioned(task, take)) for task, take in pairs}
    calls = []
    real = embedder.embed
    monkeypatch.setattr(embedder, "embed", lambda b: calls.append(len(b["task"])) or real(b))
    together = {task: (take, values) for task, take, values in embed_pairs(policy, embedder, pairs, conditioned, 4)}
    for task, take in pairs:
        assert np.array_equal(together[task][0], take)
        torch.testing.assert_close(together[task][1], alone[task].double(), rtol=1e-5, atol=1e-7)
    assert calls == [4, 4, 1]  # 9 pairs of three tasks, 4 a call: not one call (or more) per task
