"""RA-UNet training: the paper's set-up (SSIM + "L1" loss, Adam) with early stopping on validation loss."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from torch import nn

from unmask.imaging.grids import training_curves
from unmask.imaging.landmarks import LANDMARK_COLUMNS
from unmask.models.data import FreshMasks, load_pixels
from unmask.models.training import TrainingData, TrainSettings, active_mlflow_run, fit
from unmask.pipelines.masks.nodes import validate_masks_params


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


#: ``train`` keys of the fresh-mask variety (:class:`~unmask.models.data.FreshMasks`), 0 when absent
VARIETY_KEYS = ("clean_fraction", "material_fraction", "degrade_fraction", "cutout_fraction")


def parse_train_params(params: dict) -> tuple[TrainSettings, list[str], bool, dict[str, float]]:
    """``(training loop settings, holdout_styles, fresh_masks, variety)`` from the ``train`` group, checked."""
    params = dict(params)
    holdout = params.pop("holdout_styles", None) or []
    if isinstance(holdout, str) or not isinstance(holdout, list):
        raise ValueError(f"train.holdout_styles must be a list of mask styles, got {holdout!r}.")
    fresh = params.pop("fresh_masks", False)
    if not isinstance(fresh, bool):
        raise ValueError(f"train.fresh_masks must be true or false, got {fresh!r}.")
    variety = {key: params.pop(key, 0.0) for key in VARIETY_KEYS}
    for key, value in variety.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"train.{key} must be a number from 0 to 1, got {value!r}.")
    if not fresh and any(variety.values()):
        used = [k for k, v in variety.items() if v]
        raise ValueError(f"train.{used[0]} needs train.fresh_masks: true (it varies the masks drawn each epoch).")
    return TrainSettings.from_params(params), [str(s) for s in holdout], fresh, {k: float(v) for k, v in variety.items()}


def _cutout_arrays(real_mask_cutouts: Mapping[str, Callable], wanted: bool) -> list[np.ndarray]:
    """The RGBA cut-outs as arrays (sorted by name), read only when training uses them."""
    if not wanted:
        return []
    return [np.asarray(real_mask_cutouts[name]().convert("RGBA")) for name in sorted(real_mask_cutouts)]


def _fresh_masks(face_landmarks: pd.DataFrame, ids: list[str], masks_params: dict, holdout: list[str],
                 variety: dict[str, float], cutouts: list[np.ndarray]) -> FreshMasks:
    """A per-epoch mask drawer over ``ids``, with the masks pipeline's seed and styles less ``holdout``."""
    seed, styles = validate_masks_params(masks_params)
    kept = [s for s in styles if s not in holdout]
    if not kept:
        raise ValueError(f"train.holdout_styles {holdout} removes every style of masks.styles {styles}: "
                         "nothing is left to draw fresh masks from.")
    missing = [c for c in ["image_id", *LANDMARK_COLUMNS] if c not in face_landmarks.columns]
    if missing:
        raise ValueError(f"face_landmarks lacks column(s) {missing}; re-run `kedro run --pipelines=faces`.")
    rows = face_landmarks.assign(image_id=face_landmarks["image_id"].astype(str)).set_index("image_id")
    wanted = rows.index.intersection(ids)
    landmarks = dict(zip(wanted, rows.loc[wanted, LANDMARK_COLUMNS].to_numpy(dtype=float).tolist()))
    return FreshMasks(landmarks, seed, kept, cutouts=cutouts, **variety)


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
    settings, holdout, fresh, variety = parse_train_params(params)
    held = _held_out_ids(mask_metadata, holdout)
    train_ids = _ids_of(data_split, "train")
    # fresh masks never draw a held-out style, so every training face stays usable
    train_ids = train_ids if fresh else _ids_without(train_ids, held, holdout)
    val_ids = _ids_without(_ids_of(data_split, "val"), held, holdout)
    cutouts = _cutout_arrays(real_mask_cutouts, variety["cutout_fraction"] > 0)
    fresh_masks = _fresh_masks(face_landmarks, train_ids, masks_params, holdout, variety, cutouts) if fresh else None
    data = TrainingData(train_ids, val_ids, masked_faces, face_crops,
                        mask_maps if settings.mask_loss_weight > 0 else None, fresh_masks=fresh_masks)
    result = fit(settings, data, mlflow_run=active_mlflow_run())
    # `unmask predict` aligns photos at the size the model was trained at: keep it with the weights
    crop = np.asarray(load_pixels(face_crops[train_ids[0]]))
    result.model.metadata = {"crop_size": int(crop.shape[0]), "trained_on": str(celeba_source.get("dataset", "?"))}
    return result.model, pd.DataFrame(result.history)


def plot_training_curves(training_history: pd.DataFrame) -> plt.Figure:
    """Per-epoch loss, PSNR and SSIM as one figure."""
    return training_curves(training_history)
