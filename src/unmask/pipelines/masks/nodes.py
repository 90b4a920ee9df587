"""Masks stage: draw a seeded synthetic face mask over every aligned face crop.

Each image gets its own random generator seeded from ``(masks.seed, image_id)``
(:func:`image_seed`), so a mask is reproducible on its own, whatever the order or subset of images.
The spec is cheap to sample, so the node samples it (in worker processes, in chunks) to fill
``mask_metadata`` (style, colours, coverage), and the lazy :class:`MaskedFace` and :class:`MaskMap`
jobs of ``masked_faces`` and ``mask_maps`` sample the very same spec again from the same seed when
the catalog's ``ImagePartitionsDataset`` runs them in its worker processes: they always agree, and
no per-image geometry or pixels are kept in memory in between.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from unmask.datasets.lazy_partitions import LazyPartitions
from unmask.imaging.landmarks import LANDMARK_COLUMNS
from unmask.imaging.mask_renderer import (
    image_seed,
    mask_coverage,
    rasterize_mask,
    render_masked_face,
    seeded_mask_spec,
)
from unmask.imaging.pixels import image_array
from unmask.parallel import map_chunks, pool_args
from unmask.params import validated
from unmask.params.masks import MasksParams

logger = logging.getLogger(__name__)

METADATA_COLUMNS = ["image_id", "style", "colour", "secondary_colour", "pattern", "tilt", "coverage", "spec_seed"]
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _crop_pixels(crop: Any) -> np.ndarray:
    """A face crop's pixels as ``H x W x 3`` uint8 RGB, whatever form its partition holds (loader, job, image)."""
    pixels = image_array(crop)
    if isinstance(pixels, Image.Image):  # RGBA, palette, 16-bit...
        pixels = np.asarray(pixels.convert("RGB"))
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3].astype(np.uint8, copy=False))


class MaskedFace:
    """The masked version of one face crop, computed when called: a picklable lazy partition."""

    __slots__ = ("crop", "image_id", "landmarks", "size", "spec_seed", "styles")

    def __init__(self, crop: Any, landmarks: tuple[float, ...], size: int, spec_seed: int,
                 styles: tuple[str, ...], image_id: str) -> None:
        self.crop, self.landmarks, self.size = crop, landmarks, size
        self.spec_seed, self.styles, self.image_id = spec_seed, styles, image_id

    def render_array(self) -> np.ndarray:
        """The masked crop, ``size`` x ``size`` x 3 uint8 RGB."""
        image = _crop_pixels(self.crop)
        if image.shape[:2] != (self.size, self.size):
            raise ValueError(
                f"face crop {self.image_id} is {image.shape[1]}x{image.shape[0]} but face_landmarks says "
                f"{self.size}x{self.size}; re-run the faces pipeline so crops and landmarks match"
            )
        points = np.asarray(self.landmarks, dtype=np.float32).reshape(5, 2)
        return render_masked_face(image, seeded_mask_spec(points, self.size, self.spec_seed, self.styles))

    def __call__(self) -> Image.Image:
        return Image.fromarray(self.render_array())

    def __getstate__(self) -> tuple:
        return self.crop, self.landmarks, self.size, self.spec_seed, self.styles, self.image_id

    def __setstate__(self, state: tuple) -> None:
        self.crop, self.landmarks, self.size, self.spec_seed, self.styles, self.image_id = state


class MaskMap:
    """The binary mask of one face (255 where the mask hides it), computed when called."""

    __slots__ = ("landmarks", "size", "spec_seed", "styles")

    def __init__(self, landmarks: tuple[float, ...], size: int, spec_seed: int, styles: tuple[str, ...]) -> None:
        self.landmarks, self.size, self.spec_seed, self.styles = landmarks, size, spec_seed, styles

    def render_array(self) -> np.ndarray:
        """``size`` x ``size`` uint8, 255 on hidden pixels and 0 elsewhere."""
        points = np.asarray(self.landmarks, dtype=np.float32).reshape(5, 2)
        spec = seeded_mask_spec(points, self.size, self.spec_seed, self.styles)
        return rasterize_mask(spec, self.size) * np.uint8(255)

    def __call__(self) -> Image.Image:
        return Image.fromarray(self.render_array(), mode="L")

    def __getstate__(self) -> tuple:
        return self.landmarks, self.size, self.spec_seed, self.styles

    def __setstate__(self, state: tuple) -> None:
        self.landmarks, self.size, self.spec_seed, self.styles = state


def describe_masks(
    items: Sequence[tuple[str, tuple[float, ...], int, int]], styles: tuple[str, ...]
) -> dict[str, list]:
    """Metadata columns (``METADATA_COLUMNS``) of ``(image_id, landmarks, size, spec_seed)`` items."""
    columns: dict[str, list] = {name: [] for name in METADATA_COLUMNS}
    for image_id, landmarks, size, spec_seed in items:
        points = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
        try:
            spec = seeded_mask_spec(points, size, spec_seed, styles)
        except ValueError as err:
            raise ValueError(f"cannot place a mask on {image_id}: {err}") from err
        record = {"image_id": image_id, **spec.to_record(), "coverage": mask_coverage(rasterize_mask(spec, size)),
                  "spec_seed": spec_seed}
        for name in METADATA_COLUMNS:
            columns[name].append(record[name])
    return columns


def _strip_suffix(key: str) -> str:
    lower = key.lower()
    for suffix in _IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return key[: -len(suffix)]
    return key


def apply_synthetic_masks(
    face_crops: Mapping[str, Callable[[], Image.Image]],
    face_landmarks: pd.DataFrame,
    params: dict,
) -> tuple[LazyPartitions[MaskedFace], LazyPartitions[MaskMap], pd.DataFrame]:
    """Put a seeded synthetic mask on every face crop.

    Args:
        face_crops: ``{image_id: () -> PIL RGB crop}`` (a PartitionedDataset load; plain images
            are accepted too). Keys with an image suffix (``000001.png``) are matched to their id.
        face_landmarks: ``image_id``, the 10 ``LANDMARK_COLUMNS`` in crop coordinates and the crop
            ``size`` (if that column is absent the first crop is read to find it).
        params: the ``masks`` group (:class:`~unmask.params.masks.MasksParams`).

    Returns:
        ``masked_faces``: ``{image_id: MaskedFace}`` (a :class:`LazyPartitions` mapping; calling a
        ``MaskedFace`` returns the PIL RGB masked crop),
        ``mask_maps``: ``{image_id: MaskMap}`` (a PIL 'L' image, 255 where the mask hides the face,
        else 0), both lazy, and ``mask_metadata``: one row per image with ``image_id, style,
        colour, secondary_colour`` (hex), ``pattern, tilt`` (degrees), ``coverage`` (fraction of
        the crop) and ``spec_seed`` (``seeded_mask_spec(landmarks, size, spec_seed, styles)``
        reproduces the mask).
    """
    params = validated(MasksParams, "masks", params)
    seed, styles = params.seed, params.styles
    missing_cols = [c for c in ["image_id", *LANDMARK_COLUMNS] if c not in face_landmarks.columns]
    if missing_cols:
        raise ValueError(f"face_landmarks lacks column(s) {missing_cols}")
    crops_by_id = face_crops
    if any(_strip_suffix(str(k)) != k for k in face_crops):
        crops_by_id = {_strip_suffix(str(k)): v for k, v in face_crops.items()}
    ids = face_landmarks["image_id"].astype(str).tolist()
    absent = [i for i in ids if i not in crops_by_id]
    if absent:
        raise ValueError(
            f"{len(absent)} image(s) of face_landmarks have no face crop, e.g. {absent[:5]}; "
            "re-run the faces pipeline so both come from the same run"
        )
    extra = len(crops_by_id) - len(ids)  # every id has a crop (checked above) and ids are unique
    if extra:
        logger.warning("Ignoring %d face crop(s) without a face_landmarks row", extra)

    if "size" in face_landmarks.columns:
        sizes = pd.to_numeric(face_landmarks["size"]).to_numpy(dtype=np.int64)
    elif ids:
        first = _crop_pixels(crops_by_id[ids[0]])
        sizes = np.full(len(ids), first.shape[0], dtype=np.int64)
    else:
        sizes = np.empty(0, dtype=np.int64)

    # Columns, not one object per image: the jobs are made when the datasets saving them ask.
    points = face_landmarks[LANDMARK_COLUMNS].to_numpy(dtype=np.float32, na_value=np.nan)
    seeds = np.fromiter((image_seed(seed, image_id) for image_id in ids), dtype=np.uint64, count=len(ids))
    styles_key = tuple(styles)
    id_array = np.asarray(ids, dtype=str)

    def items(rows: range) -> list[tuple[str, tuple[float, ...], int, int]]:
        return [(str(id_array[i]), tuple(points[i].tolist()), int(sizes[i]), int(seeds[i])) for i in rows]

    workers, chunk_size = pool_args(len(ids), params.workers, params.chunk_size, params.parallel_from)
    columns: dict[str, list] = {name: [] for name in METADATA_COLUMNS}
    chunks = (items(range(start, min(start + chunk_size, len(ids)))) for start in range(0, len(ids), chunk_size))
    for chunk_columns in map_chunks(functools.partial(describe_masks, styles=styles_key), chunks,
                                    workers=workers, total=len(ids), desc="Sampling masks"):
        for name in METADATA_COLUMNS:
            columns[name].extend(chunk_columns[name])

    def masked_at(i: int) -> MaskedFace:
        image_id = str(id_array[i])
        return MaskedFace(crops_by_id[image_id], tuple(points[i].tolist()), int(sizes[i]), int(seeds[i]),
                          styles_key, image_id)

    def map_at(i: int) -> MaskMap:
        return MaskMap(tuple(points[i].tolist()), int(sizes[i]), int(seeds[i]), styles_key)

    masked = LazyPartitions(id_array, masked_at)
    maps = LazyPartitions(id_array, map_at)
    metadata = pd.DataFrame(columns, columns=METADATA_COLUMNS)
    metadata["spec_seed"] = metadata["spec_seed"].astype("int64")
    metadata["coverage"] = metadata["coverage"].astype("float64")
    if len(metadata):
        counts = metadata["style"].value_counts().to_dict()
        logger.info("Masking %d faces; styles %s; mean coverage %.3f",
                    len(metadata), counts, metadata["coverage"].mean())
    return masked, maps, metadata
