"""Face alignment: a similarity transform from the 5 CelebA landmarks to a canonical square crop.

Coordinates
-----------
Landmarks and matrices use OpenCV's pixel convention: the centre of pixel ``(col, row)`` is the
point ``(x, y) = (col, row)``, so a ``size`` x ``size`` crop spans ``[-0.5, size - 0.5]`` on both
axes. The template below is given in *normalised* crop coordinates, where ``0`` and ``1`` are the
crop's outer edges; in pixels a template point ``t`` sits at ``t * size - 0.5`` (see
:func:`template_points`).

Template
--------
:data:`CANONICAL_TEMPLATE` is the mean CelebA *aligned* landmark layout (178x218 images: eyes at
(69, 111) and (108, 111), nose (89, 135), mouth corners (72, 152) and (106, 152), made left/right
symmetric about x = 89) seen through the 160x160 window whose top-left corner is (9, 40) in that
frame, i.e. rows 40..200 and columns 9..169 of an aligned CelebA image:

============  ========  ========
landmark      x         y
============  ========  ========
left eye      0.378125  0.44375   (eye distance 39 px / 160 = 0.24375 of the side)
right eye     0.621875  0.44375
nose tip      0.500000  0.59375
left mouth    0.393750  0.70000   (mouth width 34 px / 160 = 0.2125)
right mouth   0.606250  0.70000
============  ========  ========

Why this window: in the aligned frame the hairline sits at about y = 55 and the chin at about
y = 185, so the face spans ~130 px vertically; a 160 px window leaves ~15 px (~9 % of the side) of
forehead/hair above and of neck below the chin (chin at ~0.91 of the side), and horizontally the
face (cheek to cheek ~90 px) sits in the middle with the ears at the borders. The window lies
entirely inside the 178x218 aligned image, so aligning an aligned CelebA image needs no border
padding at all; at ``size=256`` it is a 1.6x upscale of that window (the "256x256 face crop" of
the paper).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

__all__ = [
    "BORDER_MODES",
    "CANONICAL_TEMPLATE",
    "align_face",
    "estimate_alignment",
    "estimate_alignments",
    "invert_alignment",
    "template_points",
    "transform_points",
    "warp_to_crop",
]

#: Canonical landmarks (LANDMARK_NAMES order) in normalised coordinates of the square crop.
CANONICAL_TEMPLATE: np.ndarray = np.array(
    [
        [0.378125, 0.44375],  # left eye
        [0.621875, 0.44375],  # right eye
        [0.500000, 0.59375],  # nose tip
        [0.393750, 0.70000],  # left mouth corner
        [0.606250, 0.70000],  # right mouth corner
    ],
    dtype=np.float64,
)
CANONICAL_TEMPLATE.setflags(write=False)

#: Accepted ``border`` values and the OpenCV border mode each one uses.
BORDER_MODES: dict[str, int] = {
    "reflect": cv2.BORDER_REFLECT_101,
    "replicate": cv2.BORDER_REPLICATE,
    "constant": cv2.BORDER_CONSTANT,
}

Border = Literal["reflect", "replicate", "constant"]

# Below this scale (output pixels per input pixel) the source is pre-shrunk with INTER_AREA so the
# warp does not alias; above 1 the warp upsamples and uses bicubic interpolation.
_AREA_BELOW = 0.5


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or int(size) < 2:
        raise ValueError(f"size must be an integer >= 2 (the crop side in pixels), got {size!r}")
    return int(size)


def template_points(size: int) -> np.ndarray:
    """Return the canonical landmarks in pixel coordinates of a ``size`` x ``size`` crop, (5, 2)."""
    size = _check_size(size)
    return CANONICAL_TEMPLATE * size - 0.5


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (5, 2):
        raise ValueError(f"landmarks must have shape (5, 2) (LANDMARK_NAMES order), got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError(f"landmarks contain NaN or infinite values: {pts.tolist()}")
    eye_distance = float(np.hypot(*(pts[1] - pts[0])))
    spread = float(np.sqrt(((pts - pts.mean(axis=0)) ** 2).sum(axis=1).mean()))
    if eye_distance < 1e-3 or spread < 1e-3:
        raise ValueError(
            "degenerate landmarks: the eyes coincide or all points collapse to one "
            f"(eye distance {eye_distance:.3g} px): {pts.tolist()}"
        )
    return pts


def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (no reflection, no shear) mapping ``src`` onto ``dst``; 2x3."""
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    n = src.shape[0]
    cov = dst_c.T @ src_c / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # forbid a reflection
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    src_var = (src_c**2).sum() / n
    scale = float((s * d).sum() / src_var)
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def estimate_alignment(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Similarity transform (rotation, uniform scale, translation) from image landmarks to the crop.

    Fits the five ``landmarks`` (pixel coordinates, LANDMARK_NAMES order) to
    :func:`template_points` ``(size)`` in the least-squares sense (Umeyama's closed form, which is
    deterministic and has no random sampling). Returns a float64 2x3 matrix ``M`` with
    ``crop_xy = M[:, :2] @ image_xy + M[:, 2]``, ready for :func:`cv2.warpAffine`.

    Raises ``ValueError`` for a wrong shape, NaN/inf values or degenerate points (coincident eyes).
    """
    size = _check_size(size)
    pts = _check_landmarks(landmarks)
    matrix = _umeyama(pts, template_points(size))
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:, :2])) < 1e-12:
        raise ValueError(f"could not fit an alignment to landmarks {pts.tolist()}")
    return matrix


def estimate_alignments(landmarks: np.ndarray, size: int) -> tuple[np.ndarray, dict[int, str]]:
    """:func:`estimate_alignment` for many faces at once (vectorised; ~50x faster than a loop).

    ``landmarks`` is (N, 5, 2). Returns the (N, 2, 3) matrices and ``{row: reason}`` for the rows
    that cannot be aligned (NaN/inf values, coincident eyes, all points in one); their matrices
    are NaN.
    """
    size = _check_size(size)
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (5, 2):
        raise ValueError(f"landmarks must have shape (N, 5, 2) (LANDMARK_NAMES order), got {pts.shape}")
    n = pts.shape[0]
    matrices = np.full((n, 2, 3), np.nan)
    bad: dict[int, str] = {}
    finite = np.isfinite(pts).all(axis=(1, 2))
    safe = np.where(finite[:, None, None], pts, 0.0)
    eye_distance = np.hypot(*(safe[:, 1] - safe[:, 0]).T)
    src_mean = safe.mean(axis=1)
    src_c = safe - src_mean[:, None, :]
    spread = np.sqrt((src_c**2).sum(axis=2).mean(axis=1))
    for row in np.flatnonzero(~finite):
        bad[int(row)] = f"landmarks contain NaN or infinite values: {pts[row].tolist()}"
    for row in np.flatnonzero(finite & ((eye_distance < 1e-3) | (spread < 1e-3))):
        bad[int(row)] = ("degenerate landmarks: the eyes coincide or all points collapse to one "
                         f"(eye distance {eye_distance[row]:.3g} px): {pts[row].tolist()}")
    ok = np.array([i not in bad for i in range(n)], dtype=bool)
    if ok.any():
        dst = template_points(size)
        dst_mean = dst.mean(axis=0)
        dst_c = dst - dst_mean
        src_c_ok, src_mean_ok = src_c[ok], src_mean[ok]
        cov = np.einsum("ki,nkj->nij", dst_c, src_c_ok) / 5
        u, s, vt = np.linalg.svd(cov)
        d = np.ones((len(cov), 2))
        d[np.linalg.det(u) * np.linalg.det(vt) < 0, 1] = -1.0  # forbid a reflection
        rotation = (u * d[:, None, :]) @ vt
        src_var = (src_c_ok**2).sum(axis=(1, 2)) / 5
        scale = (s * d).sum(axis=1) / src_var
        linear = scale[:, None, None] * rotation
        out = np.empty((len(cov), 2, 3))
        out[:, :, :2] = linear
        out[:, :, 2] = dst_mean - np.einsum("nij,nj->ni", linear, src_mean_ok)
        singular = ~np.isfinite(out).all(axis=(1, 2)) | (np.abs(np.linalg.det(linear)) < 1e-12)
        rows = np.flatnonzero(ok)
        for row in rows[singular]:
            bad[int(row)] = f"could not fit an alignment to landmarks {pts[row].tolist()}"
        matrices[rows[~singular]] = out[~singular]
    return matrices, dict(sorted(bad.items()))


def invert_alignment(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (crop -> image), e.g. to paste a restored crop back."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3) or not np.all(np.isfinite(m)):
        raise ValueError(f"matrix must be a finite 2x3 affine matrix, got shape {m.shape}")
    det = float(np.linalg.det(m[:, :2]))
    if abs(det) < 1e-12:
        raise ValueError("matrix is singular and cannot be inverted")
    linear_inv = np.linalg.inv(m[:, :2])
    out = np.empty((2, 3), dtype=np.float64)
    out[:, :2] = linear_inv
    out[:, 2] = -linear_inv @ m[:, 2]
    return out


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine ``matrix`` to an (N, 2) array of points; returns float64 (N, 2)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(matrix, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def _as_rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {img.dtype}")
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    elif not (img.ndim == 3 and img.shape[2] == 3):
        raise ValueError(f"image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"image is empty: shape {img.shape}")
    return np.ascontiguousarray(img)


def _upsample_region(img: np.ndarray, m: np.ndarray, size: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The part of ``img`` that the crop sees, resized bicubically by ``scale``, and the matrix
    from it to the crop (a near-unit-scale warp that is left for bilinear interpolation)."""
    h, w = img.shape[:2]
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]])
    seen = transform_points(corners, invert_alignment(m))
    margin = 3  # source pixels: the bilinear warp must never sample the edge of a cut-out region
    x0, y0 = (max(0, int(np.floor(v)) - margin) for v in seen.min(axis=0))
    x1 = min(w, int(np.ceil(seen[:, 0].max())) + margin + 1)
    y1 = min(h, int(np.ceil(seen[:, 1].max())) + margin + 1)
    if x1 - x0 < 2 or y1 - y0 < 2:  # the crop lies (almost) outside the image: only the border shows
        return img, m
    new_w, new_h = round((x1 - x0) * scale), round((y1 - y0) * scale)
    fx, fy = new_w / (x1 - x0), new_h / (y1 - y0)
    region = cv2.resize(img[y0:y1, x0:x1], (new_w, new_h), interpolation=cv2.INTER_CUBIC)
    # resized pixel centre x' = (x - x0 + 0.5) * fx - 0.5; undo it before applying ``m``.
    undo = np.array([[1.0 / fx, 0.0, x0 + 0.5 / fx - 0.5], [0.0, 1.0 / fy, y0 + 0.5 / fy - 0.5], [0.0, 0.0, 1.0]])
    return region, m @ undo


def warp_to_crop(image: np.ndarray, matrix: np.ndarray, size: int, border: Border = "reflect") -> np.ndarray:
    """Warp ``image`` (uint8 RGB) into a ``size`` x ``size`` crop with the 2x3 image->crop ``matrix``.

    Interpolation follows the scale ``s`` of the matrix: when ``s < 0.5`` the image is first shrunk
    with ``INTER_AREA`` (box filter: no aliasing) to about the output resolution and the remaining
    near-1 warp is bilinear; ``0.5 <= s <= 1`` warps bilinearly; ``s > 1`` (upsampling) resizes the
    part of the image the crop sees bicubically to the output scale, then warps it bilinearly (the
    rotation and the sub-pixel shift only): the same crop as a bicubic warp to within about 50 dB
    PSNR, in half the time, because OpenCV vectorises bicubic resizing but not bicubic warping.
    ``border`` is ``"reflect"`` (BORDER_REFLECT_101), ``"replicate"`` or ``"constant"`` (black).
    """
    size = _check_size(size)
    if border not in BORDER_MODES:
        raise ValueError(f"border must be one of {sorted(BORDER_MODES)}, got {border!r}")
    img = _as_rgb(image)
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3) or not np.all(np.isfinite(m)):
        raise ValueError(f"matrix must be a finite 2x3 affine matrix, got shape {m.shape}")
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 1e-9:
        raise ValueError("matrix is singular")
    if scale < _AREA_BELOW:
        h, w = img.shape[:2]
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        fx, fy = new_w / w, new_h / h
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA)
        # resized pixel centre x' = (x + 0.5) * fx - 0.5; undo it before applying ``m``.
        undo = np.array([[1.0 / fx, 0.0, 0.5 / fx - 0.5], [0.0, 1.0 / fy, 0.5 / fy - 0.5], [0.0, 0.0, 1.0]])
        m = m @ undo
        scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    interpolation = cv2.INTER_LINEAR
    if scale > 1.0:
        img, m = _upsample_region(img, m, size, scale)
    mode = BORDER_MODES[border]
    if mode == cv2.BORDER_REFLECT_101 and min(img.shape[:2]) < 2:
        mode = cv2.BORDER_REPLICATE  # reflect-101 is undefined for a 1-pixel-wide image
    return cv2.warpAffine(
        img, m, (size, size), flags=interpolation, borderMode=mode, borderValue=(0, 0, 0)
    )


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int, border: Border = "reflect"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Align a face to the canonical template.

    Returns ``(crop, crop_landmarks, matrix)``: the ``size`` x ``size`` x 3 uint8 crop, the
    landmarks mapped into crop pixel coordinates (float32, (5, 2)) and the 2x3 image->crop matrix
    (float64). See :func:`warp_to_crop` for interpolation and border handling.
    """
    matrix = estimate_alignment(landmarks, size)
    crop = warp_to_crop(image, matrix, size, border)
    crop_landmarks = transform_points(landmarks, matrix).astype(np.float32)
    return crop, crop_landmarks, matrix
