"""The rounds in Weights & Biases, through LeRobot's own logger (``--wandb.*``).

``lerobot-amf-train`` takes LeRobot's ``--wandb.enable`` / ``--wandb.project`` / ``--wandb.mode`` ...
flags. With ``--wandb.enable=true`` the main process opens ``lerobot.rl.wandb_utils.WandBLogger``
once the run directory exists (its files go to ``<output_dir>/wandb``; ``--resume=true`` continues
the same W&B run, found there, as LeRobot's logger does) and logs, per round, at step = the
round's number (1, 2, ...), from the round's entry of the report (so W&B holds exactly what
``amf_report.json`` says):

* ``train/selection/picked/<task>`` (demos picked this round), ``train/selection/score/<task>``,
  ``train/selection/reason``; ``train/demos/<task>`` and ``train/demos/total`` (fine-tuning demos
  so far); ``train/<metric>`` (the round's loss first / last, steps, frames, ...);
* ``eval/<variant>/<task>/success`` with ``ci_low`` / ``ci_high`` (Wilson 95 %) and ``episodes``,
  the same per suite under ``eval/<variant>/suite/<suite>/...`` and pooled under
  ``eval/<variant>/all/...`` (variant: ``single_model`` or ``per_partition``; a ``/`` in a task
  name becomes ``|``); the pretrained evaluation at step 0;
* the two plots (``plots/success_vs_demos``, ``plots/selections_per_round``) and the round's
  checkpoint as LeRobot logs one (a model artifact; ``--wandb.disable_artifact=true`` skips it).
"""

from __future__ import annotations

from pathlib import Path

PLOTS = ("success_vs_demos", "selections_per_round")


def start_tracking(cfg):
    """LeRobot's ``WandBLogger`` for this run, or None without ``--wandb.enable=true``."""
    if not getattr(getattr(cfg, "wandb", None), "enable", False):
        return None
    from lerobot.common.wandb_utils import WandBLogger

    return RoundLogger(WandBLogger(cfg))


def _key(name: str) -> str:
    """A task or suite name as one W&B key part (W&B nests keys at '/')."""
    return str(name).replace("/", "|")


def _rates(prefix: str, entry: dict) -> dict:
    lo, hi = entry["ci95"]
    return {f"{prefix}/success": float(entry["success_rate"]), f"{prefix}/ci_low": float(lo),
            f"{prefix}/ci_high": float(hi), f"{prefix}/episodes": int(entry["episodes"])}


def evaluation_metrics(evaluation: dict | None) -> dict:
    """``<variant>/...`` of one evaluation record (per task, per suite, pooled), logged under ``eval/``."""
    if not evaluation:
        return {}
    variant = _key(str(evaluation.get("variant") or "single model").replace(" ", "_").replace("-", "_"))
    out = {}
    for task, entry in (evaluation.get("per_task") or {}).items():
        out |= _rates(f"{variant}/{_key(task)}", entry)
    for suite, entry in (evaluation.get("per_suite") or {}).items():
        out |= _rates(f"{variant}/suite/{_key(suite)}", entry)
    if evaluation.get("overall"):
        out |= _rates(f"{variant}/all", evaluation["overall"])
    return out


def round_metrics(entry: dict) -> tuple[dict, dict]:
    """What a round of the report says, as flat W&B metrics: (logged under ``train/``: the
    selection, the demos and the training; logged under ``eval/``: the evaluations)."""
    picked: dict[str, int] = {}
    for task in entry.get("selected", []):
        picked[task] = picked.get(task, 0) + 1
    train = {f"selection/picked/{_key(t)}": n for t, n in picked.items()}
    train |= {f"selection/score/{_key(t)}": float(v) for t, v in (entry.get("scores") or {}).items()
              if isinstance(v, (int, float)) and not isinstance(v, bool)}
    train["selection/reason"] = str(entry.get("reason", ""))
    train |= {f"demos/{_key(t)}": int(n) for t, n in (entry.get("demos_per_task") or {}).items()}
    train["demos/total"] = int(entry.get("demos_total", 0))
    train |= {k: v for k, v in (entry.get("train") or {}).items()
              if isinstance(v, (int, float)) and not isinstance(v, bool)}
    evaluations = {}
    for key in ("eval", "eval_single_model"):
        evaluations |= evaluation_metrics(entry.get(key))
    return train, evaluations


class RoundLogger:
    """Logs the report's rounds to W&B through LeRobot's ``WandBLogger`` (``log_dict`` for the
    metrics, ``log_policy`` for the checkpoint)."""

    def __init__(self, logger):
        self.logger = logger
        self.wandb = logger._wandb  # the module LeRobot's logger imported (for the plots' images)

    def log_pretrained(self, report: dict) -> None:
        """The pretrained policy's evaluation, at step 0 (only when it was just evaluated: a
        resumed run has logged it already, and W&B steps only go forward)."""
        metrics = evaluation_metrics(report.get("pretrained"))
        if metrics:
            self.logger.log_dict(metrics, step=0, mode="eval")

    def log_round(self, report: dict, round_index: int, run_dir: Path, checkpoint_dir: Path | None) -> None:
        entry = next(e for e in report["rounds"] if e["round"] == round_index)
        step = round_index + 1
        train, evaluations = round_metrics(entry)
        self.logger.log_dict(train, step=step, mode="train")
        if evaluations:
            self.logger.log_dict(evaluations, step=step, mode="eval")
        images = {f"plots/{name}": self.wandb.Image(str(Path(run_dir) / f"{name}.png"))
                  for name in PLOTS if (Path(run_dir) / f"{name}.png").is_file()}
        if images:
            self.wandb.log(images, step=step)
        if checkpoint_dir is not None:
            self.logger.log_policy(Path(checkpoint_dir))

    def finish(self) -> None:
        self.wandb.finish()
