"""Putting a restored face crop back into the photo it came from, at the photo's own resolution.

The model restores an aligned square crop (see :mod:`unmask.imaging.alignment`). To give the user
their photo back, :func:`restored_region` finds where the restoration changed the crop (the mask
the model removed: it is blind, so this is also the only mask prediction there is), and
:func:`paste_crop` warps the restored crop back with the inverse alignment and blends it in with a
feathered weight that is zero outside that region and tapers to zero at the crop's border.
Everything outside the crop's footprint is left bit-identical, and so is everything inside it that
the model did not change, so the rest of a high-resolution photo keeps its detail.

Region, on the ``S`` x ``S`` crop (lengths scale with ``S``; at S = 256):

1. difference = the largest per-channel absolute difference between the restored and the masked
   crop, on [0, 1], after a Gaussian blur of sigma ``S / 128`` (2 px) that ignores pixel noise;
2. thresholded at ``threshold`` (0.1 by default: a mask differs from skin by far more, a good
   restoration of an uncovered pixel by far less);
3. cleaned: an opening of radius ``S / 64`` (4 px) drops specks, a closing of radius ``S / 32``
   (8 px) joins the pieces of one mask, holes are filled, and pieces smaller than 0.5 % of the crop
   are dropped;
4. grown by ``S / 32`` (8 px) so that the mask's soft edge is inside.

The blend weight is that region blurred with sigma ``S / 64`` (the feather) times a ramp that falls
to zero over the ``S / 32`` pixels at the crop's border.

Grain: a crop scaled up onto a large face is smoother than the photo around it (a 64 px
restoration carries none of a 300 px face's sensor noise and JPEG grain). With ``grain=True``
:func:`paste_crop` measures the fine grain of the photo where it keeps its own pixels (the robust
standard deviation of a 1-pixel high-pass, per channel) and that of the scaled-up crop, and adds
seeded noise of the missing strength under the blend weight, so the restored region is neither
cleaner nor noisier than its surroundings.
"""

from __future__ import annotations

import cv2
import numpy as np

from unmask.imaging.alignment import invert_alignment, transform_points

__all__ = ["blend_weight", "paste_crop", "paste_region", "restored_region"]


def _disk(radius: int) -> np.ndarray:
    r = max(1, int(radius))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _check_crops(masked: np.ndarray, restored: np.ndarray) -> int:
    if masked.shape != restored.shape or masked.ndim != 3 or masked.shape[2] != 3 or masked.shape[0] != masked.shape[1]:
        raise ValueError(f"need two square HxWx3 crops of one size, got {masked.shape} and {restored.shape}")
    if masked.dtype != np.uint8 or restored.dtype != np.uint8:
        raise ValueError(f"crops must be uint8, got {masked.dtype} and {restored.dtype}")
    return int(masked.shape[0])


def restored_region(masked: np.ndarray, restored: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Boolean ``S`` x ``S`` map of where the model changed the crop (the module doc gives the steps)."""
    size = _check_crops(masked, restored)
    diff = np.abs(restored.astype(np.float32) - masked.astype(np.float32)).max(axis=2) / 255.0
    diff = cv2.GaussianBlur(diff, (0, 0), max(0.5, size / 128))
    region = (diff > threshold).astype(np.uint8)
    region = cv2.morphologyEx(region, cv2.MORPH_OPEN, _disk(round(size / 64)))
    region = cv2.morphologyEx(region, cv2.MORPH_CLOSE, _disk(round(size / 32)))
    # fill holes: what the border cannot reach through the background is inside a piece
    background = np.pad(1 - region, 1, constant_values=1)
    reach = np.zeros((size + 4, size + 4), np.uint8)
    cv2.floodFill(background, reach, (0, 0), 2)
    region = (background[1:-1, 1:-1] != 2).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(region, connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= 0.005 * size * size
    region = keep[labels].astype(np.uint8)
    if region.any():
        region = cv2.dilate(region, _disk(round(size / 32)))
    return region.astype(bool)


def blend_weight(region: np.ndarray) -> np.ndarray:
    """Feathered float32 weight in [0, 1] on the crop: the blurred region, tapered to 0 at the crop's border."""
    region = np.asarray(region, dtype=np.float32)
    size = region.shape[0]
    weight = cv2.GaussianBlur(region, (0, 0), max(0.5, size / 64)) if region.any() else region
    margin = max(1.0, size / 32)
    ramp = np.clip((np.minimum(np.arange(size), np.arange(size)[::-1]) + 0.5) / margin, 0.0, 1.0).astype(np.float32)
    return weight * ramp[:, None] * ramp[None, :]


def _footprint(matrix: np.ndarray, size: int, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """Pixel bounds ``(x0, y0, x1, y1)`` of the photo covered by the crop, or None when it misses the photo."""
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5], [-0.5, size - 0.5]])
    pts = transform_points(corners, invert_alignment(matrix))
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(shape[1], x1), min(shape[0], y1)
    return None if x1 <= x0 or y1 <= y0 else (int(x0), int(y0), int(x1), int(y1))


def _to_photo(array: np.ndarray, matrix: np.ndarray, bounds: tuple[int, int, int, int], flags: int,
              border: int = cv2.BORDER_CONSTANT) -> np.ndarray:
    x0, y0, x1, y1 = bounds
    inverse = invert_alignment(matrix)
    inverse[:, 2] -= (x0, y0)  # warp straight into the footprint's box, not the whole photo
    return cv2.warpAffine(array, inverse, (x1 - x0, y1 - y0), flags=flags, borderMode=border, borderValue=0)


def _grain(pixels: np.ndarray) -> np.ndarray:
    """Per-channel robust standard deviation (1.4826 x MAD) of rows of 1-pixel high-pass values."""
    if len(pixels) < 16:
        return np.zeros(pixels.shape[-1], np.float32)
    deviation = np.abs(pixels - np.median(pixels, axis=0))
    return (1.4826 * np.median(deviation, axis=0)).astype(np.float32)


def _high_pass(image: np.ndarray) -> np.ndarray:
    return image - cv2.GaussianBlur(image, (0, 0), 1.0)


def _matched_grain(original: np.ndarray, warped: np.ndarray, w: np.ndarray, seed: int) -> np.ndarray:
    """Noise (HxWx3 float32) that gives the warped crop the photo's fine grain where ``w`` > 0."""
    kept, pasted = w <= 0, w >= 0.5
    photo_grain = _grain(_high_pass(original)[kept])
    crop_grain = _grain(_high_pass(warped)[pasted])
    missing = np.sqrt(np.maximum(photo_grain**2 - crop_grain**2, 0.0))
    if not missing.any():
        return np.zeros_like(original)
    noise = np.random.default_rng(seed).standard_normal(original.shape, dtype=np.float32)
    unit = _grain(_high_pass(noise).reshape(-1, 3))  # what the high-pass leaves of unit white noise
    return noise * (missing / np.maximum(unit, 1e-6))


def paste_crop(photo: np.ndarray, crop: np.ndarray, matrix: np.ndarray, weight: np.ndarray, *,
               grain: bool = False, seed: int = 0) -> np.ndarray:
    """Blend ``crop`` (``S`` x ``S`` x 3 uint8) into a copy of ``photo`` through the photo->crop ``matrix``.

    ``weight`` (``S`` x ``S``, [0, 1]) says how much of the crop each crop pixel contributes; it is
    warped with the crop. Photo pixels where the warped weight is 0 are returned unchanged.
    ``grain`` adds the photo's own fine grain to a scaled-up crop (see the module doc; ``seed``
    makes it repeatable).
    """
    photo = np.asarray(photo)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"photo must be HxWx3 uint8, got {photo.dtype} {photo.shape}")
    size = crop.shape[0]
    if crop.shape != (size, size, 3) or weight.shape != (size, size):
        raise ValueError(f"crop must be SxSx3 and weight SxS, got {crop.shape} and {weight.shape}")
    out = photo.copy()
    bounds = _footprint(matrix, size, photo.shape)
    if bounds is None:
        return out
    x0, y0, x1, y1 = bounds
    # upsampling back to a large photo is smoother with bicubic; shrinking needs no more than bilinear
    scale = 1.0 / np.sqrt(abs(np.linalg.det(np.asarray(matrix, dtype=np.float64)[:, :2])))
    flags = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_LINEAR
    # the weight is 0 beyond the crop; replicating its edge keeps interpolation from pulling in black
    warped = _to_photo(crop, matrix, bounds, flags, cv2.BORDER_REPLICATE).astype(np.float32)
    w = np.clip(_to_photo(weight.astype(np.float32), matrix, bounds, cv2.INTER_LINEAR), 0.0, 1.0)
    changed = w > 0
    region = out[y0:y1, x0:x1]
    original = region.astype(np.float32)
    if grain and scale > 1 and changed.any():
        warped = warped + _matched_grain(original, warped, w, seed)
    blended = original + w[..., None] * (warped - original)
    region[changed] = np.clip(np.rint(blended[changed]), 0, 255).astype(np.uint8)
    return out


def paste_region(shape: tuple[int, int], region: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The crop-space boolean ``region`` mapped onto a photo of ``shape`` (H, W): a boolean map."""
    size = region.shape[0]
    out = np.zeros(shape[:2], bool)
    bounds = _footprint(matrix, size, shape)
    if bounds is None:
        return out
    x0, y0, x1, y1 = bounds
    out[y0:y1, x0:x1] = _to_photo(region.astype(np.float32), matrix, bounds, cv2.INTER_LINEAR) > 0.5
    return out
