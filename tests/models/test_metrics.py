"""Tests for unmask.models.metrics: per-image PSNR / SSIM / MAE, whole and masked."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from unmask.models import masked_mae, masked_psnr, masked_ssim, mean_absolute_error, psnr, ssim

H = W = 32


def _images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, H, W, generator=torch.Generator().manual_seed(seed))


def test_identical_images() -> None:
    x = _images()
    assert torch.isinf(psnr(x, x)).all() and (psnr(x, x) > 0).all()
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64), atol=1e-9)
    assert (mean_absolute_error(x, x) == 0).all()


def test_known_offset_gives_known_psnr_per_image() -> None:
    target = torch.full((3, 3, H, W), 0.5)
    offsets = torch.tensor([0.1, 0.01, 0.0]).view(3, 1, 1, 1)
    out = psnr(target + offsets, target)
    assert out.shape == (3,) and out.dtype == torch.float64
    assert out[0].item() == pytest.approx(20.0, abs=1e-4)
    assert out[1].item() == pytest.approx(40.0, abs=1e-3)
    assert math.isinf(out[2].item())
    mae = mean_absolute_error(target + offsets, target)
    assert mae.tolist() == pytest.approx([0.1, 0.01, 0.0], abs=1e-6)


def test_matches_torchmetrics() -> None:
    pred, target = _images(seed=1), _images(seed=2)
    ref_psnr = peak_signal_noise_ratio(pred.double(), target.double(), data_range=1.0, reduction="none", dim=(1, 2, 3))
    assert torch.allclose(psnr(pred, target), ref_psnr)
    ref_ssim = structural_similarity_index_measure(pred.double(), target.double(), data_range=1.0, reduction="none")
    out = ssim(pred, target)
    assert out.shape == (3,) and out.dtype == torch.float64
    assert torch.allclose(out, ref_ssim)


def test_masked_metrics_ignore_outside() -> None:
    target = torch.full((2, 3, H, W), 0.5)
    mask = torch.zeros(2, 1, H, W)
    mask[:, :, 8:16, 8:16] = 1
    pred = target + 0.1 * mask  # offset 0.1 inside the mask only
    noise = torch.rand(2, 3, H, W)
    pred = torch.where(mask.bool(), pred, noise)  # garbage outside the mask
    assert masked_psnr(pred, target, mask).tolist() == pytest.approx([20.0, 20.0], abs=1e-4)
    assert masked_mae(pred, target, mask).tolist() == pytest.approx([0.1, 0.1], abs=1e-6)
    # (N, H, W) masks are accepted too.
    assert torch.equal(masked_psnr(pred, target, mask[:, 0]), masked_psnr(pred, target, mask))


def test_masked_ssim() -> None:
    x = _images(2, seed=3)
    mask = torch.zeros(2, 1, H, W)
    mask[:, :, 2:8, 2:8] = 1
    y = x.clone()
    y[:, :, 20:, 20:] = torch.rand(2, 3, H - 20, W - 20)  # far (> window radius) from the mask
    assert torch.allclose(masked_ssim(y, x, mask), torch.ones(2, dtype=torch.float64), atol=1e-9)
    assert (ssim(y, x) < 0.99).all()
    full = torch.ones(2, 1, H, W)
    assert torch.allclose(masked_ssim(y, x, full), ssim(y, x))


def test_empty_mask_gives_nan_per_image() -> None:
    pred, target = _images(2, seed=4), _images(2, seed=5)
    mask = torch.zeros(2, 1, H, W)
    mask[1, :, :4, :4] = 1
    for fn in (masked_psnr, masked_ssim, masked_mae):
        out = fn(pred, target, mask)
        assert out.shape == (2,) and out.dtype == torch.float64
        assert math.isnan(out[0].item()) and math.isfinite(out[1].item())


def test_shape_errors() -> None:
    x = _images(2)
    with pytest.raises(ValueError, match="mask"):
        masked_psnr(x, x, torch.ones(2, 3, H, W))
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(x, x[:1])
