"""The export cache: exported artifacts, keyed by everything that changes them, written atomically.

Layout: ``<root>/<backend>/<model>-<key>/<artifact>`` plus ``meta.json`` holding the artifact's size
and SHA-256.  An artifact is reused only when its meta matches (a corrupt or truncated file is
removed and rebuilt), and one that matches but does not load is rebuilt once (:meth:`with_rebuild`).
Exports are built in a locked ``.build-*`` folder and renamed into place; a folder whose lock is
free was left by a killed build and is swept.  The runtimes' own caches (``<root>/inductor``,
``<root>/openvino``) are listed and cleared as one item each.  A read-only cache is still read.

A cache proves it is one before anything in it is deleted: the root carries a ``CACHEDIR.TAG``
naming levit-bench, written only into a new, empty or cache-shaped folder; an artifact folder counts
only when its ``meta.json`` describes a file beside it, a runtime's folder only when it carries the
marker written when it was handed out.  ``list``, ``clear`` and the prune ignore everything else,
so a mistyped ``--cache-dir ~`` deletes nothing.  Each use touches ``meta.json`` (its modification
time is the last use); after each build the least recently used items are removed until the cache
is under ``max_bytes`` (5 GiB, ``$LEVIT_BENCH_CACHE_MAX_BYTES``), never one used since the cache
object was created (by this run, or by another one running now).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


from ..atomic import atomic_write_text
from ..errors import ExportError, UserError, first_line
from .cache_files import (MAX_BYTES_ENV, RUNTIME_MARKER, BuildFolder, _artifact_meta, _error_text,
                          _folder_stats, _names, _remove_artifact_folder, _touch, file_sha256, parse_size,
                          only_builds, sweep_layout, sweep_stale_builds)

#: bump when the way artifacts are produced changes, so old ones are not reused
CACHE_FORMAT = 1
#: folders under the root that belong to the runtimes' own caches (torch inductor, OpenVINO CACHE_DIR)
RUNTIME_DIRS = ("inductor", "openvino")
#: every top-level name a levit-bench cache holds (artifact folders per backend, runtime caches, peaks,
#: the generated JPEG sets of ``run --input jpeg``)
KNOWN_TOPS = frozenset({"onnx", "torchscript", "onnxruntime-int8", "openvino-int8", "peak", "jpeg", *RUNTIME_DIRS})
#: the root's marker: the Cache Directory Tagging Specification's file, with a line naming us
MARKER = "CACHEDIR.TAG"
MARKER_TEXT = ("Signature: 8a477f597d28d172789f06886806bc55\n"
               "# This file is a cache directory tag created by levit-bench (its export cache).\n"
               "# For information about cache directory tags, see https://bford.info/cachedir/\n")
DEFAULT_MAX_BYTES = 5 * 1024**3


@dataclass(frozen=True)
class CachedArtifact:
    """One item of the cache: an exported artifact's folder, or a runtime's own cache folder."""

    backend: str  # the folder under the root: onnx, torchscript, ... or inductor/openvino for runtime caches
    model: str  # the model it was exported from; "" for a runtime's cache
    folder: Path
    bytes: int
    last_used: float  # seconds since the epoch (meta.json's modification time: touched on every use)
    runtime: bool = False  # a runtime's own cache (inductor/, openvino/), counted as one item


def default_cache_root() -> Path:
    env = os.environ.get("LEVIT_BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "levit-bench"


class ExportCache:
    """Folder of exported artifacts; ``get_or_build`` is the only way in."""

    def __init__(self, root: str | os.PathLike | None = None, max_bytes: int | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_root()
        self._max_bytes = max_bytes
        # anything used after this moment (by this run or a concurrent one) is never pruned
        self._created = time.time()
        self.read_only = False  # set by check(): a cache that cannot be written is still read
        self._handed: list[tuple[Path, bool]] = []  # every artifact get_or_build returned, and whether reused
        self.not_removed: list[tuple[Path, str]] = []  # what the last clear/prune could not remove, and why

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
            if not (self.is_marked() and self.entries()):  # nothing in it to use: refused
                raise UserError(f"{where} is not writable: {_error_text(exc)}{hint}") from None
            self.read_only = True  # what it holds is used; an export it lacks fails its entry, saying so
            sys.stderr.write(f"levit-bench: warning: {where} is read-only ({_error_text(exc)}): the "
                             f"{len(self.entries())} artifacts it holds are used, one it lacks cannot be built\n")
            return
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
                _touch(meta_path)  # its modification time is the artifact's last use
                return path
        except (OSError, ValueError, KeyError, TypeError):
            pass
        for damaged in (meta_path, path):
            try:
                damaged.unlink(missing_ok=True)
            except OSError:
                pass  # a read-only cache: left, and built again elsewhere or refused below
        return None

    def with_rebuild(self, make: Callable[[], T]) -> tuple[T, str | None]:
        """``make()`` (a backend's prepare, which takes its artifacts from this cache), and when it
        fails after being handed a cached artifact (reused, or removed meanwhile by a ``cache
        clear``), once more with those artifacts discarded and built afresh: a cached file that
        passes its checksum but does not load (truncated TorchScript, random bytes) costs a rebuild,
        never every later run.  Returns (its result, a note saying what was rebuilt, or None)."""
        mark = len(self._handed)
        try:
            return make(), None
        except Exception as exc:  # noqa: BLE001 - retried once below, else raised as it was
            stale = [p for p, reused in self._handed[mark:] if reused or not p.exists()]
            if not stale or self.read_only or isinstance(exc, UserError):  # (a user error is no artifact's)
                raise
            for path in stale:
                self.discard(path)
            note = (f"the cached artifact {stale[0]} could not be used ({first_line(exc, 160)}): removed "
                    "and built again")
        return make(), note

    def get_or_build(
        self, folder: Path, filename: str, build: Callable[[Path], None], describe: Callable[[], dict] | None = None
    ) -> tuple[Path, bool]:
        """Return (artifact path, reused).  ``build(tmp_path)`` writes a new artifact to ``tmp_path``;
        ``describe()``, called after it, adds facts to the artifact's meta.json."""
        found = self.lookup(folder, filename)
        if found is not None:
            self._handed.append((found, True))
            return found, True
        if self.read_only:
            raise ExportError(f"the export cache {self.root} is read-only and does not hold "
                              f"{folder.relative_to(self.root) / filename}; give a writable --cache-dir to build it")
        self.mark()
        for attempt in range(3):  # a concurrent `cache clear` may remove the folder between the two calls
            folder.mkdir(parents=True, exist_ok=True)
            sweep_stale_builds(folder)  # what killed builds left here
            try:
                build_folder = BuildFolder(folder)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        work = build_folder.path
        try:
            tmp = work / filename
            build(tmp)
            final = folder / filename
            os.replace(tmp, final)
            meta = {"size": final.stat().st_size, "sha256": file_sha256(final), "file": filename,
                    **(describe() if describe else {})}
            atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1, default=str))
        finally:
            build_folder.remove()
        self._handed.append((final, False))
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
                meta = _artifact_meta(folder)
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
            if top.name in RUNTIME_DIRS or top.name in ("peak", "jpeg") or not top.is_dir() or top.is_symlink():
                if top.name not in KNOWN_TOPS or (top.name in RUNTIME_DIRS and top not in listed):
                    out.append(top)
                continue
            try:
                out += sorted(p for p in top.iterdir() if p not in listed and not p.name.startswith(".")
                              and not only_builds(p))  # a build running now is not a foreign item
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

    def sweep_builds(self) -> int:
        """Remove the temporary build folders that killed exports left (their lock is free), in
        every artifact folder of a tagged cache, and the artifact folders left empty; returns how many."""
        if not self.is_marked():
            return 0
        return sum(sweep_layout(top) for top in self._tops() if top.name not in RUNTIME_DIRS)

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
        self.not_removed = []
        for a in items:
            errors: list[str] = []
            if a.runtime:
                shutil.rmtree(a.folder, onerror=lambda _f, _p, info: errors.append(_error_text(info[1])))
            else:
                _remove_artifact_folder(a.folder, errors)
            if not (a.folder / ("" if a.runtime else "meta.json")).exists():  # (its folder may hold a live build)
                count, freed = count + 1, freed + a.bytes
            elif errors:  # (a folder kept only by a concurrent build in it is not a failure)
                self.not_removed.append((a.folder, errors[0]))
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
        return _remove_artifact_folder(folder)


