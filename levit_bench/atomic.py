"""Atomic file writes: a temporary file in the same folder, flushed, then renamed over the target.

A reader (or a later run) never sees half a file, whatever interrupts the writer.  Every file
levit-bench writes goes through here, so this is also the one place that decides what may be
written over: only a regular file or a new path.  A device node (``/dev/null``), a folder, a
symbolic link, a FIFO or a socket at the target is refused (a rename would replace it), and so is a
path whose folder is a file.  :func:`check_target` says the same before any work is done, so a
command that would fail at its end fails at its start instead.

Names near the file system's limit (255 bytes) stay legal: the temporary and lock names beside a
long name are shortened (a hash of the full name keeps them unique).
"""
from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from pathlib import Path

#: the longest file name most file systems take (bytes); tmp and lock names are kept within it
NAME_MAX = 255


class NotWritableTarget(OSError):
    """The target exists and is not a regular file, or cannot be a file (its folder is a file, its
    name is too long): levit-bench does not write there."""


def sibling_name(path: str | os.PathLike, prefix: str = ".", suffix: str = "") -> Path:
    """``<folder>/<prefix><name><suffix>``, the name shortened (with a hash of the full one) when it
    would pass :data:`NAME_MAX` bytes: lock and temporary names beside a long, legal name."""
    path = Path(path)
    name = f"{prefix}{path.name}{suffix}"
    if len(name.encode()) <= NAME_MAX:
        return path.with_name(name)
    digest = hashlib.sha256(path.name.encode()).hexdigest()[:16]
    room = NAME_MAX - len(f"{prefix}~{digest}{suffix}".encode())
    stem = path.name.encode()[:room].decode(errors="ignore")
    return path.with_name(f"{prefix}{stem}~{digest}{suffix}")


def target_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be written as a regular file (None: it is one, or it is new and can be)."""
    path = Path(path)
    if len(path.name.encode()) > NAME_MAX:
        return f"its name is {len(path.name.encode())} bytes long; file systems take at most {NAME_MAX}"
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as exc:
        return exc.strerror or str(exc)
    if st is not None:
        if stat.S_ISREG(st.st_mode):
            return None
        mode = st.st_mode
        kind = ("a folder" if stat.S_ISDIR(mode) else "a symbolic link" if stat.S_ISLNK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
        return f"it is {kind}, not a regular file (levit-bench writes only regular files or new paths)"
    for parent in [path.parent, *path.parent.parents]:
        try:
            st = os.stat(parent)
        except FileNotFoundError:
            continue  # created on write
        except OSError as exc:
            return f"{parent}: {exc.strerror or exc}"
        if not stat.S_ISDIR(st.st_mode):
            return f"{parent} is a file, not a folder"
        return None
    return None


def check_target(path: str | os.PathLike) -> None:
    """Raise :class:`NotWritableTarget` when ``path`` may not be written (see :func:`target_problem`)."""
    problem = target_problem(path)
    if problem:
        raise NotWritableTarget(errno.EEXIST, problem, str(path))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    check_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = sibling_name(path, ".", ".XXXXXXXX.tmp").name.removesuffix(".XXXXXXXX.tmp")
    fd, tmp = tempfile.mkstemp(prefix=tmp_name + ".", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results and reports are for sharing
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        check_target(path)  # again just before the rename: it may have become a link or device meanwhile
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
