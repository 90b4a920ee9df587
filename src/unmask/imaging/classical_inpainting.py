"""Classical inpainting baselines: OpenCV's Telea and Navier-Stokes methods, given the true mask.

They are what a user would reach for without a trained model, and they get an advantage our model
does not have: the exact map of the hidden pixels. ``dilate_px`` grows that map first; the
project's renderer changes exactly the pixels of its map (its anti-aliased edge lies inside it), so
0 is right for the synthetic test set, while masks from elsewhere may need a pixel or two so that
no mask colour at the edge bleeds into the fill.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["INPAINT_METHODS", "inpaint_with_mask"]

#: Baseline name -> OpenCV flag.
INPAINT_METHODS: dict[str, int] = {"telea": cv2.INPAINT_TELEA, "navier_stokes": cv2.INPAINT_NS}


def inpaint_with_mask(image: np.ndarray, mask: np.ndarray, method: str, radius: float = 3.0,
                      dilate_px: int = 0) -> np.ndarray:
    """Fill the pixels of ``mask`` (HxW, non-zero = hidden) in ``image`` (HxWx3 uint8 RGB) with OpenCV.

    ``method`` is ``"telea"`` or ``"navier_stokes"``; ``radius`` is OpenCV's neighbourhood radius in
    pixels; ``dilate_px`` grows the mask by that many pixels (3x3 cross steps) before filling.
    Pixels outside the (grown) mask are returned unchanged.
    """
    if method not in INPAINT_METHODS:
        raise ValueError(f"unknown inpainting method {method!r}: use one of {sorted(INPAINT_METHODS)}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3 uint8, got {image.dtype} {image.shape}")
    hidden = (np.asarray(mask) > 0).astype(np.uint8)
    if hidden.shape != image.shape[:2]:
        raise ValueError(f"mask shape {hidden.shape} does not match the image's {image.shape[:2]}")
    if dilate_px < 0 or radius <= 0:
        raise ValueError(f"need dilate_px >= 0 and radius > 0, got {dilate_px} and {radius}")
    if dilate_px:
        hidden = cv2.dilate(hidden, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)), iterations=int(dilate_px))
    if not hidden.any():
        return image.copy()
    return cv2.inpaint(np.ascontiguousarray(image), hidden, float(radius), INPAINT_METHODS[method])
