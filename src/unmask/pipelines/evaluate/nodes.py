"""Evaluation on the test split: PSNR/SSIM over the whole image and inside the mask, L1, and timing."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from unmask.models import masked_mae, masked_psnr, masked_ssim, mean_absolute_error, psnr, ssim
from unmask.models.data import PairedFaceDataset
from unmask.models.inference import restoration_figure, restore
from unmask.models.devices import resolve_device

logger = logging.getLogger(__name__)

#: Metrics reported per image and averaged; all on RGB in [0, 1] (data range 1.0).
METRIC_NAMES = ("psnr", "ssim", "psnr_mask", "ssim_mask", "l1", "l1_mask")


def _image_metrics(pred: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor) -> dict[str, np.ndarray]:
    values = {
        "psnr": psnr(pred, clean),
        "ssim": ssim(pred, clean),
        "psnr_mask": masked_psnr(pred, clean, mask),
        "ssim_mask": masked_ssim(pred, clean, mask),
        "l1": mean_absolute_error(pred, clean),
        "l1_mask": masked_mae(pred, clean, mask),
    }
    return {k: v.double().cpu().numpy() for k, v in values.items()}


def _summarise(frame: pd.DataFrame, prefix: str = "") -> dict[str, float]:
    # PSNR of a perfect image is infinite; averaging it would hide every other image, so it is capped.
    summary = {}
    for name in METRIC_NAMES:
        column = frame[name].replace([np.inf], 100.0) if name.startswith("psnr") else frame[name]
        summary[f"{prefix}{name}"] = float(column.mean(skipna=True))
    return summary


@torch.no_grad()
def _time_batch_one(model: nn.Module, dataset: PairedFaceDataset, count: int, device: torch.device) -> list[float]:
    """Warm seconds per image at batch 1, as a user calling the model on one photo would see."""
    inputs = [dataset[i][0].unsqueeze(0).to(device) for i in range(min(count, len(dataset)))]
    model(inputs[0])  # warm-up: first call pays for allocation and kernel selection
    timings = []
    for x in inputs:
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - started)
    return timings


@torch.no_grad()
def evaluate_model(
    trained_model: nn.Module,
    face_crops: Mapping[str, Callable],
    masked_faces: Mapping[str, Callable],
    mask_maps: Mapping[str, Callable],
    data_split: pd.DataFrame,
    params: dict,
) -> tuple[dict, pd.DataFrame, plt.Figure]:
    """Score the model and the unchanged masked input on the test split; return metrics, per-image rows, a grid."""
    for key, default in (("batch_size", 16), ("timing_images", 20), ("grid_images", 8)):
        value = params.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"evaluate.{key} must be a positive integer, got {value!r}.")
    batch_size = params.get("batch_size", 16)
    device = resolve_device(params.get("device", "auto"))
    model = trained_model.to(device).eval()
    test_ids = sorted(data_split.loc[data_split["split"] == "test", "image_id"].astype(str))
    if not test_ids:
        raise ValueError("The split has no test images: re-run `kedro run --pipelines=split`.")
    dataset = PairedFaceDataset(test_ids, masked_faces, face_crops, mask_maps)

    rows: list[pd.DataFrame] = []
    model_seconds = 0.0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    offset = 0
    for masked, clean, mask in tqdm(loader, desc="evaluate", unit="batch", leave=False):
        masked, clean, mask = masked.to(device), clean.to(device), mask.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        restored = restore(model, masked)
        if device.type == "cuda":
            torch.cuda.synchronize()
        model_seconds += time.perf_counter() - started
        ids = test_ids[offset : offset + masked.shape[0]]
        offset += masked.shape[0]
        ours = _image_metrics(restored, clean, mask)
        # The masked photo returned unchanged: the floor any restoration must clear.
        unchanged = _image_metrics(masked, clean, mask)
        frame = pd.DataFrame({"image_id": ids, **ours, **{f"input_{k}": v for k, v in unchanged.items()}})
        frame["mask_coverage"] = mask.flatten(1).mean(1).cpu().numpy()
        rows.append(frame)
    per_image = pd.concat(rows, ignore_index=True)

    timings = _time_batch_one(model, dataset, int(params.get("timing_images", 20)), device)
    metrics = {
        **_summarise(per_image),
        **_summarise(
            per_image[[f"input_{m}" for m in METRIC_NAMES]].set_axis(list(METRIC_NAMES), axis=1), prefix="input_"
        ),
        "seconds_per_image_batch1_median": float(np.median(timings)),
        "seconds_per_image_batch1_p95": float(np.percentile(timings, 95)),
        "images_per_second_batched": float(len(dataset) / model_seconds) if model_seconds > 0 else math.nan,
        "batch_size": batch_size,
        "n_images": len(dataset),
        "device": str(device) if device.type != "cuda" else f"cuda ({torch.cuda.get_device_name(device)})",
        "threads": torch.get_num_threads(),
    }
    logger.info(
        "Test set (%d images): PSNR %.2f dB, SSIM %.4f; inside the mask PSNR %.2f dB, SSIM %.4f; "
        "masked input: PSNR %.2f dB, SSIM %.4f; %.4f s/image at batch 1 on %s",
        len(dataset), metrics["psnr"], metrics["ssim"], metrics["psnr_mask"], metrics["ssim_mask"],
        metrics["input_psnr"], metrics["input_ssim"], metrics["seconds_per_image_batch1_median"], metrics["device"],
    )
    return metrics, per_image, restoration_figure(model, dataset, int(params.get("grid_images", 8)))


def metrics_for_mlflow(evaluation_metrics: dict) -> dict[str, dict[str, float]]:
    """The numeric evaluation metrics in kedro-mlflow's ``{name: {"value", "step"}}`` form."""
    return {
        name: {"value": float(value), "step": 0}
        for name, value in evaluation_metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    }
