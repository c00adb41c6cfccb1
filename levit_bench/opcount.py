"""Operation counts of the models as timed: multiply-accumulates per image and parameters.

Counted with torch's own FLOP counter (``torch.utils.flop_counter.FlopCounterMode``) on the fused
model at its input size, batch 1, so the figure describes exactly what the runtimes are given.
The counter counts the operators that carry the arithmetic of these networks (convolutions, mm,
addmm, bmm, baddbmm, fused attention) at two FLOPs per multiply-accumulate; elementwise work
(activations, softmax, norms, bias adds) is not counted, as in the LeViT, DeiT and EfficientNet
papers, whose "FLOPs" are multiply-adds.  ``macs`` is therefore the counter's total over two.

One gap of the counter is filled here with torch's own formula: on CPU,
``F.scaled_dot_product_attention`` runs ``aten._scaled_dot_product_flash_attention_for_cpu``,
which torch 2.14's registry lacks (pytorch/pytorch#195460, fixed upstream by #195801), so timm's
DeiT lost its attention products (DeiT-Tiny counted 1.07 G instead of 1.25 G).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils import flop_counter


@dataclass(frozen=True)
class OpCount:
    """What one image costs the model as timed."""

    macs: int  # multiply-accumulates per image (torch's counter reports 2 FLOPs per MAC)
    params: int  # parameters of the counted (fused) model


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """torch's SDPA formula (the two batched products), for the CPU kernel it is not registered for."""
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def missing_formulas() -> dict:
    """Formulas to add to torch's registry: only those the installed torch lacks, so a torch that
    counts CPU attention itself is used as it is."""
    cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_sdpa is None or cpu_sdpa in flop_counter.flop_registry:
        return {}
    return {cpu_sdpa: _cpu_sdpa_flops}


def count_ops(model: nn.Module, img_size: int) -> OpCount:
    """Multiply-accumulates of one forward pass of ``model`` (as given: pass the fused model) on one
    ``img_size``² RGB image, in eval mode, without autograd; and its parameter count.  The input
    takes the model's device and dtype; the counts do not depend on either."""
    if img_size <= 0:
        raise ValueError(f"img_size must be positive, got {img_size}")
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    x = torch.zeros(1, 3, img_size, img_size, device=device, dtype=dtype)
    counter = flop_counter.FlopCounterMode(display=False, custom_mapping=missing_formulas())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return OpCount(macs=int(counter.get_total_flops()) // 2, params=sum(p.numel() for p in model.parameters()))


def model_ops(name: str, img_size: int | None = None) -> OpCount:
    """:func:`count_ops` of zoo model ``name`` as a run times it (built by the zoo, fused, at its own
    input size unless ``img_size``), counted once per process.

    The counts depend on shapes, not on weight values, so the model is built on torch's ``meta``
    device (no weights allocated, initialized or folded: three to ten times faster); a model whose
    build or forward needs real values is built with its seeded random weights instead.
    tests/test_opcount.py checks that both give the same counts."""
    from . import zoo

    return _zoo_ops(name, zoo.input_size(name, img_size))


@functools.lru_cache(maxsize=None)
def _zoo_ops(name: str, size: int) -> OpCount:
    try:
        return _count_built(name, size, torch.device("meta"))
    except (NotImplementedError, RuntimeError):  # an operator without a meta kernel, a value read
        return _count_built(name, size, torch.device("cpu"))


def _count_built(name: str, size: int, device: torch.device) -> OpCount:
    """The zoo's fused model (as ``zoo.subject`` makes it, without its weights hash) counted."""
    from . import zoo

    with device:
        model = zoo.create_model(name, img_size=size)
    fused = zoo.fuse(model, torch.zeros(1, 3, size, size, device=device))
    return count_ops(fused, size)
