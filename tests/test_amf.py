"""The amf strategy (``selection/amf.py``) on real tiny LeRobot parts: diffusion policy, LeRobotDatasets,
Metaworld."""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
from lerobot.datasets.factory import resolve_delta_timestamps
from lerobot.policies.factory import make_pre_post_processors

from lerobot_amf.configs import AMFSelectionConfig
from lerobot_amf.data import read_frames, write_demos
from lerobot_amf.envs.metaworld_state import MetaworldStateEnvConfig
from lerobot_amf.selection import SelectionContext, make_strategy
from lerobot_amf.selection.amf import AMFStrategy
from lerobot_amf.sources.metaworld import MetaworldExpertSource
from lerobot_amf.data import DatasetRef
from lerobot_amf.families import make_embedder
from lerobot_amf.envs.metaworld_state import MetaworldCatalog
from lerobot_amf.isolation import RoutedPolicy, make_partitions

POOL = ["reach-v3", "drawer-close-v3"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("amf")
    src = MetaworldExpertSource(seed=5)
    pre = [d for t in POOL for d in src.pull(t, 2, set())]
    write_demos("local/pre", root / "pre", src.fps, src.features(), pre)
    fine = MetaworldExpertSource(seed=6, namespace="fine").pull("reach-v3", 6, set())
    write_demos("local/fine", root / "fine", src.fps, src.features(), fine)
    torch.manual_seed(0)
    cfg = DiffusionConfig(
        input_features={"observation.state": PolicyFeature(FeatureType.STATE, (39,)),
                        "observation.environment_state": PolicyFeature(FeatureType.ENV, (50,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (4,))},
        down_dims=(16, 32), diffusion_step_embed_dim=16, noise_scheduler_type="DDIM",
        num_inference_steps=3, horizon=16, n_action_steps=8, device="cpu", push_to_hub=False,
    )
    policy = DiffusionPolicy(cfg)
    stats = LeRobotDataset("local/pre", root=root / "pre").meta.stats
    pre_proc, post_proc = make_pre_post_processors(cfg, dataset_stats=stats)
    return root, policy, pre_proc, post_proc


def context(setup, with_d: bool, seed=0, policy=None):
    root, base_policy, pre_proc, post_proc = setup
    policy = base_policy if policy is None else policy
    return SelectionContext(
        round_index=1, pool=POOL, target_weights={t: 0.5 for t in POOL},
        counts={"reach-v3": 6 if with_d else 0, "drawer-close-v3": 0},
        capacity={t: None for t in POOL}, rng=np.random.default_rng(seed),
        policy=policy, preprocessor=pre_proc, postprocessor=post_proc,
        pretrain_dataset=DatasetRef("local/pre", root / "pre"),
        demo_dataset=DatasetRef("local/fine", root / "fine") if with_d else None,
        env_cfg=MetaworldStateEnvConfig(task=",".join(POOL), episode_length=20),
        vocabulary=MetaworldCatalog().vocabulary(POOL),
    )


def test_amf_picks_the_task_the_demos_so_far_do_not_cover(setup):
    # D holds 6 demos of reach and none of drawer-close: the posterior is already tight on
    # reach's states, so the information is in a drawer-close demo.
    sel = make_strategy("amf", AMFSelectionConfig()).select(context(setup, with_d=True), 1)
    assert sel.tasks == ["drawer-close-v3"]
    assert sel.scores["drawer-close-v3"] > sel.scores["reach-v3"]
    before, after = sel.details["variance_before_after"]["drawer-close-v3"]
    assert after < before
    assert set(sel.details["ess"]) == set(POOL) and sel.details["n_demos_in_d"] == 6


def test_amf_is_deterministic_for_a_seed(setup):
    a = make_strategy("amf", AMFSelectionConfig()).select(context(setup, with_d=True, seed=3), 3)
    b = make_strategy("amf", AMFSelectionConfig()).select(context(setup, with_d=True, seed=3), 3)
    assert a.tasks == b.tasks and a.scores == b.scores


@pytest.mark.slow
def test_collapsed_importance_weights_fall_back_to_policy_rollouts(setup):
    strategy = AMFStrategy(AMFSelectionConfig(ess_threshold=1e9, fallback_rollouts=2, states_per_demo=4))
    sel = strategy.select(context(setup, with_d=False), 2)
    assert sel.details["rollout_fallback"] == sorted(POOL)
    assert "rollout states" in sel.reason
    assert len(sel.tasks) == 2 and set(sel.tasks) <= set(POOL)
    # the rollouts are seeded: the global RNG's state does not change them
    torch.randn(1000)
    again = strategy.select(context(setup, with_d=False), 2)
    assert again.tasks == sel.tasks and again.scores == sel.scores


def test_a_policy_that_does_not_see_the_task_weighs_each_demo_for_its_own_task(setup):
    """Without a one-hot or a language input (LeRobot's diffusion on LIBERO) the likelihood is the same
    for every task: importance weights from it would make every candidate identical and the greedy
    tie would go to the first pool task, reach-v3, the one D already covers."""
    import dataclasses

    ctx = context(setup, with_d=True)
    ctx.vocabulary = dataclasses.replace(ctx.vocabulary, one_hot=None)  # the policy is not told the task
    sel = make_strategy("amf", AMFSelectionConfig()).select(ctx, 1)
    assert sel.details["importance"].startswith("own task only (the policy does not see the task")
    assert sel.details["ess"] == {"reach-v3": 8.0, "drawer-close-v3": 2.0}  # its own demos: 2 + 6 in D, 2
    assert sel.tasks == ["drawer-close-v3"]


def test_without_any_demo_in_hand_amf_starts_with_one_demo_per_task(setup):
    """A --policy.path checkpoint without its pretraining demos, before the first pull (docs/method.md, "Cold start")."""
    import dataclasses

    ctx = dataclasses.replace(context(setup, with_d=False), pretrain_dataset=None)
    sel = make_strategy("amf", AMFSelectionConfig()).select(ctx, 2)
    assert sorted(sel.tasks) == sorted(POOL) and sel.details == {"cold_start": True}
    assert sel.reason.startswith("amf: no demos in hand yet (cold start), so uniform:")


def test_a_task_nothing_in_hand_can_score_gets_one_demo_first(setup):
    """No demo of drawer-close in hand, no likelihood to borrow reach's demos for it (importance
    weights off, as for families without a surrogate), no simulator (library use without an env):
    amf cannot score drawer-close, so it gets its cold-start demo before amf scores the rest."""
    import dataclasses

    ctx = dataclasses.replace(context(setup, with_d=True), pretrain_dataset=None, env_cfg=None)
    sel = AMFStrategy(AMFSelectionConfig(importance_weights=False)).select(ctx, 3)
    assert sel.tasks == ["drawer-close-v3", "reach-v3", "reach-v3"]
    assert sel.details["cold_start_tasks"] == ["drawer-close-v3"] and set(sel.scores) == {"reach-v3"}
    assert "one demo first for drawer-close-v3" in sel.reason
    # where the task has no target weight, it is not a target: nothing is spent on it
    untargeted = dataclasses.replace(ctx, target_weights={"reach-v3": 1.0, "drawer-close-v3": 0.0})
    assert AMFStrategy(AMFSelectionConfig(importance_weights=False)).select(untargeted, 2).tasks == ["reach-v3"] * 2


def windows(root, name, policy):
    """A dataset the tests wrote (``local/<name>``), with the policy's observation/action windows."""
    meta = LeRobotDataset(f"local/{name}", root=root / name).meta
    return LeRobotDataset(f"local/{name}", root=root / name, delta_timestamps=resolve_delta_timestamps(policy.config, meta))


def frames(root, name, policy, preprocessor, every=3):
    """Every ``every``-th frame of a dataset, preprocessed (with its action chunk), and its task strings."""
    ds = windows(root, name, policy)
    tasks = [ds.meta.episodes[int(e)]["tasks"][0] for e in ds.hf_dataset["episode_index"][::every]]
    return preprocessor(torch.utils.data.default_collate(read_frames(ds, range(0, len(ds), every)))), tasks


@pytest.fixture(scope="module")
def reach_only_policy(setup):
    """The tiny policy trained on the 6 fine-tuning demos of reach alone (drawer-close never seen)."""
    root, policy, pre_proc, _ = setup
    policy = copy.deepcopy(policy)
    ds = windows(root, "fine", policy)
    data = pre_proc(torch.utils.data.default_collate(read_frames(ds, range(len(ds)))))  # read once
    optimizer = torch.optim.Adam(policy.parameters(), lr=2e-3)
    policy.train()
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    for _ in range(150):
        rows = torch.randint(0, len(ds), (32,), generator=gen)
        loss, _ = policy.forward({k: v[rows] for k, v in data.items() if isinstance(v, torch.Tensor)})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    policy.eval()
    return policy


@pytest.mark.slow
def test_prior_variance_ranks_the_trained_task_below_the_unseen_one(setup, reach_only_policy):
    # Held-out expert frames (the pretraining demos: other seeds) of reach, which the policy was
    # trained on, and of drawer-close, which it never saw: the kernel's prior variance |φ|²/κ
    # follows the policy's actual error there, the self-consistency kernel need not.
    root, _, pre_proc, _ = setup
    batch, tasks = frames(root, "pre", reach_only_policy, pre_proc)
    vocab = MetaworldCatalog().vocabulary(POOL)
    reach = torch.tensor([vocab.task_of_instruction[t] == "reach-v3" for t in tasks])

    def reach_over_drawer(values):
        return float(values[reach].mean() / values[~reach].mean())

    def prior_variance(policy):
        phi = make_embedder(policy, dim=1024, n_draws=8, layers=2).embed(batch).double()
        return (phi**2).sum(1) / float((phi**2).sum(1).mean())  # |φ|²/κ

    error = -family_loglik(reach_only_policy, batch)  # the policy's denoising error at the expert's actions
    assert reach_over_drawer(error) < 0.7
    # training on reach is what ranks it low, not where its states lie: the untrained policy's
    # kernel ranks the two tasks far closer (measured: 0.13 trained vs 0.69 untrained)
    trained, untrained = reach_over_drawer(prior_variance(reach_only_policy)), reach_over_drawer(prior_variance(setup[1]))
    assert trained < 0.3 and trained < 0.5 * untrained, (trained, untrained)


def family_loglik(policy, batch):
    from lerobot_amf.families import family_of

    return family_of(policy).loglik(policy, batch, 8, 0)


@pytest.mark.slow
def test_one_fantasised_demo_removes_at_most_half_of_its_tasks_variance(setup):
    sel = AMFStrategy(AMFSelectionConfig(states_per_demo=8)).select(context(setup, with_d=False), 3)
    assert sel.details["noise"]["calibrated"] and sel.details["noise"]["sigma2"] > 0
    assert max(sel.details["noise"]["prior_variance_removed"].values()) == pytest.approx(0.5, abs=1e-3)
    for pick in sel.details["pick_variance"]:
        before, after = pick["own"]
        assert after >= 0.5 * before - 1e-6, pick
    assert sel.details["kernel_targets"]["demo_frames"]["target"] == "expert"
    assert sel.details["kernel"]["kind"] == "gradient" and len(sel.details["kernel"]["layers"]) == 2


@pytest.mark.slow
def test_routed_selection_embeds_each_task_with_its_partition_active(setup):
    root, policy, _, _ = setup
    base = copy.deepcopy(policy)
    base.config.pretrained_path = "base"
    routed = RoutedPolicy(base, make_partitions("per_task", POOL), "lora", MetaworldCatalog().vocabulary(POOL).task_of_instruction)
    with torch.no_grad():  # make the adapters differ from the base and from each other
        for i, name in enumerate(routed.partitions.names):
            for module_name, param in routed.model.named_parameters():
                if f"lora_B.{name}." in module_name:
                    param.add_(0.01 * (i + 1))
    routed.activate("reach-v3")
    vocabulary = MetaworldCatalog().vocabulary(POOL).one_hot
    seen = []

    def record(_module, args, kwargs):
        cond = kwargs["global_cond"]
        for row in cond[:, -len(vocabulary):].argmax(dim=1).tolist():
            seen.append((vocabulary[row], routed.active))

    handle = routed.policy.diffusion.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        sel = AMFStrategy(AMFSelectionConfig(states_per_demo=4, n_draws=1)).select(
            context(setup, with_d=True, policy=routed), 1)
    finally:
        handle.remove()
    assert {task for task, _ in seen} == set(POOL)
    assert all(routed.partitions.of(task) == active for task, active in seen)
    assert routed.active == "reach-v3"  # the partition active before selection is restored
    adapters_off = AMFStrategy(AMFSelectionConfig(states_per_demo=4, n_draws=1)).select(
        context(setup, with_d=True, policy=policy), 1)  # the pretrained policy the adapters were put on
    assert sel.scores != adapters_off.scores  # the adapters change what the strategy sees


def test_importance_weights_can_be_switched_off_for_the_ablation(setup):
    sel = make_strategy("amf", AMFSelectionConfig(importance_weights=False)).select(context(setup, with_d=True), 1)
    assert sel.details["importance"] == "own task only"
    assert sel.details["ess"] == {"reach-v3": 8.0, "drawer-close-v3": 2.0}  # each demo for its own task only


def test_a_task_embeds_only_the_frames_its_scores_read():
    # demo 0 recorded for A, demo 1 for B; the policy tells A and B apart, so under A demo 1 sits
    # at the clipped weight e^-10: its frames are neither A's targets nor A's candidates
    from lerobot_amf.selection.amf import DemoStates, demo_roles

    light = float(np.exp(-10.0))
    weights = torch.tensor([[1 / (1 + light), light / (1 + light)], [light / (1 + light), 1 / (1 + light)]],
                           dtype=torch.float64)
    demo_of_frame = np.repeat([0, 1], 4)
    states = DemoStates([], np.zeros(8, dtype=int), np.arange(8), None, demo_of_frame, np.tile([False, True], 4),
                        ["A", "B"], np.array([40, 40]), np.array([4, 4]), np.array([False, True]))
    roles = demo_roles(states, weights, ["A", "B"], {"A": 0.5, "B": 0.5}, mass_floor=1e-3)
    for task, own in (("A", [0, 1, 2, 3]), ("B", [4, 5, 6, 7])):
        assert list(roles[task].rows_to_embed) == own
        assert [list(c[0]) for c in roles[task].candidates] == [own[1::2]]
        assert roles[task].candidates[0][2] == 1.0  # renormalised over the kept demos
    assert float(roles["A"].target_weights.sum()) == pytest.approx(0.5 / (1 + light))
    # with no floor the light frames stay A's (negligible) targets, and are embedded under A
    keep_all = demo_roles(states, weights, ["A", "B"], {"A": 0.5, "B": 0.5}, mass_floor=0.0)
    assert list(keep_all["A"].target_rows) == [0, 2, 4, 6] and list(keep_all["A"].rows_to_embed) == [0, 1, 2, 3, 4, 6]


def test_caps_resample_each_tasks_targets_and_candidate_demos_keeping_their_totals():
    # 12 demos of one task, the weights spread over all of them (a policy that hardly tells tasks
    # apart): capped at 10 targets and 3 candidate demos the task keeps draws in proportion to weight
    from lerobot_amf.selection.amf import DemoStates, RoleCaps, demo_roles

    n = 12
    w = torch.arange(1, n + 1, dtype=torch.float64)
    weights = (w / w.sum())[:, None]
    demo_of_frame = np.repeat(np.arange(n), 4)
    states = DemoStates([], np.zeros(4 * n, dtype=int), np.arange(4 * n), None, demo_of_frame,
                        np.tile([False, True], 2 * n), ["A"] * n, np.full(n, 40), np.full(n, 4), np.zeros(n, bool))
    full = demo_roles(states, weights, ["A"], {"A": 1.0}, mass_floor=0.0)["A"]
    capped = demo_roles(states, weights, ["A"], {"A": 1.0}, mass_floor=0.0, caps=RoleCaps(10, 3))["A"]
    assert full.capped == {} and len(full.target_rows) == 2 * n and len(full.candidates) == n
    assert capped.capped == {"targets": [2 * n, len(capped.target_rows)], "candidate_demos": [n, len(capped.candidates)]}
    assert len(capped.target_rows) <= 10 and len(capped.candidates) <= 3
    assert float(capped.target_weights.sum()) == pytest.approx(float(full.target_weights.sum()))
    assert sum(c[2] for c in capped.candidates) == pytest.approx(1.0)
    # the kept demos stand for all of them in proportion to weight: the lightest (demo 0, weight
    # 1/78) is not kept, and the mean demo number under the probabilities is unchanged
    kept = {int(demo_of_frame[c[0][0]]): c[2] for c in capped.candidates}
    assert 0 not in kept
    assert sum(d * p for d, p in kept.items()) == pytest.approx(float((torch.arange(n) * weights[:, 0]).sum()), rel=0.05)
    # the resampled targets estimate any weighted mean of the full targets closely (here: the row number)
    value = torch.as_tensor(full.target_rows, dtype=torch.float64)
    mean_full = float((full.target_weights * value).sum() / full.target_weights.sum())
    value_c = torch.as_tensor(capped.target_rows, dtype=torch.float64)
    mean_capped = float((capped.target_weights * value_c).sum() / capped.target_weights.sum())
    assert mean_capped == pytest.approx(mean_full, rel=0.05)


def test_the_default_caps_bind_at_libero_scale_not_at_the_studys():
    from lerobot_amf.selection.amf import RoleCaps

    cfg = AMFSelectionConfig()
    study = RoleCaps.of(cfg, 12)  # the hard study: 12 tasks, at most 39 + 24 demos in hand, 8 targets each
    assert study.candidate_demos >= 63 and study.targets >= 63 * cfg.states_per_demo // 2
    libero = RoleCaps.of(cfg, 130)  # 1,820 demos: every task could otherwise hold all of them
    assert libero.targets * 130 <= cfg.max_target_states and libero.candidate_demos < 1820
    assert RoleCaps.of(AMFSelectionConfig(max_target_states=None, max_candidate_states=None), 130) == RoleCaps()


def test_a_selection_under_tight_caps_embeds_fewer_frames_and_says_which_tasks_were_capped(setup):
    free = AMFStrategy(AMFSelectionConfig()).select(context(setup, with_d=True, seed=3), 2)
    assert free.details["caps"]["capped"] == {}  # the defaults do not bind at this size
    tight = AMFStrategy(AMFSelectionConfig(max_target_states=8, max_candidate_states=16)).select(
        context(setup, with_d=True, seed=3), 2)
    caps = tight.details["caps"]
    assert caps["per_task"] == {"targets": 4, "candidate_demos": 1}
    assert caps["capped"] and all(c.get("targets", [0, 0])[1] <= 4 for c in caps["capped"].values())
    assert all(n == 1 for n in tight.details["candidate_demos"].values())
    assert sum(tight.details["embedded_frames"]["per_task"].values()) < \
        sum(free.details["embedded_frames"]["per_task"].values())
    assert len(tight.tasks) == 2 and set(tight.tasks) <= set(POOL)


def test_dropping_the_lightest_target_frames_changes_no_pick(setup):
    full = AMFStrategy(AMFSelectionConfig(target_mass_floor=0.0)).select(context(setup, with_d=True, seed=3), 3)
    pruned = AMFStrategy(AMFSelectionConfig()).select(context(setup, with_d=True, seed=3), 3)
    assert pruned.tasks == full.tasks
    assert pruned.scores == pytest.approx(full.scores, rel=2e-3)
    embedded = pruned.details["embedded_frames"]
    assert embedded["target_mass_floor"] == 1e-3
    assert sum(embedded["per_task"].values()) < sum(full.details["embedded_frames"]["per_task"].values())


# ---- the options a pilot decides (docs/method.md, "amf_eval, and the options a pilot decides") ----
def test_amf_eval_is_amf_on_target_weights_directed_at_what_fails(setup):
    import dataclasses

    # the latest evaluation: reach 9/10, drawer-close 1/10
    success = {"reach-v3": {"successes": 9, "episodes": 10}, "drawer-close-v3": {"successes": 1, "episodes": 10}}
    ctx = dataclasses.replace(context(setup, with_d=True), success=success)
    sel = make_strategy("amf_eval", AMFSelectionConfig()).select(ctx, 2)
    failure = {"reach-v3": 2 / 12, "drawer-close-v3": 10 / 12}  # Beta posterior means
    directed = {t: f / sum(failure.values()) for t, f in failure.items()}
    assert sel.details["failure_rate"] == {t: round(f, 4) for t, f in failure.items()}
    assert sel.details["directed_target_weights"] == {t: round(w, 4) for t, w in directed.items()}
    plain = make_strategy("amf", AMFSelectionConfig()).select(
        dataclasses.replace(context(setup, with_d=True), target_weights=directed), 2)
    assert sel.tasks == plain.tasks and sel.scores == plain.scores  # the same amf, other target weights
    assert sel.reason.startswith("amf_eval: target weights mu(c) x estimated failure rate")
    # without an evaluation (no simulator) it is amf
    blind = make_strategy("amf_eval", AMFSelectionConfig()).select(context(setup, with_d=True), 2)
    amf = make_strategy("amf", AMFSelectionConfig()).select(context(setup, with_d=True), 2)
    assert blind.tasks == amf.tasks and blind.scores == amf.scores and "no evaluation" in blind.reason


def test_conditioning_on_pretraining_demos_lowers_the_covered_tasks_variance(setup):
    """The pretraining demos (2 of each task here) observed by the posterior: every task's target
    variance before a pick is lower than with the fine-tuning demos only."""
    only_d = make_strategy("amf", AMFSelectionConfig(condition_on_pretraining=False)).select(
        context(setup, with_d=True), 1)
    with_pre = make_strategy("amf", AMFSelectionConfig()).select(  # the default since the options pilot
        context(setup, with_d=True), 1)
    assert with_pre.details["posterior_observes"] == "fine-tuning and pretraining demos"
    assert only_d.details["posterior_observes"] == "fine-tuning demos"
    for task in POOL:
        before_only_d = only_d.details["variance_before_after"][task][0]
        before_with_pre = with_pre.details["variance_before_after"][task][0]
        assert before_with_pre < before_only_d, task


@pytest.mark.slow
def test_rollout_roles_by_rollout_keep_each_candidate_off_its_own_targets(setup, monkeypatch):
    """rollout_roles=rollouts: the even rollouts are targets, the odd ones candidates, whole."""
    strategy = AMFStrategy(AMFSelectionConfig(ess_threshold=1e9, fallback_rollouts=4, states_per_demo=4,
                                              rollout_roles="rollouts"))
    seen = {}
    original = AMFStrategy._targets_and_candidates

    def spy(self, ctx, states, phi, roles, rollout_phi):
        targets, candidates = original(self, ctx, states, phi, roles, rollout_phi)
        seen.update(rollouts=rollout_phi, targets=targets, candidates=candidates)
        return targets, candidates

    monkeypatch.setattr(AMFStrategy, "_targets_and_candidates", spy)
    sel = strategy.select(context(setup, with_d=False), 2)
    assert sel.details["rollout_roles"] == "rollouts"
    for task in POOL:
        rollouts = seen["rollouts"][task]
        assert len(rollouts) == 4
        assert torch.equal(seen["targets"][task][0], torch.cat([rollouts[0], rollouts[2]]))
        assert [c.phi.shape[0] for c in seen["candidates"][task]] == [rollouts[1].shape[0], rollouts[3].shape[0]]
        assert torch.equal(seen["candidates"][task][0].phi, rollouts[1])
        assert [c.probability for c in seen["candidates"][task]] == [0.5, 0.5]


def test_without_a_simulator_selection_rolls_out_nothing_and_reads_no_evaluation(setup, monkeypatch):
    """simulator=false (the real-robot case): a collapsed task gets no rollouts, and amf_eval reads no
    evaluation, even where the context carries an env and one."""
    from lerobot_amf.selection.amf import AMFStrategy as Strategy

    def no_rollouts(self, ctx, tasks, embedder):
        assert ctx.env_cfg is None, "a rollout was asked for with simulator=false"
        return {}

    monkeypatch.setattr(Strategy, "rollout_states", no_rollouts)
    blind = AMFSelectionConfig(ess_threshold=1e9, fallback_rollouts=2, states_per_demo=4, simulator=False)
    success = {"reach-v3": {"successes": 9, "episodes": 10}, "drawer-close-v3": {"successes": 1, "episodes": 10}}
    ctx = dataclasses.replace(context(setup, with_d=True), success=success)
    sel = make_strategy("amf_eval", blind).select(ctx, 2)
    assert sel.details["rollout_fallback"] == [] and sel.details["simulator"] is False
    assert "failure_rate" not in sel.details and "no evaluation" in sel.reason
    assert "no simulator: no rollouts, no evaluation" in sel.reason
    # and it is amf on a context that has neither (a fresh one: the same round's random numbers)
    plain = make_strategy("amf", dataclasses.replace(blind, simulator=True)).select(
        dataclasses.replace(context(setup, with_d=True), env_cfg=None), 2)
    assert sel.tasks == plain.tasks and sel.scores == plain.scores


def test_selection_reads_its_frames_a_chunk_at_a_time_and_holds_none(setup, monkeypatch):
    """Memory grows with the chunk, not with the frames sampled: the states in hand keep row
    numbers only, every read is at most ``chunk_size`` frames, the likelihood pass reads each
    sampled frame once, and the picks are those of one big chunk."""
    from lerobot_amf.selection.amf import DemoStates

    reads, held = [], []
    original = DemoStates.batch

    def recording(self, rows):  # read-only: answers unchanged
        reads.append(len(rows))
        held.append(self)
        return original(self, rows)

    monkeypatch.setattr(DemoStates, "batch", recording)
    small = AMFStrategy(AMFSelectionConfig(chunk_size=5)).select(context(setup, with_d=True, seed=3), 3)
    small_reads, reads[:] = list(reads), []
    big = AMFStrategy(AMFSelectionConfig(chunk_size=100_000)).select(context(setup, with_d=True, seed=3), 3)
    sampled = small.details["embedded_frames"]["sampled"]
    assert max(small_reads) <= 5 and len(small_reads) > sampled // 5  # the likelihood pass, then the embedding
    assert reads[0] == sampled  # one chunk: the likelihood pass reads every sampled frame, once
    assert sum(small_reads[:-(-sampled // 5)]) == sampled
    kept = vars(held[0])
    assert not any(isinstance(v, torch.Tensor) for v in kept.values())  # no batch kept
    assert all(v is None for v in kept["language"].values())  # a policy without language inputs
    assert small.tasks == big.tasks


def test_a_selection_records_its_seconds_per_part_and_its_passes(setup):
    """Where a selection's time goes (docs/method.md, "What a selection costs"): the parts add up to
    no more than its wall time, and the passes are what the math ran: every sampled frame under each
    of the two tasks once (one likelihood draw), every embedded (task, frame) pair n_draws times."""
    import time

    cfg = AMFSelectionConfig(n_draws=2)
    start = time.perf_counter()
    sel = AMFStrategy(cfg).select(context(setup, with_d=True, seed=3), 2)
    wall = time.perf_counter() - start
    seconds, passes = sel.details["seconds"], sel.details["passes"]
    assert {"opening demos", "reading frames", "likelihood", "embedding", "posterior", "greedy"} <= set(seconds)
    assert all(v >= 0 for v in seconds.values()) and sum(seconds.values()) <= wall
    assert passes["likelihood"] == sel.details["embedded_frames"]["sampled"] * len(POOL) * cfg.loglik_draws
    assert passes["embedding"] == sum(sel.details["embedded_frames"]["per_task"].values()) * cfg.n_draws
    assert passes["rollout_episodes"] == 0


def test_the_likelihood_can_score_fewer_frames_per_demo_spread_over_its_sampled_ones(setup):
    from lerobot_amf.selection.amf import likelihood_rows

    strategy = AMFStrategy(AMFSelectionConfig())
    states = strategy.demo_states(context(setup, with_d=True, seed=3))
    assert list(likelihood_rows(states, None)) == list(range(len(states.demo_of_frame)))
    rows = likelihood_rows(states, 4)
    per_demo = np.bincount(states.demo_of_frame[rows], minlength=len(states.demo_task))
    assert list(per_demo) == [min(4, k) for k in states.frames_per_demo]
    first = np.flatnonzero(states.demo_of_frame == 0)
    assert list(rows[:4]) == [first[2], first[6], first[10], first[14]]  # stratum midpoints: 16 sampled, 4 scored
    sel = AMFStrategy(AMFSelectionConfig(loglik_states_per_demo=4)).select(context(setup, with_d=True, seed=3), 2)
    assert sel.details["passes"]["likelihood"] == len(rows) * len(POOL)
    with pytest.raises(Exception, match="loglik_states_per_demo=0"):
        AMFSelectionConfig(loglik_states_per_demo=0).validate()


def test_datasets_stay_open_across_rounds_until_a_round_adds_episodes(setup, tmp_path):
    """Opening a dataset reads every episode's metadata; a run's pretraining demos never change, so
    they are opened once, and its fine-tuning demos again only once a round has added episodes."""
    import shutil

    root, policy = setup[0], setup[1]
    shutil.copytree(root / "fine", tmp_path / "fine")
    ref = DatasetRef("local/fine", tmp_path / "fine")
    strategy = AMFStrategy(AMFSelectionConfig())
    first = strategy.opened(ref, policy.config)
    assert strategy.opened(ref, policy.config) is first
    src = MetaworldExpertSource(seed=9, namespace="more")
    write_demos("local/fine", tmp_path / "fine", src.fps, src.features(), src.pull("drawer-close-v3", 1, set()))
    grown = strategy.opened(ref, policy.config)
    assert grown is not first and grown.meta.total_episodes == first.meta.total_episodes + 1


def test_the_likelihood_cap_binds_at_libero_scale_not_at_the_studys(setup):
    from lerobot_amf.selection.amf import likelihood_frames_per_demo

    cfg = AMFSelectionConfig()
    assert likelihood_frames_per_demo(cfg, 63, 12, 16) == (None, None)  # the hard study: 63 demos, 12 tasks
    assert likelihood_frames_per_demo(cfg, 34, 4, 16) == (None, None)  # the embedded default
    # LIBERO: 130 tasks, 112 instructions, 4 frames sampled per demo (max_sampled_frames)
    assert likelihood_frames_per_demo(cfg, 1820, 112, 4) == (1, [4, 1])
    assert likelihood_frames_per_demo(AMFSelectionConfig(max_likelihood_passes=None), 1820, 112, 4) == (None, None)
    # a tight cap on a real selection: fewer frames per demo, the passes within it, and the record says so
    tight = AMFSelectionConfig(max_likelihood_passes=200)
    sel = AMFStrategy(tight).select(context(setup, with_d=True, seed=3), 2)
    n_demos = sel.details["n_demos_in_hand"]
    per_demo = 200 // (n_demos * len(POOL))
    assert sel.details["caps"]["likelihood_frames_per_demo"] == [16, per_demo]
    assert sel.details["passes"]["likelihood"] <= 200
    assert AMFStrategy(cfg).select(context(setup, with_d=True, seed=3), 2).details["caps"]["likelihood_frames_per_demo"] is None


def test_the_sampled_frames_cap_binds_at_libero_scale_not_at_the_studys(setup):
    from lerobot_amf.selection.amf import sampled_frames_per_demo

    cfg = AMFSelectionConfig()
    assert sampled_frames_per_demo(cfg, 63) == (16, None)  # the hard study: at most 63 demos in hand
    assert sampled_frames_per_demo(cfg, 1820) == (4, [16, 4])  # LIBERO: 1,820 demos
    assert sampled_frames_per_demo(cfg, 100_000) == (2, [16, 2])  # one target and one candidate state at least
    tight = AMFStrategy(AMFSelectionConfig(max_sampled_frames=40))
    sel = tight.select(context(setup, with_d=True, seed=3), 2)
    n_demos = sel.details["n_demos_in_hand"]
    assert sel.details["caps"]["frames_per_demo"] == [16, 40 // n_demos]
    assert sel.details["embedded_frames"]["sampled"] <= 40
    full = AMFStrategy(AMFSelectionConfig()).select(context(setup, with_d=True, seed=3), 2)
    assert full.details["caps"]["frames_per_demo"] is None and full.details["embedded_frames"]["sampled"] == 16 * n_demos


def test_amf_eval_reads_the_evaluation_only_where_a_simulator_gives_one():
    """Its human cost on a robot: amf_eval reads every round's evaluation; without a simulator it
    sees none (it is amf), and amf itself never reads one."""
    from lerobot_amf.selection.amf import AMFEvalStrategy, AMFStrategy

    assert AMFEvalStrategy(AMFSelectionConfig()).reads_evaluation
    assert not AMFEvalStrategy(AMFSelectionConfig(simulator=False)).reads_evaluation
    assert not AMFStrategy(AMFSelectionConfig()).reads_evaluation
