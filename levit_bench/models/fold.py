"""Fold BatchNorm away, for any model (not only LeViT): what every runtime is handed is the inference form.

Two steps.  First the model's own reparameterization, timm's convention
(``timm.utils.model.reparameterize_model``): a submodule with a ``fuse()`` method is replaced by
what it returns (timm's LeViT ``ConvNorm``/``LinearNorm``/``NormLinear``), one with
``reparameterize()`` or ``switch_to_deploy()`` is converted in place (RepVGG, MobileOne): the model's
authors know its structure best.  Then every remaining normalisation that directly consumes a
layer's output is folded into that layer, found by running the model once with hooks: a BatchNorm
folds into a Conv1d/Conv2d, or a BatchNorm1d into a Linear with a 2-D output, only when the BN's
input *is* that layer's output tensor and the layer runs once.  Plain BN layers become identities;
timm's BatchNormAct keeps its dropout and activation.  A BN subclass we don't know is left as it
is, never replaced by an identity (the paper's timing script did that, which with current timm
deletes EfficientNet's activations).
"""
from __future__ import annotations

import copy
import inspect
from collections.abc import Callable

import torch
from torch import nn

#: the methods of timm's reparameterization convention, in the order timm tries them
REPARAMETERIZE_METHODS = ("fuse", "reparameterize", "switch_to_deploy")
#: layers a following BatchNorm folds into (their weight's first dimension is the output channel)
FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)


@torch.no_grad()
def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``bn(x) == x * scale + shift`` in eval mode, per channel, in float64: the one place
    BatchNorm folding is computed (LeViT's layers and the generic fold both use it)."""
    scale = torch.sqrt(bn.running_var.double() + bn.eps).reciprocal()
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    return scale, shift


def _post_norm_part(bn: nn.modules.batchnorm._BatchNorm) -> nn.Module | None:
    """What remains of a BN layer once its normalisation is folded away (None: unknown subclass)."""
    if type(bn) in (nn.BatchNorm1d, nn.BatchNorm2d):
        return nn.Identity()
    act, drop = getattr(bn, "act", None), getattr(bn, "drop", None)
    if type(bn).__name__.startswith("BatchNormAct") and isinstance(act, nn.Module) and isinstance(drop, nn.Module):
        return nn.Sequential(drop, act)
    return None


def _method(module: nn.Module, name: str) -> Callable[[], object] | None:
    """``module.name`` when it is a method callable without arguments (a submodule that happens to
    be called ``fuse`` is not one)."""
    attr = getattr(module, name, None)
    if not callable(attr) or isinstance(attr, nn.Module):
        return None
    try:
        inspect.signature(attr).bind()
    except (TypeError, ValueError):
        return None
    return attr


def _reparameterized(module: nn.Module) -> nn.Module:
    """``module`` after its own ``fuse()`` (its return value replaces it; None: fused in place) or
    ``reparameterize()``/``switch_to_deploy()``, on the device and in the dtype it had."""
    like = next(module.parameters(), None)
    for name in REPARAMETERIZE_METHODS:
        method = _method(module, name)
        if method is None:
            continue
        with torch.device(like.device if like is not None else "cpu"):  # new layers where the old ones were
            out = method()
        if name == "fuse" and isinstance(out, nn.Module):
            module = out.to(dtype=like.dtype) if like is not None and like.is_floating_point() else out
        return module
    return module


@torch.no_grad()
def reparameterize(model: nn.Module) -> nn.Module:
    """``model`` (modified in place and returned) with every submodule's own reparameterization
    applied, top-down as ``timm.utils.model.reparameterize_model`` does; the root's too."""
    model = _reparameterized(model)
    for name, child in list(model.named_children()):
        new = reparameterize(child)
        if new is not child:
            setattr(model, name, new)
    return model


def find_foldable_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """Names of (layer, bn) pairs where the BN consumes exactly the layer's output (a Conv's, or a
    Linear's 2-D output for a BatchNorm1d), and the layer runs once and feeds no other BN."""
    outputs: dict[int, tuple[str, torch.Tensor]] = {}
    calls: dict[str, int] = {}
    pairs: list[tuple[str, str]] = []
    handles = []

    def layer_hook(name: str, linear: bool):
        def hook(_m, _inp, out):
            calls[name] = calls.get(name, 0) + 1
            if isinstance(out, torch.Tensor) and (not linear or out.dim() == 2):
                outputs[id(out)] = (name, out)  # keep the tensor alive so its id is not reused

        return hook

    def bn_hook(name: str):
        def hook(_m, args):
            src = outputs.get(id(args[0])) if args else None
            if src is not None and src[1] is args[0]:
                pairs.append((src[0], name))

        return hook

    for name, mod in model.named_modules():
        if isinstance(mod, FOLDABLE):
            handles.append(mod.register_forward_hook(layer_hook(name, isinstance(mod, nn.Linear))))
        elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            handles.append(mod.register_forward_pre_hook(bn_hook(name)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    layers = [c for c, _ in pairs]
    bns = [b for _, b in pairs]
    return [(c, b) for c, b in pairs if calls.get(c) == 1 and layers.count(c) == 1 and bns.count(b) == 1]


def _set(model: nn.Module, dotted: str, value: nn.Module) -> None:
    parent_name, _, attr = dotted.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, value)


@torch.no_grad()
def _fold_into(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """``layer`` changed in place to compute ``bn(layer(x))`` (float64 arithmetic, rounded once)."""
    dtype = layer.weight.dtype
    scale, shift = bn_scale_shift(bn)
    old_bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(shift)
    weight = layer.weight.double() * scale.reshape(-1, *([1] * (layer.weight.dim() - 1)))
    layer.weight.copy_(weight.to(dtype))
    if layer.bias is None:
        layer.bias = nn.Parameter(torch.empty_like(bn.running_mean, dtype=dtype))
    layer.bias.copy_((old_bias * scale + shift).to(dtype))


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """Eval-mode copy of ``model``: its own reparameterization (:func:`reparameterize`), then every
    foldable layer -> BN pair folded (float64 arithmetic).  ``model`` is not modified."""
    folded = reparameterize(copy.deepcopy(model).eval()).eval()
    param = next(folded.parameters(), None)
    if param is not None:
        example = example.to(device=param.device, dtype=param.dtype)
    for layer_name, bn_name in find_foldable_pairs(folded, example):
        layer = folded.get_submodule(layer_name)
        bn = folded.get_submodule(bn_name)
        rest = _post_norm_part(bn)
        if rest is None or not bn.track_running_stats or bn.running_var is None:
            continue
        _fold_into(layer, bn)
        _set(folded, bn_name, rest)
    return folded
