"""Images from a local folder, and each model's own evaluation transform.

Nothing is downloaded.  Two readers: :func:`find_images` (every image under a folder, for
calibration) and :func:`labelled_images` (an ImageNet-style folder, one sub-folder per class, for
accuracy).  A ``limit`` keeps images evenly spaced over the sorted list, not the first ones, so a
limited ImageNet folder still spans its classes (the first 500 files are all goldfish).

The evaluation transform is the one each model was published with:

* timm models: ``timm.data.resolve_data_config`` on the model's ``pretrained_cfg`` (read from timm's
  registry, never fetched), then ``timm.data.create_transform``.
* LeViT (and the grafted model of the same paper): the official code's eval transform.  The LeViT
  repository (facebookresearch/LeViT, ``main.py`` imports ``datasets.build_transform`` from the DeiT
  code it is built on) resizes the short side to ``int(256 / 224 * size)`` with bicubic
  interpolation, center-crops ``size``, and normalizes with the ImageNet mean/std: crop ratio
  0.875, i.e. 256 -> 224.  timm's own ``levit_*`` pretrained_cfg says ``crop_pct=0.9`` (timm's
  re-evaluation, not the paper's); the paper's figures were measured with 0.875, so that is used.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .errors import UserError

#: files read as images (what torchvision's ImageFolder reads), compared case-insensitively
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"})

#: the families built by this project whose eval transform is the LeViT paper's (see the module doc)
PAPER_FAMILIES = frozenset({"levit", "graft"})
PAPER_CROP_PCT = 0.875  # 224 / 256, as in the official code's int(256 / 224 * size)

#: what a broken image raises in PIL (truncated data, unknown format, a decompression bomb)
_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def eval_config(model_name: str, img_size: int | None = None) -> dict[str, Any]:
    """The evaluation preprocessing of ``model_name`` as timm's data-config keys (recorded with
    every accuracy figure): input_size, interpolation, crop_pct, crop_mode, mean, std."""
    import timm.data
    from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    from . import zoo

    spec = zoo.model_spec(model_name)
    size = zoo.input_size(model_name, img_size)
    if spec.family in PAPER_FAMILIES or spec.timm_name is None:
        return {"input_size": (3, size, size), "interpolation": "bicubic", "crop_pct": PAPER_CROP_PCT,
                "crop_mode": "center", "mean": tuple(IMAGENET_DEFAULT_MEAN), "std": tuple(IMAGENET_DEFAULT_STD)}
    pretrained = timm.models.get_pretrained_cfg(spec.timm_name)
    cfg = pretrained.to_dict() if pretrained is not None else {}
    return dict(timm.data.resolve_data_config({"input_size": (3, size, size)}, pretrained_cfg=cfg))


def eval_transform(model_name: str, img_size: int | None = None) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> normalized 3×size×size tensor, as ``model_name`` is evaluated (see the module doc)."""
    import timm.data

    return timm.data.create_transform(**eval_config(model_name, img_size), is_training=False)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _check_folder(root: Path) -> Path:
    root = Path(root)
    if not root.exists():
        raise UserError(f"image folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise UserError(f"{str(root)!r} is not a folder (give a folder of images)")
    return root


def spread(items: Sequence, limit: int | None) -> list:
    """At most ``limit`` of ``items``, evenly spaced and in order (all of them without a limit)."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit <= 0:
        return []
    return [items[i * len(items) // limit] for i in range(limit)]


def find_images(root: Path, limit: int | None = None) -> list[Path]:
    """Every image file under ``root`` (recursively, hidden folders excepted), sorted by relative
    path; at most ``limit``, evenly spaced.  UserError if the folder is missing or holds no image."""
    root = _check_folder(root)
    found = _images_below(root)
    if not found:
        raise UserError(f"no images in {str(root)!r} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return spread(sorted(found, key=lambda p: p.relative_to(root).as_posix()), limit)


def read_image(path: Path) -> Image.Image:
    """The image at ``path`` decoded as RGB; UserError naming the file if it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")  # convert() decodes fully: truncated data fails here, not later
    except _READ_ERRORS as exc:
        reason = str(exc).replace(repr(str(path)), "").replace(str(path), "").strip(" :") or type(exc).__name__
        raise UserError(f"cannot read image {str(path)!r}: {reason}") from None


def load_batch(paths: Sequence[Path], transform: Callable[[Image.Image], torch.Tensor]) -> torch.Tensor:
    """The images at ``paths`` transformed and stacked (N×3×H×W); UserError naming an unreadable file."""
    if not paths:
        raise UserError("no images to load")
    return torch.stack([transform(read_image(p)) for p in paths])


def load_readable(paths: Sequence[Path], transform: Callable[[Image.Image], torch.Tensor]
                  ) -> tuple[torch.Tensor | None, list[int], list[str]]:
    """Like :func:`load_batch` but an unreadable file is skipped: (the stacked batch of the readable
    ones or None, their positions in ``paths``, one message per skipped file)."""
    tensors, kept, skipped = [], [], []
    for i, p in enumerate(paths):
        try:
            tensors.append(transform(read_image(p)))
        except UserError as exc:
            skipped.append(str(exc))
            continue
        kept.append(i)
    return (torch.stack(tensors) if tensors else None), kept, skipped


def files_fingerprint(paths: Sequence[Path]) -> str:
    """sha256 over each file's name (relative to their common folder) and bytes, in the given order:
    the same images in the same order give the same key wherever the folder lives."""
    paths = [Path(p) for p in paths]
    if not paths:
        return hashlib.sha256(b"").hexdigest()
    common = Path(os.path.commonpath([str(p.resolve().parent) for p in paths]))
    h = hashlib.sha256()
    for p in paths:
        name = p.resolve().relative_to(common).as_posix().encode()
        h.update(len(name).to_bytes(8, "little") + name)
        try:
            h.update(p.stat().st_size.to_bytes(8, "little"))
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as exc:
            raise UserError(f"cannot read {str(p)!r}: {exc.strerror or exc}") from None
    return h.hexdigest()


# ---- ImageNet-style labelled folders ----------------------------------------------------------

@dataclass(frozen=True)
class LabelledImages:
    """An ImageNet-style folder read: (image, ImageNet class index) pairs, sorted by path."""

    root: Path
    samples: list[tuple[Path, int]]
    classes: dict[str, int]  # class folder name -> ImageNet-1k index
    found: int  # images in the folder before ``limit``

    @property
    def paths(self) -> list[Path]:
        return [p for p, _ in self.samples]


def imagenet_index(names: Sequence[str]) -> dict[str, int]:
    """Class-folder names -> ImageNet-1k indices: WordNet ids (n01440764 -> 0, from timm's own
    synset table) or the indices themselves (0..999).  Names that map to neither are left out."""
    from timm.data import ImageNetInfo

    wnids = {w: i for i, w in enumerate(ImageNetInfo("imagenet-1k").label_names())}
    out = {}
    for name in names:
        if name in wnids:
            out[name] = wnids[name]
        elif name.isdigit() and int(name) < len(wnids) and (name == "0" or not name.startswith("0")):
            out[name] = int(name)
    return out


def labelled_images(root: Path, limit: int | None = None) -> LabelledImages:
    """Read an ImageNet-style folder (``root/<class>/<image>``, nested folders allowed below a
    class); at most ``limit`` images, evenly spaced over the sorted list so every class is reached.
    UserError for a missing or empty folder and for class folders that are not ImageNet classes."""
    root = _check_folder(root)
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        loose = any(_is_image(p) for p in root.iterdir())
        what = "images but no class folders" if loose else "no class folders"
        raise UserError(f"{str(root)!r} has {what}: expected one sub-folder per class "
                        "(WordNet ids like n01440764, or class indices 0..999)")
    index = imagenet_index(folders)
    unmapped = [f for f in folders if f not in index]
    if unmapped:
        hint = ""
        if {"train", "val"} & set(unmapped):
            hint = f" (did you mean {str(root / ('val' if 'val' in unmapped else 'train'))!r}?)"
        shown = ", ".join(repr(f) for f in unmapped[:3]) + (f" and {len(unmapped) - 3} more" if len(unmapped) > 3 else "")
        raise UserError(f"class folders of {str(root)!r} are not ImageNet classes: {shown}; expected "
                        f"WordNet ids like n01440764 or class indices 0..999{hint}")
    samples = []
    for name in folders:
        samples.extend((p, index[name]) for p in _images_below(root / name))
    if not samples:
        raise UserError(f"no images in the class folders of {str(root)!r} "
                        f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    samples.sort(key=lambda s: s[0].relative_to(root).as_posix())
    return LabelledImages(root, spread(samples, limit), index, len(samples))


def _images_below(folder: Path) -> list[Path]:
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(parent) / f for f in files if _is_image(Path(parent) / f))
    return found
