"""Reading weights from local files, recognising their key layout, and loading them all-or-nothing.

Recognised LeViT layouts:

* ``official``: facebookresearch/LeViT (``patch_embed.0.c.weight``, ``blocks.3.m.qkv.c.weight``,
  ``head.l.weight``, persistent ``attention_bias_idxs``); old timm releases used the same names;
* ``timm``: current timm (``stem.conv1.linear.weight``, ``stages.0.blocks.0.attn.qkv.linear.weight``),
  which is also our own layout.

Token-layout weights (2-D) load into the conv layout (1x1 kernels) and back.  Nothing is ever
downloaded: ``path`` is a file on disk.
"""
from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError

WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "model_ema")


EXPECTED = "expected a state dict saved with torch.save or a .safetensors file"
#: a safetensors header larger than this is not believed (safetensors itself refuses above 100 MB)
MAX_SAFETENSORS_HEADER = 100_000_000


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _looks_like_text(head: bytes) -> str | None:
    """The first line of ``head`` when it is text (an HTML error page, a Git LFS pointer, ...), else None."""
    if not head or b"\0" in head:
        return None
    text = head.decode("utf-8", errors="replace")
    if text[:-4].count("\ufffd") or not all(c.isprintable() or c in "\r\n\t\ufffd" for c in text):
        return None
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:60] + ("..." if len(line) > 60 else "")


def _safetensors_header_length(head: bytes, size: int) -> int | None:
    """The header length when ``head`` starts like a safetensors file (8-byte length, then ``{``)."""
    if len(head) < 9:
        return None
    n = int.from_bytes(head[:8], "little")
    return n if 2 <= n <= size - 8 and head[8:9] == b"{" else None


def _safetensors_problem(p: Path, head: bytes, size: int) -> str | None:
    """Why ``p`` is not a complete safetensors file (bad header, truncated data), or None."""
    import json

    if size < 8:
        return f"{size} bytes, shorter than the 8-byte header length"
    n = int.from_bytes(head[:8], "little")
    if n > MAX_SAFETENSORS_HEADER or n > size - 8:
        return (f"its header length field says {n:,} bytes but the file has {size - 8:,} after it: "
                "bad header or truncated")
    with open(p, "rb") as f:
        f.seek(8)
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return f"its {n}-byte header is not JSON ({_first_line(exc)})"
    if not isinstance(header, dict):
        return f"its header is a JSON {type(header).__name__}, not an object"
    ends = [v.get("data_offsets", [0, 0])[1] for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and isinstance(v.get("data_offsets"), list)
            and len(v["data_offsets"]) == 2 and isinstance(v["data_offsets"][1], int)]
    if ends and 8 + n + max(ends) > size:
        return f"truncated: its tensors need {8 + n + max(ends):,} bytes, the file has {size:,}"
    return None


def _zip_problem(p: Path) -> str | None:
    """Why ``p`` (a zip) is not a PyTorch zip checkpoint, or None."""
    import zipfile

    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return f"truncated or corrupt zip: {_first_line(exc)}"
    if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        shown = ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
        return f"a zip archive without data.pkl, holding {shown or 'nothing'}"
    return None


def _unreadable(p: Path, what: str) -> CheckpointError:
    return CheckpointError(f"cannot read checkpoint {p}: {what}; {EXPECTED}")


def _read_any(p: Path) -> object:
    """The object stored in ``p``, or a CheckpointError saying what the file is and what was expected."""
    size = p.stat().st_size
    if size == 0:
        raise _unreadable(p, "empty file (0 bytes)")
    with open(p, "rb") as f:
        head = f.read(4096)
    if p.suffix == ".safetensors" or _safetensors_header_length(head, size) is not None:
        problem = _safetensors_problem(p, head, size)
        if problem:
            raise _unreadable(p, f"not a valid safetensors file ({problem})")
        try:
            from safetensors.torch import load_file

            return load_file(str(p), device="cpu")
        except ImportError:
            raise CheckpointError(f"{p} is a safetensors file: pip install safetensors to read it") from None
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
            raise _unreadable(p, f"corrupt safetensors file ({_first_line(exc)})") from None
    if head.startswith(b"PK"):
        problem = _zip_problem(p)
        if problem:
            raise _unreadable(p, f"not a PyTorch checkpoint ({problem})")
    elif head.startswith(b"version https://git-lfs"):
        raise _unreadable(p, "a Git LFS pointer, not the file itself (git lfs pull fetches it)")
    elif (line := _looks_like_text(head)) is not None:
        raise _unreadable(p, f"not a PyTorch checkpoint (a text file starting {line!r})")
    elif not head.startswith(b"\x80"):  # pickle protocol >= 2: torch's legacy format
        raise _unreadable(p, f"not a PyTorch checkpoint (unknown binary format, starts with {head[:8].hex(' ')})")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise, and an error under -W error
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
            what = ("a pickle of Python objects other than tensors (e.g. a whole model saved with "
                    "torch.save(model)), which is not unpickled for safety; save model.state_dict() instead")
        elif head.startswith(b"PK"):
            what = f"not a PyTorch checkpoint (corrupt zip checkpoint: {_first_line(exc)})"
        else:
            what = f"not a PyTorch checkpoint (legacy pickle format: {_first_line(exc)})"
        raise _unreadable(p, what) from None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a ``.pth``/``.pt``/``.bin`` (optionally under ``model``/``state_dict``) or ``.safetensors`` file.

    An unreadable file raises a :class:`CheckpointError` saying what the file is (empty, text,
    truncated zip, bad safetensors header, a pickle of something else) and what was expected.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        obj = _read_any(p)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {p}: {exc.strerror or exc}") from None
    for key in WRAPPER_KEYS:
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{p} holds a {type(obj).__name__}, not a state dict; {EXPECTED}")
    bad = next(((k, v) for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise CheckpointError(
            f"{p} holds a dict whose entry {str(bad[0])!r} is a {type(bad[1]).__name__}, not a tensor "
            f"(keys: {', '.join(map(str, list(obj)[:5]))}{', ...' if len(obj) > 5 else ''}); {EXPECTED}"
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """``official``, ``timm`` or ``other`` (any non-LeViT or unknown naming)."""
    keys = state_dict.keys()
    if any(k.startswith("patch_embed.0.c.") for k in keys) and any(k.startswith("blocks.") for k in keys):
        return "official"
    if any(k.startswith("stem.conv1.linear.") for k in keys):
        return "timm"
    return "other"


def official_prefix_map(depth: tuple[int, ...]) -> list[tuple[str, str]]:
    """(official prefix, our prefix) pairs for a LeViT with these stage depths.

    The official model is one flat ``blocks`` list: each stage's (attention, MLP) residual pairs,
    then between stages a shrinking attention and a residual MLP.  Ours nests them in stages.
    """
    pairs = [(f"patch_embed.{2 * i}.c.", f"stem.conv{i + 1}.linear.") for i in range(4)]
    pairs += [(f"patch_embed.{2 * i}.bn.", f"stem.conv{i + 1}.bn.") for i in range(4)]
    flat = 0
    for s, d in enumerate(depth):
        if s > 0:
            down = f"stages.{s}.downsample."
            pairs += [
                (f"blocks.{flat}.kv.c.", down + "attn_downsample.kv.linear."),
                (f"blocks.{flat}.kv.bn.", down + "attn_downsample.kv.bn."),
                (f"blocks.{flat}.q.1.c.", down + "attn_downsample.q.ln.linear."),
                (f"blocks.{flat}.q.1.bn.", down + "attn_downsample.q.ln.bn."),
                (f"blocks.{flat}.proj.1.c.", down + "attn_downsample.proj.ln.linear."),
                (f"blocks.{flat}.proj.1.bn.", down + "attn_downsample.proj.ln.bn."),
                (f"blocks.{flat}.attention_bias", down + "attn_downsample.attention_bias"),
            ]
            pairs += _mlp_pairs(f"blocks.{flat + 1}.m.", down + "mlp.")
            flat += 2
        for b in range(d):
            blk = f"stages.{s}.blocks.{b}."
            pairs += [
                (f"blocks.{flat}.m.qkv.c.", blk + "attn.qkv.linear."),
                (f"blocks.{flat}.m.qkv.bn.", blk + "attn.qkv.bn."),
                (f"blocks.{flat}.m.proj.1.c.", blk + "attn.proj.ln.linear."),
                (f"blocks.{flat}.m.proj.1.bn.", blk + "attn.proj.ln.bn."),
                (f"blocks.{flat}.m.attention_bias", blk + "attn.attention_bias"),
            ]
            pairs += _mlp_pairs(f"blocks.{flat + 1}.m.", blk + "mlp.")
            flat += 2
    pairs += [("head.l.", "head.linear."), ("head_dist.l.", "head_dist.linear.")]
    pairs += [("head.bn.", "head.bn."), ("head_dist.bn.", "head_dist.bn.")]
    return pairs


def _mlp_pairs(official: str, ours: str) -> list[tuple[str, str]]:
    return [
        (official + "0.c.", ours + "ln1.linear."),
        (official + "0.bn.", ours + "ln1.bn."),
        (official + "2.c.", ours + "ln2.linear."),
        (official + "2.bn.", ours + "ln2.bn."),
    ]


def _rename(state_dict: Mapping[str, torch.Tensor], pairs: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for src, dst in pairs:
            if key.startswith(src):
                key = dst + key[len(src) :]
                break
        out[key] = value
    return out


def official_to_ours(state_dict: Mapping[str, torch.Tensor], depth: tuple[int, ...]) -> dict[str, torch.Tensor]:
    return _rename(state_dict, official_prefix_map(depth))


def ours_to_official(state_dict: Mapping[str, torch.Tensor], depth: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """The inverse map (used to write official-layout files, e.g. in tests)."""
    return _rename(state_dict, [(b, a) for a, b in official_prefix_map(depth)])


def _check_bias_indices(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Official files carry ``attention_bias_idxs``; they must equal ours (same resolutions)."""
    for key in [k for k in state_dict if k.endswith("attention_bias_idxs")]:
        stored = state_dict.pop(key)
        try:
            ours = model.get_buffer(key)
        except AttributeError:
            continue  # reported as unexpected below if the module does not exist at all
        if stored.shape != ours.shape or not torch.equal(stored.to(ours.device), ours):
            raise CheckpointError(
                f"{key}: the checkpoint's attention-bias index {tuple(stored.shape)} does not match the model's "
                f"{tuple(ours.shape)} (trained at another input size?)"
            )


def load_checkpoint(model: nn.Module, path: str | os.PathLike, *, strict: bool = True) -> nn.Module:
    """Load a local checkpoint into ``model`` in place and return it.

    With ``strict=True`` (default) any missing or unexpected key or shape conflict raises a
    :class:`CheckpointError` naming them, and nothing is loaded.  With ``strict=False`` every key
    that fits is loaded and the rest is ignored.
    """
    return load_state_dict_into(model, read_state_dict(path), strict=strict, source=str(path))


def load_state_dict_into(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, strict: bool = True, source: str = "state dict"
) -> nn.Module:
    """Remap ``state_dict`` to the model's key layout and load it (see :func:`load_checkpoint`)."""
    from .levit import Levit

    sd = dict(state_dict)
    if isinstance(model, Levit):
        if getattr(model, "fused", False):
            raise CheckpointError("load weights before fuse(): a fused model has no BatchNorm layers to load into")
        if detect_layout(sd) == "official":
            sd = official_to_ours(sd, model.cfg.depth)
        _check_bias_indices(model, sd)

    target = model.state_dict()
    missing = [k for k in target if k not in sd]
    unexpected = [k for k in sd if k not in target]
    conflicts, ready = [], {}
    for key, value in sd.items():
        if key not in target:
            continue
        want = target[key].shape
        if value.shape != want:
            if value.numel() == target[key].numel() and _same_up_to_unit_dims(value.shape, want):
                value = value.reshape(want)  # token <-> conv layout (Linear <-> 1x1 conv)
            else:
                conflicts.append(f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(want)}")
                continue
        if target[key].is_floating_point() and not value.is_floating_point():
            conflicts.append(f"{key}: checkpoint holds {value.dtype} where the model has {target[key].dtype} "
                             "(integer weights would be cast, not loaded)")
            continue
        ready[key] = value
    if strict and (missing or unexpected or conflicts):
        raise CheckpointError(_mismatch_message(source, missing, unexpected, conflicts))
    bad = [k for k, v in ready.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{source}: {len(bad)} tensor(s) hold NaN or inf, e.g. {bad[0]}: every output would "
                              "be NaN (a diverged or damaged checkpoint)")
    result = model.load_state_dict(ready, strict=False)
    del result
    return model


def _same_up_to_unit_dims(a: torch.Size, b: torch.Size) -> bool:
    strip = lambda s: tuple(s)[:2] if len(s) > 2 and all(d == 1 for d in s[2:]) else tuple(s)  # noqa: E731
    return strip(a) == strip(b)


def _mismatch_message(source: str, missing: list[str], unexpected: list[str], conflicts: list[str]) -> str:
    def show(label: str, items: list[str]) -> str:
        more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
        return f"\n  {label} ({len(items)}): " + ", ".join(items[:8]) + more

    msg = f"checkpoint {source} does not fit the model; nothing was loaded (strict=False loads what fits)"
    if missing:
        msg += show("missing keys", missing)
    if unexpected:
        msg += show("unexpected keys", unexpected)
    if conflicts:
        msg += show("shape conflicts", conflicts)
    return msg
