"""How the export cache proves a folder is one before anything in it is deleted.

The root carries a ``CACHEDIR.TAG`` (the Cache Directory Tagging Specification, naming levit-bench),
written only into a folder that is new, empty or already laid out as a levit-bench cache; an
artifact folder counts only when its ``meta.json`` describes a file beside it; a runtime's folder
only when it carries the marker levit-bench wrote when it handed the folder to the runtime.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..atomic import atomic_write_text

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


def is_marked(root: Path) -> bool:
    """Whether ``root`` carries the tag levit-bench writes."""
    try:
        text = (root / MARKER).read_text(errors="replace")
    except OSError:
        return False
    return text.startswith(MARKER_TEXT.split("\n")[0]) and "levit-bench" in text


def foreign_items(root: Path) -> list[str]:
    """Top-level names under ``root`` that no levit-bench cache holds (empty: a new, empty or
    levit-bench-shaped folder)."""
    try:
        names = sorted(p.name for p in root.iterdir())
    except OSError:
        return []
    return [n for n in names if n not in KNOWN_TOPS and n != MARKER and not n.startswith(".")]


def mark(root: Path) -> None:
    """Write the root's tag, if the folder is new, empty or already laid out as a cache."""
    if is_marked(root) or foreign_items(root):
        return
    try:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / MARKER, MARKER_TEXT)
    except OSError:
        pass  # a read-only cache is still read; it is never cleared without its tag


def names_text(items: list[str], most: int = 3) -> str:
    shown = ", ".join(repr(n) for n in items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


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
