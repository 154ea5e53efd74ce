"""The ``amf`` strategy (AMF.md sections 1-4): pick the tasks whose next demos carry the most
information about the expert on the target tasks.

Per round:
1. States in hand: a few frames of every demo available (the pretraining demos when known,
   plus the fine-tuning demos D), each frame conditioned on every pool task in turn.
2. Kernel: the pretrained policy's loss-gradient embeddings of its action head
   (``lerobot_amf.embeddings``), projected to ``--amf.selection.embedding_dim`` with a recorded seed.
3. Importance weights: how likely the current policy finds demo i's actions under task c'
   (negative denoising loss with common random numbers), self-normalised and clipped; they
   estimate both the target states of each task and the states a new demo of c' would visit.
   A task whose effective sample size collapses (or that has no demo at all) falls back to
   states the current policy visits in its own simulator rollouts, and the log says so.
4. Weight-space GP posterior on D's states, greedy batch information gain with fantasised
   picks (``selection.gp``).
Every task's score, variance reduction and ESS is returned for the ledger, with the reason.

Distributed (``accelerate launch`` / ``torchrun``): every process calls ``select``. The states
are cut into chunks of ``chunk_size``; chunk i is embedded (and its likelihood surrogate
computed) by process i mod P, and the chunks are gathered in order, so every process holds the
same embeddings as a single process computing the same chunks. Rollout fallbacks are split by
task the same way. The greedy step then runs on every process, deterministic, so all agree.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch
from lerobot.datasets.factory import resolve_delta_timestamps
from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
from lerobot.utils.constants import OBS_ENV_STATE

from lerobot_amf.data import read_frames
from lerobot_amf.embeddings import unwrap_policy
from lerobot_amf.families import family_of
from lerobot_amf.selection.config import AMFSelectionConfig
from lerobot_amf.selection.base import Selection, SelectionContext, Strategy
from lerobot_amf.selection.baselines import UniformStrategy
from lerobot_amf.selection.gp import WeightSpacePosterior, greedy_batch, kernel_scale
from lerobot_amf.selection.importance import importance_weights, summarize_importance

# Stream id mixed into the round's seed for sampling demo frames, so the frames do not share
# random numbers with the round generator's other uses.
FRAME_SAMPLING_STREAM = 17


@dataclasses.dataclass
class DemoStates:
    """Sampled frames of the demos in hand, as one preprocessed batch."""

    batch: dict  # preprocessed, frames of all demos stacked
    demo_of_frame: np.ndarray  # (N,) index into demo_task / demo_length
    demo_task: list[str]  # task each demo was recorded for
    demo_length: np.ndarray  # frames per demo (the full episode)
    frames_per_demo: np.ndarray  # sampled frames per demo
    in_d: np.ndarray  # (n_demos,) bool: a fine-tuning demo (part of D)


def condition_on_task(batch: dict, task: str, vocabulary: tuple[str, ...] | None, instruction: str | None) -> dict:
    """The same states, conditioned on ``task``: the one-hot env state (Metaworld state env)
    and the language instruction (policies with a language input)."""
    out = dict(batch)
    if vocabulary is not None and OBS_ENV_STATE in out and out[OBS_ENV_STATE].shape[-1] == len(vocabulary):
        one_hot = torch.zeros_like(out[OBS_ENV_STATE])
        one_hot[..., vocabulary.index(task)] = 1.0
        out[OBS_ENV_STATE] = one_hot
    if instruction is not None and "task" in out:
        out["task"] = [instruction] * len(out["task"])
    return out


class AMFStrategy(Strategy):
    name = "amf"

    def __init__(self, cfg: AMFSelectionConfig | None = None):
        self.cfg = cfg if cfg is not None else AMFSelectionConfig()

    # ---------------------------------------------------------------- states in hand
    def demo_states(self, ctx: SelectionContext) -> DemoStates | None:
        if ctx.pretrain_dataset is None and ctx.demo_dataset is None:
            return None
        policy = unwrap_policy(ctx.policy)
        delta = resolve_delta_timestamps(policy.config, _meta_of(ctx))
        rng = np.random.default_rng([ctx.rng.integers(2**31), FRAME_SAMPLING_STREAM])
        items, demo_of_frame, demo_task, demo_length, per_demo, in_d = [], [], [], [], [], []
        for dataset_ref, is_d in ((ctx.pretrain_dataset, False), (ctx.demo_dataset, True)):
            if dataset_ref is None:
                continue
            ds = LeRobotDataset(dataset_ref.repo_id, root=dataset_ref.root, delta_timestamps=delta)
            task_of_instruction = ctx.vocabulary.task_of_instruction
            positions = []
            for ep in range(ds.meta.total_episodes):
                row = ds.meta.episodes[ep]
                instruction = row["tasks"][0]
                task = task_of_instruction.get(instruction)
                if task is None:  # a demo of a task outside the pool
                    continue
                start, stop = row["dataset_from_index"], row["dataset_to_index"]
                k = min(self.cfg.states_per_demo, stop - start)
                positions += np.sort(rng.choice(np.arange(start, stop), size=k, replace=False)).tolist()
                demo_of_frame += [len(demo_task)] * k
                demo_task.append(task)
                demo_length.append(stop - start)
                per_demo.append(k)
                in_d.append(is_d)
            items += read_frames(ds, positions)
        if not items:
            return None
        batch = torch.utils.data.default_collate(items)
        batch = ctx.preprocessor(batch)
        return DemoStates(batch, np.asarray(demo_of_frame), demo_task, np.asarray(demo_length),
                          np.asarray(per_demo), np.asarray(in_d, dtype=bool))

    # ---------------------------------------------------------------- selection
    def select(self, ctx: SelectionContext, n: int) -> Selection:
        cfg = self.cfg
        states = self.demo_states(ctx)
        if states is None:  # cold start (AMF.md section 4): no demo in hand to estimate any task's states from
            first = UniformStrategy().select(ctx, n)
            return Selection(first.tasks, first.scores, {"cold_start": True},
                             reason=f"amf: no demos in hand yet (cold start), so {first.reason}")
        policy = unwrap_policy(ctx.policy)
        family = family_of(policy)
        embedder = family.embedder(policy, kind=cfg.kernel, dim=cfg.embedding_dim, seed=cfg.projection_seed,
                                   n_draws=cfg.n_draws, target_steps=cfg.pseudo_target_steps)
        vocab = ctx.vocabulary.one_hot
        instructions = ctx.vocabulary.instructions
        pool = ctx.pool
        has_likelihood = family.loglik is not None
        phi, loglik = {}, []
        for task in pool:
            conditioned = condition_on_task(states.batch, task, vocab, instructions.get(task))
            phi[task] = _map_chunks(embedder.embed, conditioned, cfg.chunk_size, ctx.accelerator)
            if has_likelihood:
                loglik.append(_map_chunks(lambda part: family.loglik(policy, part, cfg.n_draws, cfg.loglik_seed),
                                          conditioned, cfg.chunk_size, ctx.accelerator))
        n_demos = len(states.demo_task)
        demo_task_idx = [pool.index(t) for t in states.demo_task]
        frame_ll = torch.stack(loglik, dim=1) if has_likelihood else None  # (N frames, tasks)
        # A policy that does not see the task (no language input, no one-hot: LeRobot's diffusion on
        # LIBERO) gives every task the same likelihood; weights from it would make every candidate the
        # same (and greedy ties would spend the whole budget on the first task).
        task_blind = (has_likelihood and len(pool) > 1
                      and torch.allclose(frame_ll, frame_ll[:, :1].expand_as(frame_ll)))
        if has_likelihood and not task_blind:
            # per-demo log-likelihood: mean over its sampled frames, scaled to the episode length
            demo_ll = torch.zeros(n_demos, len(pool), dtype=torch.float64)
            demo_ll.index_add_(0, torch.as_tensor(states.demo_of_frame), frame_ll)
            demo_ll = demo_ll / torch.as_tensor(states.frames_per_demo)[:, None] * torch.as_tensor(states.demo_length)[:, None]
            weights = importance_weights(demo_ll, demo_task_idx, temperature=cfg.importance_temperature,
                                         clip=cfg.importance_clip)  # (n_demos, tasks), columns sum to 1
        else:  # no likelihood surrogate for the family, or a task-blind policy: each demo informs its own task
            of_own_task = torch.zeros(n_demos, len(pool), dtype=torch.float64)
            of_own_task[torch.arange(n_demos), torch.as_tensor(demo_task_idx)] = 1.0
            weights = of_own_task / of_own_task.sum(0).clamp(min=1.0)
        importance = summarize_importance(weights, pool)
        low_ess = importance.collapsed(cfg.ess_threshold)
        collapsed = [t for j, t in enumerate(pool) if bool(low_ess[j]) or t not in states.demo_task]
        rollout_phi = {}
        if collapsed:
            rollout_phi = self.rollout_states(ctx, collapsed, embedder)

        frame_demo = torch.as_tensor(states.demo_of_frame)
        per_frame_scale = (torch.as_tensor(states.demo_length) / torch.as_tensor(states.frames_per_demo)).double()
        mean_len = float(np.mean(states.demo_length))
        targets_phi, targets_w, candidates = [], [], {}
        for j, task in enumerate(pool):
            if task in rollout_phi:
                rp = rollout_phi[task]
                tw = torch.full((rp.shape[0],), ctx.target_weights[task] / rp.shape[0], dtype=torch.float64)
                targets_phi.append(rp)
                targets_w.append(tw)
                candidates[task] = (rp, torch.full((rp.shape[0],), mean_len / rp.shape[0], dtype=torch.float64))
                continue
            w_frame = weights[frame_demo, j] / torch.as_tensor(states.frames_per_demo)[frame_demo]
            targets_phi.append(phi[task])
            targets_w.append(ctx.target_weights[task] * w_frame)
            # a new demo of `task` visits, in expectation, the importance-weighted states
            candidates[task] = (phi[task], weights[frame_demo, j] * per_frame_scale[frame_demo])
        phi_targets = torch.cat(targets_phi)
        kappa = kernel_scale(phi_targets)
        posterior = WeightSpacePosterior(embedder.dim, sigma2=cfg.noise, kappa=kappa)
        d_rows = torch.as_tensor(states.in_d[states.demo_of_frame])
        if bool(d_rows.any()):
            # each frame embedded under the task its demo was recorded for
            phi_recorded_task = torch.stack([phi[states.demo_task[i]][r] for r, i in enumerate(states.demo_of_frame)])
            posterior.observe(phi_recorded_task[d_rows], per_frame_scale[frame_demo][d_rows])
        allowed = {t: c for t, c in ctx.capacity.items() if c is not None}
        result = greedy_batch(posterior, candidates, (phi_targets, torch.cat(targets_w)), n, allowed=allowed)
        if len(result.picks) < n:
            raise ValueError("The demo source has no demos left for the tasks amf would pick.")
        first = result.step_scores[0]
        details = {
            "step_scores": result.step_scores,
            "variance_before_after": result.first_step_variance,
            "ess": {t: round(ess, 3) for t, ess in importance.as_dict().items()},
            "n_demos_in_hand": n_demos,
            "n_demos_in_d": int(states.in_d.sum()),
            "rollout_fallback": sorted(rollout_phi),
            "importance": ("own task only (the policy does not see the task: same likelihood for every task)"
                           if task_blind else "denoising-loss surrogate, common random numbers" if has_likelihood
                           else "own task only"),
            "kappa": kappa,
            "kernel": embedder.record(),
            "total_gain": result.total_gain,
            "processes": _num_processes(ctx.accelerator),
        }
        fallback = f"; rollout states for {', '.join(sorted(rollout_phi))} (ESS < {cfg.ess_threshold} or no demos)" \
            if rollout_phi else ""
        best = max(first, key=first.get)
        return Selection(
            result.picks, scores={t: round(v, 6) for t, v in first.items()}, details=details,
            reason=f"amf: greedy information gain on target states; first pick {best} "
                   f"(gain {first[best]:.4f} nats){fallback}",
        )

    def rollout_states(self, ctx: SelectionContext, tasks: list[str], embedder) -> dict[str, torch.Tensor]:
        """States the current policy visits in its own rollouts (fallback / cold start)."""
        from lerobot.scripts.lerobot_eval import rollout

        from lerobot_amf.evaluation import env_processors, task_vec_env

        if ctx.env_cfg is None:
            return {}
        policy = unwrap_policy(ctx.policy)
        env_pre, env_post = env_processors(ctx.env_cfg, policy.config)
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
                    torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seeds[0])
                rollout(vec, policy, recorded, env_post, ctx.preprocessor, ctx.postprocessor, seeds=seeds)
            idx = np.linspace(0, len(seen) - 1, num=min(self.cfg.states_per_demo, len(seen))).astype(int)
            # k steps of every env, stacked; the embedder repeats a single frame over n_obs_steps
            batch = {key: torch.cat([seen[i][key] for i in idx]) for key, value in seen[0].items()
                     if isinstance(value, torch.Tensor)}
            if isinstance(seen[0].get("task"), list):  # the task strings, for language-conditioned policies
                batch["task"] = [task for i in idx for task in seen[i]["task"]]
            # no expert action here (the pipeline returns action=None): embedders use their pseudo-target
            batch = {key: value for key, value in ctx.preprocessor(batch).items() if value is not None}
            out[task] = _map_chunks(embedder.embed, batch, self.cfg.chunk_size, None)
        return dict(_gather(list(out.items()), ctx.accelerator))


def _meta_of(ctx) -> LeRobotDatasetMetadata:
    """Metadata of a dataset in hand (fps and features fix the policy's delta timestamps)."""
    for ref in (ctx.demo_dataset, ctx.pretrain_dataset):
        if ref is not None:
            return LeRobotDatasetMetadata(ref.repo_id, root=ref.root)
    raise ValueError("amf needs demos in hand (pretraining demos or fine-tuning demos); none were found.")


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
    return torch.cat([t for _, t in sorted(_gather(mine, accelerator), key=lambda item: item[0])])
