"""INT8 post-training quantization of the fp32 export: the calibration set and the artifact cache.

Both runtimes quantize the same fused fp32 ONNX export (``onnx_export.py``): ONNX Runtime
with ``onnxruntime.quantization.quantize_static`` (QDQ), OpenVINO with ``nncf.quantize``; each
backend holds its recipe, this module what they share.

Calibration data is ``--calibration DIR`` (every image under it, at most :data:`FOLDER_LIMIT`
evenly spaced, read with the model's own eval transform, ``data.eval_transform``), else
:data:`SYNTHETIC_IMAGES` seeded synthetic inputs.  Synthetic inputs are drawn i.i.d. N(0, 1) per
pixel: a normalized image has about that mean and spread per channel, and it is the distribution of
the parity batch the int8 artifact is gated on (another seed: the artifact is never calibrated on
the batch it is checked with).  Smooth image-like noise was tried and agreed less with fp32 on the
parity batch (levit_128s, ONNX Runtime: centered cosine 0.992 against 0.996) without making the
accuracy any more known: with synthetic data it is unknown, and every entry says so.

A quantized artifact is cached like an export, keyed by everything that changes it: the fp32
export's hash, the calibration set's fingerprint (file contents, or the synthetic generator's
parameters), the recipe (which depends on the CPU: 7-bit weights without VNNI) and the library
versions.  A second run reuses it; other calibration data builds another.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import data, sysinfo
from ..errors import UserError
from ..spec import ModelId
from .cache import ExportCache, file_sha256

#: synthetic calibration inputs: seeded, so an artifact is the same on every machine and run.  64:
#: min/max ranges of N(0, 1) inputs settle well before that (128 gave no better parity on the six
#: headline models), and calibrating levit_128s on 64 takes about 10 s (ONNX Runtime) and 20 s
#: (nncf) on one core of the 2-core EPYC this was written on
SYNTHETIC_IMAGES = 64
SYNTHETIC_SEED = 1_000_000  # image i is drawn with seed SYNTHETIC_SEED + i (the parity batch uses 0)
#: at most this many images of a folder, evenly spaced: nncf's default subset size
FOLDER_LIMIT = 300
#: images per calibration batch (ONNX Runtime's calibrator keeps every intermediate tensor of a batch)
CALIBRATION_BATCH = 8


@dataclass(frozen=True)
class Calibration:
    """The images an int8 artifact is calibrated on: a folder's or synthetic ones."""

    model: str
    img_size: int
    fingerprint: str  # what the cache key holds: the files' content hash, or the generator's parameters
    paths: tuple[Path, ...] = ()  # empty: synthetic
    folder: str | None = None
    found: int = 0  # images in the folder (``paths`` holds at most FOLDER_LIMIT of them)
    #: why each unreadable image was skipped while calibrating (as ``accuracy`` skips them)
    skipped: list[str] = field(default_factory=list, compare=False, hash=False)

    @property
    def synthetic(self) -> bool:
        return self.folder is None

    @property
    def count(self) -> int:
        return SYNTHETIC_IMAGES if self.synthetic else len(self.paths)

    def note(self) -> str:
        """What the entry's notes say about its calibration data."""
        if self.synthetic:
            return (f"calibration: synthetic, {SYNTHETIC_IMAGES} seeded N(0,1) inputs (seeds {SYNTHETIC_SEED}+i); "
                    "accuracy unknown")
        of = f" of {self.found}" if self.found > len(self.paths) else ""
        unreadable = f" ({len(set(self.skipped))} unreadable, skipped: {self.skipped[0]})" if self.skipped else ""
        return (f"calibration: {self.folder}, {len(self.paths)}{of} images{unreadable}, sha256 "
                f"{self.fingerprint[:16]}, {self.model}'s eval transform")

    def readable(self) -> list[int]:
        """The inputs that decode (every one when synthetic): an unreadable file is skipped, never
        the entry's failure; none readable is a UserError."""
        if self.synthetic:
            return list(range(self.count))
        _x, kept, skipped = data.load_readable(self.paths, lambda _img: torch.zeros(0))
        self.skipped[:] = skipped
        if not kept:
            raise UserError(f"none of the {len(self.paths)} calibration images in {self.folder} can be read, "
                            f"e.g. {skipped[0]}")
        return kept

    def image(self, i: int) -> np.ndarray:
        """Calibration input ``i`` as a 1×3×H×W float32 array (decoded or drawn when asked for)."""
        if self.synthetic:
            g = torch.Generator().manual_seed(SYNTHETIC_SEED + i)
            return torch.randn(1, 3, self.img_size, self.img_size, generator=g).numpy()
        return self._load(self.paths[i:i + 1])

    def batches(self, size: int = CALIBRATION_BATCH) -> Iterator[np.ndarray]:
        """Every readable calibration input, ``size`` at a time (N×3×H×W float32 arrays)."""
        indices = self.readable()
        for start in range(0, len(indices), size):
            chosen = indices[start:start + size]
            if self.synthetic:
                yield np.concatenate([self.image(i) for i in chosen])
            else:
                yield self._load(tuple(self.paths[i] for i in chosen))

    def _load(self, paths: tuple[Path, ...]) -> np.ndarray:
        x = data.load_batch(paths, _transform(self.model, self.img_size))
        if tuple(x.shape[1:]) != (3, self.img_size, self.img_size):
            raise UserError(f"{self.model}'s eval transform gives {tuple(x.shape[1:])} images, not "
                            f"3×{self.img_size}×{self.img_size}: cannot calibrate with it")
        return np.ascontiguousarray(x.float().numpy())


@functools.lru_cache(maxsize=8)
def _transform(model: str, img_size: int) -> Callable:
    return data.eval_transform(model, img_size)


def calibration_for(model_id: ModelId, folder: str | None) -> Calibration:
    """The calibration set of ``model_id`` at its input size: ``folder``'s images, else synthetic.
    Only the file list is read here (for the fingerprint); images are decoded when calibrating."""
    if folder is None:
        return Calibration(model_id.name, model_id.img_size,
                           f"synthetic-normal-v1-n{SYNTHETIC_IMAGES}-seed{SYNTHETIC_SEED}-{model_id.img_size}px")
    found = data.find_images(Path(folder))
    paths = tuple(data.spread(found, FOLDER_LIMIT))
    return Calibration(model_id.name, model_id.img_size, data.files_fingerprint(paths), paths,
                       str(Path(folder).expanduser().resolve()), len(found))


def check_calibration(folder: str | None, precision: str) -> None:
    """A one-line UserError, before anything is measured, for ``--calibration`` without int8 or a
    folder with no image in it."""
    if folder is None:
        return
    if precision != "int8":
        raise UserError(f"--calibration calibrates int8 quantization; this run is {precision} (add --precision int8)")
    data.find_images(Path(folder))


@functools.lru_cache(maxsize=1)
def has_vnni() -> bool:
    """Whether this x86 CPU has VNNI (AVX512-VNNI, AVX-VNNI, AMX-INT8).  Without it, int8 dot products
    (``vpmaddubsw``) add pairs of u8×s8 products into 16 bits and saturate; 7-bit weights avoid it,
    as both ONNX Runtime's (``reduce_range``) and nncf's (``OverflowFix``) documentation advise.
    False on other architectures, whose int8 dot products have no such overflow (never asked there)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return False
    # unknown flags (an empty set): the older units are assumed (7-bit weights are safe)
    return bool(sysinfo.cpu_flags() & {"avx512_vnni", "avx512vnni", "avx_vnni", "avxvnni", "amx_int8"})


def weights_7bit() -> bool:
    """Whether weights should use 7 bits here (an x86 CPU without VNNI)."""
    return platform.machine().lower() in ("x86_64", "amd64") and not has_vnni()


@dataclass
class QuantizedArtifact:
    path: Path
    reused: bool
    seconds: float  # quantizing it (0 when reused)
    facts: dict[str, Any]  # what ``build`` reported (kept in meta.json, so a reused one has them too)


def cached_quantization(cache: ExportCache, backend: str, model_id: ModelId, source: Path,
                        calibration: Calibration, recipe: dict[str, Any], versions: dict[str, str],
                        filename: str, build: Callable[[Path], dict[str, Any]]) -> QuantizedArtifact:
    """The int8 artifact of ``source`` (the fp32 export) from the cache, or ``build(tmp_path)`` run now;
    ``build`` returns facts to keep with it.  Keyed by the export's hash, the calibration fingerprint,
    the recipe and the versions (the folder is ``<root>/<backend>-int8/<model>-<key>``)."""
    key = cache.key(artifact=f"{backend}-int8", model=model_id.name, source=_source_hash(source),
                    calibration=calibration.fingerprint, recipe=recipe, versions=versions)
    folder = cache.entry(f"{backend}-int8", model_id.name, key)
    facts: dict[str, Any] = {}

    def run_build(tmp: Path) -> None:
        facts.update(build(tmp))

    def describe() -> dict[str, Any]:
        return {"model": model_id.name, "calibration": calibration.note(), "recipe": recipe, **facts}

    start = time.perf_counter()
    path, reused = cache.get_or_build(folder, filename, run_build, describe)
    seconds = time.perf_counter() - start
    if reused:
        try:
            facts = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):
            facts = {}
    return QuantizedArtifact(path, reused, 0.0 if reused else seconds, facts)


def _source_hash(source: Path) -> str:
    """The fp32 export's SHA-256, from its meta.json (written by the cache), else computed."""
    try:
        return str(json.loads((source.parent / "meta.json").read_text())["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return file_sha256(source)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the quantizers' progress bars, log lines and warnings (restored after)."""
    sink = io.StringIO()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def recipe_text(recipe: dict[str, Any]) -> str:
    """``key value, key value`` for the entry's notes."""
    return ", ".join(f"{k} {v}" for k, v in recipe.items())
