"""Five landmarks for a CelebA image without an annotation row: the face detector, searched where the face is.

:class:`CelebALandmarkFinder` wraps a face landmark detector
(:class:`~unmask.imaging.landmark_detector.FaceLandmarkDetector`, or anything with its ``detect`` and
``detect_in_region``). On aligned images HOG first searches only where aligned CelebA puts the face
(``aligned_region_margin``; 4x cheaper, the same landmarks on 99 % of faces), then the whole image,
without dlib's CNN unless ``aligned_cnn``. On in-the-wild images with an annotated face box
(``list_bbox_celeba.txt``) only the area around that box is searched. With several faces
:func:`pick_face` keeps the largest, most central one (the one inside the annotated box, if any).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from unmask.imaging.celeba import aligned_face_region

__all__ = ["BBOX_MARGIN", "CelebALandmarkFinder", "pick_face"]

#: In the wild layout, detection searches the annotated face box enlarged by this fraction of its
#: larger side on every side.
BBOX_MARGIN = 0.3

# a detector object may not be used by two threads at once (dlib's are not thread-safe)
_DETECT_LOCK = threading.Lock()

Box = tuple[float, float, float, float]


def _box_of(det: Any) -> Box:
    x0, y0, x1, y1 = (float(v) for v in det.box)
    return x0, y0, x1, y1


def pick_face(detections: Sequence[Any], width: float, height: float, bbox: Box | None = None) -> Any | None:
    """The detection of the image's face: the largest, most central one; None when there is none.

    ``detections`` have a ``box`` ``(x0, y0, x1, y1)``. Each is ranked by its size (square root of
    the box area) divided by ``1 + distance of its centre from the reference centre / size``: the
    reference is the image centre, or the centre of ``bbox`` (``(x0, y0, x1, y1)``, an annotated
    face box) when given, in which case only detections centred inside ``bbox`` count.
    """
    if bbox is not None:
        bx0, by0, bx1, by1 = bbox
        ref = ((bx0 + bx1) / 2, (by0 + by1) / 2)
    else:
        ref = (width / 2 - 0.5, height / 2 - 0.5)
    best, best_rank = None, -math.inf
    for det in detections:
        x0, y0, x1, y1 = _box_of(det)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        if bbox is not None and not (bx0 <= cx <= bx1 and by0 <= cy <= by1):
            continue
        size = math.sqrt(max(x1 - x0, 0.0) * max(y1 - y0, 0.0))
        if size <= 0:
            continue
        rank = size / (1.0 + math.hypot(cx - ref[0], cy - ref[1]) / size)
        if rank > best_rank:
            best, best_rank = det, rank
    return best


def search_area(image: np.ndarray, bbox: Sequence[float] | None) -> tuple[np.ndarray, int, int, Box | None]:
    """Where to search ``image`` given its annotated face box ``bbox`` (``x, y, width, height``, or None).

    Returns the region (the box grown by :data:`BBOX_MARGIN`, or the whole image when the box is
    unusable or too small), its offset ``(x, y)`` in the image, and the box's outer edges in the
    region's pixel-centre coordinates (None without a box).
    """
    h, w = image.shape[:2]
    if bbox is None:
        return image, 0, 0, None
    bx, by, bw, bh = (float(v) for v in bbox)
    if not (bw > 0 and bh > 0 and bx < w and by < h and bx + bw > 0 and by + bh > 0):
        return image, 0, 0, None
    region, ox, oy = image, 0, 0
    m = BBOX_MARGIN * max(bw, bh)
    x0, y0 = max(0, math.floor(bx - m)), max(0, math.floor(by - m))
    x1, y1 = min(w, math.ceil(bx + bw + m)), min(h, math.ceil(by + bh + m))
    if x1 - x0 >= 8 and y1 - y0 >= 8:
        region, ox, oy = image[y0:y1, x0:x1], x0, y0
    return region, ox, oy, (bx - 0.5 - ox, by - 0.5 - oy, bx + bw - 0.5 - ox, by + bh - 0.5 - oy)


@dataclass(frozen=True)
class CelebALandmarkFinder:
    """Finds the face of one CelebA image and returns its five landmarks.

    Picklable: a :class:`FaceLandmarkDetector` pickles as its settings and loads its models once in
    whichever process uses it. ``aligned``: the image is an aligned CelebA crop (``img_align_celeba``).
    """

    detector: Any
    aligned: bool
    aligned_region_margin: float | None = None
    aligned_cnn: bool = False

    def find(self, image: np.ndarray, bbox: Sequence[float] | None = None) -> tuple[np.ndarray, str] | None:
        """``(10 landmark values in image pixels, detection method)``, or None when no face is found."""
        region, ox, oy, ref = search_area(image, bbox)
        best = pick_face(self._detections(image, region), region.shape[1], region.shape[0], ref)
        if best is None:
            return None
        pts = np.asarray(best.landmarks, dtype=np.float64).reshape(5, 2) + (ox, oy)
        return pts.reshape(-1), str(getattr(best, "method", "detector"))

    def _detections(self, image: np.ndarray, region: np.ndarray) -> list:
        h, w = image.shape[:2]
        found = []
        with _DETECT_LOCK:
            if self.aligned and self.aligned_region_margin is not None:
                found = self.detector.detect_in_region(
                    image, aligned_face_region(w, h, self.aligned_region_margin), masked=False)
            if not found:
                # aligned images fall back to the template, so the CNN (~0.1 s a try) is optional there
                use_cnn = False if self.aligned and not self.aligned_cnn else None
                found = self.detector.detect(region, masked=False, use_cnn=use_cnn)
        return found
