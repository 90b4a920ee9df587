"""Networks, losses, metrics and checkpointing for masked-face inpainting."""

from .checkpoint import (
    load_model,
    load_model_metadata,
    load_training_state,
    metadata_path,
    save_model,
    save_training_state,
)
from .losses import LOSS_NAMES, build_loss, ssim_loss
from .metrics import masked_mae, masked_psnr, masked_ssim, mean_absolute_error, psnr, ssim
from .networks import DEFAULT_FILTERS, MODEL_NAMES, InpaintingUNet, build_model, count_parameters

__all__ = [
    "DEFAULT_FILTERS",
    "LOSS_NAMES",
    "MODEL_NAMES",
    "InpaintingUNet",
    "build_loss",
    "build_model",
    "count_parameters",
    "load_model",
    "load_model_metadata",
    "load_training_state",
    "masked_mae",
    "masked_psnr",
    "masked_ssim",
    "mean_absolute_error",
    "metadata_path",
    "psnr",
    "save_model",
    "save_training_state",
    "ssim",
    "ssim_loss",
]
