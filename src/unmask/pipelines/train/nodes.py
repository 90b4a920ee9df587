"""RA-UNet training: the paper's set-up (SSIM + "L1" loss, Adam) with early stopping on validation loss."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from torch import nn

from unmask.errors import ParamsError, UserError
from unmask.imaging.grids import training_curves
from unmask.imaging.landmarks import LANDMARK_COLUMNS
from unmask.imaging.pixels import image_array
from unmask.models.data import FreshMasks, TrainingData
from unmask.models.mlflow_logging import active_mlflow_run
from unmask.models.training import fit
from unmask.params import validated
from unmask.params.masks import MasksParams
from unmask.params.train import VARIETY_KEYS, TrainParams


def _ids_of(data_split: pd.DataFrame, split: str) -> list[str]:
    ids = data_split.loc[data_split["split"] == split, "image_id"].astype(str).tolist()
    if not ids:
        raise UserError(f"The split has no {split!r} images: re-run `kedro run --pipelines=split`.")
    return sorted(ids)


def _held_out_ids(mask_metadata: pd.DataFrame, styles: list[str]) -> set[str]:
    """Ids whose mask has one of ``styles`` (held out of training to measure generalisation)."""
    if not styles:
        return set()
    style = mask_metadata["style"].astype(str)
    unknown = sorted(set(styles) - set(style))
    if unknown:
        raise ParamsError(f"train.holdout_styles {unknown} is not a mask style of this data; "
                         f"styles: {sorted(set(style))}.")
    return set(mask_metadata.loc[style.isin(styles), "image_id"].astype(str))


def _ids_without(ids: list[str], held: set[str], styles: list[str]) -> list[str]:
    kept = [i for i in ids if i not in held]
    if not kept:
        raise ParamsError(f"train.holdout_styles {styles} leaves no image to train on.")
    return kept


def _train_and_val_ids(data_split: pd.DataFrame, mask_metadata: pd.DataFrame,
                       settings: TrainParams) -> tuple[list[str], list[str]]:
    """The split's train and validation ids, less the faces whose stored mask has a held-out style."""
    holdout = settings.holdout_styles
    held = _held_out_ids(mask_metadata, holdout)
    train_ids = _ids_of(data_split, "train")
    # fresh masks never draw a held-out style, so every training face stays usable
    train_ids = train_ids if settings.fresh_masks else _ids_without(train_ids, held, holdout)
    return train_ids, _ids_without(_ids_of(data_split, "val"), held, holdout)


def _cutout_arrays(real_mask_cutouts: Mapping[str, Callable], wanted: bool) -> list[np.ndarray]:
    """The RGBA cut-outs as arrays (sorted by name), read only when training uses them."""
    if not wanted:
        return []
    return [np.asarray(real_mask_cutouts[name]().convert("RGBA")) for name in sorted(real_mask_cutouts)]


def _fresh_masks(face_landmarks: pd.DataFrame, ids: list[str], masks: MasksParams, settings: TrainParams,
                 real_mask_cutouts: Mapping[str, Callable]) -> FreshMasks:
    """A per-epoch mask drawer over ``ids``, with the masks pipeline's seed and styles less the held-out ones."""
    holdout = settings.holdout_styles
    kept = [s for s in masks.styles if s not in holdout]
    if not kept:
        raise ValueError(f"train.holdout_styles {holdout} removes every style of masks.styles {masks.styles}: "
                         "nothing is left to draw fresh masks from.")
    missing = [c for c in ["image_id", *LANDMARK_COLUMNS] if c not in face_landmarks.columns]
    if missing:
        raise ValueError(f"face_landmarks lacks column(s) {missing}; re-run `kedro run --pipelines=faces`.")
    rows = face_landmarks.assign(image_id=face_landmarks["image_id"].astype(str)).set_index("image_id")
    wanted = rows.index.intersection(ids)
    landmarks = dict(zip(wanted, rows.loc[wanted, LANDMARK_COLUMNS].to_numpy(dtype=float).tolist()))
    cutouts = _cutout_arrays(real_mask_cutouts, settings.cutout_fraction > 0)
    variety = {key: getattr(settings, key) for key in VARIETY_KEYS}
    return FreshMasks(landmarks, masks.seed, kept, cutouts=cutouts, **variety)


def _model_metadata(first_crop: Callable, celeba_source: dict) -> dict[str, object]:
    """The crop size (`unmask predict` aligns photos at the size the model was trained at) and the data it saw."""
    crop = np.asarray(image_array(first_crop))
    return {"crop_size": int(crop.shape[0]), "trained_on": str(celeba_source.get("dataset", "?"))}


def train_model(
    face_crops: Mapping[str, Callable], masked_faces: Mapping[str, Callable], mask_maps: Mapping[str, Callable],
    mask_metadata: pd.DataFrame, face_landmarks: pd.DataFrame, data_split: pd.DataFrame, celeba_source: dict,
    real_mask_cutouts: Mapping[str, Callable], params: dict, masks_params: dict,
) -> tuple[nn.Module, pd.DataFrame]:
    """Train the configured network on the train split; return the best-on-validation model and its history.

    ``train.fresh_masks`` draws a new mask on every training face each epoch (the masks
    pipeline's renderer, seed and styles, from the face's landmarks) instead of reusing its stored
    masked image; validation keeps the stored masks. ``train.holdout_styles`` leaves those mask
    styles out of training and validation (the test split keeps them, so evaluation scores a
    style the model never saw): with fresh masks, they are simply never drawn. With fresh masks,
    ``train.clean_fraction`` / ``material_fraction`` / ``degrade_fraction`` add unmasked faces, new
    mask materials and camera degradations (:mod:`unmask.imaging.mask_appearance`), and
    ``cutout_fraction`` real masks from ``real_mask_cutouts`` instead of rendered ones. The true
    ``mask_maps`` are read only for a composite network's mask loss, never as input. The model's
    metadata records its crop size and the data it was trained on (``celeba`` or ``demo``).
    """
    settings = validated(TrainParams, "train", params)
    masks = validated(MasksParams, "masks", masks_params)
    train_ids, val_ids = _train_and_val_ids(data_split, mask_metadata, settings)
    fresh_masks = (_fresh_masks(face_landmarks, train_ids, masks, settings, real_mask_cutouts)
                   if settings.fresh_masks else None)
    data = TrainingData(train_ids, val_ids, masked_faces, face_crops,
                        mask_maps if settings.mask_loss_weight > 0 else None, fresh_masks=fresh_masks)
    result = fit(settings, data, mlflow_run=active_mlflow_run())
    result.model.metadata = _model_metadata(face_crops[train_ids[0]], celeba_source)
    return result.model, pd.DataFrame(result.history)


def plot_training_curves(training_history: pd.DataFrame) -> plt.Figure:
    """Per-epoch loss, PSNR and SSIM as one figure."""
    return training_curves(training_history)
