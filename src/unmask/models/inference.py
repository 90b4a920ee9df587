"""Running a trained network: batched restoration and the masked | restored | ground-truth figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch import nn

from unmask.imaging.grids import image_grid
from unmask.models.data import PairedFaceDataset, tensor_to_image
from unmask.models.devices import autocast, resolve_device, resolve_precision


def prepare_for_inference(model: nn.Module, device: str | torch.device = "auto",
                          precision: str = "auto") -> tuple[nn.Module, torch.dtype]:
    """Put ``model`` in eval mode on the resolved device; returns it and the dtype to pass to :func:`restore`."""
    device = resolve_device(device) if isinstance(device, str) else device
    dtype = resolve_precision(precision, device)
    return model.to(device).eval(), dtype


@torch.no_grad()
def restore(model: nn.Module, masked: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Restore a batch of masked faces (NCHW in [0, 1]) on the model's device; returns float32."""
    device = next(model.parameters()).device
    with autocast(device, dtype):
        return model(masked.to(device, non_blocking=True)).float()


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
