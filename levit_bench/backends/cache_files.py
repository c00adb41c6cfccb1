"""The export cache's file-level helpers: sizes, hashes, recognising and removing what it wrote.

Split from ``cache.py`` (the :class:`~.cache.ExportCache` itself), which re-exports what others import.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

from ..errors import UserError

MAX_BYTES_ENV = "LEVIT_BENCH_CACHE_MAX_BYTES"
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
#: written into a runtime's own cache folder when levit-bench hands it to the runtime
RUNTIME_MARKER = ".levit-bench-runtime-cache"


def parse_size(text: str) -> int:
    """``5368709120``, ``500M``, ``5G``, ``5GiB`` -> bytes (binary units); anything else is a UserError."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in _UNITS and t[-1:] else ""
    number = t[: len(t) - len(unit)].strip()
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        value = float("nan")
    if not value >= 1 or value == float("inf"):
        raise UserError(f"{MAX_BYTES_ENV}={text!r}: expected a size in bytes, e.g. 5368709120, 500M or 5G")
    return int(value)


def _error_text(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _folder_stats(folder: Path) -> tuple[int, float]:
    """(bytes of every file under ``folder``, newest modification time of anything in it)."""
    total, newest = 0, 0.0
    try:
        newest = folder.stat().st_mtime
    except OSError:
        return 0, 0.0
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            if name == RUNTIME_MARKER:
                continue  # ours, written once: neither the runtime's bytes nor a use
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            newest = max(newest, st.st_mtime)
            if name in filenames:
                total += st.st_size
    return total, newest


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _names(items: list[str], most: int = 3) -> str:
    shown = ", ".join(repr(n) for n in items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def _artifact_meta(folder: Path) -> dict | None:
    """The folder's ``meta.json`` if it is one the cache wrote: a size and SHA-256 that describe a
    file in the folder (``file`` names it; files of older versions are found by their size)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("size"), int) or not isinstance(meta.get("sha256"), str) \
            or not re.fullmatch(r"[0-9a-f]{64}", meta["sha256"]):
        return None
    names = [meta["file"]] if isinstance(meta.get("file"), str) else [
        n for n in os.listdir(folder) if n != "meta.json" and not n.startswith(".")]
    for name in names:
        path = folder / name
        if "/" not in name and path.is_file() and not path.is_symlink() and path.stat().st_size == meta["size"]:
            return meta
    return None


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only cache can still be read


def _remove_artifact_folder(folder: Path, errors: list[str] | None = None) -> bool:
    """meta.json first (so no reader takes the artifact for complete), then the artifact files, then
    the folder if nothing else is left (a concurrent build's temporary folder stays its owner's;
    one whose builder is gone goes).  Why a file could not be removed is added to ``errors``."""
    removed = False
    try:
        names = sorted(os.listdir(folder)) if folder.is_dir() else []
    except OSError:
        names = []
    for name in ["meta.json"] + [n for n in names if n != "meta.json"]:
        path = folder / name
        if name.startswith(BUILD_PREFIX) or path.is_dir() and not path.is_symlink():
            continue
        try:
            path.unlink()
            removed = True
        except FileNotFoundError:
            continue
        except OSError as exc:  # not ours to remove (read-only): the folder then stays
            if errors is not None:
                errors.append(_error_text(exc))
    sweep_stale_builds(folder)
    try:
        folder.rmdir()
        removed = True
    except OSError:
        pass
    return removed


# ---------------------------------------------------------------------------------------------
# temporary build folders: ``<artifact folder>/.build-XXXX/``, locked for as long as their build runs

BUILD_PREFIX = ".build-"
BUILD_LOCK = ".lock"
#: a build folder without its lock file (an older version's, or killed within a moment of its
#: creation) counts as abandoned after this long
UNLOCKED_BUILD_S = 600.0


class BuildFolder:
    """A new temporary build folder in ``folder``, holding an exclusive lock on a file in it while
    the build runs: a folder whose lock is free was left by a build that was killed."""

    def __init__(self, folder: Path):
        import tempfile

        self.path = Path(tempfile.mkdtemp(prefix=BUILD_PREFIX, dir=folder))
        self._lock = open(self.path / BUILD_LOCK, "wb")  # noqa: SIM115 - held for the build
        try:
            import fcntl

            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (ImportError, OSError):
            pass  # no locks here: the folder's age decides (UNLOCKED_BUILD_S is then never reached mid-build)

    def remove(self) -> None:
        self._lock.close()
        shutil.rmtree(self.path, ignore_errors=True)


def _build_abandoned(path: Path) -> bool:
    """Whether the build folder's builder is gone (its lock is free, or it never had one and is old)."""
    lock = path / BUILD_LOCK
    try:
        import fcntl
    except ImportError:
        fcntl = None  # type: ignore[assignment]
    if fcntl is None or not lock.is_file():
        try:
            return time.time() - path.stat().st_mtime > (UNLOCKED_BUILD_S if fcntl else 24 * 3600)
        except OSError:
            return False
    try:
        with open(lock, "rb") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken: nobody holds it; released on close
        return True
    except OSError:
        return False  # held: a build is running now


def sweep_stale_builds(folder: Path) -> int:
    """Remove the build folders in ``folder`` that their (killed) builds left; returns how many."""
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith(BUILD_PREFIX) and p.is_dir()
                      and not p.is_symlink()]
    except OSError:
        return 0
    count = 0
    for path in candidates:
        if _build_abandoned(path):
            shutil.rmtree(path, ignore_errors=True)
            count += not path.exists()
    return count


def sweep_layout(top: Path) -> int:
    """:func:`sweep_stale_builds` in every artifact folder under ``<root>/<backend>``; an artifact
    folder left empty is removed too.  Returns how many build folders went."""
    try:
        folders = [p for p in top.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]
    except OSError:
        return 0
    count = 0
    for folder in folders:
        try:
            if not any(p.name.startswith(BUILD_PREFIX) for p in folder.iterdir()):
                continue
        except OSError:
            continue
        count += sweep_stale_builds(folder)
        try:
            folder.rmdir()  # only if nothing else is left
        except OSError:
            pass
    return count


def only_builds(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but build folders (an export being written, or left by a killed one)."""
    try:
        names = os.listdir(folder) if folder.is_dir() and not folder.is_symlink() else []
    except OSError:
        return False
    return bool(names) and all(n.startswith(BUILD_PREFIX) for n in names)
