from __future__ import annotations

import pytest
import torch

import levit_bench as lb

from .conftest import centered_rel_err, randomize_norms


def test_list_models_covers_zoo():
    names = lb.list_models()
    for n in ["levit_128s", "levit_384_conv", "deit_small_distilled", "efficientnet_b4", "graft_r50s2_deits6"]:
        assert n in names
    assert lb.list_models("levit_1*") == ["levit_128s", "levit_128s_conv", "levit_128", "levit_128_conv", "levit_192", "levit_192_conv"]


def test_spec_has_published_figures():
    spec = lb.model_spec("levit_192")
    assert spec.family == "levit" and spec.img_size == 224
    assert spec.published.intel_cpu == 65.0 and spec.published.top1 == 80.0
    assert lb.model_spec("efficientnet_b3").img_size == 300


def test_unknown_name_suggests_closest():
    with pytest.raises(lb.UserError, match="levit_256"):
        lb.create_model("levit_265")


def test_timm_prefix():
    model = lb.create_model("timm:resnet18", num_classes=10)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    with pytest.raises(lb.UserError, match="timm has no model"):
        lb.model_spec("timm:resnet_does_not_exist")


def test_graft_parameter_count_within_3_percent():
    model = lb.create_model("graft_r50s2_deits6")
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 13.1e6) / 13.1e6 < 0.03
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)


@pytest.mark.parametrize("name, size", [("efficientnet_b0", 96),
                                        pytest.param("graft_r50s2_deits6", 224, marks=pytest.mark.slow)])
def test_generic_fuse_is_a_real_fold(name, size):
    """float64, two images: a fold is exact at any input size, so EfficientNet (fully convolutional)
    is checked at 96 px; the graft's DeiT half has position embeddings for 224 only."""
    model = randomize_norms(lb.create_model(name)).double()
    x = torch.randn(2, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fused = lb.fuse(model)
    bns = [m for m in fused.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert not bns
    with torch.no_grad():
        assert centered_rel_err(fused(x), model(x)) < 1e-9
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # original untouched


def test_efficientnet_fold_keeps_activations():
    """The paper's stand-in (BN -> identity) deletes EfficientNet's activations; ours keeps them."""
    fused = lb.fuse(lb.create_model("efficientnet_b0"))
    acts = [m for m in fused.modules() if isinstance(m, torch.nn.SiLU)]
    assert len(acts) >= 40


def test_a_subject_names_its_family_for_the_backends():
    """Backends choose per-family settings (OpenVINO's int8 preset) from ModelId, not from the zoo."""
    from levit_bench.zoo import subject

    assert subject("levit_128s", img_size=64).model_id.family == "levit"
