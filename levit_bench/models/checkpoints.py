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
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError

WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "model_ema")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a ``.pth``/``.pt``/``.bin`` (optionally under ``model``/``state_dict``) or ``.safetensors`` file."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(p), device="cpu")
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is the user's to fix
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {p}: {first}") from None
    for key in WRAPPER_KEYS:
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{p} does not hold a state dict of tensors")
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
        ready[key] = value
    if strict and (missing or unexpected or conflicts):
        raise CheckpointError(_mismatch_message(source, missing, unexpected, conflicts))
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
