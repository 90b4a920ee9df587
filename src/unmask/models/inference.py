"""Running a trained network: batched restoration and the masked | restored | ground-truth figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch import nn

from unmask.imaging.grids import image_grid
from unmask.models.data import PairedFaceDataset, tensor_to_image
from unmask.models.devices import (
    autocast,
    keep_freed_memory,
    memory_format_for,
    resolve_device,
    resolve_precision,
)


def prepare_for_inference(model: nn.Module, device: str | torch.device = "auto", precision: str = "auto",
                          compile: bool = False, retain_memory: bool = True) -> tuple[nn.Module, torch.dtype]:
    """Make ``model`` ready for :func:`restore` (in place): device, eval mode, layout and precision.

    Returns the model and the dtype to pass to :func:`restore`. For bf16/fp16 the weights
    themselves are cast (no autocast round trips: 0.101 s instead of 0.113 s per 256x256 image at
    batch 1 on this 2-core AMX CPU); inference never updates weights, so nothing is lost beyond the rounding
    autocast does anyway. ``compile`` wraps the result in ``torch.compile`` (faster after a slow
    first call per input shape). On the CPU, ``retain_memory`` makes glibc keep freed memory for
    the rest of the process (:func:`~unmask.models.devices.keep_freed_memory`; 1.35x at batch 8
    here; undo with :func:`~unmask.models.devices.release_freed_memory`).
    """
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    dtype = resolve_precision(precision, device)
    if device.type == "cpu" and retain_memory:
        keep_freed_memory()
    model = model.to(device, memory_format=memory_format_for(device)).eval()
    if dtype != torch.float32:
        model = model.to(dtype)
    if compile:
        model = torch.compile(model)
    return model, dtype


def _first_conv_weight(model: nn.Module) -> torch.Tensor:
    for parameter in model.parameters():
        if parameter.dim() == 4:
            return parameter
    return next(model.parameters())


def has_mask_head(model: nn.Module) -> bool:
    """True when ``model`` (or the model a ``torch.compile`` wrapper holds) predicts where the mask is."""
    inner = model._modules.get("_orig_mod", model)
    return getattr(inner, "mask_head", None) is not None


@torch.inference_mode()
def restore(model: nn.Module, masked: torch.Tensor, dtype: torch.dtype = torch.float32,
            flip_average: bool = False, with_mask: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Restore a batch of masked faces (NCHW in [0, 1]) on the model's device; returns float32.

    A model whose weights are bf16/fp16 (see :func:`prepare_for_inference`) gets its input in that
    dtype; a float32 model runs under autocast when ``dtype`` is lower precision. With
    ``flip_average`` the model also restores the mirrored faces (in the same batch) and the two
    restorations, the second mirrored back, are averaged: twice the work, and the errors of the
    two views partly cancel (+0.3 dB PSNR inside the mask on real test faces, see the README).
    ``with_mask`` (a network with a mask head, :func:`has_mask_head`) also returns the predicted
    mask probabilities (N x 1 x H x W, float32, flip-averaged too): ``(restored, mask)``.
    """
    weight = _first_conv_weight(model)
    channels_last = weight.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = masked.to(weight.device, non_blocking=True)
    if flip_average:
        x = torch.cat([x, x.flip(-1)])
    x = x.contiguous(memory_format=fmt)
    kwargs = {"with_mask": True} if with_mask else {}
    if weight.dtype != torch.float32:
        out = model(x.to(weight.dtype), **kwargs)
    else:
        with autocast(weight.device, dtype):
            out = model(x, **kwargs)
    out, logits = out if with_mask else (out, None)
    out = out.float()
    mask = torch.sigmoid(logits.float()) if with_mask else None
    if flip_average:
        plain, mirrored = out.chunk(2)
        out = (plain + mirrored.flip(-1)) / 2
        if mask is not None:
            plain, mirrored = mask.chunk(2)
            mask = (plain + mirrored.flip(-1)) / 2
    return (out, mask) if with_mask else out


@torch.no_grad()
def restoration_figure(model: nn.Module, dataset: PairedFaceDataset, count: int) -> plt.Figure:
    """A masked | restored | ground truth grid of the first ``count`` samples of ``dataset``."""
    model.eval()
    indices = range(min(count, len(dataset)))
    masked = torch.stack([dataset[i][0] for i in indices])
    clean = torch.stack([dataset[i][1] for i in indices])
    restored = restore(model, masked).cpu()
    return image_grid(
        {
            "masked": [tensor_to_image(t) for t in masked],
            "restored": [tensor_to_image(t) for t in restored],
            "ground truth": [tensor_to_image(t) for t in clean],
        },
        row_labels=[dataset.image_ids[i] for i in indices],
    )
