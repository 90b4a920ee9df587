"""Faces stage: align every indexed CelebA image to a square crop with its five landmarks.

The crops are produced lazily: ``face_crops`` maps each ``image_id`` to a :class:`FaceCrop`, a
small picklable job that reads the source image, warps it and returns the crop when called. The
``ImagePartitionsDataset`` of the catalog runs the jobs in worker processes, each encoding and
writing its own PNG, so no crop is ever held in memory beyond the one being written. The landmark
table is computed eagerly and vectorised from the transforms alone (no image is read for it).
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pandas as pd
from PIL import Image

from unmask.datasets.lazy_partitions import LazyPartitions
from unmask.imaging.alignment import estimate_alignments, warp_to_crop
from unmask.imaging.landmarks import LANDMARK_COLUMNS
from unmask.params import validated
from unmask.params.faces import FacesParams

logger = logging.getLogger(__name__)

#: Names of the 2x3 image->crop matrix entries in ``face_landmarks``.
MATRIX_COLUMNS: list[str] = ["m00", "m01", "m02", "m10", "m11", "m12"]

_REQUIRED_COLUMNS = ["image_id", "source", "member", *LANDMARK_COLUMNS]


def _floats(values: pd.DataFrame | pd.Series) -> np.ndarray:
    """Numeric columns as float64 with NaN for missing values (works for nullable dtypes too)."""
    if isinstance(values, pd.Series):
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    if not len(values.columns):
        return np.empty((len(values), 0))
    return np.stack([_floats(values[c]) for c in values.columns], axis=1)


class FaceCrop:
    """The aligned crop of one image, computed when called: a picklable lazy partition.

    ``source`` and ``member`` locate the image (a CelebA folder or zip and the name inside it, as in
    ``celeba_index``); ``matrix`` is the 2x3 image->crop transform (6 floats, row-major) for an
    image of ``frame`` = (width, height) pixels: a file of another size (a downscaled copy) has
    the transform rescaled onto it.
    """

    __slots__ = ("border", "frame", "image_id", "matrix", "member", "size", "source")

    def __init__(self, image_id: str, source: str, member: str, matrix: tuple[float, ...], size: int,
                 border: str, frame: tuple[int, int] | None) -> None:
        self.image_id, self.source, self.member = image_id, source, member
        self.matrix, self.size, self.border, self.frame = matrix, size, border, frame

    def render_array(self) -> np.ndarray:
        """The crop as a ``size`` x ``size`` x 3 uint8 RGB array."""
        from unmask.imaging.celeba import read_image  # keeps this module light to import

        image = read_image(self.source, self.member)
        m = np.asarray(self.matrix, dtype=np.float64).reshape(2, 3)
        if self.frame is not None:
            w, h = image.shape[1], image.shape[0]
            if (w, h) != self.frame:
                # landmarks are given for the indexed (width, height): rescale them onto the file
                fx, fy = self.frame[0] / w, self.frame[1] / h
                m = m @ np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5], [0.0, 0.0, 1.0]])
                logger.debug("%s: image is %dx%d, index says %dx%d; rescaled", self.image_id, w, h, *self.frame)
        return warp_to_crop(image, m, self.size, self.border)

    def __call__(self) -> Image.Image:
        return Image.fromarray(self.render_array())

    def __getstate__(self) -> tuple:
        return self.image_id, self.source, self.member, self.matrix, self.size, self.border, self.frame

    def __setstate__(self, state: tuple) -> None:
        self.image_id, self.source, self.member, self.matrix, self.size, self.border, self.frame = state

    def __repr__(self) -> str:
        return f"FaceCrop({self.image_id!r}, {self.source!r}, {self.member!r}, size={self.size})"


def _checked_ids(celeba_index: pd.DataFrame) -> list[str]:
    """The index's image ids; ``ValueError`` for missing columns or duplicate ids."""
    missing = [c for c in _REQUIRED_COLUMNS if c not in celeba_index.columns]
    if missing:
        raise ValueError(f"celeba_index lacks column(s) {missing}; it needs {_REQUIRED_COLUMNS}")
    ids = celeba_index["image_id"].astype(str).tolist()
    duplicated = pd.Series(ids)[pd.Series(ids).duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"celeba_index has duplicate image_id values, e.g. {duplicated[:5]}")
    return ids


def _alignments(points: np.ndarray, ids: list[str], size: int) -> np.ndarray:
    """The (N, 2, 3) image->crop matrices; ``ValueError`` naming the images whose landmarks are unusable."""
    matrices, bad = estimate_alignments(points, size)
    if bad:
        first = [f"{ids[row]} ({reason})" for row, reason in list(bad.items())[:5]]
        raise ValueError(
            f"{len(bad)} image(s) of celeba_index have unusable landmarks; fix or drop them in the "
            f"ingest stage. First ones: {first}"
        )
    return matrices


def _lazy_crops(celeba_index: pd.DataFrame, ids: list[str], matrices: np.ndarray, size: int,
                border: str) -> LazyPartitions[FaceCrop]:
    """``{image_id: FaceCrop}``, kept as columns: each job is made only when the dataset saving it asks."""
    frames = np.full((len(ids), 2), -1, dtype=np.int64)
    if "width" in celeba_index.columns and "height" in celeba_index.columns:
        widths, heights = _floats(celeba_index["width"]), _floats(celeba_index["height"])
        known = np.isfinite(widths) & np.isfinite(heights)
        frames[known] = np.stack([widths[known], heights[known]], axis=1).astype(np.int64)
    source_codes, source_names = pd.factorize(celeba_index["source"].astype(str))
    source_names = [sys.intern(str(name)) for name in source_names]
    members = celeba_index["member"].astype(str).to_numpy(dtype=str)
    flat_matrices = matrices.reshape(len(ids), 6)
    id_array = np.asarray(ids, dtype=str)

    def crop_at(i: int) -> FaceCrop:
        frame = (int(frames[i, 0]), int(frames[i, 1])) if frames[i, 0] >= 0 else None
        return FaceCrop(str(id_array[i]), source_names[source_codes[i]], str(members[i]),
                        tuple(flat_matrices[i].tolist()), size, border, frame)

    return LazyPartitions(id_array, crop_at)


def _crop_landmarks(ids: list[str], points: np.ndarray, matrices: np.ndarray, size: int) -> pd.DataFrame:
    """``face_landmarks``: the landmarks in crop pixels, the image->crop matrix and the crop size per image."""
    crop_points = np.einsum("nij,nkj->nki", matrices[:, :, :2], points) + matrices[:, None, :, 2]
    face_landmarks = pd.DataFrame({"image_id": pd.Series(ids, dtype=object)})
    for k, column in enumerate(LANDMARK_COLUMNS):
        face_landmarks[column] = crop_points.reshape(len(ids), 10)[:, k]
    for k, column in enumerate(MATRIX_COLUMNS):
        face_landmarks[column] = matrices.reshape(len(ids), 6)[:, k]
    face_landmarks["size"] = np.full(len(ids), size, dtype=np.int64)
    return face_landmarks


def crop_faces(celeba_index: pd.DataFrame, params: dict) -> tuple[LazyPartitions[FaceCrop], pd.DataFrame]:
    """Align every indexed image to a ``size`` x ``size`` crop.

    Args:
        celeba_index: one row per image with ``image_id``, ``source`` (folder or zip path),
            ``member`` (name inside it), optional ``width``/``height`` and the 10
            ``LANDMARK_COLUMNS`` (image pixel coordinates).
        params: the ``faces`` group (:class:`~unmask.params.faces.FacesParams`): ``size`` and ``border``.

    Returns:
        ``face_crops``: ``{image_id: FaceCrop}`` (a :class:`LazyPartitions` mapping; calling a
        ``FaceCrop`` reads and warps the image and returns the PIL RGB crop), and ``face_landmarks``:
        ``image_id``, the 10 landmark columns in crop pixel coordinates, the image->crop matrix
        ``m00 .. m12`` and the crop ``size``.

    Raises:
        ValueError: bad parameters, missing columns, duplicate ids or degenerate landmarks
            (NaN, coincident eyes) in any row, naming the offending image ids.
    """
    settings = validated(FacesParams, "faces", params)
    ids = _checked_ids(celeba_index)
    points = _floats(celeba_index[LANDMARK_COLUMNS]).reshape(-1, 5, 2)
    matrices = _alignments(points, ids, settings.size)
    crops = _lazy_crops(celeba_index, ids, matrices, settings.size, settings.border)
    face_landmarks = _crop_landmarks(ids, points, matrices, settings.size)
    logger.info("Aligning %d faces to %dx%d crops (border=%s)", len(crops), settings.size, settings.size,
                settings.border)
    return crops, face_landmarks
