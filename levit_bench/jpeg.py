"""JPEG inputs for the end-to-end path (issue 24): the files, their decoders, and the check that
every decoder decodes what Pillow decodes.

Two sources.  A folder (``--input jpeg:DIR``): every regular file under it (hidden folders
excepted); a file that is not a JPEG (by its first bytes) or that Pillow cannot decode is counted
and skipped, never fatal; a folder with no readable JPEG is a UserError.  An ImageNet-style folder
(one sub-folder per class) is labelled, so top-1 can be checked.  Without DIR: a seeded set made
once with Pillow and kept under the export cache (``<cache>/jpeg/``), photograph-like (smooth
gradients, shapes with edges and some blur, low-amplitude texture and noise; noise alone decodes
unlike a photo) at ImageNet's sizes and qualities (:data:`GENERATED_DISTRIBUTION`, stated in
docs/end-to-end.md), one class folder per label.

Decoders turn a file's bytes into the RGB ``PIL.Image`` each model's eval transform takes
(``data.eval_transform``): Pillow, torchvision.io's ``decode_jpeg`` (libjpeg-turbo), OpenCV's
``imdecode`` (headless wheel) and, on CUDA, torchvision's nvjpeg.  Before a decoder is timed its
output is compared with Pillow's on the same files (:func:`check_decoder`): beyond
:data:`DECODER_TOLERANCE` (max absolute difference in 8-bit levels) it is refused, with the figure.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .atomic import atomic_write_text
from .data import imagenet_index
from .errors import UserError, first_line

JPEG_MAGIC = b"\xff\xd8\xff"
#: decoders by name: bytes -> RGB PIL image (nvjpeg only where CUDA is; see :func:`available`)
Decoder = Callable[[bytes], Image.Image]
DEFAULT_DECODERS = ("pillow",)
#: how far a decoder's pixels may be from Pillow's (max |difference|, 8-bit levels).  Pillow and
#: torchvision both decode with libjpeg-turbo's defaults (islow DCT, fancy upsampling), and so does
#: OpenCV's bundled libjpeg-turbo: 0 levels apart on all 128 generated files (Pillow 13,
#: torchvision 0.29, opencv-python-headless 5.0); OpenCV gets 2 for builds with another libjpeg.
#: nvjpeg decodes on the GPU with its own IDCT and chroma upsampling (not bit-exact with libjpeg).
DECODER_TOLERANCE = {"pillow": 0, "torchvision": 0, "opencv": 2, "nvjpeg": 8}
#: files each decoder is checked on (evenly spread over the set)
CHECK_FILES = 16
#: skipped files named in a record (all are counted)
MAX_NAMED_SKIPS = 20

#: the generated set: sizes (width, height) and their shares, then JPEG quality; ImageNet-1k's
#: validation images are mostly 500 px on the long side (500x375, 375x500, 500x333 the commonest),
#: saved by Flickr-era cameras and sites at qualities of about 75-95
GENERATED_DISTRIBUTION = {
    "sizes": [[[500, 375], 0.45], [[375, 500], 0.2], [[500, 333], 0.15], [[333, 500], 0.05],
              ["long side 500, short side uniform 250-500, either orientation", 0.15]],
    "quality": "uniform integer 75-95", "subsampling": "4:2:0 (Pillow's default)",
    "content": "two-colour gradient with a low-frequency warp, 3-8 filled shapes (ellipses, rectangles, "
               "polygons) with outlines, blurred 0-1.5 px, a 1/f texture (scales 1-64 px, std 6-16 levels) and "
               "Gaussian noise of sigma 1-4 levels; files of about 20-80 KB (ImageNet's validation JPEGs: ~110 KB "
               "on average, more fine detail)",
    "labels": "10 seeded ImageNet classes, one folder each, images assigned in turn",
}
GENERATED_FORMAT = 1  # bump when the generator changes: a new cache folder
DEFAULT_GENERATED = 128


@dataclass(frozen=True)
class JpegInput:
    """What ``--input jpeg[:DIR]``, ``--decoder`` and ``--decode-threads`` ask for."""

    folder: str | None = None  # None: the generated set
    decoders: tuple[str, ...] = DEFAULT_DECODERS
    decode_threads: tuple[int, ...] = (1,)
    generated: int = DEFAULT_GENERATED
    seed: int = 0


@dataclass
class JpegSet:
    """The readable JPEG files of an input, their labels (None: unlabelled), what was skipped."""

    root: Path
    source: str  # "generated" or "folder"
    paths: list[Path]
    labels: list[int] | None
    files: int  # files looked at
    skipped: list[str] = field(default_factory=list)  # one line per skipped file
    fingerprint: str = ""
    distribution: dict | None = None
    _bytes: dict[Path, bytes] = field(default_factory=dict, repr=False)

    def read(self, path: Path) -> bytes:
        """The file's bytes, kept after the first read (checks and the untimed passes; the timed
        read stage reads the file itself)."""
        if path not in self._bytes:
            self._bytes[path] = path.read_bytes()
        return self._bytes[path]

    def facts(self) -> dict:
        """What a results file records of the input."""
        return {"source": self.source, "root": str(self.root), "files": self.files, "images": len(self.paths),
                "skipped": len(self.skipped), "skipped_files": self.skipped[:MAX_NAMED_SKIPS],
                "labelled": self.labels is not None, "fingerprint": self.fingerprint,
                **({"distribution": self.distribution} if self.distribution else {})}


# ---- decoders ----------------------------------------------------------------------------------

def decode_pillow(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img if img.mode == "RGB" else img.convert("RGB")


_QUIET = False


def _quiet_torchvision() -> None:
    """torchvision 0.29 deprecates its image decoding for TorchCodec's; the call is still the
    maintained libjpeg-turbo path, and one warning per process says nothing a record does not."""
    global _QUIET
    if not _QUIET:
        import warnings

        warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                                category=DeprecationWarning)
        _QUIET = True


def decode_torchvision(data: bytes) -> Image.Image:
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    _quiet_torchvision()
    t = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    return Image.fromarray(t.permute(1, 2, 0).contiguous().numpy())


def decode_opencv(data: bytes) -> Image.Image:
    import cv2

    a = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if a is None:
        raise ValueError("OpenCV could not decode the file")
    return Image.fromarray(cv2.cvtColor(a, cv2.COLOR_BGR2RGB))


def decode_nvjpeg(data: bytes) -> Image.Image:
    """nvjpeg on the GPU, copied back for the (CPU, PIL) eval transform every model is evaluated with."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    _quiet_torchvision()
    t = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB, device="cuda")
    return Image.fromarray(t.permute(1, 2, 0).contiguous().cpu().numpy())


DECODERS: dict[str, Decoder] = {"pillow": decode_pillow, "torchvision": decode_torchvision,
                                "opencv": decode_opencv, "nvjpeg": decode_nvjpeg}


def unavailable(name: str, device: str) -> str | None:
    """Why decoder ``name`` cannot run here, or None."""
    if name == "nvjpeg" and device != "cuda":
        return "nvjpeg decodes on a CUDA device (--device cuda)"
    module = {"torchvision": "torchvision.io", "opencv": "cv2", "nvjpeg": "torchvision.io"}.get(name)
    if module is not None:
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed" + (" (pip install opencv-python-headless)" if name == "opencv" else "")
    return None


def check_decoders(names: Sequence[str]) -> tuple[str, ...]:
    """The ``--decoder`` names, each known (a one-line UserError otherwise)."""
    for n in names:
        if n not in DECODERS:
            raise UserError(f"unknown decoder {n!r} (choose from {', '.join(DECODERS)})")
    return tuple(dict.fromkeys(names))


def check_decoder(name: str, jset: JpegSet, files: int = CHECK_FILES) -> dict:
    """Decoder ``name``'s output against Pillow's on up to ``files`` of the set: the max and mean
    absolute pixel difference, the tolerance, and whether it may be timed (``accepted``)."""
    from .data import spread

    tolerance = DECODER_TOLERANCE.get(name, 0)
    checked = spread(jset.paths, files)
    worst, total, count = 0, 0.0, 0
    try:
        for p in checked:
            raw = jset.read(p)
            a = np.asarray(decode_pillow(raw), dtype=np.int16)
            b = np.asarray(DECODERS[name](raw), dtype=np.int16)
            if a.shape != b.shape:
                return {"accepted": False, "tolerance": tolerance, "files": len(checked), "max_abs_diff": None,
                        "mean_abs_diff": None, "reason": f"decoded {b.shape[1]}x{b.shape[0]}x{b.shape[2] if b.ndim > 2 else 1}"
                        f" where Pillow decodes {a.shape[1]}x{a.shape[0]}x3 ({p.name})"}
            d = np.abs(a - b)
            worst, total, count = max(worst, int(d.max())), total + float(d.sum()), count + d.size
    except Exception as exc:  # noqa: BLE001 - a decoder that fails on a file Pillow reads is refused
        return {"accepted": False, "tolerance": tolerance, "files": len(checked), "max_abs_diff": None,
                "mean_abs_diff": None, "reason": f"failed: {first_line(exc)}"}
    ok = worst <= tolerance
    return {"accepted": ok, "tolerance": tolerance, "files": len(checked), "max_abs_diff": worst,
            "mean_abs_diff": total / max(count, 1),
            "reason": None if ok else f"max pixel difference from Pillow {worst} > tolerance {tolerance}"}


# ---- the files ---------------------------------------------------------------------------------

def _files_below(root: Path) -> list[Path]:
    found = []
    for parent, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(parent) / f for f in files if not f.startswith("."))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _labels_of(root: Path, paths: Sequence[Path]) -> list[int] | None:
    """ImageNet labels from each file's class folder, when every file lies in one that names a class."""
    tops = [p.relative_to(root).parts for p in paths]
    if not tops or any(len(t) < 2 for t in tops):
        return None
    index = imagenet_index(sorted({t[0] for t in tops}))
    if any(t[0] not in index for t in tops):
        return None
    return [index[t[0]] for t in tops]


def open_folder(folder: str | os.PathLike, source: str = "folder", distribution: dict | None = None) -> JpegSet:
    """Every readable JPEG under ``folder``; other files counted and skipped.  UserError: no such
    folder, an empty one, or none of its files a readable JPEG."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"--input jpeg:{folder}: " + ("is not a folder" if root.exists() else "no such folder"))
    files = _files_below(root)
    if not files:
        raise UserError(f"--input jpeg:{folder}: the folder is empty (no files to decode)")
    kept, skipped = [], []
    for p in files:
        try:
            with open(p, "rb") as f:
                head = f.read(3)
            if head != JPEG_MAGIC:
                skipped.append(f"{p.relative_to(root).as_posix()}: not a JPEG")
                continue
            with Image.open(p) as img:
                img.convert("RGB")  # decodes fully: truncated data fails here
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            skipped.append(f"{p.relative_to(root).as_posix()}: unreadable ({first_line(exc)})")
            continue
        kept.append(p)
    if not kept:
        raise UserError(f"--input jpeg:{folder}: none of its {len(files)} files is a readable JPEG "
                        f"(first: {skipped[0]})")
    labels = _labels_of(root, kept)
    h = hashlib.sha256()
    for p in kept:
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return JpegSet(root, source, kept, labels, len(files), skipped, h.hexdigest(), distribution)


def open_input(spec: JpegInput, cache_root: Path) -> JpegSet:
    """The set ``spec`` names: its folder, or the generated set (made once under ``cache_root``)."""
    if spec.folder is not None:
        return open_folder(spec.folder)
    root = generated_set(Path(cache_root) / "jpeg", spec.generated, spec.seed)
    return open_folder(root, "generated", GENERATED_DISTRIBUTION)


# ---- the generated set -------------------------------------------------------------------------

def _size(rng: np.random.Generator) -> tuple[int, int]:
    choices = GENERATED_DISTRIBUTION["sizes"]
    k = int(rng.choice(len(choices), p=[c[1] for c in choices]))
    if isinstance(choices[k][0], list):
        return tuple(choices[k][0])  # type: ignore[return-value]
    short = int(rng.integers(250, 501))
    return (500, short) if rng.random() < 0.5 else (short, 500)


def photo_like(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A seeded image with a photograph's structure: smooth areas, edges, low-amplitude texture."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    angle = rng.uniform(0, np.pi)
    t = (x * np.cos(angle) + y * np.sin(angle)) / max(width, height)
    t = t + 0.15 * np.sin(x / rng.uniform(40, 160) + rng.uniform(0, 6)) * np.cos(y / rng.uniform(40, 160))
    t = np.clip(t, 0, 1)[..., None]
    base = c0 * (1 - t) + c1 * t
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    shapes = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(shapes)
    for _ in range(int(rng.integers(3, 9))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.05, 0.3) * min(width, height)
        fill = tuple(int(v) for v in rng.uniform(0, 255, 3)) + (int(rng.uniform(160, 255)),)
        outline = tuple(int(v) for v in rng.uniform(0, 255, 3)) + (255,)
        box = [cx - r, cy - r * rng.uniform(0.5, 1.5), cx + r, cy + r * rng.uniform(0.5, 1.5)]
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse(box, fill=fill, outline=outline, width=int(rng.integers(1, 4)))
        elif kind == 1:
            draw.rectangle(box, fill=fill, outline=outline, width=int(rng.integers(1, 4)))
        else:
            pts = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))))]
            draw.polygon(pts, fill=fill, outline=outline)
    blur = float(rng.uniform(0, 1.5))
    if blur > 0.2:
        shapes = shapes.filter(ImageFilter.GaussianBlur(blur))
    img = Image.alpha_composite(img.convert("RGBA"), shapes).convert("RGB")
    a = np.asarray(img, dtype=np.float32)
    texture = _one_over_f(rng, width, height, float(rng.uniform(6, 16)))[..., None] * rng.uniform(0.6, 1.4, 3)
    noise = rng.normal(0, rng.uniform(1, 4), a.shape)
    return Image.fromarray(np.clip(a + texture + noise, 0, 255).astype(np.uint8))


def _one_over_f(rng: np.random.Generator, width: int, height: int, amplitude: float) -> np.ndarray:
    """Texture with a natural image's falling spectrum: seeded fields at scales 1..64 px, each
    upsampled and weighted by the square root of its scale, scaled to ``amplitude`` levels (std)."""
    out = np.zeros((height, width), np.float32)
    for k in range(7):
        s = 2**k
        f = rng.normal(0, 1, (height // s + 2, width // s + 2)).astype(np.float32)
        up = f[:height, :width] if s == 1 else np.asarray(Image.fromarray(f).resize((width, height), Image.BICUBIC))
        out += up * s**0.5
    return out / out.std() * amplitude


def generated_set(parent: Path, n: int = DEFAULT_GENERATED, seed: int = 0) -> Path:
    """The folder of the seeded set (``parent/gen<format>-n<n>-seed<seed>``), made once: written
    to a temporary folder and renamed into place, then its manifest (sizes, qualities, labels)
    written beside it, so a reader never sees half a set."""
    root = parent / f"gen{GENERATED_FORMAT}-n{n}-seed{seed}"
    manifest = parent / f"{root.name}.json"  # beside the folder: written last, it says the set is whole
    if manifest.is_file() and root.is_dir():
        return root
    parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root, ignore_errors=True)  # a set without its manifest was interrupted
    tmp = parent / f".tmp-{root.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(seed)
    classes = [int(c) for c in rng.choice(1000, 10, replace=False)]
    files = []
    for i in range(n):
        label = classes[i % len(classes)]
        w, h = _size(rng)
        quality = int(rng.integers(75, 96))
        folder = tmp / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{i:05d}.jpg"
        photo_like(rng, w, h).save(folder / name, "JPEG", quality=quality)
        files.append({"file": f"{label}/{name}", "label": label, "size": [w, h], "quality": quality})
    try:
        os.rename(tmp, root)
    except OSError:  # another process made it first: theirs is the same set
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(manifest, json.dumps({"seed": seed, "format": GENERATED_FORMAT,
                                            "distribution": GENERATED_DISTRIBUTION, "files": files}, indent=1))
    return root
