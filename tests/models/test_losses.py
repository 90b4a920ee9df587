"""Tests for unmask.models.losses (paper Eq. 1: 1 - SSIM + weight * MSE)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

from unmask.models import LOSS_NAMES, build_loss


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(2, 3, 24, 24, generator=g)
    pred = (target + 0.2 * torch.randn(2, 3, 24, 24, generator=g)).clamp(0, 1)
    return pred, target


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_zero_for_identical_positive_otherwise(name: str) -> None:
    loss = build_loss(name)
    pred, target = _pair()
    assert float(loss(target, target.clone())) == pytest.approx(0.0, abs=1e-5)
    assert float(loss(pred, target)) > 1e-3


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_differentiable(name: str) -> None:
    pred, target = _pair(1)
    pred.requires_grad_(True)
    value = build_loss(name)(pred, target)
    assert value.ndim == 0
    value.backward()
    assert pred.grad is not None
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0


def test_ssim_l1_is_one_minus_ssim_plus_weighted_mse() -> None:
    pred, target = _pair(2)
    ssim = structural_similarity_index_measure(pred, target, data_range=1.0, kernel_size=11, sigma=1.5)
    mse = F.mse_loss(pred, target)
    for weight in (0.0, 1.0, 2.5):
        expected = 1 - ssim + weight * mse
        assert float(build_loss("ssim_l1", weight)(pred, target)) == pytest.approx(float(expected), rel=1e-5)
        assert float(build_loss("ssim_mse", weight)(pred, target)) == pytest.approx(float(expected), rel=1e-5)
        with_mae = 1 - ssim + weight * (pred - target).abs().mean()
        assert float(build_loss("ssim_mae", weight)(pred, target)) == pytest.approx(float(with_mae), rel=1e-5)
    assert float(build_loss("l1")(pred, target)) == pytest.approx(float((pred - target).abs().mean()), rel=1e-6)
    assert float(build_loss("mse")(pred, target)) == pytest.approx(float(mse), rel=1e-6)


def test_float32_under_bf16_autocast() -> None:
    pred, target = _pair(3)
    pred_bf16 = pred.bfloat16().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = build_loss("ssim_l1")(pred_bf16, target)
    assert value.dtype == torch.float32
    assert torch.isfinite(value)
    value.backward()
    assert pred_bf16.grad is not None and pred_bf16.grad.dtype == torch.bfloat16


def test_errors() -> None:
    with pytest.raises(ValueError, match="ssim_l1, ssim_mse, ssim_mae, l1, mse"):
        build_loss("perceptual")
    with pytest.raises(ValueError, match="non-negative"):
        build_loss("ssim_l1", weight=-1.0)
    with pytest.raises(ValueError, match="shapes differ"):
        build_loss("mse")(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
