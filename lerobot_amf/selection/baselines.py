"""Selection baselines (docs/method.md, "Baselines"). Any claim about amf is made against all of them."""

from __future__ import annotations

from lerobot_amf.errors import AMFInputError
from lerobot_amf.selection.base import Selection, SelectionContext, Strategy, greedy_fill


def per_weight(count: float, weight: float) -> float:
    """Demos per unit of target weight; a task of weight 0 is never below its share (inf)."""
    return count / weight if weight > 0 else float("inf")


def finite_scores(scores: dict[str, float]) -> dict[str, float | None]:
    """Scores for the ledger (JSON): None for a task of weight 0."""
    return {t: (v if v != float("inf") else None) for t, v in scores.items()}


class UniformStrategy(Strategy):
    """Equal demos per task over the run, in a random order.

    Each task's share of the demos is kept proportional to the target weights: the next pick
    is the task furthest below its share, with seeded random tie-breaking, so after every full
    cycle each task has the same count (for uniform weights).
    """

    name = "uniform"

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        def deficit(task, extra):
            return per_weight(ctx.counts.get(task, 0) + extra, ctx.target_weights[task])

        tasks = greedy_fill(ctx, n, deficit)
        return Selection(
            tasks, scores=finite_scores({t: deficit(t, 0) for t in ctx.pool}),
            reason="uniform: fewest fine-tuning demos relative to target weight, random tie-break",
        )


class RandomStrategy(Strategy):
    """Each demo's task drawn at random, with probability mu(c)."""

    name = "random"

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        picked: dict[str, int] = {t: 0 for t in ctx.pool}
        tasks = []
        for _ in range(n):
            avail = [t for t in ctx.pool if ctx.can_take(t, picked[t])]
            if not avail:
                raise ValueError("The demo source has no demos left for any task in the pool.")
            p = [ctx.target_weights[t] for t in avail]
            if sum(p) <= 0:  # only tasks of weight 0 can still be pulled: any of them
                p = [1.0] * len(avail)
            task = avail[int(ctx.rng.choice(len(avail), p=[x / sum(p) for x in p]))]
            picked[task] += 1
            tasks.append(task)
        return Selection(tasks, scores={t: ctx.target_weights[t] for t in ctx.pool},
                         reason="random: task drawn with probability mu(c)")


class LeastDemonstratedStrategy(Strategy):
    """The task with the fewest fine-tuning demos in D, re-counted after every pick.

    Unlike ``uniform`` it ignores target weights and has no notion of a planned share: it is the
    reviewers' "sample the context that appears least often in the history" baseline.
    """

    name = "least_demonstrated"

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        tasks = greedy_fill(ctx, n, lambda t, extra: ctx.counts.get(t, 0) + extra)
        return Selection(tasks, scores={t: float(ctx.counts.get(t, 0)) for t in ctx.pool},
                         reason="least_demonstrated: fewest demos in D so far")


class LowestSuccessStrategy(Strategy):
    """The practitioner's heuristic: demos for the tasks the latest evaluation says fail most.

    A task's failure rate is the mean of a Beta posterior (uniform prior) on the latest
    evaluation's episodes, ``(failures + 1) / (episodes + 2)``, times μ(c). A round's demos go to
    tasks in proportion to it: each pick divides its task's score by one more than the demos it
    already got this round (the D'Hondt rule), so a round concentrates on one task only when its
    failure rate is that much higher. Ties: fewer demos in hand first, then a seeded random order.
    Uses no pretraining counts; needs an evaluation (a simulator).
    """

    name = "lowest_success"
    reads_evaluation = True

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        if ctx.success is None:
            raise AMFInputError("amf.strategy=lowest_success needs an evaluation of every pool task "
                                "(a simulator); without one use amf or uniform.")
        failure = {t: failure_rate(ctx.success.get(t)) for t in ctx.pool}

        def share(task, extra):
            return (-ctx.target_weights[task] * failure[task] / (1 + extra), ctx.counts.get(task, 0) + extra)

        tasks = greedy_fill(ctx, n, share)
        return Selection(tasks, scores={t: round(failure[t], 4) for t in ctx.pool},
                         reason="lowest_success: demos in proportion to mu(c) x estimated failure rate "
                                "(Beta posterior on the latest evaluation), ties to fewer demos in hand")


def failure_rate(entry: dict | None) -> float:
    """Posterior mean failure rate under a uniform Beta prior; 0.5 for a task never evaluated."""
    if not entry:
        return 0.5
    return (entry["episodes"] - entry["successes"] + 1) / (entry["episodes"] + 2)


class RebalancingStrategy(Strategy):
    """Privileged: knows the pretraining demos per task and fills the least covered tasks.

    The pick minimises (pretraining + fine-tuning demos) / mu(c), so after enough rounds every
    task's total coverage is proportional to its target weight.
    """

    name = "rebalancing"

    def check_inputs(self, pretrain_counts, policy_path=None) -> None:
        if pretrain_counts is None:
            of = "this pretrained policy" if policy_path is None else f"--policy.path={policy_path}"
            raise AMFInputError(f"amf.strategy=rebalancing needs the pretraining demos per task, unknown for {of} "
                                "(it has no amf_pretrain.json; the embedded default's pretraining records them).")

    def select(self, ctx: SelectionContext, n: int) -> Selection:
        self.check_inputs(ctx.pretrain_counts)

        def coverage(task, extra):
            total = ctx.pretrain_counts.get(task, 0) + ctx.counts.get(task, 0) + extra
            return per_weight(total, ctx.target_weights[task])

        tasks = greedy_fill(ctx, n, coverage)
        return Selection(tasks, scores=finite_scores({t: coverage(t, 0) for t in ctx.pool}),
                         reason="rebalancing: least (pretraining + fine-tuning) demos per target weight")
