"""One run at a time per run directory and per pretraining cache entry.

Two runs on one ``--output_dir`` (or a second ``--resume=true`` on a live run) would share
staging names, delete each other's staging directories and append to one ledger; two identical
runs would pretrain into one cache entry. ``exclusive(path)`` holds an OS lock (``fcntl.flock``)
on ``<path>.lock``, a file that names its holder (pid, host, start time): a second run is
refused with one line naming the holder. The OS drops the lock of a process that died, so a
lock file a dead run left behind is taken over, and the takeover is logged. The file is removed
when the lock is released.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from lerobot_amf.errors import AMFInputError


class InUseError(AMFInputError):
    """Another live process holds the lock."""


def lock_path(path: str | Path) -> Path:
    return Path(f"{Path(path)}.lock")


@contextlib.contextmanager
def exclusive(path: str | Path, what: str) -> Iterator[None]:
    """Hold the lock of ``path`` (``what`` names it in messages) for the block."""
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise InUseError(f"{what} {path} is in use by {holder or 'another process'}: wait for that run to end, "
                             "or choose another --output_dir.") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file its releasing holder unlinked just now
            break
        os.close(fd)
    previous = _holder(fd)
    if previous:
        logging.warning(f"{what} {path}: taking over the lock of {previous}, which is no longer running.")
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                              "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
    os.fsync(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def _holder(fd: int) -> str:
    """The lock file's holder as "pid 12 on host h since t" ("" for an empty or unreadable file)."""
    try:
        rec = json.loads(os.pread(fd, 4096, 0).decode() or "null")
        return f"pid {rec['pid']} on host {rec['host']} since {rec['since']}"
    except (ValueError, TypeError, KeyError):
        return ""
