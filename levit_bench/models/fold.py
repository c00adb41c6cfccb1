"""Fold BatchNorm into the convolution that feeds it, for any model (not only LeViT).

Pairs are found by running the model once with hooks: a BatchNorm2d is folded into a Conv2d only
when the BN's input *is* that conv's output tensor and the conv runs once.  Plain BN layers become
identities; timm's BatchNormAct2d keeps its dropout and activation.  A BN subclass we don't know is
left as it is, never replaced by an identity (the paper's timing script did that, which with current
timm deletes EfficientNet's activations).
"""
from __future__ import annotations

import copy

import torch
from torch import nn


@torch.no_grad()
def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``bn(x) == x * scale + shift`` in eval mode, per channel, in float64: the one place
    BatchNorm folding is computed (LeViT's layers and the generic conv fold both use it)."""
    scale = torch.sqrt(bn.running_var.double() + bn.eps).reciprocal()
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    return scale, shift


def _post_norm_part(bn: nn.BatchNorm2d) -> nn.Module | None:
    """What remains of a BN layer once its normalisation is folded away (None: unknown subclass)."""
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    act, drop = getattr(bn, "act", None), getattr(bn, "drop", None)
    if type(bn).__name__ == "BatchNormAct2d" and isinstance(act, nn.Module) and isinstance(drop, nn.Module):
        return nn.Sequential(drop, act)
    return None


def find_conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """Names of (conv, bn) pairs where the BN consumes exactly the conv's output."""
    outputs: dict[int, tuple[str, torch.Tensor]] = {}
    calls: dict[str, int] = {}
    pairs: list[tuple[str, str]] = []
    handles = []

    def conv_hook(name: str):
        def hook(_m, _inp, out):
            calls[name] = calls.get(name, 0) + 1
            outputs[id(out)] = (name, out)  # keep the tensor alive so its id is not reused

        return hook

    def bn_hook(name: str):
        def hook(_m, args):
            src = outputs.get(id(args[0]))
            if src is not None and src[1] is args[0]:
                pairs.append((src[0], name))

        return hook

    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook(name)))
        elif isinstance(mod, nn.BatchNorm2d):
            handles.append(mod.register_forward_pre_hook(bn_hook(name)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    convs = [c for c, _ in pairs]
    bns = [b for _, b in pairs]
    return [(c, b) for c, b in pairs if calls.get(c) == 1 and convs.count(c) == 1 and bns.count(b) == 1]


def _set(model: nn.Module, dotted: str, value: nn.Module) -> None:
    parent_name, _, attr = dotted.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, value)


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """Eval-mode copy of ``model`` with every foldable conv -> BN pair folded (float64 arithmetic)."""
    folded = copy.deepcopy(model).eval()
    param = next(folded.parameters(), None)
    if param is not None:
        example = example.to(device=param.device, dtype=param.dtype)
    for conv_name, bn_name in find_conv_bn_pairs(folded, example):
        conv = folded.get_submodule(conv_name)
        bn = folded.get_submodule(bn_name)
        rest = _post_norm_part(bn)
        if rest is None or not bn.track_running_stats or bn.running_var is None:
            continue
        dtype = conv.weight.dtype
        scale, shift = bn_scale_shift(bn)
        old_bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(shift)
        with torch.no_grad():
            weight = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
            conv.weight.copy_(weight.to(dtype))
            if conv.bias is None:
                conv.bias = nn.Parameter(torch.empty_like(bn.running_mean, dtype=dtype))
            conv.bias.copy_((old_bias * scale + shift).to(dtype))
        _set(folded, bn_name, rest)
    return folded
