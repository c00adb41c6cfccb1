"""The export cache: exported artifacts, keyed by everything that changes them, written atomically.

Layout: ``<root>/<backend>/<model>-<key>/<artifact>`` plus ``meta.json`` holding the artifact's size
and SHA-256.  An artifact is reused only when its meta matches; a corrupt or truncated file is
removed and rebuilt.  Exports are written to a temporary name and renamed, so an interrupted export
never leaves a file that is used later.

The runtimes keep their own caches beside ours (``<root>/inductor``, ``<root>/openvino``); they are
listed and cleared as one item each.

A cache proves it is one before anything in it is deleted: the root carries a ``CACHEDIR.TAG`` (the
Cache Directory Tagging Specification, naming levit-bench), written only when the folder is new,
empty or already laid out as a levit-bench cache; an artifact folder counts only when its
``meta.json`` describes a file beside it, and a runtime's folder only when it carries the marker
levit-bench wrote when it handed the folder to the runtime.  ``list``, ``clear`` and the prune ignore
everything else, so a mistyped ``--cache-dir ~`` deletes nothing.  Each use of an artifact touches its ``meta.json``, so its
modification time is the last use; after each build the least recently used items are removed until
the cache is under ``max_bytes`` (default 5 GiB, ``$LEVIT_BENCH_CACHE_MAX_BYTES``).  Nothing used
since the cache object was created (by this run, or by another one running now) is pruned.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import UserError
from .cache_files import artifact_meta, remove_artifact_folder, touch

#: bump when the way artifacts are produced changes, so old ones are not reused
CACHE_FORMAT = 1
#: folders under the root that belong to the runtimes' own caches (torch inductor, OpenVINO CACHE_DIR)
RUNTIME_DIRS = ("inductor", "openvino")
#: every top-level name a levit-bench cache holds (artifact folders per backend, runtime caches, peaks)
KNOWN_TOPS = frozenset({"onnx", "torchscript", "onnxruntime-int8", "openvino-int8", "peak", *RUNTIME_DIRS})
#: the root's marker: the Cache Directory Tagging Specification's file, with a line naming us
MARKER = "CACHEDIR.TAG"
MARKER_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
               "# This file is a cache directory tag created by levit-bench (its export cache).\n"
               "# For information about cache directory tags, see https://bford.info/cachedir/\n")
#: written into a runtime's own cache folder when levit-bench hands it to the runtime
RUNTIME_MARKER = ".levit-bench-runtime-cache"
DEFAULT_MAX_BYTES = 5 * 1024**3
MAX_BYTES_ENV = "LEVIT_BENCH_CACHE_MAX_BYTES"
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


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


@dataclass(frozen=True)
class CachedArtifact:
    """One item of the cache: an exported artifact's folder, or a runtime's own cache folder."""

    backend: str  # the folder under the root: onnx, torchscript, ... or inductor/openvino for runtime caches
    model: str  # the model it was exported from; "" for a runtime's cache
    folder: Path
    bytes: int
    last_used: float  # seconds since the epoch (meta.json's modification time: touched on every use)
    runtime: bool = False  # a runtime's own cache (inductor/, openvino/), counted as one item


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


def default_cache_root() -> Path:
    env = os.environ.get("LEVIT_BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "levit-bench"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ExportCache:
    """Folder of exported artifacts; ``get_or_build`` is the only way in."""

    def __init__(self, root: str | os.PathLike | None = None, max_bytes: int | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_root()
        self._max_bytes = max_bytes
        # anything used after this moment (by this run or a concurrent one) is never pruned
        self._created = time.time()

    @property
    def max_bytes(self) -> int:
        """The size the automatic prune keeps the cache under: the constructor's ``max_bytes``, else
        ``$LEVIT_BENCH_CACHE_MAX_BYTES``, else 5 GiB."""
        if self._max_bytes is not None:
            return self._max_bytes
        env = os.environ.get(MAX_BYTES_ENV, "").strip()
        return parse_size(env) if env else DEFAULT_MAX_BYTES

    def check(self) -> None:
        """Raise a one-line :class:`UserError` when the cache root cannot be created or written to
        (a file in the way, a read-only folder, ...) or its size bound is malformed."""
        where = f"export cache {self.root}"
        hint = "; choose another place with --cache-dir or $LEVIT_BENCH_CACHE"
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{where} is a file, not a folder{hint}")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{where} cannot be created: {_error_text(exc)}{hint}") from None
        foreign = self.foreign_items() if not self.is_marked() else []
        if foreign:
            raise UserError(f"{where} is not a levit-bench cache: it holds {_names(foreign)}, which levit-bench "
                            f"did not write{hint} (a new or empty folder)")
        try:
            fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=self.root)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise UserError(f"{where} is not writable: {_error_text(exc)}{hint}") from None
        self.mark()
        self.max_bytes  # noqa: B018 - a malformed $LEVIT_BENCH_CACHE_MAX_BYTES is said now, not mid-run

    # -----------------------------------------------------------------------------------------
    # proving the folder is a cache

    def is_marked(self) -> bool:
        """Whether the root carries the tag levit-bench writes (and so may be listed and cleared)."""
        try:
            return (self.root / MARKER).read_text(errors="replace").startswith(MARKER_TEXT.split("\n")[0]) and \
                "levit-bench" in (self.root / MARKER).read_text(errors="replace")
        except OSError:
            return False

    def foreign_items(self) -> list[str]:
        """Top-level names under the root that no levit-bench cache holds (empty: a new, empty or
        levit-bench-shaped folder)."""
        try:
            names = sorted(p.name for p in self.root.iterdir())
        except OSError:
            return []
        return [n for n in names if n not in KNOWN_TOPS and n != MARKER and not n.startswith(".")]

    def mark(self) -> None:
        """Write the root's tag, if the folder is new, empty or already laid out as a cache."""
        if self.is_marked() or self.foreign_items():
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.root / MARKER, MARKER_TEXT)
        except OSError:
            pass  # a read-only cache is still read; it is never cleared without its tag

    def runtime_dir(self, name: str) -> Path:
        """``<root>/<name>`` for a runtime's own cache (inductor, OpenVINO's CACHE_DIR), created with
        the marker that lets ``clear`` recognise it later."""
        folder = self.root / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
            marker = folder / RUNTIME_MARKER
            if not marker.exists():
                marker.touch()  # empty: its presence is the proof
        except OSError:
            pass
        return folder

    @staticmethod
    def key(**parts: object) -> str:
        parts = {"format": CACHE_FORMAT, **parts}
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def entry(self, backend: str, model: str, key: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", model)
        return self.root / backend / f"{safe}-{key}"

    def lookup(self, folder: Path, filename: str) -> Path | None:
        """The artifact if it is complete and unmodified; a damaged one is removed."""
        path, meta_path = folder / filename, folder / "meta.json"
        if not path.is_file() or not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if path.stat().st_size == meta["size"] and file_sha256(path) == meta["sha256"]:
                touch(meta_path)  # its modification time is the artifact's last use
                return path
        except (OSError, ValueError, KeyError, TypeError):
            pass
        path.unlink(missing_ok=True)
        meta_path.unlink(missing_ok=True)
        return None

    def get_or_build(
        self, folder: Path, filename: str, build: Callable[[Path], None], describe: Callable[[], dict] | None = None
    ) -> tuple[Path, bool]:
        """Return (artifact path, reused).  ``build(tmp_path)`` writes a new artifact to ``tmp_path``;
        ``describe()``, called after it, adds facts to the artifact's meta.json."""
        found = self.lookup(folder, filename)
        if found is not None:
            return found, True
        self.mark()
        folder.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=folder))
        try:
            tmp = work / filename
            build(tmp)
            final = folder / filename
            os.replace(tmp, final)
            meta = {"size": final.stat().st_size, "sha256": file_sha256(final), "file": filename,
                    **(describe() if describe else {})}
            atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1, default=str))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        try:
            self.prune(keep=[folder])
        except (OSError, UserError):
            pass  # a bound that cannot be applied never fails the build (check() reports a bad bound)
        return final, False

    # -----------------------------------------------------------------------------------------
    # listing, bounding and clearing

    def entries(self) -> list[CachedArtifact]:
        """Every artifact folder (``<root>/<backend>/<model>-<key>`` whose ``meta.json`` describes a
        file beside it), and each runtime's own cache folder that carries levit-bench's marker, as
        one item; least recently used first.  Nothing is listed from a root without the cache tag."""
        out: list[CachedArtifact] = []
        if not self.is_marked():
            return out
        for top in self._tops():
            if top.name in RUNTIME_DIRS:
                if (top / RUNTIME_MARKER).is_file():
                    size, used = _folder_stats(top)
                    out.append(CachedArtifact(top.name, "", top, size, used, runtime=True))
                continue
            try:
                folders = sorted(p for p in top.iterdir() if p.is_dir() and not p.is_symlink()
                                 and not p.name.startswith("."))
            except OSError:
                continue
            for folder in folders:
                meta = artifact_meta(folder)
                if meta is None:
                    continue  # not written by us: left alone
                size, _ = _folder_stats(folder)
                try:
                    used = (folder / "meta.json").stat().st_mtime
                except OSError:
                    continue
                model = str(meta.get("model") or folder.name.rsplit("-", 1)[0])
                out.append(CachedArtifact(top.name, model, folder, size, used))
        out.sort(key=lambda a: a.last_used)
        return out

    def unrecognised(self) -> list[Path]:
        """What the root holds that :meth:`entries` does not list (and nothing ever deletes)."""
        if not self.is_marked():
            try:
                return sorted(p for p in self.root.iterdir() if p.name != MARKER)
            except OSError:
                return []
        listed = {a.folder for a in self.entries()}
        out: list[Path] = []
        for top in self._tops(all_names=True):
            if top.name in RUNTIME_DIRS or top.name == "peak" or not top.is_dir() or top.is_symlink():
                if top.name not in KNOWN_TOPS or (top.name in RUNTIME_DIRS and top not in listed):
                    out.append(top)
                continue
            try:
                out += sorted(p for p in top.iterdir() if p not in listed and not p.name.startswith("."))
            except OSError:
                continue
        return out

    def _tops(self, all_names: bool = False) -> list[Path]:
        try:
            return sorted(p for p in self.root.iterdir() if not p.name.startswith(".") and p.name != MARKER
                          and (all_names or (p.is_dir() and not p.is_symlink())))
        except OSError:
            return []

    def clear(self, older_than_s: float | None = None) -> tuple[int, int]:
        """Remove every item (or those not used for ``older_than_s`` seconds), runtime caches
        included; returns (items removed, bytes freed)."""
        cutoff = None if older_than_s is None else time.time() - older_than_s
        return self._remove(a for a in self.entries() if cutoff is None or a.last_used < cutoff)

    def prune(self, max_bytes: int | None = None, keep: Iterable[str | os.PathLike] = ()) -> tuple[int, int]:
        """Remove least recently used items until the cache holds at most ``max_bytes`` (default
        :attr:`max_bytes`), never those in ``keep`` nor anything used since this object was created;
        returns (items removed, bytes freed)."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        items = self.entries()
        total = sum(a.bytes for a in items)
        if total <= limit:
            return 0, 0
        protected = {Path(k).resolve() for k in keep}
        victims = []
        for a in items:  # least recently used first
            if total <= limit:
                break
            if a.folder.resolve() in protected or a.last_used >= self._created:
                continue
            victims.append(a)
            total -= a.bytes
        return self._remove(victims)

    def _remove(self, items: Iterable[CachedArtifact]) -> tuple[int, int]:
        count = freed = 0
        for a in items:
            if a.runtime:
                shutil.rmtree(a.folder, ignore_errors=True)
            else:
                remove_artifact_folder(a.folder)
            if not a.folder.exists():
                count, freed = count + 1, freed + a.bytes
        return count, freed

    def discard(self, artifact: str | os.PathLike) -> bool:
        """Remove a cached artifact (e.g. one that failed parity) with its meta.json and folder, so the
        next run builds it again.  ``artifact`` is the artifact file or its folder; anything outside
        this cache's ``<root>/<backend>/<model>-<key>/`` layout (runtime caches included) is left
        alone, and so is everything in a folder without the cache tag.  Returns whether something was
        removed."""
        if not self.is_marked():
            return False
        try:
            root = self.root.resolve()
            parts = Path(artifact).expanduser().resolve().relative_to(root).parts
        except (OSError, ValueError):
            return False
        if len(parts) < 2 or parts[0] in RUNTIME_DIRS or parts[0].startswith(".") or parts[1].startswith("."):
            return False
        folder = root / parts[0] / parts[1]
        if not folder.is_dir() or folder.is_symlink():
            return False
        return remove_artifact_folder(folder)


def _names(items: list[str], most: int = 3) -> str:
    shown = ", ".join(repr(n) for n in items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")
