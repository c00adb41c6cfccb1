"""The export cache's files on disk: which folders it wrote, marking a use, removing an artifact.

Kept apart from ``cache.py`` (the cache's rules: keys, layout, what may be deleted) because these
are the only places that read a folder's contents or delete files, each written to be safe when
another run uses the same cache at the same time.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path


def artifact_meta(folder: Path) -> dict | None:
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


def touch(path: Path) -> None:
    """Mark ``path`` used now (its modification time is the artifact's last use, for the prune)."""
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only cache can still be read


def remove_artifact_folder(folder: Path) -> bool:
    """meta.json first (so no reader takes the artifact for complete), then the artifact files, then
    the folder if nothing else is left (a concurrent build's temporary folder stays its owner's)."""
    removed = False
    for name in ["meta.json"] + sorted(os.listdir(folder) if folder.is_dir() else []):
        path = folder / name
        if name.startswith(".build-") or path.is_dir() and not path.is_symlink():
            continue
        try:
            path.unlink()
            removed = True
        except OSError:  # gone already, or not ours to remove: the folder then stays
            continue
    for stale in folder.glob(".build-*"):
        try:
            if stale.is_dir() and time.time() - stale.stat().st_mtime > 24 * 3600:
                shutil.rmtree(stale, ignore_errors=True)  # left by a killed build long ago
        except OSError:
            continue
    try:
        folder.rmdir()
        removed = True
    except OSError:
        pass
    return removed
