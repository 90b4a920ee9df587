"""Masks stage: draw a seeded synthetic face mask over every aligned face crop.

Each image gets its own random generator seeded from ``(masks.seed, image_id)``
(:func:`image_seed`), so a mask is reproducible on its own, whatever the order or subset of images.
The spec is cheap to sample, so the node samples it eagerly to fill ``mask_metadata`` (style,
colours, coverage) and the lazy callables of ``masked_faces`` and ``mask_maps`` sample the very same
spec again from the same seed when ``PartitionedDataset`` saves them: they always agree, and no
per-image geometry is kept in memory in between.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from unmask.imaging.landmarks import LANDMARK_COLUMNS
from unmask.imaging.mask_renderer import (
    MASK_STYLES,
    MaskSpec,
    mask_coverage,
    rasterize_mask,
    render_masked_face,
    sample_mask_spec,
)

logger = logging.getLogger(__name__)

METADATA_COLUMNS = ["image_id", "style", "colour", "secondary_colour", "pattern", "tilt", "coverage", "spec_seed"]
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def validate_masks_params(params: dict[str, Any]) -> tuple[int, list[str]]:
    """Check the ``masks`` parameter group and return ``(seed, styles)``."""
    if not isinstance(params, dict):
        raise ValueError(f"params:masks must be a mapping like {{'seed': 0, 'styles': [...]}}, got {params!r}")
    seed = params.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"masks.seed must be a non-negative integer, got {seed!r}")
    styles = params.get("styles", list(MASK_STYLES))
    if isinstance(styles, str):
        styles = [styles]
    if not isinstance(styles, Sequence) or len(styles) == 0:
        raise ValueError(f"masks.styles must be a non-empty list drawn from {list(MASK_STYLES)}, got {styles!r}")
    unknown = [s for s in styles if s not in MASK_STYLES]
    if unknown:
        raise ValueError(f"masks.styles has unknown style(s) {unknown}; valid styles are {list(MASK_STYLES)}")
    return int(seed), [str(s) for s in styles]


def image_seed(seed: int, image_id: str) -> int:
    """Per-image seed (0 <= value < 2**63) derived from the run seed and the image id.

    Numeric ids (CelebA's ``000001``) use ``[seed, int(id)]`` as entropy; other ids a stable
    BLAKE2 hash of the id (Python's ``hash`` is salted per process, so it is not used).
    """
    image_id = str(image_id)
    key = int(image_id) if image_id.isdigit() else int.from_bytes(
        hashlib.blake2b(image_id.encode("utf-8"), digest_size=8).digest(), "little"
    )
    state = np.random.SeedSequence([int(seed), key]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def _spec_for(landmarks: np.ndarray, size: int, spec_seed: int, styles: list[str]) -> MaskSpec:
    return sample_mask_spec(landmarks, size, np.random.default_rng(spec_seed), styles)


def _load_rgb(value: Any) -> np.ndarray:
    loaded = value() if callable(value) else value
    if isinstance(loaded, Image.Image):
        loaded = loaded.convert("RGB")
    array = np.asarray(loaded)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3].astype(np.uint8, copy=False))


def _masked_loader(crop: Any, landmarks: np.ndarray, size: int, spec_seed: int, styles: list[str], image_id: str):
    def load() -> Image.Image:
        image = _load_rgb(crop)
        if image.shape[:2] != (size, size):
            raise ValueError(
                f"face crop {image_id} is {image.shape[1]}x{image.shape[0]} but face_landmarks says {size}x{size}; "
                "re-run the faces pipeline so crops and landmarks match"
            )
        return Image.fromarray(render_masked_face(image, _spec_for(landmarks, size, spec_seed, styles)))

    return load


def _mask_loader(landmarks: np.ndarray, size: int, spec_seed: int, styles: list[str]):
    def load() -> Image.Image:
        mask = rasterize_mask(_spec_for(landmarks, size, spec_seed, styles), size)
        return Image.fromarray(mask * np.uint8(255))

    return load


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
) -> tuple[dict[str, Callable[[], Image.Image]], dict[str, Callable[[], Image.Image]], pd.DataFrame]:
    """Put a seeded synthetic mask on every face crop.

    Args:
        face_crops: ``{image_id: () -> PIL RGB crop}`` (a PartitionedDataset load; plain images
            are accepted too). Keys with an image suffix (``000001.png``) are matched to their id.
        face_landmarks: ``image_id``, the 10 ``LANDMARK_COLUMNS`` in crop coordinates and the crop
            ``size`` (if that column is absent the first crop is read to find it).
        params: the ``masks`` group ``{"seed": 0, "styles": [...]}``.

    Returns:
        ``masked_faces``: ``{image_id: () -> PIL RGB masked crop}``, ``mask_maps``:
        ``{image_id: () -> PIL 'L' image, 255 where the mask hides the face, else 0}`` (both lazy)
        and ``mask_metadata``: one row per image with ``image_id, style, colour, secondary_colour``
        (hex), ``pattern, tilt`` (degrees), ``coverage`` (fraction of the crop) and ``spec_seed``
        (``sample_mask_spec(landmarks, size, np.random.default_rng(spec_seed), styles)``
        reproduces the mask).
    """
    seed, styles = validate_masks_params(params)
    missing_cols = [c for c in ["image_id", *LANDMARK_COLUMNS] if c not in face_landmarks.columns]
    if missing_cols:
        raise ValueError(f"face_landmarks lacks column(s) {missing_cols}")
    crops_by_id = {_strip_suffix(str(k)): v for k, v in face_crops.items()}
    ids = face_landmarks["image_id"].astype(str).tolist()
    absent = [i for i in ids if i not in crops_by_id]
    if absent:
        raise ValueError(
            f"{len(absent)} image(s) of face_landmarks have no face crop, e.g. {absent[:5]}; "
            "re-run the faces pipeline so both come from the same run"
        )
    extra = len(set(crops_by_id) - set(ids))
    if extra:
        logger.warning("Ignoring %d face crop(s) without a face_landmarks row", extra)

    if "size" in face_landmarks.columns:
        sizes = pd.to_numeric(face_landmarks["size"]).to_numpy(dtype=np.int64)
    elif ids:
        first = _load_rgb(crops_by_id[ids[0]])
        sizes = np.full(len(ids), first.shape[0], dtype=np.int64)
    else:
        sizes = np.empty(0, dtype=np.int64)

    masked: dict[str, Callable[[], Image.Image]] = {}
    maps: dict[str, Callable[[], Image.Image]] = {}
    rows: list[dict[str, Any]] = []
    points = face_landmarks[LANDMARK_COLUMNS].to_numpy(dtype=np.float32, na_value=np.nan).reshape(-1, 5, 2)
    for landmarks, image_id, size in zip(points, ids, sizes):
        size = int(size)
        spec_seed = image_seed(seed, image_id)
        try:
            spec = _spec_for(landmarks, size, spec_seed, styles)
        except ValueError as err:
            raise ValueError(f"cannot place a mask on {image_id}: {err}") from err
        record = {"image_id": image_id, **spec.to_record()}
        record["coverage"] = mask_coverage(rasterize_mask(spec, size))
        record["spec_seed"] = spec_seed
        rows.append(record)
        masked[image_id] = _masked_loader(crops_by_id[image_id], landmarks, size, spec_seed, styles, image_id)
        maps[image_id] = _mask_loader(landmarks, size, spec_seed, styles)
    metadata = pd.DataFrame(rows, columns=METADATA_COLUMNS)
    metadata["spec_seed"] = metadata["spec_seed"].astype("int64")
    metadata["coverage"] = metadata["coverage"].astype("float64")
    if len(metadata):
        counts = metadata["style"].value_counts().to_dict()
        logger.info("Masking %d faces; styles %s; mean coverage %.3f", len(metadata), counts, metadata["coverage"].mean())
    return masked, maps, metadata
