"""Our LeViT against timm's, in float64, on the input-dependent part of the logits.

Tolerance: centered-logit error relative to the centered reference <= 1e-7 (correct
implementations agree to ~1e-11 in float64; a transposed bias index is off by ~1e-2).
"""
from __future__ import annotations

import functools

import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import levit_bench as lb
from levit_bench.models.levit import LEVIT_CONFIGS, bias_index, fuse_levit

from .conftest import centered_rel_err, randomize_norms, seeded_images

VARIANTS = list(LEVIT_CONFIGS)
PARITY_TOL = 1e-7


@functools.lru_cache(maxsize=1)
def _timm_reference(name: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """timm's ``name`` with randomized norms, in float64: its weights, and its logits on the seeded
    images.  Built once per variant and shared by both layouts (the parameters run variant by
    variant) and by the two mutation tests; one model alive at a time."""
    ref = randomize_norms(timm.create_model(name, pretrained=False)).eval().double()
    with torch.no_grad():
        return ref.state_dict(), ref(seeded_images())


def _timm_pair(name: str, layout: str) -> tuple[torch.Tensor, torch.nn.Module]:
    """timm's logits on the seeded images, and our ``layout`` of ``name`` holding timm's weights."""
    state, want = _timm_reference(name)
    ours = lb.create_model(name + ("_conv" if layout == "conv" else ""))
    ours.load_state_dict(
        {k: v.reshape(ours.state_dict()[k].shape) for k, v in state.items()}
    )
    return want, ours.double().eval()


def _variants():
    """Each variant in both layouts, variant by variant; levit_128s in the fast tier, the larger
    ones (float64 at 224: up to tens of seconds each on 2 cores) slow."""
    for name in VARIANTS:
        for layout in ("token", "conv"):
            yield pytest.param(name, layout, id=f"{layout}-{name}",
                               marks=() if name == "levit_128s" else pytest.mark.slow)


@pytest.mark.parametrize("name, layout", _variants())
def test_parity_with_timm(name, layout, images):
    assert torch.equal(images, seeded_images())  # the images the reference logits are of
    want, ours = _timm_pair(name, layout)
    with torch.no_grad():
        got = ours(images)
        got_fused = lb.fuse(ours)(images)
    assert centered_rel_err(got, want) < PARITY_TOL
    assert centered_rel_err(got_fused, want) < PARITY_TOL
    assert got_fused.dtype == torch.float64


def test_broken_bias_index_fails_parity(images):
    """Mutation test: the metric must catch a transposed (|dy|, |dx|) bias index."""
    want, ours = _timm_pair("levit_128s", "token")
    for m in ours.modules():
        if hasattr(m, "attention_bias_idxs"):
            r = int(m.attention_biases.shape[1] ** 0.5)
            idx = m.attention_bias_idxs
            m.attention_bias_idxs = (idx % r) * r + idx // r
    with torch.no_grad():
        err = centered_rel_err(ours(images), want)
    assert err > 1e3 * PARITY_TOL


def test_zeroed_bias_is_caught(images):
    want, ours = _timm_pair("levit_128s", "token")
    with torch.no_grad():
        for m in ours.modules():
            if hasattr(m, "attention_biases"):
                m.attention_biases.zero_()
        assert centered_rel_err(ours(images), want) > 1e3 * PARITY_TOL


@pytest.mark.parametrize("name", [n if n == "levit_128s" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in VARIANTS])
def test_parameter_counts_match_paper(name):
    model = lb.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == lb.model_spec(name).published.params


@pytest.mark.parametrize("name", [n if n == "levit_128s" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in VARIANTS])
def test_flops_within_two_percent(name):
    model = lb.create_model(name)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    mult_adds_m = counter.get_total_flops() / 2 / 1e6
    published = lb.model_spec(name).published.flops_m
    assert abs(mult_adds_m - published) / published < 0.02, (mult_adds_m, published)


@pytest.mark.slow
def test_levit256_shapes():
    model = lb.create_model("levit_256_conv")
    x = torch.zeros(2, 3, 224, 224)
    with torch.no_grad():
        stem = model.stem(x)
        feats = model.forward_features(x)
    assert stem.shape == (2, 256, 14, 14)
    assert feats.shape == (2, 512, 4, 4)
    assert model(x).shape == (2, 1000)
    token = lb.create_model("levit_256")
    with torch.no_grad():
        assert token.forward_features(x).shape == (2, 16, 512)


def test_layout_by_override_matches_suffix():
    assert lb.create_model("levit_128s", layout="conv").layout == "conv"
    assert lb.create_model("levit_128s_conv").layout == "conv"


def test_stale_bias_after_eval_and_forward():
    """Weights loaded after eval() and a first forward must take effect (no cached biases)."""
    a, b = lb.create_model("levit_128s"), lb.create_model("levit_128s")
    randomize_norms(a, seed=3)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        b(x)  # a first eval forward
        b.load_state_dict(a.state_dict())
        assert torch.equal(a(x), b(x))
        # and in-place edits of the bias table too
        for m in b.modules():
            if hasattr(m, "attention_biases"):
                m.attention_biases.add_(1.0)
        assert not torch.allclose(a(x), b(x))


@pytest.mark.parametrize("layout", ["token", "conv"])
def test_non_224_input(layout):
    model = randomize_norms(lb.create_model("levit_128s", img_size=160, layout=layout)).double()
    assert model.cfg.resolutions == [10, 5, 3]
    x = torch.randn(4, 3, 160, 160, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, fused = model(x), lb.fuse(model)(x)
    assert out.shape == (4, 1000)
    assert centered_rel_err(fused, out) < PARITY_TOL


def test_bad_input_size_rejected():
    with pytest.raises(lb.UserError, match="divisible by 16"):
        lb.create_model("levit_128s", img_size=100)


def test_fuse_leaves_original_untouched(images):
    model = randomize_norms(lb.create_model("levit_128s")).double()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_levit(model)
    assert fused is not model and not model.fused
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fused.modules())


def test_training_returns_both_heads():
    model = lb.create_model("levit_128s").train()
    out = model(torch.randn(2, 3, 224, 224))
    assert isinstance(out, tuple) and len(out) == 2
    model.eval()
    with torch.no_grad():
        x = torch.randn(2, 3, 224, 224)
        feats = model.forward_features(x).mean(1)
        assert torch.allclose(model(x), (model.head(feats) + model.head_dist(feats)) / 2)


def test_bias_index_matches_official_enumeration():
    """The official code numbers (|dx|, |dy|) offsets in order of first appearance."""
    import itertools

    for res, stride in [(14, 1), (14, 2), (7, 2)]:
        points = list(itertools.product(range(res), range(res)))
        queries = list(itertools.product(range(0, res, stride), range(0, res, stride)))
        offsets: dict = {}
        idxs = []
        for p1 in queries:
            for p2 in points:
                off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                offsets.setdefault(off, len(offsets))
                idxs.append(offsets[off])
        assert torch.equal(bias_index(res, stride), torch.tensor(idxs).view(len(queries), len(points)))
