"""Files from others (checkpoints, routing maps) are hostile until checked: nothing they name is
imported or executed, nothing they name is read outside their folder.

``guard_processor_loading`` works around LeRobot 0.6.1's processor loader
(``DataProcessorPipeline._resolve_step_class``, unchanged since 0.4.4, reached by ``make_pre_post_processors`` and
``PolicyProcessorPipeline.from_pretrained`` for every ``policy_preprocessor.json`` /
``policy_postprocessor.json``) imports whatever module a step's ``"class"`` names and calls it
with the file's arguments, so a checkpoint from the Hub could run any code while it loads (a
step ``{"class": "os.system", "config": {"command": ...}}`` does). With the guard in place, a
step resolves only through a name in LeRobot's ``ProcessorStepRegistry`` or through a
``"class"`` path inside ``lerobot`` or this package that names a ``ProcessorStep`` subclass, and
its ``state_file`` must be a plain file name in the checkpoint's folder. Anything else is one
line naming the step, before anything it names is imported. Installed when ``lerobot_amf`` is
imported, so every loading path (ours, and stock ``lerobot-eval`` with
``--env.discover_packages_path=lerobot_amf``) goes through it.

``check_plain_name`` is the rule for names a file from others uses as a path part (partition
names in ``routing.json``); ``check_inside`` the rule for relative paths it names (a dataset's
``data_path`` / ``video_path`` templates in ``meta/info.json``); ``check_finite`` the rule for the
numbers it holds (demo frames, normalisation statistics): a NaN there trains an all-NaN checkpoint
with exit 0, or evaluates as a quiet 0 %.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from lerobot_amf.errors import AMFInputError

# What a pushed file names instead of a path of the machine that pushed it (``<local>/<name>``).
LOCAL_PATH_PLACEHOLDER = "<local>"
# Packages whose classes a processor file may name by import path: code already installed here.
TRUSTED_STEP_PACKAGES = ("lerobot", "lerobot_amf")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


class UntrustedFileError(AMFInputError):
    """A file from someone else names code to run or a path outside its folder."""


def check_finite(values: dict, what: str) -> None:
    """Every floating-point array or tensor in ``values`` (name -> array) is finite, else one line
    naming the first name that is not and how many of its values are not."""
    import numpy as np
    import torch

    for name, value in values.items():
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise UntrustedFileError(f"{what}: {name!r} holds {bad} non-finite value(s) (NaN or inf) of {array.size}: "
                                     "refused, nothing was trained on it or saved.")


def check_finite_processors(processors, what: str) -> None:
    """The state of every step of these LeRobot processor pipelines (normalisation statistics) is finite."""
    for processor in processors:
        for step in getattr(processor, "steps", []):
            check_finite(step.state_dict(), f"{what}, processor step {type(step).__name__}")


def check_plain_name(name: object, what: str) -> str:
    """``name`` if it is a plain file-name part (letters, digits, ``-``, ``_``, inner dots; no
    separators, no ``..``, not starting with a dot), else one line naming it."""
    if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name) or ".." in name:
        raise UntrustedFileError(f"{what} {name!r} is not a plain name (letters, digits, '-', '_' and inner "
                                 "dots only; no path separators or '..'): refused.")
    return name


def check_inside(folder: Path, relative: object, what: str) -> Path:
    """``folder / relative`` if ``relative`` is a relative path that stays inside ``folder`` (no
    absolute path, drive, ``~`` or ``..``; symlinks resolved), else one line naming it."""
    text = relative if isinstance(relative, str) else None
    parts = PurePosixPath(text).parts if text else ()
    outside = (not text or "\0" in text or PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute()
               or PureWindowsPath(text).drive or text.startswith("~") or ".." in parts
               or ".." in PureWindowsPath(text).parts)
    path = Path(folder) / text if not outside else None
    if path is not None:
        try:
            path.resolve().relative_to(Path(folder).resolve())
        except ValueError:
            outside = True
    if outside:
        raise UntrustedFileError(f"{what} {relative!r} is not a relative path inside {Path(folder).name}/: refused "
                                 "(nothing outside the folder is read).")
    return path


def check_path_templates(info: dict, root: Path, label: str) -> None:
    """A dataset's ``meta/info.json`` ``data_path`` / ``video_path`` make paths inside its copy ``root``:
    checked before any episode file is read."""
    for key in ("data_path", "video_path"):
        template = info.get(key)
        if template is not None:
            check_inside(root, template, f"Dataset {label}'s meta/info.json {key}")


def check_processor_step(step: dict) -> None:
    """Refuse a processor-file step that names anything but a processor step, or a state file
    outside its folder; import nothing it names unless it is inside a trusted package."""
    from lerobot.processor.pipeline import ProcessorStep, ProcessorStepRegistry

    named = step.get("registry_name", step.get("class"))
    if "state_file" in step:
        check_plain_name(step["state_file"], f"The state file of processor step {named!r}")
    if "registry_name" in step:
        if step["registry_name"] not in ProcessorStepRegistry.list():
            raise UntrustedFileError(f"A processor step names {named!r}, which is no registered LeRobot processor "
                                     "step: refused (nothing was imported).")
        return
    module, _, name = named.rpartition(".") if isinstance(named, str) else ("", "", "")
    if not module or module.split(".")[0] not in TRUSTED_STEP_PACKAGES:
        raise UntrustedFileError(f"A processor step names {named!r}: a processor file may name only registered "
                                 f"LeRobot processor steps or classes of {' and '.join(TRUSTED_STEP_PACKAGES)}; "
                                 "refused (nothing was imported).")
    try:
        target = getattr(importlib.import_module(module), name, None)
    except ImportError:
        target = None
    if not (isinstance(target, type) and issubclass(target, ProcessorStep)):
        raise UntrustedFileError(f"A processor step names {named!r}, which is not a LeRobot processor step: refused.")


def guard_processor_loading() -> None:
    """Put ``check_processor_step`` in front of LeRobot 0.6.1's step resolution (idempotent)."""
    from lerobot.processor.pipeline import DataProcessorPipeline

    original = DataProcessorPipeline.__dict__["_resolve_step_class"].__func__
    if getattr(original, "guards_processor_steps", False):
        return

    def guarded(cls, step_entry):
        check_processor_step(step_entry)
        return original(cls, step_entry)

    guarded.guards_processor_steps = True
    DataProcessorPipeline._resolve_step_class = classmethod(guarded)
