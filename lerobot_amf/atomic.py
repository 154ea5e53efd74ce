"""Crash-safe writes: a file or directory is seen either as it was or as it is now, never half.

A run is stopped at any instant (SIGKILL, OOM, power loss) and resumed with ``--resume=true``;
so every piece of run state outside the append-only ledger is written as

    write to a temporary name next to the target -> fsync it -> rename over the target -> fsync the parent

``rename`` is atomic on POSIX file systems, so readers see the old or the new version; the two
fsyncs make the new version survive a power loss, not only a killed process.

* ``write_text_atomic`` / ``write_json_atomic`` / ``atomic_path`` (for writers that want a path,
  e.g. matplotlib's ``savefig``): one file.
* ``atomic_dir``: a directory written by someone else's code (a LeRobot checkpoint, a dataset)
  under ``<final>.tmp``, then put in place by ``replace_dir_atomic``.
* ``replace_dir_atomic``: a directory cannot be renamed over a non-empty one, so the old version
  is first moved to ``<final>.old``; ``recover_dir`` puts things right after a stop in between.
* ``new_dir_atomic``: a new directory (the run directory with its ledger's first line) that
  appears whole by one rename and never replaces one with content.
* ``symlink_atomic``: re-point a link (``checkpoints/last``) without a moment where it is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

TMP_SUFFIX = ".tmp"
OLD_SUFFIX = ".old"


def fsync_dir(path: str | Path) -> None:
    """Persist a directory's entries (a rename or a new file in it)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | Path) -> None:
    """fsync every file and directory under ``root`` (before renaming it into place)."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def tmp_path_of(path: str | Path) -> Path:
    """The temporary name a file is written under before it is renamed to ``path`` (hidden)."""
    path = Path(path)
    return path.with_name(f".{path.name}{TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on success it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_of(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any, **dumps_kwargs: Any) -> None:
    """``json.dumps(obj, **dumps_kwargs)`` written atomically (indent=2 unless told otherwise)."""
    dumps_kwargs.setdefault("indent", 2)
    write_text_atomic(path, json.dumps(obj, **dumps_kwargs))


def read_json_or_none(path: str | Path) -> Any | None:
    """The JSON at ``path``, or None when it is missing or unreadable (torn by an older writer)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def recover_dir(final: str | Path) -> str | None:
    """Finish or undo a ``replace_dir_atomic`` that was stopped between its two renames.

    ``<final>.old`` left behind means the stop came after the old version was moved aside: if
    the new version is in place the old one is dropped, otherwise the old one is put back.
    Returns what was done (None: nothing to do).
    """
    final = Path(final)
    old = final.with_name(final.name + OLD_SUFFIX)
    if not old.exists():
        return None
    if final.exists():
        shutil.rmtree(old)
        return f"removed {old.name} (left by a finished replacement)"
    os.rename(old, final)
    fsync_dir(final.parent)
    return f"restored {final.name} from {old.name} (a replacement was stopped half-way)"


def replace_dir_atomic(src: str | Path, final: str | Path) -> None:
    """Put the complete directory ``src`` in place of ``final`` (which may not exist).

    ``src`` is fsynced first. Two renames (``final`` -> ``final.old``, ``src`` -> ``final``): a
    stop between them leaves ``final.old``, which ``recover_dir`` turns back into ``final``.
    """
    src, final = Path(src), Path(final)
    recover_dir(final)
    fsync_tree(src)
    old = final.with_name(final.name + OLD_SUFFIX)
    if final.exists():
        os.rename(final, old)
    os.rename(src, final)
    fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _staging_dir(final: Path) -> Iterator[Path]:
    """``<final>.tmp`` (not created), a leftover from a stopped writer discarded first; removed
    again if the block raises, so a failed build leaves nothing behind."""
    tmp = final.with_name(final.name + TMP_SUFFIX)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield ``<final>.tmp`` to build the new ``final`` in; on success it replaces ``final``.

    A leftover ``<final>.tmp`` from a stopped writer is discarded first; on an exception the
    temporary directory is removed and ``final`` is left as it was.
    """
    final = Path(final)
    with _staging_dir(final) as tmp:
        yield tmp
    replace_dir_atomic(tmp, final)


@contextlib.contextmanager
def new_dir_atomic(final: str | Path) -> Iterator[Path]:
    """Yield an empty ``<final>.tmp`` to build a new directory in; on success it appears as ``final``
    by one rename, so ``final`` exists whole or not at all (a run directory with its ledger's first
    line). Unlike ``atomic_dir`` it never replaces anything: a ``final`` with content raises
    FileExistsError and is left as it was. A leftover ``<final>.tmp`` is discarded first."""
    final = Path(final)
    with _staging_dir(final) as tmp:
        tmp.mkdir()
        yield tmp
        fsync_tree(tmp)
        try:
            os.rename(tmp, final)  # onto nothing, or an empty directory
        except OSError as err:
            raise FileExistsError(f"{final} appeared, with content, while this run was starting; it was left as "
                                  "it is: choose another --output_dir.") from err
    fsync_dir(final.parent)


def symlink_atomic(link: str | Path, target: str | Path) -> None:
    """Point ``link`` at ``target`` (as given: pass a relative target for a relocatable link)."""
    link = Path(link)
    tmp = tmp_path_of(link)
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)
