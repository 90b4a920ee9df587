"""Per-image evaluation metrics: PSNR, SSIM and MAE, whole-image and restricted to a mask.

Conventions for every function: ``pred`` and ``target`` are N x C x H x W RGB images in [0, 1]
(data range 1.0; values are not clipped), computation is in float64, and the result is a float64
tensor of shape (N,), one value per image. Masks are N x 1 x H x W (or N x H x W) with 1 on the
pixels to score (values > 0.5 count as 1); a masked metric averages over all channels of those
pixels and is NaN for an image whose mask is empty. PSNR is +inf for identical images (no cap).
SSIM uses a Gaussian window of 11 with sigma 1.5 (torchmetrics, reflect-padded borders).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

__all__ = [
    "masked_mae",
    "masked_psnr",
    "masked_ssim",
    "mean_absolute_error",
    "psnr",
    "ssim",
]

_DATA_RANGE = 1.0
_SSIM_KERNEL_SIZE = 11
_SSIM_SIGMA = 1.5


def _prepare(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Validate NCHW shapes and cast to float64 (detached: metrics never need gradients)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim != 4:
        raise ValueError(f"expected N x C x H x W tensors, got shape {tuple(pred.shape)}")
    return pred.detach().double(), target.detach().double()


def _prepare_mask(mask: Tensor, like: Tensor) -> Tensor:
    """Return the mask as float64 {0, 1} of shape N x 1 x H x W."""
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    n, _, h, w = like.shape
    if mask.ndim != 4 or mask.shape[0] != n or mask.shape[1] != 1 or tuple(mask.shape[-2:]) != (h, w):
        raise ValueError(f"mask must be N x 1 x H x W = {(n, 1, h, w)}, got {tuple(mask.shape)}")
    return (mask.detach().to(like.device) > 0.5).double()


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of N x C x H x W ``values`` over the mask's pixels and all channels; NaN if empty."""
    total = (values * mask).sum(dim=(1, 2, 3))
    count = mask.sum(dim=(1, 2, 3)) * values.shape[1]
    # 0/0 yields the documented NaN for empty masks.
    return total / count


def _psnr_from_mse(mse: Tensor) -> Tensor:
    """PSNR in dB for data range 1.0; +inf where mse == 0, NaN stays NaN."""
    return 10.0 * torch.log10(_DATA_RANGE**2 / mse)


def _ssim_map(pred: Tensor, target: Tensor) -> Tensor:
    """Per-pixel, per-channel SSIM map (N x C x H x W)."""
    _, full = structural_similarity_index_measure(
        pred,
        target,
        gaussian_kernel=True,
        sigma=_SSIM_SIGMA,
        kernel_size=_SSIM_KERNEL_SIZE,
        data_range=_DATA_RANGE,
        reduction="none",
        return_full_image=True,
    )
    return full


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Whole-image PSNR (dB) per image; data range 1.0, float64, +inf for identical images."""
    pred, target = _prepare(pred, target)
    return _psnr_from_mse((pred - target).square().mean(dim=(1, 2, 3)))


def ssim(pred: Tensor, target: Tensor) -> Tensor:
    """Whole-image SSIM per image (torchmetrics, window 11, sigma 1.5, data range 1.0), float64."""
    pred, target = _prepare(pred, target)
    return structural_similarity_index_measure(
        pred,
        target,
        gaussian_kernel=True,
        sigma=_SSIM_SIGMA,
        kernel_size=_SSIM_KERNEL_SIZE,
        data_range=_DATA_RANGE,
        reduction="none",
    )


def mean_absolute_error(pred: Tensor, target: Tensor) -> Tensor:
    """Whole-image mean absolute error (L1) per image, float64, images in [0, 1]."""
    pred, target = _prepare(pred, target)
    return (pred - target).abs().mean(dim=(1, 2, 3))


def masked_psnr(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """PSNR per image from the MSE over mask pixels (all channels); NaN for empty masks."""
    pred, target = _prepare(pred, target)
    m = _prepare_mask(mask, pred)
    return _psnr_from_mse(_masked_mean((pred - target).square(), m))


def masked_ssim(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Whole-image SSIM map averaged over mask pixels (all channels); NaN for empty masks.

    The SSIM windows are computed on the whole image, so the score near the mask border also
    reflects context just outside the mask.
    """
    pred, target = _prepare(pred, target)
    m = _prepare_mask(mask, pred)
    return _masked_mean(_ssim_map(pred, target), m)


def masked_mae(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute error per image over mask pixels (all channels); NaN for empty masks."""
    pred, target = _prepare(pred, target)
    m = _prepare_mask(mask, pred)
    return _masked_mean((pred - target).abs(), m)
