"""Shared fixtures: randomized weights that expose wiring errors, small seeded inputs."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("LEVIT_BENCH_NO_PROGRESS", "1")
torch.set_num_threads(min(2, os.cpu_count() or 1))


def randomize_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BN random statistics/affine parameters and every attention bias random values.

    Default init zeroes some BN weights and all attention biases, which hides wiring errors.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean") or "attention_biases" in name:
                t.copy_(torch.randn(t.shape, generator=g) * 0.5)
            elif ".bn." in name or name.startswith("bn") or "bn1" in name or "bn2" in name or "bn3" in name:
                if name.endswith("weight"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                elif name.endswith("bias"):
                    t.copy_(torch.randn(t.shape, generator=g) * 0.2)
    return model


def centered(logits: torch.Tensor) -> torch.Tensor:
    """The input-dependent part of a batch of logits (the common component removed)."""
    return logits - logits.mean(0, keepdim=True)


def centered_rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    c_ref = centered(ref)
    return ((centered(out) - c_ref).abs().max() / c_ref.abs().max()).item()


@pytest.fixture
def images() -> torch.Tensor:
    """Four different seeded float64 images at 224."""
    return torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
