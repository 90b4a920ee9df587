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


def _held_out_ids(mask_metadata: pd.DataFrame, styles: list[str]) -> set[str]:
    """Ids whose mask has one of ``styles`` (held out of training to measure generalisation)."""
    if not styles:
        return set()
    style = mask_metadata["style"].astype(str)
    unknown = sorted(set(styles) - set(style))
    if unknown:
        raise ValueError(f"train.holdout_styles {unknown} is not a mask style of this data; styles: {sorted(set(style))}.")
    return set(mask_metadata.loc[style.isin(styles), "image_id"].astype(str))


def _ids_without(ids: list[str], held: set[str], styles: list[str]) -> list[str]:
    kept = [i for i in ids if i not in held]
    if not kept:
        raise ValueError(f"train.holdout_styles {styles} leaves no image to train on.")
    return kept


def train_model(
    face_crops: Mapping[str, Callable], masked_faces: Mapping[str, Callable], mask_maps: Mapping[str, Callable],
    mask_metadata: pd.DataFrame, data_split: pd.DataFrame, params: dict,
) -> tuple[nn.Module, pd.DataFrame]:
    """Train the configured network on the train split; return the best-on-validation model and its history.

    ``train.holdout_styles`` leaves those mask styles out of training and validation (the test
    split keeps them, so evaluation scores a style the model never saw). The true ``mask_maps``
    are read only for a composite network's mask loss, never as input.
    """
    params = dict(params)
    holdout = [str(s) for s in params.pop("holdout_styles", None) or []]
    settings = TrainSettings.from_params(params)
    held = _held_out_ids(mask_metadata, holdout)
    train_ids = _ids_without(_ids_of(data_split, "train"), held, holdout)
    val_ids = _ids_without(_ids_of(data_split, "val"), held, holdout)
    data = TrainingData(train_ids, val_ids, masked_faces, face_crops,
                        mask_maps if settings.mask_loss_weight > 0 else None)
    result = fit(settings, data, mlflow_run=active_mlflow_run())
    return result.model, pd.DataFrame(result.history)


def plot_training_curves(training_history: pd.DataFrame) -> plt.Figure:
    """Per-epoch loss, PSNR and SSIM as one figure."""
    return training_curves(training_history)
