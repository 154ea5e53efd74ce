"""The rules for paths and files a file from others names or holds.

A name it uses as a path part is a plain name (``check_plain_name``); a relative path it names
stays inside its folder (``check_inside``); a folder from others holds only regular files and
folders, and a link in it points inside it (``check_tree``: a link is where a checkpoint would
make us read ``~/.ssh`` as its weights, and a FIFO in place of a state file blocks the reader
forever); and a JSON file from others is read bounded (``read_json``: a 100 MB recipe or JSON
nested 100,000 deep is one line, not a copy in every checkpoint or a RecursionError).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path, PurePosixPath, PureWindowsPath

from lerobot_amf.errors import AMFInputError

# What a pushed file names instead of a path of the machine that pushed it (``<local>/<name>``).
LOCAL_PATH_PLACEHOLDER = "<local>"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
# Bounds on JSON from others: far above any real LeRobot config / processor file / routing map
# (the largest seen, a LIBERO processor file with its features, is ~10 KB, ~8 deep).
MAX_JSON_BYTES = 16 * 2**20
MAX_JSON_DEPTH = 64
MAX_TREE_ENTRIES = 100_000
# A file a user hands the CLI by path (a recipe, a partition map): copied into the ledger and every
# checkpoint's config, so bounded too (the largest shipped recipe is ~3 KB).
MAX_SETTINGS_BYTES = 2**20


class UntrustedFileError(AMFInputError):
    """A file from someone else names code to run, a path outside its folder, or holds what cannot be used."""


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
    if path is not None and not is_inside(path, folder):
        outside = True
    if outside:
        raise UntrustedFileError(f"{what} {relative!r} is not a relative path inside {Path(folder).name}/: refused "
                                 "(nothing outside the folder is read).")
    return path


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path``, links resolved, is ``folder`` or lies under it (links resolved too)."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
    except ValueError:
        return False
    return True


def names_no_folder_outside(value: object, *folders: Path | None, namespaced: bool = False) -> bool:
    """A name a loader resolves (``from_pretrained``): a file or folder inside one of ``folders``, or
    a Hub repo id (``namespace/name`` when ``namespaced``) that is no file or folder here
    (transformers would read a folder of that name first)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(value, str) or not value:
        return False
    local = Path(value).expanduser()
    if local.exists() or local.is_symlink():
        return any(is_inside(local, f) for f in folders if f is not None)
    if namespaced and value.count("/") != 1:
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def hub_repo_folder(folder: Path) -> Path | None:
    """The Hub cache's ``models--x--y`` / ``datasets--x--y`` folder when ``folder`` is a snapshot in
    it (``…/snapshots/<revision>[/sub]``): its files are links into ``../../blobs``, inside the repo's
    cache folder; None for any other folder."""
    parts = Path(folder).absolute().parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "snapshots" and re.fullmatch(r"(models|datasets|spaces)--.+", parts[i - 1]):
            return Path(*parts[:i])
    return None


def check_tree(folder: Path, what: str) -> None:
    """Everything under ``folder`` is a regular file or a folder, and every link in it resolves to one
    inside it (inside the repo's cache folder for a Hub snapshot); else one line naming the entry.
    Nothing is opened: this runs before any loader reads the folder."""
    folder = Path(folder)
    root = hub_repo_folder(folder) or folder
    seen = 0
    for here, dirs, files in os.walk(folder, followlinks=False):
        for name in [*dirs, *files]:
            seen += 1
            if seen > MAX_TREE_ENTRIES:
                raise UntrustedFileError(f"{what} holds more than {MAX_TREE_ENTRIES:,} entries: refused.")
            check_entry(Path(here) / name, root, what, shown=(Path(here) / name).relative_to(folder).as_posix())


def check_entry(path: Path, root: Path, what: str, shown: str | None = None) -> None:
    """``path`` is a regular file or folder, or a link to one inside ``root`` (inside the repo's cache
    folder when ``root`` is in a Hub snapshot: its files are links to ``../../blobs``)."""
    shown = shown or Path(path).name
    root = hub_repo_folder(root) or root
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        if not is_inside(path, root):
            raise UntrustedFileError(f"{what}: {shown!r} is a link to {os.readlink(path)!r}, outside "
                                     f"{Path(root).name}/: refused (nothing outside the folder is read).")
        try:
            mode = os.stat(path).st_mode
        except OSError:  # dangling, or a loop
            raise UntrustedFileError(f"{what}: {shown!r} is a link that leads nowhere: refused.") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UntrustedFileError(f"{what}: {shown!r} is not a regular file (a FIFO, socket or device would block "
                                 "or feed the reader): refused.")


def read_bounded_text(path: Path, what: str, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> bytes:
    """The bytes of ``path``, read only if it is a regular file of at most ``max_bytes`` whose ``[`` /
    ``{`` nest at most ``max_depth`` deep (JSON, or YAML's flow style); else one line naming the file."""
    path = Path(path)
    check_entry(path, path.parent, what, shown=path.name)
    size = path.stat().st_size
    if size > max_bytes:
        raise UntrustedFileError(f"{what}: {path.name} is {size:,} bytes, over the {max_bytes:,} a file of this kind "
                                 "may hold: refused.")
    text = path.read_bytes()
    brackets = text.count(b"[") + text.count(b"{")  # the usual file has too few to nest deeper: not scanned
    depth = json_depth(text) if brackets > max_depth else 0
    if depth > max_depth:
        raise UntrustedFileError(f"{what}: {path.name} nests {depth} levels deep, over the {max_depth} allowed: "
                                 "refused.")
    return text


def read_json(path: Path, what: str, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH):
    """The JSON value in ``path``, read only as ``read_bounded_text`` allows; else one line naming the
    file and what is wrong."""
    text = read_bounded_text(path, what, max_bytes, max_depth)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise UntrustedFileError(f"{what}: {Path(path).name} is not valid JSON ({str(err).splitlines()[0][:120]}): "
                                 "refused.") from None


def json_depth(text: bytes) -> int:
    """How deep ``[`` / ``{`` nest in JSON text (outside strings), without parsing it: Python's
    parser would recurse once per level."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest
