"""Checking one image: readable, large enough, and where its landmarks come from when it has no annotation row.

An :class:`ImageExaminer` runs in worker processes or threads, so it is picklable and returns only
sizes and landmarks (never pixels); a bad image gives a quarantine reason instead of an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from unmask.imaging.celeba import (
    WILD,
    CelebASource,
    UnreadableImageError,
    read_image,
    read_image_size,
    template_landmarks,
)
from unmask.imaging.celeba_landmarks import CelebALandmarkFinder
from unmask.params.ingest import DetectorParams

#: Values of ``landmark_source`` (and of ``landmark_fallback``: ``detector`` or ``template``).
ANNOTATION, DETECTOR, TEMPLATE = "annotation", "detector", "template"
LANDMARK_SOURCES = (ANNOTATION, DETECTOR, TEMPLATE)

# quarantine reasons besides UnreadableImageError.reason
MISSING_FILE = "missing_file"
DUPLICATE_ID = "duplicate_id"
TOO_SMALL = "too_small"
LANDMARKS_OUTSIDE = "landmarks_outside_image"
NO_FACE = "no_face_found"
NO_LANDMARKS = "no_landmarks"
DETECTOR_ERROR = "detector_error"
UNREADABLE = "unreadable"

#: One image to examine: (member, needs landmarks, annotated face box ``(x, y, w, h)`` or None).
Task = tuple[str, bool, "tuple | None"]
#: One result per image: (width, height, quarantine reason or None, detail, 10 landmark values or
#: None, landmark source or None, detection method or "").
Result = tuple[int, int, "str | None", str, "np.ndarray | None", "str | None", str]


def make_detector(settings: DetectorParams | None) -> Any:
    """The face landmark detector (dlib); ImportError with install instructions when missing."""
    from unmask.imaging.landmark_detector import INSTALL_HINT, FaceLandmarkDetector, available

    if not available():
        raise ImportError(
            f"ingest.landmark_fallback=detector needs the face landmark detector, which is not installed: "
            f"{INSTALL_HINT}. Or set ingest.landmark_fallback=template (aligned images only).")
    return FaceLandmarkDetector(**(settings.model_dump() if settings is not None else {}))


@dataclass(frozen=True)
class ImageExaminer:
    """Checks one image (``check``: ``decode`` or ``header``; ``min_size`` px) and, when it has no
    annotated landmarks, gets them from ``finder`` or the template (``fallback``)."""

    source: CelebASource
    check: str
    min_size: int
    fallback: str
    finder: CelebALandmarkFinder | None = None

    def run(self, tasks: Sequence[Task]) -> list[Result]:
        """The result of every task of a chunk, in order."""
        return [self(task) for task in tasks]

    def __call__(self, task: Task) -> Result:
        member, needs_landmarks, bbox = task
        try:
            return self._examine(member, needs_landmarks, bbox)
        except UnreadableImageError as exc:
            return 0, 0, exc.reason, exc.detail, None, None, ""
        except FileNotFoundError as exc:
            return 0, 0, MISSING_FILE, f"file vanished while indexing: {exc}", None, None, ""
        except Exception as exc:  # one odd file must not stop a 200k-image run
            return 0, 0, UNREADABLE, f"{type(exc).__name__}: {exc}", None, None, ""

    def _examine(self, member: str, needs_landmarks: bool, bbox: tuple | None) -> Result:
        image = None
        if self.check == "header" and not (needs_landmarks and self.fallback == DETECTOR):
            w, h = read_image_size(self.source, member)
        else:
            image = read_image(self.source, member)
            h, w = image.shape[:2]
        if w < self.min_size or h < self.min_size:
            return w, h, TOO_SMALL, f"{w}x{h} is under min_size {self.min_size} px", None, None, ""
        if not needs_landmarks:
            return w, h, None, "", None, None, ""
        if self.fallback == TEMPLATE:
            return self._template(w, h)
        return self._detect(image, w, h, bbox)

    def _template(self, w: int, h: int) -> Result:
        if self.source.layout != WILD:
            return w, h, None, "", template_landmarks(w, h).reshape(-1), TEMPLATE, ""
        detail = "no landmark annotation, and the template (landmark_fallback: template) only fits aligned images"
        return w, h, NO_LANDMARKS, detail, None, None, ""

    def _detect(self, image: np.ndarray, w: int, h: int, bbox: tuple | None) -> Result:
        try:
            found = self.finder.find(image, bbox)
        except Exception as exc:
            return w, h, DETECTOR_ERROR, f"{type(exc).__name__}: {exc}", None, None, ""
        if found is not None:
            return w, h, None, "", found[0], DETECTOR, found[1]
        if self.source.layout != WILD:
            return w, h, None, "", template_landmarks(w, h).reshape(-1), TEMPLATE, ""
        where = "inside or around the annotated face box" if bbox is not None else "in the image"
        return w, h, NO_FACE, f"the face detector found no face {where}", None, None, ""
