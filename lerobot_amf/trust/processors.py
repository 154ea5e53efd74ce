"""A checkpoint's processor files may name only the steps LeRobot's own policies save, each with a
config that names nothing to load from elsewhere and no size beyond reason.

Works around LeRobot 0.6.1's processor loader: ``DataProcessorPipeline._resolve_step_class``
(unchanged since 0.4.4, reached by ``make_pre_post_processors`` and
``PolicyProcessorPipeline.from_pretrained`` for every ``policy_preprocessor.json`` /
``policy_postprocessor.json``) imports whatever module a step's ``"class"`` names and calls it
with the file's arguments, so a checkpoint from the Hub could run any code while it loads (a step
``{"class": "os.system", "config": {"command": ...}}`` does). Being registered is not enough
either: LeRobot's own ``ActionTokenizerProcessorStep`` (``processor/tokenizer_processor.py``)
loads ``AutoProcessor.from_pretrained(<a name from the file>, trust_remote_code=True)``, which
imports the Python file that repo's ``auto_map`` names.

So a step resolves only if its registry name (or its ``"class"`` path) is one of ``ALLOWED_STEPS``
— the steps the pre/post-processors of act, diffusion, SmolVLA, pi0 and pi05 are made of, each
read for what its config can make it load — and every config key is one that step takes, with a
value its rule allows; its ``state_file`` is a plain file name. Anything else is one line naming
the step, before anything it names is imported. ``guard_processor_loading`` is installed when
``lerobot_amf`` is imported, so every loading path (ours, and stock ``lerobot-eval`` with
``--env.discover_packages_path=lerobot_amf``) goes through it; ``check_processor_files`` checks a
checkpoint folder's processor files before any loader reads them (with the folder known, the state
files too).
"""

from __future__ import annotations

import contextlib
import math
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Callable

from lerobot_amf.trust.files import (UntrustedFileError, check_entry, check_plain_name, names_no_folder_outside,
                                     read_json)

PROCESSOR_FILES = ("policy_preprocessor.json", "policy_postprocessor.json")
MAX_STEPS = 64
MAX_TOKENS = 8192  # SmolVLA's tokenizer_max_length is 48, pi0 / pi05's 48 / 200
MAX_STATE_DIM = 4096  # pi05 pads the state to 32
MAX_FEATURE_VALUES = 2**26  # one feature's shape: a 3 x 2048 x 2048 image is 12.6 M
_DEVICE = re.compile(r"(cpu|cuda|mps|xpu|npu)(:\d{1,3})?")
_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
_FEATURE_TYPES = ("STATE", "VISUAL", "ENV", "ACTION", "REWARD", "LANGUAGE")
_NORM_MODES = ("MIN_MAX", "MEAN_STD", "IDENTITY", "QUANTILES", "QUANTILE10")


def _any_bool(value) -> bool:
    return isinstance(value, bool)


def _names(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _name_map(value) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _bounded_int(high: int) -> Callable[[object], bool]:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= high


def _one_of(*allowed) -> Callable[[object], bool]:
    return lambda value: value in allowed


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _features(value) -> bool:
    """``{"observation.state": {"type": "STATE", "shape": [8]}, ...}``, each shape of bounded size."""
    if not isinstance(value, dict):
        return False
    for spec in value.values():
        shape = spec.get("shape") if isinstance(spec, dict) else None
        if (not isinstance(spec, dict) or spec.get("type") not in _FEATURE_TYPES or not isinstance(shape, list)
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_FEATURE_VALUES
                           for d in shape)
                or math.prod(shape) > MAX_FEATURE_VALUES):
            return False
    return True


def _norm_map(value) -> bool:
    return isinstance(value, dict) and all(k in ("VISUAL", *_FEATURE_TYPES) and v in _NORM_MODES
                                           for k, v in value.items())


def _loadable_name(value, *folders: Path | None) -> bool:
    """A tokenizer: a Hub repo id ``namespace/name`` that is no folder here (downloaded by name, loaded
    without remote code), or a folder inside the checkpoint being loaded (``folders``). A user whose
    tokenizer is a local folder elsewhere passes it on the command line (``--policy.*``)."""
    return names_no_folder_outside(value, *folders, namespaced=True)


_NORMALISER = {"eps": _finite_number, "features": _features, "norm_map": _norm_map,
               "normalize_observation_keys": _names}
# registry name -> (its class, {config key: rule}). A key not listed is refused; so is any other step.
ALLOWED_STEPS: dict[str, tuple[str, dict[str, Callable[[object], bool]]]] = {
    "rename_observations_processor": ("lerobot.processor.rename_processor.RenameObservationsProcessorStep",
                                      {"rename_map": _name_map}),
    "to_batch_processor": ("lerobot.processor.batch_processor.AddBatchDimensionProcessorStep", {}),
    "device_processor": ("lerobot.processor.device_processor.DeviceProcessorStep",
                         {"device": lambda v: isinstance(v, str) and bool(_DEVICE.fullmatch(v)),
                          "float_dtype": _one_of(None, *_FLOAT_DTYPES)}),
    "normalizer_processor": ("lerobot.processor.normalize_processor.NormalizerProcessorStep", _NORMALISER),
    "unnormalizer_processor": ("lerobot.processor.normalize_processor.UnnormalizerProcessorStep", _NORMALISER),
    "smolvla_new_line_processor": ("lerobot.processor.newline_task_processor.NewLineTaskProcessorStep", {}),
    "pi0_new_line_processor": ("lerobot.policies.pi0.processor_pi0.Pi0NewLineProcessor", {}),
    "pi05_prepare_state_tokenizer_processor_step": (
        "lerobot.policies.pi05.processor_pi05.Pi05PrepareStateTokenizerProcessorStep",
        {"max_state_dim": _bounded_int(MAX_STATE_DIM), "task_key": _one_of("task")}),
    "tokenizer_processor": ("lerobot.processor.tokenizer_processor.TokenizerProcessorStep",
                            {"tokenizer_name": _loadable_name, "max_length": _bounded_int(MAX_TOKENS),
                             "task_key": _one_of("task"), "padding_side": _one_of("left", "right"),
                             "padding": _one_of("max_length", "longest", "do_not_pad"), "truncation": _any_bool}),
    "relative_actions_processor": ("lerobot.processor.relative_action_processor.RelativeActionsProcessorStep",
                                   {"enabled": _any_bool, "exclude_joints": _names,
                                    "action_names": lambda v: v is None or _names(v)}),
    "absolute_actions_processor": ("lerobot.processor.relative_action_processor.AbsoluteActionsProcessorStep",
                                   {"enabled": _any_bool}),
}
_BY_CLASS = {path: name for name, (path, _) in ALLOWED_STEPS.items()}


def check_processor_step(step: object, folder: Path | None = None, trusted: dict | None = None) -> None:
    """Refuse a processor-file step that is not an allowed step with an allowed config, or whose
    state file is not a plain name (a regular file in ``folder``, when known). ``trusted``: config
    values the user gave on the command line (a local tokenizer folder of theirs), allowed as given."""
    if not isinstance(step, dict):
        raise UntrustedFileError(f"A processor step is {type(step).__name__}, not a JSON object: refused.")
    named = step.get("registry_name", step.get("class"))
    if "registry_name" in step:
        name = named if named in ALLOWED_STEPS else None
    else:
        name = _BY_CLASS.get(named) if isinstance(named, str) else None
    if name is None:
        raise UntrustedFileError(
            f"A processor step names {named!r}, which is not one of the steps lerobot-amf loads (those of LeRobot's "
            f"act, diffusion, smolvla, pi0 and pi05 checkpoints: {', '.join(ALLOWED_STEPS)}); refused "
            "(nothing was imported).")
    rules = ALLOWED_STEPS[name][1]
    trusted = {k: v for k, v in (trusted or {}).items() if v is not None}
    config = step.get("config", {})
    if not isinstance(config, dict):
        raise UntrustedFileError(f"Processor step {name!r}: its config is not a JSON object: refused.")
    for key, value in config.items():
        if key not in rules:
            raise UntrustedFileError(f"Processor step {name!r} has config key {key!r}, which it does not take here. "
                                     f"Allowed: {', '.join(rules) or 'none'}; refused.")
        if trusted.get(key) == value:
            continue
        rule = rules[key]
        if not (rule(value, folder, *_ALSO_INSIDE.get()) if rule is _loadable_name else rule(value)):
            raise UntrustedFileError(f"Processor step {name!r}: {key}={_short(value)} is not allowed ({_why(key)}); "
                                     "refused.")
    if "state_file" in step:
        check_plain_name(step["state_file"], f"The state file of processor step {named!r}")
        if folder is not None:
            check_entry(Path(folder) / step["state_file"], folder, f"The state file of processor step {named!r}")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _why(key: str) -> str:
    return {"tokenizer_name": "a Hub repo id namespace/name or a folder inside the checkpoint, never a path "
                              "elsewhere: pass a local tokenizer folder of yours with --policy.vlm_model_name",
            "max_length": f"an integer in 1..{MAX_TOKENS}", "max_state_dim": f"an integer in 1..{MAX_STATE_DIM}",
            "features": f"feature types {', '.join(_FEATURE_TYPES)} with shapes of at most {MAX_FEATURE_VALUES:,} values",
            "device": "cpu, cuda, mps, xpu or npu, with an optional :index"}.get(key, "not a value this key takes")


def check_processor_files(folder: Path, trusted: dict | None = None) -> None:
    """Every processor file in a checkpoint ``folder``: bounded JSON, a list of allowed steps.
    ``trusted``: config values the user named (default: the tokenizer of ``user_tokenizer``)."""
    if trusted is None:
        trusted = {"tokenizer_name": _USER_TOKENIZER.get()}
    for filename in PROCESSOR_FILES:
        path = Path(folder) / filename
        if not path.exists() and not path.is_symlink():
            continue
        config = read_json(path, f"Processor file of {Path(folder).name}")
        steps = config.get("steps") if isinstance(config, dict) else None
        if not isinstance(steps, list) or len(steps) > MAX_STEPS:
            raise UntrustedFileError(f"{Path(folder).name}/{filename}: 'steps' is not a list of at most {MAX_STEPS} "
                                     "steps: refused.")
        for step in steps:
            check_processor_step(step, folder, trusted)


def never_prompt_for_remote_code() -> None:
    """transformers 5 asks on stdin whether to run a repo's custom code when ``trust_remote_code`` is
    unset (``dynamic_module_utils.resolve_trust_remote_code``): a "y" there runs a checkpoint's
    tokenizer code. With its timeout at 0 it refuses at once: remote code is never run."""
    from transformers import dynamic_module_utils

    dynamic_module_utils.TIME_OUT_REMOTE_CODE = 0


def guard_processor_loading() -> None:
    """Put the checks in front of LeRobot 0.6.1's processor loading (idempotent): a local folder's
    processor files are checked whole (``check_processor_files``, state files included) before
    ``DataProcessorPipeline.from_pretrained`` reads them, and every step again as it resolves
    (``check_processor_step``; for a Hub repo, the only check)."""
    from lerobot.processor.pipeline import DataProcessorPipeline

    resolve = DataProcessorPipeline.__dict__["_resolve_step_class"].__func__
    if getattr(resolve, "guards_processor_steps", False):
        return
    load = DataProcessorPipeline.__dict__["from_pretrained"].__func__

    def guarded_resolve(cls, step_entry):
        check_processor_step(step_entry, _LOADING.get(), {"tokenizer_name": _USER_TOKENIZER.get()})
        return resolve(cls, step_entry)

    def guarded_load(cls, pretrained_model_name_or_path, config_filename, *args, **kwargs):
        path = Path(str(pretrained_model_name_or_path)).expanduser()
        folder = path if path.is_dir() else None
        if folder is not None:
            check_processor_files(folder, {"tokenizer_name": _USER_TOKENIZER.get()})
        never_prompt_for_remote_code()
        token = _LOADING.set(folder)
        try:
            return load(cls, pretrained_model_name_or_path, config_filename, *args, **kwargs)
        except ValueError as err:
            if "trust_remote_code" not in str(err):
                raise
            raise UntrustedFileError(f"A processor step of {pretrained_model_name_or_path} loads a tokenizer with custom "
                                     "code: refused (remote code is never run).") from None
        finally:
            _LOADING.reset(token)

    guarded_resolve.guards_processor_steps = True
    DataProcessorPipeline._resolve_step_class = classmethod(guarded_resolve)
    DataProcessorPipeline.from_pretrained = classmethod(guarded_load)


# The folder whose processor files are being loaded (a step's local artifacts must lie inside it),
# and a tokenizer folder the user named on the command line (``--policy.vlm_model_name``).
_LOADING: ContextVar[Path | None] = ContextVar("processor_folder", default=None)
_USER_TOKENIZER: ContextVar[str | None] = ContextVar("user_tokenizer", default=None)


_ALSO_INSIDE: ContextVar[tuple[Path, ...]] = ContextVar("also_inside", default=())


@contextlib.contextmanager
def artifacts_inside(*folders: Path):
    """While loading, a processor's local artifacts may also lie inside these (checked) folders: a
    routed model's processors name the tokenizer of its base checkpoint."""
    token = _ALSO_INSIDE.set(tuple(Path(f) for f in folders))
    try:
        yield
    finally:
        _ALSO_INSIDE.reset(token)


@contextlib.contextmanager
def user_tokenizer(name: str | None):
    """While loading, a processor's ``tokenizer_name`` may be ``name``: the user's own choice."""
    token = _USER_TOKENIZER.set(name)
    try:
        yield
    finally:
        _USER_TOKENIZER.reset(token)
