"""Training losses, including the paper's Eq. 1 ``ssim_l1`` = (1 - SSIM) + weight * MSE.

The paper (and the authors' code) call the second term "L1" although it is the mean squared
error; ``ssim_mse`` is the same loss under an honest name. All losses expect NCHW float images
in [0, 1] and compute in float32 with autocast disabled, so they are safe under bf16 autocast.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional.image import structural_similarity_index_measure

__all__ = ["LOSS_NAMES", "SSIM_KERNEL_SIZE", "SSIM_SIGMA", "SSIMMAELoss", "SSIMMSELoss", "build_loss", "ssim_loss"]

SSIM_KERNEL_SIZE = 11
SSIM_SIGMA = 1.5
LOSS_NAMES: tuple[str, ...] = ("ssim_l1", "ssim_mse", "ssim_mae", "l1", "mse")


def _as_float32(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Check shapes and cast both tensors to float32 (bf16 SSIM statistics are too coarse)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    if pred.ndim != 4:
        raise ValueError(f"expected NCHW tensors, got shape {tuple(pred.shape)}")
    return pred.float(), target.float()


def ssim_loss(pred: Tensor, target: Tensor) -> Tensor:
    """1 - mean SSIM (Gaussian window 11, sigma 1.5, data range 1.0); differentiable."""
    pred, target = _as_float32(pred, target)
    # Autocast would push the Gaussian-window convolution back to bf16.
    with torch.autocast(device_type=pred.device.type, enabled=False):
        ssim = structural_similarity_index_measure(
            pred, target, gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL_SIZE, data_range=1.0
        )
    return 1.0 - ssim


class _Float32Loss(nn.Module):
    """Base class: runs ``_loss`` on float32 inputs with autocast disabled."""

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Return the scalar loss."""
        pred, target = _as_float32(pred, target)
        with torch.autocast(device_type=pred.device.type, enabled=False):
            return self._loss(pred, target)

    def _loss(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError


class SSIMMSELoss(_Float32Loss):
    """The paper's ``ssim_l1``: (1 - SSIM) + weight * MSE."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = float(weight)

    def _loss(self, pred: Tensor, target: Tensor) -> Tensor:
        return ssim_loss(pred, target) + self.weight * F.mse_loss(pred, target)

    def extra_repr(self) -> str:
        return f"weight={self.weight}"


class SSIMMAELoss(SSIMMSELoss):
    """``ssim_mae``: (1 - SSIM) + weight * mean absolute error (a true L1 term: it keeps pulling
    small errors to zero, where MSE's gradient fades)."""

    def _loss(self, pred: Tensor, target: Tensor) -> Tensor:
        return ssim_loss(pred, target) + self.weight * F.l1_loss(pred, target)


class _L1Loss(_Float32Loss):
    """Mean absolute error."""

    def _loss(self, pred: Tensor, target: Tensor) -> Tensor:
        return F.l1_loss(pred, target)


class _MSELoss(_Float32Loss):
    """Mean squared error."""

    def _loss(self, pred: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(pred, target)


def build_loss(name: str = "ssim_l1", weight: float = 1.0) -> Callable[[Tensor, Tensor], Tensor]:
    """Return loss(pred, target) -> scalar for ``ssim_l1``/``ssim_mse``, ``ssim_mae``, ``l1`` or ``mse``.

    ``weight`` scales the MSE (or MAE) term of the SSIM losses and is ignored by ``l1`` and ``mse``.
    """
    key = str(name).strip().lower()
    if key not in LOSS_NAMES:
        raise ValueError(f"unknown loss {name!r}; valid choices: {', '.join(LOSS_NAMES)}")
    weight = float(weight)
    if not weight >= 0.0:  # also rejects NaN
        raise ValueError(f"loss weight must be non-negative, got {weight}")
    if key in ("ssim_l1", "ssim_mse"):
        return SSIMMSELoss(weight)
    if key == "ssim_mae":
        return SSIMMAELoss(weight)
    return _L1Loss() if key == "l1" else _MSELoss()
