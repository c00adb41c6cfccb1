"""The export cache: exported artifacts, keyed by everything that changes them, written atomically.

Layout: ``<root>/<backend>/<model>-<key>/<artifact>`` plus ``meta.json`` holding the artifact's size
and SHA-256.  An artifact is reused only when its meta matches; a corrupt or truncated file is
removed and rebuilt.  Exports are written to a temporary name and renamed, so an interrupted export
never leaves a file that is used later.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_write_text

#: bump when the way artifacts are produced changes, so old ones are not reused
CACHE_FORMAT = 1


def default_cache_root() -> Path:
    env = os.environ.get("LEVIT_BENCH_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "levit-bench"


def weights_hash(model: nn.Module) -> str:
    """SHA-256 over every tensor of the state dict (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ExportCache:
    """Folder of exported artifacts; ``get_or_build`` is the only way in."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_root()

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
        folder.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=folder))
        try:
            tmp = work / filename
            build(tmp)
            final = folder / filename
            os.replace(tmp, final)
            meta = {"size": final.stat().st_size, "sha256": file_sha256(final), **(describe() if describe else {})}
            atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1, default=str))
            return final, False
        finally:
            shutil.rmtree(work, ignore_errors=True)
