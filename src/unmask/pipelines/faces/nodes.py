"""Faces stage: align every indexed CelebA image to a square crop with its five landmarks.

The crops are produced lazily, one image at a time: ``face_crops`` maps each ``image_id`` to a
zero-argument callable that reads the source image, warps it and returns a PIL RGB image, which
``PartitionedDataset`` calls while saving. The landmark table is computed eagerly from the
transforms alone (no image is read for it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from unmask.imaging.alignment import BORDER_MODES, estimate_alignment, transform_points, warp_to_crop
from unmask.imaging.landmarks import LANDMARK_COLUMNS, landmarks_to_columns

logger = logging.getLogger(__name__)

#: Names of the 2x3 image->crop matrix entries in ``face_landmarks``.
MATRIX_COLUMNS: list[str] = ["m00", "m01", "m02", "m10", "m11", "m12"]

_REQUIRED_COLUMNS = ["image_id", "source", "member", *LANDMARK_COLUMNS]


def validate_faces_params(params: dict[str, Any]) -> tuple[int, str]:
    """Check the ``faces`` parameter group and return ``(size, border)``."""
    if not isinstance(params, dict):
        raise ValueError(f"params:faces must be a mapping like {{'size': 256, 'border': 'reflect'}}, got {params!r}")
    size = params.get("size", 256)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16 or size % 16:
        raise ValueError(
            f"faces.size must be an integer >= 16 and divisible by 16 (the UNet halves it 4 times), "
            f"got {size!r}; set e.g. `faces: {{size: 256}}` in conf/<env>/parameters*.yml"
        )
    border = params.get("border", "reflect")
    if border not in BORDER_MODES:
        raise ValueError(
            f"faces.border must be one of {sorted(BORDER_MODES)}, got {border!r}; "
            "fix `faces.border` in conf/<env>/parameters*.yml"
        )
    return int(size), str(border)


def _floats(values: pd.DataFrame | pd.Series) -> np.ndarray:
    """Numeric columns as float64 with NaN for missing values (works for nullable dtypes too)."""
    if isinstance(values, pd.Series):
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.stack([_floats(values[c]) for c in values.columns], axis=1) if len(values.columns) else np.empty((len(values), 0))


class _SourceCache:
    """Locates each CelebA source (folder or zip) once and reuses it for every image."""

    def __init__(self) -> None:
        self._sources: dict[str, Any] = {}

    def read(self, source: str, member: str) -> np.ndarray:
        from unmask.imaging.celeba import locate_celeba, read_image  # lazy: keeps this import light

        located = self._sources.get(source)
        if located is None:
            located = self._sources[source] = locate_celeba(source)
        return read_image(located, member)


def _crop_loader(
    cache: _SourceCache,
    image_id: str,
    source: str,
    member: str,
    matrix: np.ndarray,
    size: int,
    border: str,
    frame: tuple[float, float] | None,
) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        image = cache.read(source, member)
        m = matrix
        if frame is not None:
            w, h = image.shape[1], image.shape[0]
            if (w, h) != frame:
                # landmarks are given for the indexed (width, height): rescale them onto the file
                fx, fy = frame[0] / w, frame[1] / h
                m = matrix @ np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5], [0.0, 0.0, 1.0]])
                logger.debug("%s: image is %dx%d, index says %dx%d; rescaled", image_id, w, h, *frame)
        return Image.fromarray(warp_to_crop(image, m, size, border))

    return load


def crop_faces(celeba_index: pd.DataFrame, params: dict) -> tuple[dict[str, Callable[[], Image.Image]], pd.DataFrame]:
    """Align every indexed image to a ``size`` x ``size`` crop.

    Args:
        celeba_index: one row per image with ``image_id``, ``source`` (folder or zip path),
            ``member`` (name inside it), optional ``width``/``height`` and the 10
            ``LANDMARK_COLUMNS`` (image pixel coordinates).
        params: the ``faces`` group: ``{"size": 256, "border": "reflect"}``.

    Returns:
        ``face_crops``: ``{image_id: () -> PIL RGB crop}`` (lazy: the image is read and warped only
        when called), and ``face_landmarks``: ``image_id``, the 10 landmark columns in crop
        pixel coordinates, the image->crop matrix ``m00 .. m12`` and the crop ``size``.

    Raises:
        ValueError: bad parameters, missing columns, duplicate ids or degenerate landmarks
            (NaN, coincident eyes) in any row, naming the offending image ids.
    """
    size, border = validate_faces_params(params)
    missing = [c for c in _REQUIRED_COLUMNS if c not in celeba_index.columns]
    if missing:
        raise ValueError(f"celeba_index lacks column(s) {missing}; it needs {_REQUIRED_COLUMNS}")
    ids = celeba_index["image_id"].astype(str)
    duplicated = ids[ids.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"celeba_index has duplicate image_id values, e.g. {duplicated[:5]}")

    points = _floats(celeba_index[LANDMARK_COLUMNS]).reshape(-1, 5, 2)
    has_frame = "width" in celeba_index.columns and "height" in celeba_index.columns
    widths = _floats(celeba_index["width"]) if has_frame else None
    heights = _floats(celeba_index["height"]) if has_frame else None
    sources = celeba_index["source"].astype(str).to_numpy()
    members = celeba_index["member"].astype(str).to_numpy()

    cache = _SourceCache()
    crops: dict[str, Callable[[], Image.Image]] = {}
    rows: list[dict[str, Any]] = []
    bad: list[str] = []
    for i, image_id in enumerate(ids):
        try:
            matrix = estimate_alignment(points[i], size)
        except ValueError as err:
            bad.append(f"{image_id} ({err})")
            continue
        frame = None
        if has_frame and np.isfinite(widths[i]) and np.isfinite(heights[i]):
            frame = (int(widths[i]), int(heights[i]))
        crops[image_id] = _crop_loader(cache, image_id, sources[i], members[i], matrix, size, border, frame)
        row: dict[str, Any] = {"image_id": image_id}
        row.update(landmarks_to_columns(transform_points(points[i], matrix)))
        row.update(dict(zip(MATRIX_COLUMNS, matrix.reshape(-1).tolist())))
        row["size"] = size
        rows.append(row)
    if bad:
        raise ValueError(
            f"{len(bad)} image(s) of celeba_index have unusable landmarks; fix or drop them in the "
            f"ingest stage. First ones: {bad[:5]}"
        )
    face_landmarks = pd.DataFrame(rows, columns=["image_id", *LANDMARK_COLUMNS, *MATRIX_COLUMNS, "size"])
    face_landmarks["size"] = face_landmarks["size"].astype("int64")
    logger.info("Aligning %d faces to %dx%d crops (border=%s)", len(crops), size, size, border)
    return crops, face_landmarks
