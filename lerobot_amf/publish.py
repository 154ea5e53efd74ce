"""Publishing a run to the Hugging Face Hub: its final checkpoint, record and an honest model card.

``push_run(run_dir, repo_id)`` pushes, in ONE commit through ``huggingface_hub.HfApi``, what
``upload_plan`` lists (the only place that decides it):

* ``README.md``: the model card (``render_model_card``), with the disclosure block and the
  evaluation results as ``model-index`` metadata;
* ``amf_report.json``, ``amf_ledger.jsonl`` and the plots (``*.png``) of the run directory;
* the checkpoint the report's last round evaluated (what ``checkpoints/last`` points to when
  the run ended cleanly; a newer, unevaluated one is never pushed):
  ``pretrained_model/`` (a plain LeRobot policy) at the repo root, so that
  ``--policy.path=<repo_id>`` loads it; ``routed_model/`` (routing.json + peft adapters or head
  copies + processors) under ``routed_model/``. Adapters name their base in
  ``adapter_config.json``/``routing.json``; when the base came from the Hub, the pushed copies
  name its repo id (``hub_repo_of``), otherwise the card says the base is local.

Pushed files carry no path of this machine (``without_local_paths``): in every JSON / JSONL
file, a path inside the run directory becomes relative to it, one under LeRobot's or the Hub's
cache, the temp folder or the home folder starts with ``$HF_LEROBOT_HOME``, ``$HF_HUB_CACHE``,
``$TMPDIR`` or ``~``, and any other absolute path becomes ``<local>/<its name>``. A local base
checkpoint is therefore named ``<local>/...`` in the pushed ``routing.json`` and
``adapter_config.json``: loading them needs ``base_path=`` (the card says so). Every card cell
is escaped (``_cell``) and every value in the card's shell snippets quoted.

The card template is the Jinja2 file ``model_cards/amf_model_card.md`` at the top of the
repository (where card templates live); ``lerobot_amf/model_cards`` is a symlink to that folder
and ``pyproject.toml`` ships ``model_cards/*.md`` as package data, so one file is found as
``importlib.resources.files("lerobot_amf") / "model_cards"`` from a source checkout, an
editable install and an installed wheel alike.

The token comes only from huggingface_hub's own lookup (``HF_TOKEN`` or ``hf auth login``),
or from a caller that holds it in memory; it is never a flag (flags end up in configs and
shell history) and nothing here writes anything: a push changes no local file, a failed push
deletes nothing. Try again with ``python -m lerobot_amf.publish <run_dir> --repo_id=<repo>``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path, PurePath

from lerobot.utils.constants import CHECKPOINTS_DIR, PRETRAINED_MODEL_DIR

from lerobot_amf.configs import ROUTED_MODES
from lerobot_amf.errors import AMFInputError
from lerobot_amf.evaluation import PER_PARTITION, episodes_label, format_success, pooled
from lerobot_amf.envs.tasks import task_catalog
from lerobot_amf.isolation.routing import ROUTED_DIR
from lerobot_amf.ledger import LEDGER_FILENAME, Ledger
from lerobot_amf.report import REPORT_FILENAME, change_kind, human_cost_label
from lerobot_amf.trust import LOCAL_PATH_PLACEHOLDER

CARD_TEMPLATE = "amf_model_card.md"
NO_TOKEN = "push needs a Hub token: set HF_TOKEN or run `hf auth login`"
PLAIN_DIR = PRETRAINED_MODEL_DIR  # inside a LeRobot checkpoint, beside ROUTED_DIR
# Where each checkpoint folder goes in the repo: the plain model at the root, so
# ``--policy.path=<repo_id>`` loads it.
REPO_PREFIX = {PLAIN_DIR: "", ROUTED_DIR: f"{ROUTED_DIR}/"}
BASE_REFERENCES = ("adapter_config.json", "routing.json")  # files that name the base checkpoint
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
_with_counts = functools.partial(format_success, counts=True)  # the card's rates say "(7/10)" too
HUB_CACHE_SNAPSHOT = re.compile(r"models--(?P<repo>[^/]+)/snapshots/[0-9a-f]{40}(/|$)")
TEXT_SUFFIXES = (".json", ".jsonl")  # pushed files whose strings are rewritten by without_local_paths


class PushError(RuntimeError):
    """The Hub push failed (after retries); nothing local was changed."""


@dataclass(frozen=True)
class PlannedFile:
    """One file of the commit: a local file pushed as is, or bytes made for the push."""

    path_in_repo: str
    source: Path | None = None
    content: bytes | None = None
    note: str = ""

    def data(self) -> bytes:
        return self.content if self.content is not None else Path(self.source).read_bytes()


# ---------------------------------------------------------------------------------- the run
@dataclass(frozen=True)
class RunView:
    """What publishing needs to know about a run directory."""

    run_dir: Path
    report: dict
    run_start: dict
    checkpoint: Path | None  # the round directory the report's last round evaluated
    planned_rounds: int | None

    @property
    def base(self) -> str:
        return str(self.report["model"]["pretrained_path"])

    @property
    def run_dirs(self) -> tuple[Path, ...]:
        """The run directory now, and where its ledger says it ran (it may have been moved)."""
        recorded = (self.run_start.get("config") or {}).get("output_dir")
        return (self.run_dir, *([Path(recorded)] if recorded else []))

    @property
    def base_repo(self) -> str | None:
        """The base checkpoint's Hub repo id, or None when it is local. Runs record it when they
        start (``base_origin``); for older records it is told from the path, existence first."""
        model = self.report["model"]
        if "base_repo_id" in model:
            return model["base_repo_id"]
        return base_origin(self.base, recorded_by=self.run_dir)[1]


def read_run(run_dir) -> RunView:
    run_dir = Path(run_dir)
    if not (run_dir / REPORT_FILENAME).is_file() or not (run_dir / LEDGER_FILENAME).is_file():
        raise AMFInputError(f"{run_dir} is not a lerobot-amf run directory: it needs {REPORT_FILENAME} "
                            f"and {LEDGER_FILENAME}.")
    report = json.loads((run_dir / REPORT_FILENAME).read_text())
    run_start = next(Ledger(run_dir).records("run_start"), {})
    checkpoint = None
    if report["rounds"]:
        # The recorded path names the round directory; the run directory may have moved since.
        checkpoint = run_dir / CHECKPOINTS_DIR / PurePath(report["rounds"][-1]["checkpoint"]).parent.name
    planned = run_start.get("demos_per_round")
    return RunView(run_dir, report, run_start, checkpoint, len(planned) if planned else None)


def hub_repo_of(path: str) -> str | None:
    """The Hub repo id a base checkpoint was loaded from, or None for a local checkpoint.

    LeRobot's rule: a directory is local, anything else is a repo id. A directory inside the
    Hub cache (``.../models--org--name/snapshots/<sha>``) came from the Hub too.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    local = Path(path).expanduser()
    if local.is_dir():
        match = HUB_CACHE_SNAPSHOT.search(local.resolve().as_posix())
        return match["repo"].replace("--", "/") if match else None
    repo_id = PurePath(path).as_posix()
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return None
    return repo_id


def base_origin(path, recorded_by: Path | None = None) -> tuple[str, str | None]:
    """(the base checkpoint's path as a run records it, its Hub repo id or None when local).

    LeRobot's rule, existence first: a folder here is local (absolute from now on, so a push from
    another working directory still finds it), unless it is a snapshot of the Hub cache; anything
    else was loaded as a repo id. ``recorded_by``: the run whose record names ``path`` (an older
    one, recorded as given): a relative two-part path that is no folder here is then ambiguous
    (a local folder seen from another working directory, or a repo id), and it is one only if
    the Hub cache holds that repo; otherwise it is an error that says so.
    """
    from huggingface_hub import constants

    local = Path(path).expanduser()
    if local.is_dir():
        return str(local.resolve()), hub_repo_of(str(local))
    repo_id = hub_repo_of(str(path))
    if recorded_by is not None and repo_id is not None and not local.is_absolute():
        cached = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
        if not cached.is_dir():
            raise AMFInputError(
                f"The base checkpoint {str(path)!r} that {recorded_by} records is no folder here (seen from "
                f"{Path.cwd()}) and no Hub repo in the Hub cache: run the push from the folder the run was started "
                "in, or with the base downloaded, so it is not named as a Hub repo it is not.")
    return str(path), repo_id


def without_local_paths(value, run_dirs: tuple[Path, ...]):
    """``value`` (JSON-like) with every path of this machine hidden (see the module docstring).

    ``run_dirs``: the run directory as it is now and as its ledger recorded it (it may have moved).
    """
    return _hidden(value, *_roots(run_dirs))


def _hidden(value, runs: tuple[Path, ...], known: tuple[tuple[Path, str], ...]):
    if isinstance(value, dict):
        return {k: _hidden(v, runs, known) for k, v in value.items()}
    if isinstance(value, list):
        return [_hidden(v, runs, known) for v in value]
    if not isinstance(value, str) or "/" not in value:
        return value
    whole = Path(value)
    if whole.is_absolute() and "\n" not in value:
        for root in runs:  # inside the run: relative to it
            if whole == root or whole.is_relative_to(root):
                return whole.relative_to(root).as_posix()
    for root, name in [*((r, "<run>") for r in runs), *known]:
        value = re.sub(rf"{re.escape(str(root))}(?=/|$|[^\w.-])", lambda _, name=name: name, value)
    if Path(value).is_absolute():
        return f"{LOCAL_PATH_PLACEHOLDER}/{Path(value).name}"
    return value


def _roots(run_dirs: tuple[Path, ...]) -> tuple[tuple[Path, ...], tuple[tuple[Path, str], ...]]:
    """(the run's directories, as named and resolved; the caches, temp and home folders with the
    names they get), longest first so that a path gets the most specific name."""
    from huggingface_hub import constants
    from lerobot.utils.constants import HF_LEROBOT_HOME

    runs = {Path(os.path.abspath(d)) for d in run_dirs} | {Path(d).resolve() for d in run_dirs}
    known = [(Path(HF_LEROBOT_HOME), "$HF_LEROBOT_HOME"), (Path(constants.HF_HUB_CACHE), "$HF_HUB_CACHE"),
             (Path(tempfile.gettempdir()), "$TMPDIR"), (Path.home(), "~")]
    known = {(p, name) for path, name in known for p in (Path(os.path.abspath(path)), path.resolve())}
    by_length = lambda p: -len(str(p))  # noqa: E731
    return (tuple(sorted(runs, key=by_length)),
            tuple(sorted(known, key=lambda item: by_length(item[0]))))


def _pushed_bytes(path: Path, run_dirs: tuple[Path, ...], record: dict | None = None) -> bytes | None:
    """A JSON / JSONL file's bytes with local paths hidden (``record``: already parsed and
    changed), or None when nothing in it changes (it is pushed as is)."""
    if path.suffix not in TEXT_SUFFIXES:
        return None
    text = path.read_text()
    roots = _roots(run_dirs)  # once per file, not per line
    if path.suffix == ".jsonl":
        lines = [json.dumps(_hidden(json.loads(line), *roots)) for line in text.splitlines() if line]
        new = "\n".join(lines) + "\n"
    else:
        new = json.dumps(_hidden(record if record is not None else json.loads(text), *roots), indent=2) + "\n"
    return None if new == text else new.encode()


# ---------------------------------------------------------------------------------- plan
def upload_plan(run_dir, repo_id: str | None = None) -> list[PlannedFile]:
    """Every file of the push, sorted by path in the repo (see the module docstring)."""
    return _plan(read_run(run_dir), repo_id)


def _plan(run: RunView, repo_id: str | None) -> list[PlannedFile]:
    if run.checkpoint is None or not any((run.checkpoint / d).is_dir() for d in REPO_PREFIX):
        raise AMFInputError(f"Nothing to push from {run.run_dir}: no round finished with a checkpoint "
                            f"(looked for {run.checkpoint or 'checkpoints/round_XX'}/{{{PLAIN_DIR},{ROUTED_DIR}}}).")
    plan = [PlannedFile("README.md", content=_card(run, repo_id).encode(), note="model card"),
            _as_pushed(REPORT_FILENAME, run.run_dir / REPORT_FILENAME, run.run_dirs),
            _as_pushed(LEDGER_FILENAME, run.run_dir / LEDGER_FILENAME, run.run_dirs)]
    plan += [PlannedFile(p.name, p) for p in sorted(run.run_dir.glob("*.png"))]
    for folder, prefix in REPO_PREFIX.items():
        root = run.checkpoint / folder
        for path in sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []:
            if path.name == "README.md":  # peft's placeholder card; the repo's card is ours
                continue
            plan.append(_as_pushed(prefix + path.relative_to(root).as_posix(), path, run.run_dirs))
    return sorted(plan, key=lambda f: f.path_in_repo)


def _as_pushed(path_in_repo: str, path: Path, run_dirs: tuple[Path, ...]) -> PlannedFile:
    """The file as pushed: a file naming the base checkpoint names it by its Hub repo id when it
    has one, and no file keeps a local path."""
    record, notes = None, []
    if path.name in BASE_REFERENCES:
        record = json.loads(path.read_text())
        repo = _name_base_by_hub_id(record)
        if repo:
            notes.append(f"base named as the Hub repo {repo}")
    content = _pushed_bytes(path, run_dirs, record)
    if content is not None:
        notes.append("local paths hidden")
    return PlannedFile(path_in_repo, path, content=content, note="; ".join(notes))


def _name_base_by_hub_id(record: dict) -> str | None:
    """In an ``adapter_config.json`` (peft) / ``routing.json`` record, put the base checkpoint's
    Hub repo id in place of its local path, or ``<local>/<name>`` when it has none; return the
    id (None: local, or named by id already)."""
    if "base_model_name_or_path" in record:
        holder, key = record, "base_model_name_or_path"
    elif isinstance(record.get("base"), dict) and "pretrained_path" in record["base"]:
        holder, key = record["base"], "pretrained_path"
    else:
        return None
    repo = hub_repo_of(str(holder[key])) if holder[key] else None
    if repo is None:  # local to this machine: a placeholder, never its path
        holder[key] = f"{LOCAL_PATH_PLACEHOLDER}/{PurePath(str(holder[key])).name}" if holder[key] else holder[key]
        return None
    if repo == holder[key]:
        return None
    holder[key] = repo
    return repo


# ---------------------------------------------------------------------------------- card
def template_path() -> Path:
    return Path(str(files("lerobot_amf") / "model_cards" / CARD_TEMPLATE))


def render_model_card(run_dir, repo_id: str | None = None) -> str:
    """The model card (markdown with YAML metadata) of a run, from its report and ledger."""
    return _card(read_run(run_dir), repo_id)


def _card(run: RunView, repo_id: str | None) -> str:
    from huggingface_hub import ModelCard

    card_data, context = card_context(run, repo_id)
    return str(ModelCard.from_template(card_data, template_path=str(template_path()), **context))


def card_context(run: RunView, repo_id: str | None):
    """(``ModelCardData``, the template's variables)."""
    from huggingface_hub import ModelCardData

    report, model, proto = run.report, run.report["model"], run.report["eval_protocol"]
    pool = report["pool"]
    routed = model.get("mode") in ROUTED_MODES
    base_repo = run.base_repo
    pre_counts = report["demos_per_task"]["pretraining"]
    fine_counts = report["demos_per_task"]["fine_tuning"]
    last = report["rounds"][-1] if report["rounds"] else None
    done = len(report["rounds"])
    repo = repo_id or "<repo_id>"
    name = (repo_id or "").split("/")[-1] or f"lerobot-amf-{model['policy_type']}"

    if report["complete"]:
        incomplete = None
    else:
        incomplete = (f"This run is INCOMPLETE: it stopped after round {done} of "
                      f"{run.planned_rounds or '?'} planned, with {sum(fine_counts.values())} of "
                      f"{report['budget']} fine-tuning demos spent. Everything below describes round {done}.")

    variants = []  # the final models, each with its results
    if last is not None:
        for key in ("eval", "eval_single_model"):
            if last.get(key):
                variants.append(_variant(last[key], report, routed, pool, fine_counts, pre_counts))
    base = (f"[`{base_repo}`](https://huggingface.co/{base_repo}) (Hub)" if base_repo else
            f"local checkpoint {_code(PurePath(run.base).name)}, not on the Hub"
            + (" (pretrained by lerobot-amf's pretraining step; its demos per task are below)"
               if pre_counts is not None else ""))
    disclosure = [
        ("Model", model["isolation"]),
        ("Partitions", _partition_summary(model, routed)),
        ("Base checkpoint", base),
        ("Policy type", model["policy_type"]),
        ("Selection strategy", report["strategy"]),
        ("Rounds", f"{done} of {run.planned_rounds or '?'} planned"
                   + (" (complete)" if report["complete"] else " (INCOMPLETE)")),
        ("Fine-tuning demos", f"{sum(fine_counts.values())} of budget {report['budget']}"),
        ("Pretraining demos", "unknown" if pre_counts is None else str(sum(pre_counts.values()))),
        ("Human cost on a robot", human_cost_label(report.get("human_cost"))),
        ("Seed", str(report["seed"])),
        ("Demo source", report["source"]["name"]),
        ("Evaluation", f"{episodes_label(proto)} episodes per task, env {proto['env']}"),
        ("Checkpoint", f"round {last['round'] + 1}'s (`checkpoints/{run.checkpoint.name}`)" if last else "none"),
        ("Software", ", ".join(f"{k} {v}" for k, v in report["software"].items()) if report.get("software")
         else "not recorded (a run started before lerobot-amf recorded it)"),
    ]
    context = {
        "title": f"{name}: {model['policy_type']} fine-tuned with lerobot-amf",
        "repo_id": repo,
        "incomplete": incomplete,
        "disclosure": _cells([[k, v] for k, v in disclosure]),
        "partition_rows": _cells([[_plain(t), _plain(_partition_of(model, t, routed))] for t in pool]),
        "routed": routed,
        "demo_rows": _cells(_demo_rows(pool, pre_counts, fine_counts, report["target_weights"])),
        "selection_rows": _cells([[str(r["round"] + 1), ", ".join(map(_plain, r["selected"])) or "-",
                                   r["reason"] + (f" (held back, no learning progress: {', '.join(map(_plain, r['held_back']))})"
                                                  if r.get("held_back") else "")]
                                  for r in report["rounds"]]),
        "protocol_rows": _cells([[k.replace("_", " "), v] for k, v in proto.items()]),
        "variants": variants,
        "final": _final_lines(report),
        "caveat": _caveat(report, routed),
        "base_repo": base_repo,
        "base_local": None if base_repo else _code(PurePath(run.base).name),
        "plain_at_root": run.checkpoint is not None and (run.checkpoint / PLAIN_DIR).is_dir(),
        "has_routed": run.checkpoint is not None and (run.checkpoint / ROUTED_DIR).is_dir(),
        # the shell snippets' values, quoted for bash (a task name could hold anything)
        "env": shlex.quote(proto["env"]),
        "env_task": shlex.quote(((run.run_start.get("config") or {}).get("env") or {}).get("task") or ",".join(pool)),
        "quoted_repo_id": shlex.quote(repo),
    }
    eval_results = [r for v in variants for r in _eval_results(v, proto)]
    source_repo = report["source"].get("repo_id")
    card_data = ModelCardData(
        library_name="lerobot", pipeline_tag="robotics",
        tags=["lerobot", "robotics", "lerobot-amf", model["policy_type"], model.get("mode", "shared"),
              proto["env"]],
        base_model=base_repo, datasets=[source_repo] if source_repo else None,
        model_name=name if eval_results else None, eval_results=eval_results or None,
    )
    return card_data, context


def _variant(evaluation: dict, report: dict, routed: bool, pool, fine_counts, pre_counts) -> dict:
    """One evaluated final model: its label, per-task / per-suite / pooled rows."""
    if evaluation["variant"] == PER_PARTITION:
        label = "per-partition adapters, routed by task (`routed_model/`)"
    elif routed:
        label = f"single model exported from the partitions ({report['model'].get('export')}; repo root)"
    else:
        label = "single model (repo root)"
    before = (report["pretrained"] or {}).get("per_task", {})
    after = evaluation["per_task"]
    task_rows = []
    for task in pool:  # escaped below, with the suite rows
        kind = change_kind(before[task], after[task]) if task in before and task in after else "-"
        tuned = fine_counts.get(task, 0) > 0
        task_rows.append([_plain(task), _demos(pre_counts, fine_counts, task), _with_counts(before.get(task)),
                          _with_counts(after.get(task)), kind + ("" if tuned else " (not fine-tuned)")])
    suites = suite_groups(pool, report["eval_protocol"]["env"])
    suite_rows = [[_plain(s), str(len(tasks)), _with_counts(pooled(before, tasks) if before else None),
                   _with_counts(pooled(after, tasks))] for s, tasks in suites.items()]
    return {"label": label, "variant": evaluation["variant"], "task_rows": _cells(task_rows),
            "suite_rows": _cells(suite_rows),
            "overall": [_with_counts(pooled(before, pool) if before else None), _with_counts(evaluation["overall"])],
            "per_task": after, "per_suite": {s: pooled(after, tasks) for s, tasks in suites.items()},
            "all": evaluation["overall"]}


def suite_groups(pool: list[str], env_type: str) -> dict[str, list[str]]:
    """suite -> its tasks (the env's ``TaskCatalog.suite_of``); none when a task has no known suite."""
    groups: dict[str, list[str]] = {}
    try:
        suite_of = task_catalog(env_type).suite_of
        for task in pool:
            groups.setdefault(suite_of(task), []).append(task)
    except AMFInputError:
        return {}
    return groups


def _eval_results(variant: dict, proto: dict) -> list:
    """``EvalResult``s of one final model: per task, per suite and pooled over all tasks."""
    from huggingface_hub import EvalResult

    def result(scope: str, entry: dict):
        lo, hi = entry["ci95"]
        return EvalResult(
            task_type="robotics", task_name="Robot manipulation",
            dataset_type=proto["env"], dataset_name=f"{proto['env']} simulation", dataset_config=scope,
            metric_type="success_rate", metric_value=round(entry["success_rate"], 4),
            metric_name=f"success rate, {variant['variant']}: {entry['successes']}/{entry['episodes']} "
                        f"episodes, Wilson 95% [{lo:.2f}, {hi:.2f}]",
            verified=False,
        )

    out = [result(task, entry) for task, entry in variant["per_task"].items()]
    out += [result(f"suite {s}", entry) for s, entry in variant["per_suite"].items()]
    return out + [result("all tasks", variant["all"])]


def _partition_summary(model: dict, routed: bool) -> str:
    groups = model.get("partitions") or {}
    if not routed:
        return "none: one model for all tasks"
    return f"{len(groups)} ({model.get('partition_scheme', '?')}); the task -> partition map is below"


def _partition_of(model: dict, task: str, routed: bool) -> str:
    if not routed:
        return "- (single model)"
    return next((name for name, tasks in (model.get("partitions") or {}).items() if task in tasks), "?")


def _demo_rows(pool, pre_counts, fine_counts, weights) -> list[list[str]]:
    rows = [[_plain(t), "unknown" if pre_counts is None else str(pre_counts.get(t, 0)), str(fine_counts.get(t, 0)),
             f"{weights.get(t, 0.0):.3f}"] for t in pool]
    rows.append(["total", "unknown" if pre_counts is None else str(sum(pre_counts.get(t, 0) for t in pool)),
                 str(sum(fine_counts.get(t, 0) for t in pool)), f"{sum(weights.get(t, 0.0) for t in pool):.3f}"])
    return rows


def _demos(pre_counts, fine_counts, task) -> str:
    pre = "?" if pre_counts is None else str(pre_counts.get(task, 0))
    return f"{pre} + {fine_counts.get(task, 0)}"


def _final_lines(report: dict) -> list[str]:
    """The fine-tuned-tasks comparison of the report's ``final`` / ``final_single_model``."""
    lines = []
    for key, what in (("final", "this run's model"), ("final_single_model", "the single-model export")):
        final = report.get(key)
        if not final or not final["fine_tuned_tasks"]:
            continue
        verdict = "improved beyond" if final["improved_beyond_intervals"] else "NOT improved beyond"
        lines.append(f"On the {len(final['fine_tuned_tasks'])} fine-tuned task(s), pooled, {what} went from "
                     f"{_with_counts(final['pretrained_on_fine_tuned_tasks'])} (pretrained) to "
                     f"{_with_counts(final['fine_tuned_on_fine_tuned_tasks'])}: {verdict} the Wilson 95% intervals.")
    return lines


def _caveat(report: dict, routed: bool) -> str:
    proto = report["eval_protocol"]
    routing = ", or without the task label the router picks the adapter by" if routed else ""
    return (f"These numbers come from {episodes_label(proto)} simulated episodes per task in "
            f"`{proto['env']}` after one fine-tuning run with one seed ({report['seed']}); they do not show how the "
            "policy does on a real robot, on initial states, tasks or instructions outside this protocol, across "
            f"training seeds{routing}, and a difference that stays inside the Wilson 95% intervals is not evidence "
            "of a change.")


def _cell(value) -> str:
    """A markdown table cell: one line, with what would end the cell or open HTML escaped."""
    text = value if isinstance(value, str) else json.dumps(value)
    text = " ".join(text.split()).replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|")


def _plain(name: str) -> str:
    """A name from the run (task, suite, partition) as plain text in markdown: no code, emphasis
    or link can start in it."""
    return re.sub(r"([\\`*\[\]])", r"\\\1", str(name))


def _cells(rows: list[list]) -> list[list[str]]:
    return [[_cell(v) for v in row] for row in rows]


def _code(text: str) -> str:
    """``text`` as inline code that cannot be closed early (a backtick in it widens the fence)."""
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{' '.join(text.split())}{pad}{fence}"


# ---------------------------------------------------------------------------------- push
def check_push_ready(repo_id: str, token: str | None = None) -> str:
    """The token to push with, after checking everything a push needs that can be checked
    offline (repo id, network allowed, a token); a one-line ``AMFInputError`` otherwise."""
    from huggingface_hub import constants, get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
        if repo_id.count("/") != 1:
            raise HFValidationError("no namespace")
    except HFValidationError:
        raise AMFInputError(f"repo_id={repo_id!r} is not a Hub repo id: expected <user or org>/<name> "
                            "(letters, digits, '-', '_', '.').") from None
    if constants.HF_HUB_OFFLINE:
        raise AMFInputError("push needs the network, but HF_HUB_OFFLINE is set: unset it for the push.")
    token = token or get_token()
    if not token:
        raise AMFInputError(NO_TOKEN)
    return token


def push_run(run_dir, repo_id: str, *, private: bool = False, revision: str | None = None, retries: int = 3,
             token: str | None = None, backoff_s: float = 2.0) -> dict:
    """Push the run (``upload_plan``) to ``repo_id`` in one commit, in at most ``retries``
    attempts (backoff ``backoff_s``, doubling). ``private`` applies when the repo is created.

    Returns ``{"repo_id", "revision", "commit_url", "commit_oid", "files", "attempts"}``.
    Raises ``AMFInputError`` before any request for bad input (no token among them), and
    ``PushError`` naming what failed when the Hub refuses or keeps failing.

    What is tried again: huggingface_hub 1.x talks to the Hub through httpx, so a network failure
    (no connection, a dropped connection, a timeout) is an ``httpx.TransportError``; an HTTP error
    status is its ``HfHubHTTPError`` (an ``httpx.HTTPError`` and an ``OSError``, with the
    ``response``), tried again only for overload / server trouble (``RETRYABLE_STATUS``).
    ``HfApi.create_repo``, ``create_branch`` and ``create_commit`` send their request once
    (huggingface_hub retries only the upload of LFS files and the pre-upload question).
    """
    import httpx
    from huggingface_hub import CommitOperationAdd, HfApi

    token = check_push_ready(repo_id, token)
    if retries < 1:
        raise AMFInputError(f"retries={retries}: must be >= 1.")
    run = read_run(run_dir)
    plan = _plan(run, repo_id)
    report = run.report
    message = (f"lerobot-amf: {report['strategy']}, {len(report['rounds'])} round(s), "
               f"{sum(report['demos_per_task']['fine_tuning'].values())} fine-tuning demos"
               + ("" if report["complete"] else " (INCOMPLETE run)"))
    api = HfApi(token=token)
    failures = []
    for attempt in range(1, retries + 1):
        step = "create the repo"
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            if revision not in (None, "main"):
                step = f"create the branch {revision!r}"
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            step = "commit"
            info = api.create_commit(
                repo_id, operations=[CommitOperationAdd(f.path_in_repo, f.data()) for f in plan],
                commit_message=message, revision=revision)
        except (httpx.HTTPError, OSError, ValueError) as err:
            failures.append(f"attempt {attempt}: {step}: {_one_line(err)}")
            # HTTP errors other than overload / server trouble, and metadata the Hub rejects
            # (ValueError), are answers, not accidents: trying again would get the same one.
            status = getattr(getattr(err, "response", None), "status_code", None)
            if isinstance(err, ValueError) or (status is not None and status not in RETRYABLE_STATUS):
                raise PushError(_failed(repo_id, run_dir, failures, "the Hub refused it")) from None
            if attempt < retries:
                delay = backoff_s * 2 ** (attempt - 1)
                logging.warning(f"Push to {repo_id} failed ({failures[-1]}); retrying in {delay:.1f} s.")
                time.sleep(delay)
            continue
        return {"repo_id": repo_id, "revision": revision or "main", "commit_url": info.commit_url,
                "commit_oid": info.oid, "files": [f.path_in_repo for f in plan], "attempts": attempt}
    raise PushError(_failed(repo_id, run_dir, failures, f"{retries} attempts failed"))


def _one_line(err: Exception) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}"


def _failed(repo_id, run_dir, failures: list[str], why: str) -> str:
    return (f"push of {run_dir} to {repo_id} failed ({why}; last: {failures[-1]}). Nothing local was changed or "
            f"deleted; try again with `python -m lerobot_amf.publish {run_dir} --repo_id={repo_id}`.")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lerobot_amf.publish",
                                     description="Push a lerobot-amf run to the Hugging Face Hub.")
    parser.add_argument("run_dir")
    parser.add_argument("--repo_id", required=True)
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--retries", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        result = push_run(args.run_dir, args.repo_id, private=args.private, revision=args.revision,
                          retries=args.retries)
    except AMFInputError as err:
        print(f"lerobot-amf push: error: {err}", file=sys.stderr)
        sys.exit(2)
    except PushError as err:
        print(f"lerobot-amf push: error: {err}", file=sys.stderr)
        sys.exit(1)
    print(f"Pushed {len(result['files'])} files to {result['repo_id']}: {result['commit_url']}")


if __name__ == "__main__":
    main()
