"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename over the target.

A reader (or a process restarted after SIGKILL) sees either the old file or the new one, never a torn one.
A process killed mid-write leaves its temporary file behind (`.NAME.rnnedge-PID-RANDOM.tmp`); the first write
of a later process into that folder removes those whose writer is no longer running (a live writer's file,
from another process or thread, is never touched).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

# Not tempfile: it imports shutil, bz2, lzma and random, ~0.9 MB of the device runtime's resident memory.
_TEMP = re.compile(r"^\..+\.rnnedge-(\d+)-[0-9a-f]{8}\.tmp$")
_LEGACY_AGE_S = 600  # temp files of rnnedge < 0.2 (tempfile.mkstemp names, no writer pid): removed when this old
_swept: set[str] = set()  # folders this process has already cleaned


def check_file_target(path: Path, what: str, error: type[Exception]) -> Path:
    """Refuse, before any work, a file output that can never be written where the user meant it: it must be a
    regular file (or not exist yet) in a folder that exists and is writable (a typo in the folder is not
    silently created). `error` is the caller's error type; `what` names the option in the message."""
    if path.exists() and not path.is_file():
        raise error(f"{path}: is not a regular file; {what} names a file")
    if not path.resolve().parent.is_dir():
        raise error(f"{path}: its folder {path.parent} does not exist")
    if not os.access(path.resolve().parent, os.W_OK | os.X_OK):
        raise error(f"{path}: its folder {path.parent} is not writable")
    return path


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write(fileobj)` on a temp file beside `path`, then atomically replace `path` with it.
    OSError (with the path) when the folder or the file cannot be written."""
    target = Path(path)
    if target.exists() and not target.is_file():  # a device node or a folder is never replaced by a file
        raise IsADirectoryError(21, "not a regular file", str(target)) if target.is_dir() else \
            OSError(22, "not a regular file (a device, a pipe or a socket)", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep(target)
    tmp = target.with_name(f".{target.name}.rnnedge-{os.getpid()}-{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 minus the umask, as open() does
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return write_atomic(path, lambda handle: handle.write(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def _sweep(target: Path) -> None:
    """Remove the temp files that killed writers left in target's folder (once per folder and process)."""
    folder = str(target.parent.resolve())
    if folder in _swept:
        return
    _swept.add(folder)
    legacy = re.compile(rf"^\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.tmp$")
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                match = _TEMP.match(entry.name)
                stale = (not process_running(int(match[1])) if match else
                         legacy.match(entry.name) is not None and time.time() - entry.stat().st_mtime > _LEGACY_AGE_S)
                if stale:
                    Path(entry.path).unlink(missing_ok=True)  # another process may sweep the same folder
    except OSError:
        pass  # best effort: a leftover temp file costs disk space, never correctness


def process_running(pid: int) -> bool:
    """Whether process `pid` may still be writing (this process, or any live one): its leftovers stay."""
    if pid == os.getpid():
        return True  # another thread of this process may be writing
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # alive, another user's (or not a pid we can ask about: leave it)
    return True
