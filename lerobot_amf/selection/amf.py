"""The ``amf`` strategy (docs/method.md, "One round, step by step"): pick the tasks whose next
demos carry the most information about the expert on the target tasks.

Per round:
1. States in hand: a few frames of every demo available (the pretraining demos when known,
   plus the fine-tuning demos D). A demo's sampled frames are split in two: half are its
   *target* states, half the states a new demo like it would visit (its *candidate* states) —
   a candidate never observes its own targets. Every frame is scored under every pool task by
   the likelihood surrogate (step 3), but embedded under a task only where that task's scores
   read it: its own frames, its candidate demos, and its target frames but the lightest ones,
   which together hold at most ``target_mass_floor`` of its target weight.
2. Kernel (``--amf.selection.kernel``): the current policy's training-loss gradient at each
   frame's own expert action chunk, over the last ``kernel_layers`` weight layers of its
   action head (``lerobot_amf.embeddings``), projected to ``embedding_dim`` with a recorded
   seed — large where the policy is wrong. States without an expert action (rollouts) use the
   policy's own sample as pseudo-target; the record says which states used which. Under
   per-partition adapters every task is embedded with its own partition active.
3. Importance weights: how likely the current policy finds demo i's actions under task c'
   (the family's likelihood surrogate with common random numbers), self-normalised and
   clipped; they estimate both the target states of each task and which demos a new demo of
   c' would resemble. A task whose effective sample size collapses (or that has no demo at
   all) falls back to states the current policy visits in its own simulator rollouts, and the
   log says so; where each task's weight went is recorded.
4. Weight-space GP posterior on D's states with noise σ² calibrated (unless given) so one
   fantasised demo removes at most ``max_variance_removed`` of its task's prior target
   variance; a task scores the expected information gain of one demo, Σ_i w_i(c') · I(demo i);
   greedy batch with fantasised picks (``selection.gp``).
A target task nothing in hand can score (no demo of its own, no likelihood surrogate to borrow
others', no simulator for rollouts) gets one demo first: the cold start, per task.
Every task's score, variance before/after per pick and ESS is returned for the ledger.

Distributed (``accelerate launch`` / ``torchrun``): every process calls ``select``. The states
are cut into chunks of ``chunk_size``; chunk i is embedded (and its likelihood surrogate
computed) by process i mod P, and the chunks are gathered in order, so every process holds the
same embeddings as a single process computing the same chunks. Rollout fallbacks are split by
task the same way. The greedy step then runs on every process, deterministic, so all agree.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from lerobot.datasets.factory import resolve_delta_timestamps
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.datasets.utils import INFO_PATH
from lerobot.utils.constants import OBS_ENV_STATE, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

from lerobot_amf.data import RowSubset, read_frames
from lerobot_amf.embeddings.kinds import DEFAULT_TARGET
from lerobot_amf.families import family_of, kernel_embedder
from lerobot_amf.isolation.routing import RoutedPolicy, acting_policy, serving
from lerobot_amf.selection.base import Selection, SelectionContext, Strategy
from lerobot_amf.selection.baselines import UniformStrategy, failure_rate
from lerobot_amf.selection.config import AMFSelectionConfig
from lerobot_amf.selection.gp import (
    CandidateDemo,
    WeightSpacePosterior,
    calibrate_noise,
    fantasised_states,
    greedy_batch,
    kernel_scale,
)
from lerobot_amf.selection.importance import importance_weights, summarize_importance, systematic_resample
from lerobot_amf.trust.files import read_bounded_text

# Stream id mixed into the round's seed for sampling demo frames, so the frames do not share
# random numbers with the round generator's other uses.
FRAME_SAMPLING_STREAM = 17
# Demos whose importance weight under a task is below this are not among its candidate demos
# (the kept weights are renormalised).
CANDIDATE_WEIGHT_FLOOR = 1e-3


@dataclasses.dataclass
class DemoStates:
    """Sampled frames of the demos in hand. The frames themselves are read on demand, a chunk at a
    time (``chunks``): only their row numbers are held, so a selection's memory grows with the
    chunk, not with the frames sampled (two 256x256 cameras are 1.5 MB a frame as float32)."""

    datasets: list  # LeRobotDatasets the frames come from (the pretraining demos, then D)
    frame_dataset: np.ndarray  # (N,) index into datasets
    frame_position: np.ndarray  # (N,) the frame's row in its dataset
    preprocessor: object  # the policy's pre-processor, applied to each chunk as read
    demo_of_frame: np.ndarray  # (N,) index into demo_task / demo_length
    candidate: np.ndarray  # (N,) bool: a candidate state (else a target state) of its demo
    demo_task: list[str]  # task each demo was recorded for
    demo_length: np.ndarray  # frames per demo (the full episode)
    frames_per_demo: np.ndarray  # sampled frames per demo
    in_d: np.ndarray  # (n_demos,) bool: a fine-tuning demo (part of D)
    # instruction -> the language inputs the pre-processor makes of it (1 row), or None
    language: dict = dataclasses.field(default_factory=dict, repr=False)
    read_seconds: float = 0.0  # wall time spent reading and pre-processing frames (``batch``)
    frames_capped: list | None = None  # [frames per demo asked, sampled] where max_sampled_frames bound them

    def batch(self, rows) -> dict:
        """The frames ``rows`` (sampled-frame numbers), read and pre-processed, in that order."""
        start = time.perf_counter()
        rows = np.asarray(rows, dtype=np.int64)
        items: list = [None] * len(rows)
        for d, ds in enumerate(self.datasets):
            mine = np.flatnonzero(self.frame_dataset[rows] == d)
            for k, item in zip(mine, read_frames(ds, self.frame_position[rows[mine]])):
                items[k] = item
        out = self.preprocessor(torch.utils.data.default_collate(items))
        self.read_seconds += time.perf_counter() - start
        return out

    def language_of(self, instruction: str) -> dict | None:
        """The language inputs (token ids, attention mask; one row) the pre-processor makes of
        ``instruction``, or None where the policy has no language input. A frame is conditioned on
        another task by these, since the pre-processed frames carry the tokens of the task they
        were recorded for (SmolVLA, pi0 and pi05 read the tokens, not the string)."""
        if instruction not in self.language:
            item = read_frames(self.datasets[int(self.frame_dataset[0])], [int(self.frame_position[0])])[0]
            prepared = self.preprocessor(torch.utils.data.default_collate([{**item, "task": instruction}]))
            held = {key: prepared[key] for key in LANGUAGE_KEYS if key in prepared}
            self.language[instruction] = held or None
        return self.language[instruction]

    def chunks(self, rows, size: int, accelerator=None, desc: str | None = None):
        """(chunk number, its rows, its batch) for ``rows`` cut into chunks of ``size``; under
        several processes only this process's chunks (chunk i on process i mod P) are read. With
        ``desc``, a progress bar (on stderr, first process only): at LIBERO's scale a pass takes
        minutes."""
        from tqdm import tqdm

        rows = np.asarray(rows, dtype=np.int64)
        rank, world = _rank(accelerator), _num_processes(accelerator)
        starts = list(range(0, len(rows), size))
        bar = tqdm(total=len(starts), desc=desc, unit="chunk", leave=False, mininterval=2.0,
                   disable=desc is None or rank != 0 or len(starts) < 2)
        with bar:
            for i, start in enumerate(starts):
                if i % world == rank:
                    part = rows[start:start + size]
                    yield i, part, self.batch(part)
                bar.update(1)


LANGUAGE_KEYS = (OBS_LANGUAGE_TOKENS, OBS_LANGUAGE_ATTENTION_MASK)


@dataclasses.dataclass(frozen=True)
class _InfoFeatures:
    """What ``resolve_delta_timestamps`` reads of a dataset's metadata (features, fps), from its
    info.json alone: the policy's delta timestamps without loading every episode's metadata."""

    features: dict
    fps: int


class PartTimes:
    """Wall seconds per part of one selection (the record's ``seconds``; docs/method.md, "What a
    selection costs"). Reading and pre-processing frames is a part of its own, taken out of the
    part that read them (frames are read a chunk at a time, inside the likelihood and embedding
    passes)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.states: DemoStates | None = None  # whose reading time is counted apart

    def _read(self) -> float:
        return self.states.read_seconds if self.states is not None else 0.0

    @contextmanager
    def part(self, name: str):
        read_before, start = self._read(), time.perf_counter()
        try:
            yield
        finally:
            read = self._read() - read_before
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start - read
            if read:
                self.seconds["reading frames"] = self.seconds.get("reading frames", 0.0) + read

    def record(self) -> dict:
        return {name: round(value, 4) for name, value in self.seconds.items()}


def condition_on_task(batch: dict, task: str, vocabulary: tuple[str, ...] | None, instruction: str | None,
                      language: dict | None = None) -> dict:
    """The same pre-processed states, conditioned on ``task``: the one-hot env state (Metaworld
    state env), the instruction string, and the language inputs ``language`` the pre-processor
    made of the instruction (``DemoStates.language_of``; policies with a language input)."""
    out = dict(batch)
    if vocabulary is not None and OBS_ENV_STATE in out and out[OBS_ENV_STATE].shape[-1] == len(vocabulary):
        one_hot = torch.zeros_like(out[OBS_ENV_STATE])
        one_hot[..., vocabulary.index(task)] = 1.0
        out[OBS_ENV_STATE] = one_hot
    if instruction is not None and "task" in out:
        out["task"] = [instruction] * len(out["task"])
    if instruction is not None and language is not None:
        n = len(next(v for v in out.values() if isinstance(v, torch.Tensor)))
        out.update({key: value.expand(n, *value.shape[1:]) for key, value in language.items()})
    return out


def _conditioning_key(policy, task: str, vocabulary: tuple[str, ...] | None, instruction: str | None) -> tuple:
    """What conditioning a frame on ``task`` changes (``condition_on_task``, ``serving``): its
    partition, its one-hot slot, its instruction. Two tasks with one key get the same likelihood."""
    return _partition_of(policy, task), (task if vocabulary is not None else None), instruction


def split_target_candidate(n: int) -> np.ndarray:
    """Roles of a demo's n sampled frames (in time order): alternately target, candidate."""
    return np.arange(n) % 2 == 1


def sampled_frames_per_demo(cfg: AMFSelectionConfig, n_demos: int) -> tuple[int, list | None]:
    """Frames sampled per demo in hand, and [asked, kept] where the cap ``max_sampled_frames`` bound
    them: every frame is read (a video decoded) and embedded under its task, so the reading and the
    embedding grow with demos x frames (LIBERO's 1,820 demos x 16 = 29,120); shared out evenly, at
    least 2 per demo (one target state, one candidate state)."""
    asked = cfg.states_per_demo
    if cfg.max_sampled_frames is None or n_demos * asked <= cfg.max_sampled_frames:
        return asked, None
    kept = max(2, cfg.max_sampled_frames // n_demos)
    return kept, [asked, kept]


def likelihood_frames_per_demo(cfg: AMFSelectionConfig, n_demos: int, n_distinct: int,
                               sampled: int) -> tuple[int | None, list | None]:
    """Frames per demo the likelihood scores (None: all ``sampled``), and [asked, kept] where the cap
    ``max_likelihood_passes`` bound them: the passes are frames x distinct tasks x draws, which grow
    with demos x tasks (LIBERO's 130 tasks: 1,820 demos x 112 instructions), so they are shared out
    evenly over the demos, at least one frame each."""
    asked = cfg.loglik_states_per_demo
    wanted = sampled if asked is None else min(asked, sampled)
    if cfg.max_likelihood_passes is None or n_demos == 0:
        return asked, None
    allowed = max(1, cfg.max_likelihood_passes // (n_demos * n_distinct * cfg.loglik_draws))
    return (asked, None) if allowed >= wanted else (allowed, [wanted, allowed])


def likelihood_rows(states: "DemoStates", per_demo: int | None) -> np.ndarray:
    """The sampled frames the likelihood surrogate scores: every one (``per_demo`` None), or at most
    ``per_demo`` of each demo's, at the midpoints of equal strata of its sampled frames (time-ordered,
    so spread over the episode; one frame: the middle one). A demo's weight reads the mean over the
    frames scored, so fewer frames cost proportionally fewer passes (frames x distinct tasks) and
    estimate the same quantity with more variance."""
    if per_demo is None:
        return np.arange(len(states.demo_of_frame))
    rows = []
    for demo in range(len(states.demo_task)):
        mine = np.flatnonzero(states.demo_of_frame == demo)
        if len(mine) <= per_demo:
            rows.append(mine)
        else:
            rows.append(mine[((np.arange(per_demo) + 0.5) * len(mine) / per_demo).astype(int)])
    return np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)


@dataclasses.dataclass
class Weighting:
    """Every demo's importance weight per task (n_demos, tasks; columns sum to 1), their summary
    (ESS per task), and how they were made (the selection record's ``importance``)."""

    weights: torch.Tensor
    summary: object
    label: str
    passes: int = 0  # likelihood passes run: (frame, distinct conditioning) pairs x draws
    capped: list | None = None  # [frames per demo asked, scored] where max_likelihood_passes bound them


@dataclasses.dataclass
class TaskRoles:
    """Which sampled frames a task's scores read: its target states with their weights
    μ(c)·w_i(c)/frames, its candidate demos (candidate rows, frames each stands for, probability
    w_i(c) renormalised), and the frames recorded for it (the posterior observes D under them).
    ``capped``: what a cap resampled (``RoleCaps``), as {"targets" | "candidate_demos": [before, after]}."""

    target_rows: np.ndarray
    target_weights: torch.Tensor
    candidates: list[tuple[np.ndarray, torch.Tensor, float]]
    own_rows: np.ndarray
    capped: dict = dataclasses.field(default_factory=dict)

    @property
    def rows_to_embed(self) -> np.ndarray:
        return np.unique(np.concatenate([self.target_rows, self.own_rows, *(c[0] for c in self.candidates)]))


@dataclasses.dataclass(frozen=True)
class RoleCaps:
    """Per task, at most ``targets`` target states and ``candidate_demos`` candidate demos (None: no
    cap): the selection's caps (``max_target_states``, ``max_candidate_states``) shared out evenly
    over the pool, so what a selection embeds and scores is bounded whatever the pool's size."""

    targets: int | None = None
    candidate_demos: int | None = None

    @classmethod
    def of(cls, cfg: AMFSelectionConfig, n_tasks: int) -> "RoleCaps":
        per_demo = max(1, cfg.states_per_demo // 2)  # a demo's candidate states (split_target_candidate)
        return cls(None if cfg.max_target_states is None else max(1, cfg.max_target_states // n_tasks),
                   None if cfg.max_candidate_states is None
                   else max(1, cfg.max_candidate_states // (n_tasks * per_demo)))


def demo_roles(states: DemoStates, weights: torch.Tensor, pool: list[str], target_weights: dict,
               mass_floor: float, caps: RoleCaps = RoleCaps()) -> dict[str, TaskRoles]:
    """Each task's ``TaskRoles`` from the importance weights (n_demos, tasks). Candidate demos
    weigh at least CANDIDATE_WEIGHT_FLOOR; the lightest target frames whose weights sum to at
    most ``mass_floor`` of the task's total are dropped (the demos of tasks the policy tells
    apart, at the clipped weight), which bounds what they could change in a score and spares
    embedding them. A task with more targets or candidate demos than ``caps`` allows keeps that
    many draws by systematic resampling on their weights: a target drawn n times weighs n/k of the
    kept total, a demo drawn n times has probability n/k, so every weighted sum keeps its total and
    the expected gain stays an average over demos in proportion to their weights."""
    frame_demo = states.demo_of_frame
    is_target = ~states.candidate
    n_demos = len(states.demo_task)
    target_frames = np.bincount(frame_demo[is_target], minlength=n_demos)
    candidate_frames = np.bincount(frame_demo[~is_target], minlength=n_demos)
    target_rows = np.flatnonzero(is_target)
    out = {}
    for j, task in enumerate(pool):
        w = weights[:, j]
        tw = target_weights[task] * w[frame_demo[target_rows]] / torch.as_tensor(
            target_frames[frame_demo[target_rows]], dtype=torch.float64)
        order = torch.argsort(tw, stable=True)  # lightest first
        light = torch.cumsum(tw[order], 0) <= mass_floor * float(tw.sum())
        keep = torch.ones(len(tw), dtype=torch.bool)
        keep[order[light]] = False
        keep &= tw > 0
        rows_kept, tw_kept = target_rows[keep.numpy()], tw[keep]
        capped = {}
        if caps.targets is not None and len(rows_kept) > caps.targets:
            drawn, times = systematic_resample(tw_kept, caps.targets)
            capped["targets"] = [len(rows_kept), len(drawn)]
            rows_kept, tw_kept = rows_kept[drawn.numpy()], times.double() * (tw_kept.sum() / caps.targets)
        kept = [i for i in range(n_demos) if w[i] >= CANDIDATE_WEIGHT_FLOOR and candidate_frames[i] > 0]
        mass = float(sum(w[i] for i in kept))
        chosen = [(i, float(w[i]) / mass) for i in kept]  # (demo, probability)
        if caps.candidate_demos is not None and len(kept) > caps.candidate_demos:
            drawn, times = systematic_resample(torch.stack([w[i] for i in kept]), caps.candidate_demos)
            capped["candidate_demos"] = [len(kept), len(drawn)]
            chosen = [(kept[d], int(t) / caps.candidate_demos) for d, t in zip(drawn.tolist(), times, strict=True)]
        candidates = []
        for i, probability in chosen:
            rows = np.flatnonzero((frame_demo == i) & ~is_target)
            frames = torch.full((len(rows),), float(states.demo_length[i]) / len(rows), dtype=torch.float64)
            candidates.append((rows, frames, probability))
        own = np.flatnonzero(np.asarray(states.demo_task, dtype=object)[frame_demo] == task)
        out[task] = TaskRoles(rows_kept, tw_kept, candidates, own, capped)
    return out


def embed_pairs(policy, embedder, pairs: list, conditioned, size: int):
    """(task, rows, φ float64 on the CPU) for each (task, rows) of ``pairs``, the rows embedded
    under their task (``conditioned(task, rows)``: the batch those rows make, conditioned on it).
    Tasks that share a partition are embedded together, ``size`` (task, row) pairs a call, their
    language inputs right-padded to one length as in any training batch of mixed instructions:
    the draws are the same for every state and padded tokens are masked, so a state's φ does not
    depend on the rows beside it. Each call conditions only its own pairs, so memory stays at
    ``size`` pairs. (All pairs come from one batch, so their inputs differ only in the language.)"""
    groups: dict = {}  # partition -> [(task, rows)]
    for task, rows in pairs:
        groups.setdefault(_partition_of(policy, task), []).append((task, rows))
    for members in groups.values():
        flat = [(m, r) for m, (_, rows) in enumerate(members) for r in range(len(rows))]  # (member, its k-th row)
        out = [[] for _ in members]
        with serving(policy, members[0][0]):
            for start in range(0, len(flat), size):
                batches, owners = [], []
                for m, run in itertools.groupby(flat[start:start + size], key=lambda pair: pair[0]):
                    ks = [k for _, k in run]  # a run of one member's rows (flat is in member order)
                    task, rows = members[m]
                    batches.append(conditioned(task, rows[ks]))
                    owners.append((m, len(ks)))
                values = embedder.embed(concat_batches(batches)).double().cpu()
                for (m, n), v in zip(owners, values.split([n for _, n in owners]), strict=True):
                    out[m].append(v)
        for (task, rows), values in zip(members, out, strict=True):
            yield task, rows, torch.cat(values)


def _partition_of(policy, task: str):
    """The partition active when the policy acts for ``task`` (None: a policy without routing)."""
    return policy.partitions.of(policy.task_of(task)) if isinstance(policy, RoutedPolicy) else None


def concat_batches(batches: list[dict]) -> dict:
    """Batches of the same keys and per-row shapes as one: tensors and per-row lists concatenated
    in order, anything else taken from the first. Language inputs (token ids, attention mask) of
    different lengths are right-padded to the longest (id 0, masked), as a pre-processor pads a
    batch of mixed instructions."""
    if len(batches) == 1:
        return batches[0]

    def joined(key, parts):
        if key in LANGUAGE_KEYS and len({p.shape[1] for p in parts}) > 1:
            width = max(p.shape[1] for p in parts)
            padded = []
            for p in parts:
                wide = p.new_zeros((p.shape[0], width, *p.shape[2:]))
                wide[:, :p.shape[1]] = p
                padded.append(wide)
            parts = padded
        return torch.cat(parts)

    return {k: joined(k, [b[k] for b in batches]) if isinstance(v, torch.Tensor)
            else [x for b in batches for x in b[k]] if isinstance(v, list) else v
            for k, v in batches[0].items()}


def take_rows(batch: dict, rows: np.ndarray) -> dict:
    """The batch's rows ``rows`` (tensors and per-row lists; anything else as is)."""
    index = torch.as_tensor(rows, dtype=torch.long)
    return {k: v[index] if isinstance(v, torch.Tensor) else [v[i] for i in rows] if isinstance(v, list) else v
            for k, v in batch.items()}


class AMFStrategy(Strategy):
    name = "amf"

    def __init__(self, cfg: AMFSelectionConfig | None = None):
        self.cfg = cfg if cfg is not None else AMFSelectionConfig()
        self._opened: dict = {}  # (repo id, root) -> (its info.json, delta timestamps, the dataset opened)

    def opened(self, ref, policy_config) -> LeRobotDataset:
        """The dataset ``ref`` opened with the policy's delta timestamps, kept across rounds while its
        ``meta/info.json`` and those timestamps are unchanged: a run's pretraining demos never change,
        its fine-tuning demos when a round adds episodes. Opening reads every episode's metadata
        (at the embedded default's size, a fifth of a selection)."""
        info_bytes = read_bounded_text(Path(ref.root) / INFO_PATH, "demo dataset")
        info = json.loads(info_bytes)
        delta = resolve_delta_timestamps(policy_config, _InfoFeatures(info["features"], info["fps"]))
        key, held = (ref.repo_id, str(ref.root)), self._opened.get((ref.repo_id, str(ref.root)))
        if held is None or held[0] != info_bytes or held[1] != delta:
            held = (info_bytes, delta, LeRobotDataset(ref.repo_id, root=ref.root, delta_timestamps=delta))
            self._opened[key] = held
        return held[2]

    # ---------------------------------------------------------------- states in hand
    def demo_states(self, ctx: SelectionContext) -> DemoStates | None:
        if ctx.pretrain_dataset is None and ctx.demo_dataset is None:
            return None
        policy = acting_policy(ctx.policy)
        rng = np.random.default_rng([ctx.rng.integers(2**31), FRAME_SAMPLING_STREAM])
        task_of_instruction = ctx.vocabulary.task_of_instruction
        opened = []  # (dataset, is D, its demos of pool tasks: (task, first row, end row))
        for dataset_ref, is_d in ((ctx.pretrain_dataset, False), (ctx.demo_dataset, True)):
            if dataset_ref is not None:
                ds = self.opened(dataset_ref, policy.config)
                rows = (ds.meta.episodes[ep] for ep in range(ds.meta.total_episodes))
                demos = [(task_of_instruction[row["tasks"][0]], row["dataset_from_index"], row["dataset_to_index"])
                         for row in rows if row["tasks"][0] in task_of_instruction]  # others: tasks outside the pool
                opened.append((ds, is_d, demos))
        frames, capped = sampled_frames_per_demo(self.cfg, sum(len(demos) for *_, demos in opened))
        datasets, frame_dataset, frame_position = [], [], []
        demo_of_frame, candidate, demo_task, demo_length, per_demo, in_d = [], [], [], [], [], []
        for ds, is_d, demos in opened:
            positions = []
            for task, start, stop in demos:
                k = min(frames, stop - start)
                positions += np.sort(rng.choice(np.arange(start, stop), size=k, replace=False)).tolist()
                demo_of_frame += [len(demo_task)] * k
                candidate += split_target_candidate(k).tolist()
                demo_task.append(task)
                demo_length.append(stop - start)
                per_demo.append(k)
                in_d.append(is_d)
            frame_dataset += [len(datasets)] * len(positions)
            frame_position += positions
            datasets.append(ds)
        if not frame_position:
            return None
        return DemoStates(datasets, np.asarray(frame_dataset), np.asarray(frame_position), ctx.preprocessor,
                          np.asarray(demo_of_frame), np.asarray(candidate, dtype=bool), demo_task,
                          np.asarray(demo_length), np.asarray(per_demo), np.asarray(in_d, dtype=bool),
                          frames_capped=capped)

    # ---------------------------------------------------------------- selection
    def select(self, ctx: SelectionContext, n: int) -> Selection:
        """One round in named steps (docs/method.md, "One round, step by step"): the states in hand, their
        importance weights, the rollout fallback, each task's roles and embeddings, targets and
        candidates, the posterior, the greedy batch, the record."""
        cfg, ctx = self.cfg, self.seen(ctx)
        times = PartTimes()
        with times.part("opening demos"):
            states = self.demo_states(ctx)
        if states is None:  # no demo in hand to estimate any task's states from
            return _uniform_cold_start(ctx, n, "no demos in hand yet")
        times.states = states
        embedder = kernel_embedder(acting_policy(ctx.policy), cfg)
        with times.part("likelihood"):
            weighting = self.importance(ctx, states)
        low_ess = weighting.summary.collapsed(cfg.ess_threshold)
        collapsed = [t for j, t in enumerate(ctx.pool) if bool(low_ess[j]) or t not in states.demo_task]
        with times.part("rollouts"):
            rollout_phi = self.rollout_states(ctx, collapsed, embedder) if collapsed else {}
        with times.part("embedding"):
            roles = demo_roles(states, weighting.weights, ctx.pool, ctx.target_weights, cfg.target_mass_floor,
                               RoleCaps.of(cfg, len(ctx.pool)))
            phi, embedded = self.embed_roles(ctx, states, roles, rollout_phi, embedder)
        with times.part("posterior"):
            targets, candidates = self._targets_and_candidates(ctx, states, phi, roles, rollout_phi)
        if not candidates:
            return _uniform_cold_start(ctx, n, "no task can be scored yet")
        # The cold start, per task (docs/method.md, "Cold start"): a target task nothing in hand can
        # score (no demo of its own, no likelihood to borrow other tasks' demos, no simulator to roll
        # out in) gets one demo first; amf scores the rest of the batch.
        unscored = [t for t in ctx.pool if t not in candidates and ctx.target_weights.get(t, 0) > 0
                    and ctx.can_take(t)][:n]
        with times.part("posterior"):
            phi_targets = torch.cat([t[0] for t in targets.values()])
            target_w = torch.cat([t[1] for t in targets.values()])
            target_task = [task for task, t in targets.items() for _ in range(t[0].shape[0])]
            posterior, noise = self.posterior(states, phi, phi_targets, targets, candidates, embedder.dim)
        allowed = {t: c for t, c in ctx.capacity.items() if c is not None}
        with times.part("greedy"):
            result = greedy_batch(posterior, candidates, (phi_targets, target_w), n - len(unscored), allowed=allowed,
                                  target_groups=target_task)
        if len(unscored) + len(result.picks) < n:
            raise ValueError("The demo source has no demos left for the tasks amf would pick.")
        first = result.step_scores[0] if result.step_scores else {}  # the first pick's scores
        details = self.record(ctx, states, weighting, embedder, candidates, embedded, rollout_phi, unscored, noise,
                              result, roles)
        details["seconds"] = times.record()
        details["passes"] = {"likelihood": weighting.passes, "embedding": sum(embedded.values()) * embedder.n_draws,
                             "rollout_episodes": len(rollout_phi) * cfg.fallback_rollouts}
        return Selection(unscored + result.picks, scores={t: round(v, 6) for t, v in first.items()}, details=details,
                         reason=self.reason(unscored, first, noise, rollout_phi))

    # ---------------------------------------------------------------- the round's steps
    def seen(self, ctx: SelectionContext) -> SelectionContext:
        """The context as selection may read it: with ``simulator=false`` (the real-robot case) no
        env to roll out in and no evaluation of the run's model."""
        return ctx if self.cfg.simulator else dataclasses.replace(ctx, env_cfg=None, success=None)

    def importance(self, ctx: SelectionContext, states: DemoStates) -> "Weighting":
        """Every demo's importance weight under every task (docs/method.md, "Importance weights and
        effective sample size"): from the family's likelihood surrogate of every sampled frame
        under every task, or, without one (or for a task-blind policy), each demo for its own task."""
        cfg, pool = self.cfg, ctx.pool
        family = family_of(acting_policy(ctx.policy))
        vocab, instructions = ctx.vocabulary.one_hot, ctx.vocabulary.instructions
        has_likelihood = family.loglik is not None and cfg.importance_weights
        # A policy that does not see the task (no language input, no one-hot, no per-task partition:
        # LeRobot's diffusion on LIBERO) gives every task the same likelihood; weights from it would
        # make every candidate the same (and greedy ties would spend the whole budget on the first
        # task). Known from its inputs, so its likelihood passes (one per task) are not run at all.
        blind = has_likelihood and len(pool) > 1 and not self.sees_task(ctx, states)
        frame_ll, passes, capped = None, 0, None  # (frames scored, tasks): each under every task (the weights need all)
        if has_likelihood and not blind:
            # Tasks the policy cannot tell apart (LIBERO: 130 tasks, 112 instructions) share one pass.
            keys = [_conditioning_key(ctx.policy, task, vocab, instructions.get(task)) for task in pool]
            distinct = list(dict.fromkeys(keys))
            first_of = {key: pool[keys.index(key)] for key in distinct}
            column = torch.as_tensor([distinct.index(key) for key in keys])
            by_partition: dict = {}  # one partition active at a time; the frames encoded once in it
            for key in distinct:
                by_partition.setdefault(key[0], []).append(key)

            def under_every_task(batch):
                per_key = {}
                for group in by_partition.values():
                    with serving(ctx.policy, first_of[group[0]]) as policy, family.observations_encoded_once(policy):
                        for key in group:
                            task = first_of[key]
                            conditioned = condition_on_task(batch, task, vocab, instructions.get(task),
                                                            _language(states, instructions.get(task)))
                            per_key[key] = family.loglik(policy, conditioned, cfg.loglik_draws, cfg.loglik_seed)
                return torch.stack([per_key[key] for key in distinct], dim=1)[:, column]

            per_demo, capped = likelihood_frames_per_demo(cfg, len(states.demo_task), len(distinct),
                                                          int(states.frames_per_demo.max()))
            rows = likelihood_rows(states, per_demo)
            frame_ll = _map_read_chunks(under_every_task, states, rows, cfg.chunk_size, ctx.accelerator,
                                        f"amf: likelihood of {len(rows)} frames under {len(pool)} tasks "
                                        f"({len(distinct)} distinct)")
            passes = len(rows) * len(distinct) * cfg.loglik_draws
        n_demos = len(states.demo_task)
        demo_task_idx = [pool.index(t) for t in states.demo_task]
        task_blind = blind or (has_likelihood and len(pool) > 1
                               and torch.allclose(frame_ll, frame_ll[:, :1].expand_as(frame_ll)))
        if has_likelihood and not task_blind:
            # per-demo log-likelihood: mean over the frames scored, scaled to the episode length
            frame_demo = torch.as_tensor(states.demo_of_frame[rows])
            demo_ll = torch.zeros(n_demos, len(pool), dtype=torch.float64)
            demo_ll.index_add_(0, frame_demo, frame_ll)
            scored = torch.bincount(frame_demo, minlength=n_demos).clamp(min=1)
            demo_ll = demo_ll / scored[:, None] * torch.as_tensor(states.demo_length)[:, None]
            weights = importance_weights(demo_ll, demo_task_idx, temperature=cfg.importance_temperature,
                                         clip=cfg.importance_clip)  # (n_demos, tasks), columns sum to 1
        else:  # no likelihood surrogate for the family, or a task-blind policy: each demo informs its own task
            of_own_task = torch.zeros(n_demos, len(pool), dtype=torch.float64)
            of_own_task[torch.arange(n_demos), torch.as_tensor(demo_task_idx)] = 1.0
            weights = of_own_task / of_own_task.sum(0).clamp(min=1.0)
        label = ("own task only (the policy does not see the task: same likelihood for every task)"
                 if task_blind else "likelihood surrogate, common random numbers" if has_likelihood
                 else "own task only")
        return Weighting(weights, summarize_importance(weights, pool), label, passes, capped)

    @staticmethod
    def sees_task(ctx: SelectionContext, states: DemoStates) -> bool:
        """Whether conditioning a frame on another task changes what the policy reads: a per-task
        partition (routing), the one-hot env state among its inputs, or language inputs made
        from the instruction."""
        if isinstance(ctx.policy, RoutedPolicy):
            return True
        vocab, instructions = ctx.vocabulary.one_hot, ctx.vocabulary.instructions
        env_state = acting_policy(ctx.policy).config.input_features.get(OBS_ENV_STATE)
        if vocab is not None and env_state is not None and env_state.shape[-1] == len(vocab):
            return True
        first = next((instructions[t] for t in ctx.pool if t in instructions), None)
        return first is not None and states.language_of(first) is not None

    def embed_roles(self, ctx: SelectionContext, states: DemoStates, roles: dict, rollout_phi: dict,
                    embedder) -> tuple[dict, dict]:
        """φ of the sampled frames under each task, only where that task's scores read them
        (``data.RowSubset``: a task holds the frames it embedded only), with the task's partition
        active; and how many frames each task embedded."""
        cfg = self.cfg
        vocab, instructions = ctx.vocabulary.one_hot, ctx.vocabulary.instructions
        rows_of = {task: roles[task].rows_to_embed if task not in rollout_phi else roles[task].own_rows
                   for task in ctx.pool}  # a frame is embedded under a task only where its scores read it
        every = np.unique(np.concatenate([np.zeros(0, dtype=np.int64), *rows_of.values()]))
        # read grouped by the task each frame was recorded for: a chunk then holds few tasks' own
        # frames, so each task's embedding call gets a full batch, not a few rows of every chunk
        recorded = np.asarray([ctx.pool.index(t) for t in states.demo_task])[states.demo_of_frame]
        every = every[np.lexsort((every, recorded[every]))]
        reads = np.zeros((len(ctx.pool), len(states.demo_of_frame)), dtype=bool)  # task j embeds frame r
        for j, task in enumerate(ctx.pool):
            reads[j, rows_of[task]] = True
        parts: dict[str, list] = {task: [] for task in ctx.pool}
        desc = f"amf: embedding {len(every)} frames under their tasks"
        for i, chunk_rows, batch in states.chunks(every, cfg.chunk_size, ctx.accelerator, desc):
            # each chunk read once and embedded under every task that reads it: the (task, frame)
            # pairs of tasks that share a partition go through the embedder together, chunk_size
            # pairs a call (one task's few target frames per chunk would each be a call of their own)
            pairs = [(task, np.flatnonzero(reads[j, chunk_rows])) for j, task in enumerate(ctx.pool)]
            pairs = [(task, take) for task, take in pairs if len(take)]

            def conditioned(task, take):
                return condition_on_task(take_rows(batch, take), task, vocab, instructions.get(task),
                                         _language(states, instructions.get(task)))

            for task, take, values in embed_pairs(ctx.policy, embedder, pairs, conditioned, cfg.chunk_size):
                parts[task].append((i, chunk_rows[take], values))
        held: dict[str, list] = {task: [] for task in ctx.pool}
        for task, own in _gather(list(parts.items()), ctx.accelerator):  # every process's chunks
            held[task] += own
        phi, embedded = {}, {}
        for task in ctx.pool:
            chunks = sorted(held[task], key=lambda c: c[0])
            values = torch.cat([v for *_, v in chunks]) if chunks else torch.zeros((0, embedder.dim), dtype=torch.float64)
            rows = np.concatenate([r for _, r, _ in chunks]) if chunks else np.zeros(0, dtype=np.int64)
            phi[task] = RowSubset(values, rows, len(states.demo_of_frame))
            embedded[task] = len(rows_of[task])
        return phi, embedded

    def posterior(self, states: DemoStates, phi: dict, phi_targets: torch.Tensor, targets: dict, candidates: dict,
                  dim: int) -> tuple[WeightSpacePosterior, dict]:
        """The GP posterior after the demos it has seen, with the kernel scale κ and the noise σ²
        (calibrated: one fantasised demo removes at most ``max_variance_removed`` of its task's
        prior target variance); returns it and its noise record."""
        cfg = self.cfg
        kappa = kernel_scale(phi_targets)
        removed = None
        if cfg.noise is None:
            sigma2, removed = calibrate_noise({t: fantasised_states(c) for t, c in candidates.items()}, targets,
                                              kappa, cfg.max_variance_removed)
        else:
            sigma2 = cfg.noise
        posterior = WeightSpacePosterior(dim, sigma2=sigma2, kappa=kappa)
        # The demos the posterior has seen: the fine-tuning demos D, and with
        # condition_on_pretraining the generalist's pretraining demos too (where they are known).
        d_rows = torch.as_tensor(states.in_d[states.demo_of_frame] | cfg.condition_on_pretraining)
        if bool(d_rows.any()):
            frame_demo = torch.as_tensor(states.demo_of_frame)
            per_frame_scale = (torch.as_tensor(states.demo_length) / torch.as_tensor(states.frames_per_demo)).double()
            # each frame embedded under the task its demo was recorded for
            phi_recorded_task = torch.stack([phi[states.demo_task[i]][r] for r, i in enumerate(states.demo_of_frame)])
            posterior.observe(phi_recorded_task[d_rows], per_frame_scale[frame_demo][d_rows])
        return posterior, {"kappa": kappa, "sigma2": sigma2, "removed": removed}

    def record(self, ctx: SelectionContext, states: DemoStates, weighting: "Weighting", embedder, candidates: dict,
               embedded: dict, rollout_phi: dict, unscored: list, noise: dict, result, roles: dict) -> dict:
        """The selection record (docs/method.md, "What a selection records")."""
        cfg = self.cfg
        caps = RoleCaps.of(cfg, len(ctx.pool))
        return {
            "cold_start_tasks": unscored,  # picked first, one demo each, unscored
            "step_scores": result.step_scores,
            "variance_before_after": result.first_step_variance,
            "pick_variance": result.pick_variance,
            "ess": {t: round(ess, 3) for t, ess in weighting.summary.as_dict().items()},
            "importance_share": _importance_share(weighting.weights, states.demo_task, ctx.pool),
            "n_demos_in_hand": len(states.demo_task),
            "n_demos_in_d": int(states.in_d.sum()),
            "posterior_observes": "fine-tuning and pretraining demos" if cfg.condition_on_pretraining
                                  else "fine-tuning demos",
            "rollout_roles": cfg.rollout_roles,
            "simulator": cfg.simulator,
            "candidate_demos": {t: len(c) for t, c in candidates.items()},
            # frames embedded under each task (of the sampled frames), and the target-weight share dropped
            "embedded_frames": {"sampled": int(len(states.demo_of_frame)), "per_task": embedded,
                                "target_mass_floor": cfg.target_mass_floor},
            # the caps per task, and each task a cap resampled: {"targets" | "candidate_demos": [before, after]}
            "caps": {"per_task": dataclasses.asdict(caps), "max_target_states": cfg.max_target_states,
                     "max_candidate_states": cfg.max_candidate_states,
                     "max_likelihood_passes": cfg.max_likelihood_passes,
                     "max_sampled_frames": cfg.max_sampled_frames,
                     "frames_per_demo": states.frames_capped,
                     "likelihood_frames_per_demo": weighting.capped,
                     "capped": {t: r.capped for t, r in roles.items() if r.capped and t not in rollout_phi}},
            "rollout_fallback": sorted(rollout_phi),
            "importance": weighting.label,
            "kappa": noise["kappa"],
            "noise": {"sigma2": noise["sigma2"], "calibrated": cfg.noise is None,
                      "max_variance_removed": cfg.max_variance_removed if cfg.noise is None else None,
                      "prior_variance_removed": noise["removed"]},
            "kernel": embedder.record(),
            "kernel_targets": {
                "demo_frames": {"states": int(len(states.demo_of_frame)), "target": DEFAULT_TARGET[cfg.kernel]},
                "rollout_states": {"tasks": sorted(rollout_phi), "target": "self"},
            },
            "total_gain": result.total_gain,
            "processes": _num_processes(ctx.accelerator),
        }

    def reason(self, unscored: list, first: dict, noise: dict, rollout_phi: dict) -> str:
        """The selection's one line."""
        fallback = f"; rollout states for {', '.join(sorted(rollout_phi))} (ESS < {self.cfg.ess_threshold} or no demos)" \
            if rollout_phi else ""
        cold = f"one demo first for {', '.join(unscored)} (nothing in hand scores it: cold start); " if unscored else ""
        best = max(first, key=first.get) if first else None
        scored = f"first pick {best} (gain {first[best]:.4f} nats); " if best else ""
        blind = "" if self.cfg.simulator else " (no simulator: no rollouts, no evaluation)"
        return (f"amf{blind}: expected information gain of one demo on target states; {cold}{scored}"
                f"noise {noise['sigma2']:.4g}{' (calibrated)' if noise['removed'] else ''}{fallback}")

    def _targets_and_candidates(self, ctx: SelectionContext, states: DemoStates, phi: dict, roles: dict,
                                rollout_phi: dict) -> tuple[dict, dict]:
        """Per task: its target states (φ, weights) and its candidate demos (φ of their candidate
        states, frames each stands for, probability), from ``demo_roles``. Rollout tasks
        (``rollout_roles``): every rollout plays both roles, frames alternating ("frames"), or
        whole rollouts alternate between targets and candidates ("rollouts"), so no candidate
        comes from the rollout of its own targets."""
        targets, candidates = {}, {}
        for task in ctx.pool:
            mu = ctx.target_weights[task]
            if task in rollout_phi:
                per_rollout = rollout_phi[task]  # list of (k, d) per rollout episode
                if self.cfg.rollout_roles == "rollouts" and len(per_rollout) >= 2:
                    # even rollouts: all their frames are targets; odd ones: all candidates
                    roles_of = [np.full(r.shape[0], i % 2 == 1) for i, r in enumerate(per_rollout)]
                else:
                    roles_of = [split_target_candidate(r.shape[0]) for r in per_rollout]
                tgt = torch.cat([r[~role] for r, role in zip(per_rollout, roles_of, strict=True)])
                targets[task] = (tgt, torch.full((tgt.shape[0],), mu / tgt.shape[0], dtype=torch.float64))
                per_frame = float(np.mean(states.demo_length))  # a rollout stands for a demo of mean length
                with_candidates = [(r, role) for r, role in zip(per_rollout, roles_of, strict=True) if role.any()]
                candidates[task] = [CandidateDemo(r[role], torch.full((int(role.sum()),), per_frame / role.sum(),
                                                                     dtype=torch.float64), 1.0 / len(with_candidates))
                                    for r, role in with_candidates]
                continue
            role = roles[task]
            targets[task] = (phi[task][role.target_rows], role.target_weights)
            if role.candidates:  # else no demo resembles a new demo of this task (and no rollouts): not scored
                candidates[task] = [CandidateDemo(phi[task][rows], frames, probability)
                                    for rows, frames, probability in role.candidates]
        return targets, candidates

    def rollout_states(self, ctx: SelectionContext, tasks: list[str], embedder) -> dict[str, list[torch.Tensor]]:
        """φ of the states the current policy visits in its own rollouts (fallback / cold start),
        per task one (frames, dim) tensor per rollout episode; their pseudo-target is the
        policy's own sample (no expert action exists there)."""
        from lerobot.scripts.lerobot_eval import rollout

        from lerobot_amf.evaluation import env_processors, task_vec_env

        if ctx.env_cfg is None:
            return {}
        env_pre, env_post = env_processors(ctx.env_cfg, acting_policy(ctx.policy).config)
        out = {}
        rank, world = _rank(ctx.accelerator), _num_processes(ctx.accelerator)
        for j, task in enumerate(tasks):
            if j % world != rank:  # tasks split across processes, gathered below
                continue
            logging.info(f"amf: {task}: importance weights collapsed or no demo; using policy rollout states")
            seeds = [self.cfg.rollout_seed + ctx.round_index * 1000 + i for i in range(self.cfg.fallback_rollouts)]
            # The policy's sampling noise is seeded like the envs, apart from the global RNG, so the
            # states do not depend on what ran before (nor on which process runs them).
            cuda = [torch.cuda.current_device()] if torch.cuda.is_available() else []
            # The observations as the policy receives them: after the env's processors (LIBERO's
            # nested robot state flattened, the task string added). LeRobot's own
            # return_observations keeps them before, and cannot stack LIBERO's nested state.
            seen = []

            def recorded(observation):
                seen.append(env_pre(observation))
                return seen[-1]

            with task_vec_env(ctx.env_cfg, task, self.cfg.fallback_rollouts) as vec, \
                    torch.random.fork_rng(devices=cuda), serving(ctx.policy, task) as policy:
                torch.manual_seed(seeds[0])
                rollout(vec, policy, recorded, env_post, ctx.preprocessor, ctx.postprocessor, seeds=seeds)
            envs = len(seen[0][next(k for k, v in seen[0].items() if isinstance(v, torch.Tensor))])
            k = min(self.cfg.states_per_demo, len(seen))
            idx = np.linspace(0, len(seen) - 1, num=k).astype(int)
            # k steps of every env, env by env (one rollout episode after another); the embedder
            # repeats a single frame over n_obs_steps
            batch = {key: torch.stack([seen[i][key] for i in idx], dim=1).reshape(-1, *value.shape[1:])
                     for key, value in seen[0].items() if isinstance(value, torch.Tensor)}
            if isinstance(seen[0].get("task"), list):  # the task strings, for language-conditioned policies
                batch["task"] = [seen[i]["task"][e] for e in range(envs) for i in idx]
            # no expert action here (the pipeline returns action=None): the pseudo-target is the policy's own
            batch = {key: value for key, value in ctx.preprocessor(batch).items() if value is not None}
            embed_self = lambda part: embedder.embed(part, target="self")  # noqa: E731
            out[task] = list(_map_chunks(embed_self, batch, self.cfg.chunk_size, None).split(k))
        return dict(_gather(list(out.items()), ctx.accelerator))


class AMFEvalStrategy(AMFStrategy):
    """amf with its target weights directed at what fails (docs/method.md, "amf_eval").

    Where an evaluation of the run's model exists, the target weights become
    μ'(c) ∝ μ(c) · f(c), with f(c) the Beta-posterior mean failure rate of the latest evaluation
    (uniform prior; ``baselines.failure_rate``, as ``lowest_success`` uses): the information gain
    is then spent on the target states of tasks that fail. Without an evaluation (no simulator)
    it is amf.
    """

    name = "amf_eval"

    @property
    def reads_evaluation(self) -> bool:  # without a simulator it sees none (``seen``)
        return self.cfg.simulator

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        ctx = self.seen(ctx)
        if ctx.success is None:
            chosen = super().select(ctx, n)
            return dataclasses.replace(chosen, reason=f"amf_eval (no evaluation: amf's own target weights): "
                                                      f"{chosen.reason}")
        failure = {t: failure_rate(ctx.success.get(t)) for t in ctx.pool}
        raw = {t: ctx.target_weights[t] * failure[t] for t in ctx.pool}
        total = sum(raw.values())
        directed = {t: w / total for t, w in raw.items()} if total > 0 else dict(ctx.target_weights)
        chosen = super().select(dataclasses.replace(ctx, target_weights=directed), n)
        return dataclasses.replace(
            chosen, details={**chosen.details, "failure_rate": {t: round(f, 4) for t, f in failure.items()},
                             "directed_target_weights": {t: round(w, 4) for t, w in directed.items()}},
            reason=f"amf_eval: target weights mu(c) x estimated failure rate (Beta posterior on the latest "
                   f"evaluation); {chosen.reason}")


def _language(states: DemoStates, instruction: str | None) -> dict | None:
    return None if instruction is None else states.language_of(instruction)


def _importance_share(weights: torch.Tensor, demo_task: list[str], pool: list[str]) -> dict:
    """task c' -> {task c: share of c''s importance weight on demos recorded for c} (where it went)."""
    out = {}
    for j, task in enumerate(pool):
        share = {}
        for i, recorded in enumerate(demo_task):
            share[recorded] = share.get(recorded, 0.0) + float(weights[i, j])
        out[task] = {t: round(v, 3) for t, v in share.items() if v >= 5e-4}
    return out


def _num_processes(accelerator) -> int:
    return accelerator.num_processes if accelerator is not None else 1


def _rank(accelerator) -> int:
    return accelerator.process_index if accelerator is not None else 0


def _gather(items: list, accelerator) -> list:
    """Every process's list, concatenated, on every process (CPU objects)."""
    if _num_processes(accelerator) == 1:
        return items
    from accelerate.utils import gather_object

    return gather_object(items)


def _uniform_cold_start(ctx: SelectionContext, n: int, why: str) -> Selection:
    """The cold start for the whole pool (docs/method.md, "Cold start"): nothing to score any task
    on, so a uniform round, said as such."""
    first = UniformStrategy().select(ctx, n)
    return Selection(first.tasks, first.scores, {"cold_start": True},
                     reason=f"amf: {why} (cold start), so {first.reason}")


def _map_chunks(fn, batch: dict, chunk: int, accelerator) -> torch.Tensor:
    """fn over the batch in chunks of ``chunk`` rows -> (N, ...) float64 on the CPU. Chunk i is
    computed by process i mod P and all chunks are gathered in order (fn must be row-wise)."""
    n = len(next(v for v in batch.values() if isinstance(v, torch.Tensor)))
    rank, world = _rank(accelerator), _num_processes(accelerator)
    mine = []
    for i, s in enumerate(range(0, n, chunk)):
        if i % world != rank:
            continue
        part = {k: (v[s:s + chunk] if isinstance(v, (torch.Tensor, list)) else v) for k, v in batch.items()}
        mine.append((i, fn(part).double().cpu()))
    return _in_chunk_order(mine, accelerator)


def _map_read_chunks(fn, states: DemoStates, rows, chunk: int, accelerator, desc: str | None = None) -> torch.Tensor:
    """fn over the frames ``rows`` of ``states``, each chunk of ``chunk`` rows read once and
    handed to fn as a batch -> (len(rows), ...) float64 on the CPU; chunk i on process i mod P,
    gathered in order (fn must be row-wise)."""
    mine = [(i, fn(batch).double().cpu()) for i, _, batch in states.chunks(rows, chunk, accelerator, desc)]
    return _in_chunk_order(mine, accelerator)


def _in_chunk_order(mine: list, accelerator) -> torch.Tensor:
    """Every process's (chunk number, values), gathered and concatenated in chunk order."""
    return torch.cat([t for _, t in sorted(_gather(mine, accelerator), key=lambda item: item[0])])
