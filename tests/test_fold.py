"""A fold that folds (issue 20, item 6): ``lb.fuse`` leaves no BatchNorm in any zoo model or in a
sample of ``timm:`` models, and the fused model computes what the unfused one does.

Norm statistics are randomized first (``randomize_norms``): with default ones (mean 0, var 1,
weight 1, bias 0) a BN is nearly the identity, and a fold that dropped it would pass.  Models are
built with random weights (``pretrained=False``, nothing downloaded) and checked at a small input
where they take one (the fold depends on the graph, not the resolution); one model per kind runs
in the fast tier, the others under ``slow``.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import levit_bench as lb
from levit_bench.models.fold import fold_batchnorm
from levit_bench.parity import compare_logits

from .conftest import randomize_norms

BN = nn.modules.batchnorm._BatchNorm
SMALL = 32  # the side models are checked at where they take any (LeViT and DeiT: their resolution)
#: in the fast tier: one LeViT of ours, one EfficientNet, the graft (DeiT has no BatchNorm to fold)
FAST_ZOO = {"levit_128s", "efficientnet_b0", "graft_r50s2_deits6"}
#: timm models with their own fuse() (LeViT: the issue's 60 BatchNorm1d), reparameterize() (RepVGG,
#: MobileOne) or none (BatchNorm2d, BatchNormAct2d after convolutions): name -> (side, fast tier)
TIMM_SAMPLE = {"timm:levit_256": (224, True), "timm:resnet18": (SMALL, True), "timm:repvgg_a0": (SMALL, True),
               "timm:efficientnet_b0": (SMALL, False), "timm:mobileone_s0": (SMALL, False)}


def _norms(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, BN)]


def _assert_fused_equals_unfused(model: nn.Module, size: int) -> None:
    """No BN left after ``lb.fuse``, and its logits equal the unfused model's (fp32 parity)."""
    randomize_norms(model).eval()
    fused = lb.fuse(model, img_size=size)
    assert _norms(fused) == [], f"BatchNorm left after fuse: {_norms(fused)[:5]}"
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        result = compare_logits(fused(x), model(x), "fp32")
    assert result.ok, result.reason


def _tiered(names_fast: list[tuple[str, bool]]) -> list:
    return [pytest.param(name, marks=() if fast else pytest.mark.slow) for name, fast in names_fast]


@pytest.mark.parametrize("name", _tiered([(name, name in FAST_ZOO) for name in lb.list_models()]))
def test_every_fused_zoo_model_has_no_batchnorm_and_equals_its_unfused_self(name):
    model = lb.create_model(name, img_size=SMALL)
    if lb.model_spec(name).family != "deit":
        assert _norms(model), "the unfused model has BatchNorm (the check is not vacuous)"
    _assert_fused_equals_unfused(model, SMALL)


@pytest.mark.parametrize("name", _tiered([(name, fast) for name, (_side, fast) in TIMM_SAMPLE.items()]))
def test_fused_timm_models_have_no_batchnorm_and_equal_their_unfused_selves(name):
    model = lb.create_model(name)
    assert _norms(model)
    _assert_fused_equals_unfused(model, TIMM_SAMPLE[name][0])


class _Folds(nn.Module):
    """A layer with timm's ``fuse()``: it returns the module that replaces it."""

    def __init__(self) -> None:
        super().__init__()
        self.linear, self.bn = nn.Linear(4, 4, bias=False), nn.BatchNorm1d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(x)) * 2

    def fuse(self) -> nn.Module:
        layer = nn.Linear(4, 4)
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        layer.weight.copy_(self.linear.weight * scale[:, None] * 2)
        layer.bias.copy_((self.bn.bias - self.bn.running_mean * scale) * 2)
        return layer


class _InPlace(nn.Module):
    """A layer with ``reparameterize()`` (RepVGG's convention: converts itself in place); its
    submodule named ``fuse`` is a module, not a method, and is never called."""

    def __init__(self) -> None:
        super().__init__()
        self.fuse = nn.Identity()
        self.scale = 3.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(x) * self.scale

    def reparameterize(self) -> None:
        self.scale = 3.0  # same function, marked as converted
        self.converted = True


def test_own_reparameterization_first_then_every_linear_and_conv_bn_pair():
    model = nn.Sequential(_Folds(), _InPlace(), nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(),
                          nn.Unflatten(1, (2, 3)), nn.Conv1d(2, 5, 1), nn.BatchNorm1d(5))
    randomize_norms(model).eval()
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    folded = fold_batchnorm(model, x)
    assert _norms(folded) == [] and isinstance(folded[0], nn.Linear) and folded[1].converted
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), rtol=1e-5, atol=1e-5)
    assert len(_norms(model)) == 3  # the argument is not modified


def test_a_batchnorm1d_over_another_dimension_than_the_linear_output_is_not_folded():
    """BatchNorm1d on a 3-D linear output normalizes dim 1 (tokens), not the linear's features: a
    fold into the linear would be wrong, so it stays."""
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(3))
    randomize_norms(model).eval()
    x = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    folded = fold_batchnorm(model, x)
    assert len(_norms(folded)) == 1
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x))
