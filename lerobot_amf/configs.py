"""The ``--amf.*`` section and the training config that carries it.

``AMFTrainPipelineConfig`` is LeRobot's ``TrainPipelineConfig`` plus one field, ``amf``, so
every ``lerobot-train`` flag keeps its meaning and the ``amf`` section is saved with the run's
``train_config.json`` in every checkpoint. ``--dataset.repo_id`` names the dataset of
fine-tuning demos the run builds (under ``<output_dir>/demos``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path

import draccus

from lerobot.configs.default import DatasetConfig
from lerobot.configs.train import TrainPipelineConfig
from lerobot.policies.factory import make_policy  # noqa: F401  (registers the policy config types)

from lerobot_amf.errors import AMFInputError
from lerobot_amf.isolation import EXPORTS, ISOLATION_MODES, ROUTED_MODES
from lerobot_amf.selection import STRATEGY_NAMES
from lerobot_amf.selection.config import AMFSelectionConfig
from lerobot_amf.sources import DEFAULT_MAX_BYTES_PER_ROUND, SOURCES

NORMALIZATION_SOURCES = ("pretrained", "demos", "source")


MAX_SEED = 2**32 - 1  # numpy / gymnasium seeds
MAX_EVAL_SEED = MAX_SEED - 100_000  # episode e of an evaluation uses eval_seed + e


def check_seed(flag: str, value: int | None, high: int = MAX_SEED, may_be_unset: bool = False) -> None:
    """A seed numpy and gymnasium take (32-bit; unset where ``may_be_unset``); else one line naming the flag."""
    if value is not None and not 0 <= value <= high:
        raise AMFInputError(f"{flag}={value}: must be in 0..{high} (numpy's and gymnasium's seeds are 32-bit"
                            f"{'; or unset' if may_be_unset else ''}).")


@dataclass
class PretrainConfig:
    """Pretraining of the embedded default's generalist (used only without ``--policy.path``).

    Allocation: the first ``ceil(n/2)`` tasks of the pool get ``demos_covered`` demos each, the
    rest ``demos_uncovered`` ("skewed" pretraining, the setting where selection matters), or
    an explicit ``demos_per_task`` map.
    """

    demos_covered: int = 12
    demos_uncovered: int = 1
    demos_per_task: dict[str, int] | None = None
    steps: int = 1500
    batch_size: int = 64
    # Where the pretrained checkpoint is cached (default: $HF_LEROBOT_HOME/lerobot_amf_cache).
    cache_dir: str | None = None


@dataclass
class AMFConfig:
    # Which tasks the next demos are for: amf | uniform | random | least_demonstrated | rebalancing |
    # lowest_success.
    strategy: str = "uniform"
    # Task pool, comma-separated (default: the env's task list).
    tasks: str | None = None
    # Target weights mu(c) over the pool (default: uniform). Keys must be pool tasks.
    target_weights: dict[str, float] | None = None
    rounds: int = 3
    demos_per_round: int = 4
    # Total demos to pull over the run (default: rounds * demos_per_round).
    budget: int | None = None
    # Demo source: metaworld_expert (scripted Metaworld experts) | hub (a LeRobot dataset, per task) |
    # request (recorded by people with lerobot-record: one collection request per round, then --resume=true).
    source: str = "metaworld_expert"
    # hub: the LeRobot dataset to pull episodes from (e.g. lerobot/libero), its revision, a local
    # copy (root) and a feature rename map {dataset key: run key}.
    source_repo_id: str | None = None
    source_revision: str | None = None
    source_root: str | None = None
    source_rename_map: dict[str, str] | None = None
    # hub: the most bytes one round (or the pretraining pull) may download; a round that would pass
    # it stops before downloading anything, with its selection kept for --resume=true.
    source_max_bytes_per_round: int = DEFAULT_MAX_BYTES_PER_ROUND
    # request: the intake dataset is --amf.source_root (default <output_dir>/intake) with repo id
    # --amf.source_repo_id; episodes shorter than request_min_frames are not used; accept_partial
    # takes a partly filled request instead of waiting; request_record_args: your lerobot-record
    # robot / teleoperator flags, put into each request's commands.
    request_min_frames: int = 10
    accept_partial: bool = False
    request_record_args: str | None = None
    # Gaussian noise (std) added to the scripted expert's actions.
    action_noise: float = 0.1
    # Optional cap on demos the source may give per task (None: unlimited seeded variations).
    source_demos_per_task: int | None = None
    # Gradient steps per round (the whole demo set so far, from the previous round's weights).
    steps_per_round: int = 400
    # Evaluation protocol: episodes per task, vectorised envs per task, first initial-state seed.
    eval_episodes: int = 10
    eval_batch_size: int = 10
    eval_seed: int = 1_000_000
    # Episodes per task of each evaluation that the strategies reading one (lowest_success, amf_eval)
    # may read: its first ones, from eval_seed (unset: all). What a team with a robot can afford to
    # evaluate before each round; every run still evaluates eval_episodes for its own report.
    selection_eval_episodes: int | None = None
    # Learning progress (lerobot_amf/selection/progress.py): a task whose estimated success rose by
    # less than learning_progress_min_gain over its last learning_progress_demos fine-tuning demos
    # gets none this round while another task can take them. Unset: off. Needs a simulator.
    learning_progress_demos: int | None = None
    learning_progress_min_gain: float = 0.1
    # Episodes per task of the last round's evaluation (unset: eval_episodes): a tighter final
    # interval without paying for it every round; the seeds start at eval_seed as every round's do.
    final_eval_episodes: int | None = None
    # Normalisation stats: the pretrained checkpoint's | those of the demos trained on (refitted each
    # round) | the hub source's whole dataset (its meta/stats.json, fixed for the run: for a base
    # pretrained on another robot, e.g. lerobot/smolvla_base on LIBERO, as lerobot-train does).
    normalization: str = "pretrained"
    # Which weights fine-tuning changes (ISOLATION_MODES above). lora/head: base weights frozen,
    # one adapter / head copy per partition, a routing policy picks it by task at inference;
    # LoRA settings are LeRobot's --peft.r / --peft.target_modules.
    isolation: str = "shared"
    # lora/head: per_task | per_suite | clustered | all (one shared adapter) | path to a JSON map.
    partitions: str = "per_task"
    n_partitions: int = 2  # clustered: k of k-means over the pretrained policy's task embeddings
    head_module: str | None = None  # head: the module copied per partition (default per family)
    # shared_replay: share of each batch drawn from the replay dataset (default: the embedded
    # default's pretraining demos; otherwise name a LeRobot dataset).
    replay_fraction: float = 0.5
    replay_repo_id: str | None = None
    replay_root: str | None = None
    # lora/head: a single plain model exported each round next to the routed one and evaluated
    # too: merge (base + sum of partition deltas) | distill (merge, then imitate the routed
    # policy for export_steps) | none.
    export: str = "merge"
    export_steps: int = 300
    # Push the final checkpoint, ledger, report, plots and model card to the Hub at the end of the
    # run (one commit to amf.repo_id; the token comes from HF_TOKEN or `hf auth login` only).
    push_to_hub: bool = False
    repo_id: str | None = None
    private: bool = False
    selection: AMFSelectionConfig = field(default_factory=AMFSelectionConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def episodes_in_round(self, r: int, n_rounds: int) -> int:
        """Evaluation episodes per task after round ``r`` of ``n_rounds`` (the last may have more)."""
        last = r == n_rounds - 1 and self.final_eval_episodes is not None
        return self.final_eval_episodes if last else self.eval_episodes

    def total_budget(self) -> int:
        return self.budget if self.budget is not None else self.rounds * self.demos_per_round

    def validate(self) -> None:
        """One-line errors naming the bad value and the allowed ones."""
        _check_choice("amf.strategy", self.strategy, STRATEGY_NAMES)
        _check_choice("amf.source", self.source, SOURCES)
        if self.source == "hub" and not self.source_repo_id:
            raise AMFInputError("amf.source=hub needs --amf.source_repo_id (a LeRobot dataset, e.g. lerobot/libero).")
        _check_choice("amf.isolation", self.isolation, ISOLATION_MODES)
        _check_choice("amf.normalization", self.normalization, NORMALIZATION_SOURCES)
        if self.rounds < 1:
            raise AMFInputError(f"amf.rounds={self.rounds}: must be at least 1.")
        if self.demos_per_round < 1:
            raise AMFInputError(f"amf.demos_per_round={self.demos_per_round}: must be at least 1.")
        if self.total_budget() < self.demos_per_round:
            raise AMFInputError(
                f"amf.budget={self.total_budget()} is smaller than one round "
                f"(amf.demos_per_round={self.demos_per_round})."
            )
        if self.eval_episodes < 1 or self.eval_batch_size < 1:
            raise AMFInputError("amf.eval_episodes and amf.eval_batch_size must be at least 1.")
        if self.request_min_frames < 1:
            raise AMFInputError(f"amf.request_min_frames={self.request_min_frames}: must be at least 1.")
        if self.selection_eval_episodes is not None and not 1 <= self.selection_eval_episodes <= self.eval_episodes:
            raise AMFInputError(f"amf.selection_eval_episodes={self.selection_eval_episodes}: must be between 1 and "
                                f"amf.eval_episodes={self.eval_episodes} (a strategy reads the episodes evaluated), "
                                "or unset (all of them).")
        if self.learning_progress_demos is not None and self.learning_progress_demos < 1:
            raise AMFInputError(f"amf.learning_progress_demos={self.learning_progress_demos}: must be at least 1 "
                                "(or unset: off).")
        if not 0.0 <= self.learning_progress_min_gain <= 1.0:
            raise AMFInputError(f"amf.learning_progress_min_gain={self.learning_progress_min_gain}: must be in [0, 1] "
                                "(a gain in success rate).")
        if self.final_eval_episodes is not None and self.final_eval_episodes < 1:
            raise AMFInputError(f"amf.final_eval_episodes={self.final_eval_episodes}: must be at least 1 "
                                "(or unset: amf.eval_episodes).")
        _check_choice("amf.export", self.export, EXPORTS)
        if not 0.0 <= self.replay_fraction < 1.0:
            raise AMFInputError(f"amf.replay_fraction={self.replay_fraction}: must be in [0, 1).")
        if self.isolation in ROUTED_MODES and self.normalization == "demos":
            raise AMFInputError(f"amf.isolation={self.isolation} keeps the base weights frozen, so its normalisation "
                                "stays fixed for the run: use amf.normalization=pretrained or source.")
        if self.normalization == "source" and self.source != "hub":
            raise AMFInputError(f"amf.normalization=source takes the stats of the hub source's dataset; "
                                f"amf.source={self.source} has none: use pretrained or demos.")
        self.selection.validate()
        if self.push_to_hub and not self.repo_id:
            raise AMFInputError("amf.push_to_hub=true needs --amf.repo_id (namespace/name on the Hub).")
        if self.eval_seed > MAX_EVAL_SEED:  # (a negative one: below)
            raise AMFInputError(f"amf.eval_seed={self.eval_seed}: must be at most {MAX_EVAL_SEED} (seeds are 32-bit).")
        for name in ("steps_per_round", "eval_seed", "export_steps", "action_noise"):
            if getattr(self, name) < 0:  # a negative seed reached gymnasium only after the run directory existed
                raise AMFInputError(f"amf.{name}={getattr(self, name)}: must be >= 0.")
        for name in ("n_partitions", "source_demos_per_task", "source_max_bytes_per_round"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise AMFInputError(f"amf.{name}={getattr(self, name)}: must be at least 1.")


def _check_choice(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise AMFInputError(f"Unknown {name}={value!r}. Allowed: {', '.join(allowed)}.")


@dataclass
class AMFTrainPipelineConfig(TrainPipelineConfig):
    dataset: DatasetConfig = field(default_factory=lambda: DatasetConfig(repo_id="local/amf_demos"))
    amf: AMFConfig = field(default_factory=AMFConfig)

    def validate(self) -> None:
        self.amf.validate()
        check_seed("--seed", self.seed, may_be_unset=True)
        if self.output_dir is not None and Path(self.output_dir).exists() and not Path(self.output_dir).is_dir():
            raise AMFInputError(f"--output_dir={self.output_dir} is a file, not a run directory: choose a new "
                                "--output_dir (or --resume=true with a run's directory).")
        check_flags_not_carried_out(self)
        check_policy_path()
        with recipe_policy_settings(self):
            self._validate()

    def _validate(self) -> None:
        if not self.resume:
            return super().validate()
        # Resuming an AMF run means continuing from its ledger in output_dir (LeRobot's own
        # resume expects a checkpoint --config_path instead).
        from lerobot_amf.ledger import LEDGER_FILENAME

        if self.output_dir is None or not (Path(self.output_dir) / LEDGER_FILENAME).exists():
            raise AMFInputError(f"--resume=true but no {LEDGER_FILENAME} in --output_dir={self.output_dir}.")
        output_dir, self.output_dir, self.resume = self.output_dir, None, False
        try:
            super().validate()
        finally:
            self.output_dir, self.resume = Path(output_dir), True


# lerobot-train flags (LeRobot 0.6.1's TrainPipelineConfig) that lerobot-amf-train parses but does not
# carry out: (where the value lives, the value that means "off", what the user should know).
NOT_CARRIED_OUT = (
    ("job.target", lambda c: c.job.target, (None, "local"), "it runs on this machine, not on HF Jobs"),
    ("reward_model", lambda c: c.reward_model, (None,), "it fine-tunes policies, not reward models"),
    ("sample_weighting", lambda c: c.sample_weighting, (None,),
     "amf chooses which demos to pull; it does not weight the training loss"),
    ("eval_steps", lambda c: c.eval_steps, (0,), "each round is evaluated in simulation (--amf.eval_episodes)"),
    ("max_eval_samples", lambda c: c.max_eval_samples, (0,), "each round is evaluated in simulation"),
    ("dataset.eval_split", lambda c: c.dataset.eval_split, (0.0, 0), "the run trains on every demo it pulls"),
    ("dataset.streaming", lambda c: c.dataset.streaming, (False,), "the run's demos are a local dataset"),
    ("save_checkpoint_to_hub", lambda c: c.save_checkpoint_to_hub, (False,),
     "use --amf.push_to_hub=true (the run's checkpoints with their model card)"),
)


def check_flags_not_carried_out(cfg) -> None:
    """A ``lerobot-train`` flag this tool would silently ignore is refused in one line: e.g.
    ``--job.target=a10g-small`` must not run on this machine instead of where it was sent."""
    for flag, value_of, off, why in NOT_CARRIED_OUT:
        value = value_of(cfg)
        if value not in off:
            allowed = " or ".join("unset" if o is None else repr(o) for o in off)
            raise AMFInputError(f"--{flag}={value!r}: not carried out by lerobot-amf-train: {why}. Allowed: {allowed}.")


def check_policy_path() -> None:
    """``--policy.path`` must be a checkpoint directory (with config.json) or a Hub repo id, and the
    checkpoint passes ``trust.check_checkpoint`` before LeRobot reads its config (a Hub repo: the
    snapshot of its checkpoint files, which LeRobot then reads from the same cache)."""
    from lerobot.configs import parser

    from lerobot_amf.trust import local_checkpoint, user_policy_values

    path = parser.get_path_arg("policy")
    if not path:
        return
    user = user_policy_values(parser.get_cli_overrides("policy"))
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise AMFInputError(f"--policy.path={path}: the directory has no config.json (not a LeRobot checkpoint; "
                                "point at its pretrained_model/ folder).")
        local_checkpoint(str(local), f"--policy.path={path}", user)
        return
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(str(path))
    except HFValidationError:
        raise AMFInputError(f"--policy.path={path}: no checkpoint there: not a directory with config.json, "
                            "and not a Hub repo id (namespace/name).") from None
    if constants.HF_HUB_OFFLINE and not isinstance(try_to_load_from_cache(str(path), "config.json"), str):
        raise AMFInputError(missing_policy_path(path, "offline, and not in the Hub cache"))
    local_checkpoint(str(path), f"--policy.path={path}", user)


def check_new_output_dir(path) -> None:
    """A command that writes a report into ``--output_dir`` writes it into a new (or empty) folder,
    as ``lerobot-train`` does: never into a folder that already holds something (``--output_dir=/``,
    a home folder, another run)."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise AMFInputError(f"--output_dir={path} already exists and is not an empty folder: choose a new folder "
                            "for the report.")


def missing_policy_path(path: str, why: str) -> str:
    """The line for a ``--policy.path`` shaped like a repo id that is no folder here: LeRobot reads
    it as a Hub repo, so a relative local path seen from another folder would end as a Hub error."""
    return (f"--policy.path={path}: no folder {path!r} here (seen from {Path.cwd()}), and no Hub repo {path} "
            f"({' '.join(why.split())}): give the checkpoint folder's path, or an existing repo id.")


@contextlib.contextmanager
def recipe_policy_settings(cfg):
    """A recipe's ``policy`` section still applies under ``--policy.path``.

    LeRobot 0.6.1 (``TrainPipelineConfig._resolve_pretrained_from_cli``) loads a ``--policy.path``
    checkpoint's config with the command line's ``--policy.*`` flags, plus the file's policy section
    only when the file itself names ``policy.path`` (and then without its lists): with the documented
    ``--policy.path`` on the command line, the ``--config_path`` file's policy settings
    (``push_to_hub: false``, the learning rate, the input features, ...) are dropped. Here they are put on the command line
    LeRobot reads, before the user's own flags, which win. Mappings (``input_features``, ...) are
    set after loading instead: as a flag, draccus would merge them into the checkpoint's (keeping
    its cameras next to the recipe's).
    """
    from lerobot.configs import parser

    config_path = parser.parse_arg("config_path")
    if not parser.get_path_arg("policy") or not config_path or not Path(config_path).is_file():
        yield
        return
    with open(config_path) as f:
        section = (draccus.cfgparsing.load_config(f, file=config_path) or {}).get("policy") or {}
    section = {k: v for k, v in section.items() if k not in ("type", "path")}
    mappings = {k: v for k, v in section.items() if isinstance(v, dict) and parser.parse_arg(f"policy.{k}") is None}
    flags = [f"--policy.{key}={value if isinstance(value, str) else json.dumps(value)}"
             for key, value in section.items() if not isinstance(value, dict)]
    argv = sys.argv
    sys.argv = [argv[0], *flags, *argv[1:]]
    try:
        yield
    finally:
        sys.argv = argv
    hints = typing.get_type_hints(type(cfg.policy))
    for key, value in mappings.items():
        setattr(cfg.policy, key, draccus.decode(hints[key], value))


def wrap():
    """LeRobot 0.6.1's ``parser.wrap``, with a config error left to us: 0.6.1 catches draccus'
    ``DecodingError`` (an unknown key, a wrong type, in a recipe or a flag) inside ``wrap``, prints
    it and exits 1, so our one line naming the allowed keys (exit 2) would never run. The steps are
    ``parser.wrap``'s own (plugins, scoped ``--help``, ``.path`` fields, ``--config_path``), through
    its public helpers; a config passed in directly is used as is."""

    def outer(fn):
        argtype = next(iter(typing.get_type_hints(fn).values()))

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            if args and type(args[0]) is argtype:
                return fn(*args, **kwargs)
            return fn(parse_config(argtype, sys.argv[1:]), *args, **kwargs)

        return inner

    return outer


def parse_config(argtype: type, cli_args: list[str]):
    """``cli_args`` as ``argtype`` the way ``parser.wrap`` reads them, or ``AMFInputError``."""
    from lerobot.configs import parser
    from lerobot.utils.utils import has_method

    for plugin_arg, plugin_path in parser.parse_plugin_args(parser.PLUGIN_DISCOVERY_SUFFIX, cli_args).items():
        parser.load_plugin(plugin_path)
        cli_args = parser.filter_arg(plugin_arg, cli_args)
    if "--help" in cli_args or "-h" in cli_args:
        parser.print_scoped_help(argtype, cli_args)
        sys.exit(0)
    config_path = parser.parse_arg("config_path", cli_args)
    if config_path:  # a recipe is copied into the ledger and every checkpoint's config: bounded first
        from lerobot_amf.trust import MAX_SETTINGS_BYTES, read_bounded_text

        if not Path(config_path).exists():
            raise AMFInputError(f"--config_path={config_path}: no such file.")
        read_bounded_text(Path(config_path), f"--config_path={config_path}", MAX_SETTINGS_BYTES)
    try:
        if has_method(argtype, "__get_path_fields__"):
            path_fields = argtype.__get_path_fields__()
            cli_args = parser.filter_path_args(path_fields, cli_args)
            if config_path:
                config_path = parser.extract_path_fields_from_config(config_path, path_fields)
        if config_path:
            cli_args = parser.filter_arg("config_path", cli_args)
        return draccus.parse(config_class=argtype, config_path=config_path, args=cli_args, exit_on_error=False)
    except draccus.utils.ParsingError as err:
        raise AMFInputError(explain_config_error(err, argtype)) from None
    except draccus.utils.DraccusException as err:  # a flag no field has: one line, not argparse's usage
        raise AMFInputError(explain_unknown_flags(str(err), argtype)) from None
    except argparse.ArgumentError as err:  # e.g. both --policy.path and --policy.type, a choice not offered
        raise AMFInputError(str(err)) from None


def explain_config_error(err: Exception, config_class: type) -> str:
    """draccus' message, plus the allowed keys when a recipe or flag names an unknown one."""
    message = str(getattr(err, "message", err))
    path = list(getattr(err, "key_path", []))
    where = f"`{'.'.join(path)}`: " if path else ""
    if "are not valid for" not in message:
        return where + message
    return where + message + allowed_keys(config_class, path)


def explain_unknown_flags(message: str, config_class: type) -> str:
    """draccus' "unrecognized arguments: --a.b=1 ...", with the keys allowed where the first one is."""
    flags = message.split(":", 1)[-1].split()
    first = flags[0].lstrip("-").split("=", 1)[0] if flags else ""
    return f"{message}{allowed_keys(config_class, first.split('.')[:-1])}"


def allowed_keys(config_class: type, path: list[str]) -> str:
    """". Allowed: a, b, ..." for the config section at ``path`` (its dataclass fields), or ""."""
    section = config_class
    for name in path:
        hint = typing.get_type_hints(section).get(name) if dataclasses.is_dataclass(section) else None
        options = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
        section = options[0] if len(options) == 1 else None  # X | None is X; a choice type has no one list
    if not dataclasses.is_dataclass(section):
        return ""
    allowed = sorted(f.name for f in dataclasses.fields(section) if f.init)
    return f". Allowed{' in ' + '.'.join(path) if path else ''}: {', '.join(allowed)}."


def cli_main(prog: str, entry) -> None:
    """A CLI's start (LeRobot's logging and plugins) and its answer to bad
    input: ``entry()`` raising ``AMFInputError`` is one line ``<prog>: error: ...``, exit 2, nothing written."""
    from lerobot.utils.import_utils import register_third_party_plugins
    from lerobot.utils.utils import init_logging

    init_logging()
    register_third_party_plugins()
    try:
        entry()
    except AMFInputError as err:
        print(f"{prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        sys.exit(2)
