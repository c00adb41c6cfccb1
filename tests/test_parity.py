import torch

from levit_bench.parity import TOLERANCES, compare_logits


def _ref(scale_dependent: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    common = torch.randn(1, 1000, generator=g)
    return common + scale_dependent * torch.randn(8, 1000, generator=g)


def test_identical_passes_every_precision():
    ref = _ref()
    for precision in TOLERANCES:
        assert compare_logits(ref.clone(), ref, precision).ok


def test_output_that_ignores_the_input_fails():
    ref = _ref(0.05)
    constant = ref.mean(0, keepdim=True).expand_as(ref)  # right on average, blind to the input
    result = compare_logits(constant, ref, "fp32")
    assert not result.ok and "cosine" in result.reason


def test_small_error_relative_to_logits_but_large_in_input_dependent_part_fails():
    ref = _ref(0.01)
    wrong = ref.clone()
    wrong[:, :10] += 0.01 * torch.randn(8, 10, generator=torch.Generator().manual_seed(3))
    result = compare_logits(wrong, ref, "fp32")
    assert result.max_rel_diff < TOLERANCES["fp32"]["max_rel_diff"] * 100
    assert not result.ok


def test_half_precision_noise_passes_its_tolerance_not_fp32():
    ref = _ref()
    noisy = ref.to(torch.bfloat16).float()
    assert compare_logits(noisy, ref, "bf16").ok
    assert not compare_logits(noisy, ref, "fp32").ok


def test_nan_and_shape_mismatch_fail():
    ref = _ref()
    bad = ref.clone()
    bad[0, 0] = float("nan")
    assert compare_logits(bad, ref).reason == "output has NaN or inf"
    assert "shape" in compare_logits(ref[:, :10], ref).reason


def test_unresolvable_input_dependence_is_not_gated_in_bf16():
    ref = _ref(1e-4)
    noisy = ref.to(torch.bfloat16).float()
    result = compare_logits(noisy, ref, "bf16")
    assert result.ok and not result.cosine_gated
