"""RA-UNet training: the paper's set-up (SSIM + "L1" loss, Adam) with early stopping on validation loss."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import matplotlib.pyplot as plt
import pandas as pd
from torch import nn

from unmask.imaging.grids import training_curves
from unmask.models.training import TrainingData, TrainSettings, active_mlflow_run, fit


def _ids_of(data_split: pd.DataFrame, split: str) -> list[str]:
    ids = data_split.loc[data_split["split"] == split, "image_id"].astype(str).tolist()
    if not ids:
        raise ValueError(f"The split has no {split!r} images: re-run `kedro run --pipelines=split`.")
    return sorted(ids)


def train_model(
    face_crops: Mapping[str, Callable], masked_faces: Mapping[str, Callable], data_split: pd.DataFrame, params: dict
) -> tuple[nn.Module, pd.DataFrame]:
    """Train the configured network on the train split; return the best-on-validation model and its history."""
    settings = TrainSettings.from_params(params)
    data = TrainingData(_ids_of(data_split, "train"), _ids_of(data_split, "val"), masked_faces, face_crops)
    result = fit(settings, data, mlflow_run=active_mlflow_run())
    return result.model, pd.DataFrame(result.history)


def plot_training_curves(training_history: pd.DataFrame) -> plt.Figure:
    """Per-epoch loss, PSNR and SSIM as one figure."""
    return training_curves(training_history)
