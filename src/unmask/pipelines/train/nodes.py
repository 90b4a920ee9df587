"""RA-UNet training: the paper's set-up (SSIM + "L1" loss, Adam) with early stopping on validation loss."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from unmask.imaging.grids import training_curves
from unmask.models import build_loss, build_model, psnr, ssim
from unmask.models.data import PairedFaceDataset
from unmask.models.inference import restoration_figure
from unmask.models.devices import autocast, resolve_device, resolve_precision

logger = logging.getLogger(__name__)

_POSITIVE_INTS = ("batch_size", "epochs", "early_stopping_patience")


def _validate_train_params(params: dict) -> None:
    for key in _POSITIVE_INTS:
        value = params.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"train.{key} must be a positive integer, got {value!r}.")
    lr = params.get("learning_rate")
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"train.learning_rate must be a positive number, got {lr!r}.")
    if not isinstance(params.get("num_workers", 0), int) or params.get("num_workers", 0) < 0:
        raise ValueError(f"train.num_workers must be a non-negative integer, got {params.get('num_workers')!r}.")


def _ids_of(data_split: pd.DataFrame, split: str) -> list[str]:
    ids = data_split.loc[data_split["split"] == split, "image_id"].astype(str).tolist()
    if not ids:
        raise ValueError(f"The split has no {split!r} images: re-run `kedro run --pipelines=split`.")
    return sorted(ids)


def _log_to_mlflow(metrics: dict[str, float], step: int, figure: plt.Figure | None = None) -> None:
    """Live per-epoch logging, so long runs can be watched in the MLflow UI while they train."""
    import mlflow

    if mlflow.active_run() is None:
        return
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(v)}, step=step)
    if figure is not None:
        mlflow.log_figure(figure, f"training/samples/epoch_{step:03d}.png")


@torch.no_grad()
def _validate(
    model: nn.Module, loader: DataLoader, loss_fn: Callable, device: torch.device, dtype: torch.dtype
) -> dict[str, float]:
    model.eval()
    totals = {"val_loss": 0.0, "val_psnr": 0.0, "val_ssim": 0.0}
    count = 0
    for masked, clean in loader:
        masked, clean = masked.to(device, non_blocking=True), clean.to(device, non_blocking=True)
        with autocast(device, dtype):
            restored = model(masked)
        restored = restored.float()
        n = masked.shape[0]
        totals["val_loss"] += float(loss_fn(restored, clean)) * n
        totals["val_psnr"] += float(psnr(restored, clean).clamp(max=100).sum())
        totals["val_ssim"] += float(ssim(restored, clean).sum())
        count += n
    return {k: v / count for k, v in totals.items()}


def train_model(
    face_crops: Mapping[str, Callable], masked_faces: Mapping[str, Callable], data_split: pd.DataFrame, params: dict
) -> tuple[nn.Module, pd.DataFrame]:
    """Train the configured network on the train split; return the best-on-validation model and its history."""
    _validate_train_params(params)
    torch.manual_seed(int(params.get("seed", 0)))
    device = resolve_device(params.get("device", "auto"))
    dtype = resolve_precision(params.get("precision", "auto"), device)

    train_set = PairedFaceDataset(_ids_of(data_split, "train"), masked_faces, face_crops, flip=True)
    val_set = PairedFaceDataset(_ids_of(data_split, "val"), masked_faces, face_crops)
    workers = int(params.get("num_workers", 0))
    loader_args = {"num_workers": workers, "pin_memory": device.type == "cuda", "persistent_workers": workers > 0}
    generator = torch.Generator().manual_seed(int(params.get("seed", 0)))
    train_loader = DataLoader(
        train_set, batch_size=params["batch_size"], shuffle=True, generator=generator, drop_last=False, **loader_args
    )
    val_loader = DataLoader(val_set, batch_size=params["batch_size"], shuffle=False, **loader_args)

    model = build_model(params["model"], filters=tuple(params["filters"])).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(params["learning_rate"]))
    loss_fn = build_loss(params["loss"], float(params.get("loss_weight", 1.0)))
    # fp16 needs loss scaling to keep small gradients representable; bf16 and fp32 do not.
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    logger.info(
        "Training %s %s on %s (%s): %d train / %d val images, %d epochs",
        params["model"], list(params["filters"]), device, str(dtype).removeprefix("torch."),
        len(train_set), len(val_set), params["epochs"],
    )

    history: list[dict] = []
    best_loss, best_state, stale_epochs = math.inf, None, 0
    for epoch in range(1, params["epochs"] + 1):
        model.train()
        running, seen, started = 0.0, 0, time.perf_counter()
        bar = tqdm(train_loader, desc=f"epoch {epoch}/{params['epochs']}", unit="batch", leave=False)
        for masked, clean in bar:
            masked, clean = masked.to(device, non_blocking=True), clean.to(device, non_blocking=True)
            with autocast(device, dtype):
                restored = model(masked)
            loss = loss_fn(restored.float(), clean)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            running += float(loss.detach()) * masked.shape[0]
            seen += masked.shape[0]
            bar.set_postfix(loss=f"{running / seen:.4f}", img_s=f"{seen / (time.perf_counter() - started):.1f}")
        train_seconds = time.perf_counter() - started
        row = {"epoch": epoch, "train_loss": running / seen, **_validate(model, val_loader, loss_fn, device, dtype)}
        row.update(learning_rate=optimizer.param_groups[0]["lr"], train_images_per_s=seen / train_seconds)
        history.append(row)
        logger.info(
            "epoch %d: train_loss %.4f val_loss %.4f val_psnr %.2f dB val_ssim %.4f (%.1f img/s)",
            epoch, row["train_loss"], row["val_loss"], row["val_psnr"], row["val_ssim"], row["train_images_per_s"],
        )
        figure = restoration_figure(model, val_set, int(params.get("sample_count", 8)))
        _log_to_mlflow({k: v for k, v in row.items() if k != "epoch"}, step=epoch, figure=figure)
        plt.close(figure)

        if row["val_loss"] < best_loss:
            best_loss, stale_epochs = row["val_loss"], 0
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            stale_epochs += 1
            if stale_epochs >= params["early_stopping_patience"]:
                logger.info("Early stopping after epoch %d: no validation improvement in %d epochs.", epoch, stale_epochs)
                break

    model = model.to("cpu", memory_format=torch.contiguous_format)
    model.load_state_dict(best_state)
    model.eval()
    return model, pd.DataFrame(history)


def plot_training_curves(training_history: pd.DataFrame) -> plt.Figure:
    """Per-epoch loss, PSNR and SSIM as one figure."""
    return training_curves(training_history)
