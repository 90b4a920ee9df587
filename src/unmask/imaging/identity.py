"""Identity check: dlib face-recognition embeddings of aligned face crops.

dlib's ResNet recogniser (``dlib_face_recognition_resnet_model_v1.dat`` from the PyPI package
``face_recognition_models``, run by ``dlib.face_recognition_model_v1``) maps a face to a 128-d
vector; two faces whose vectors lie less than :data:`SAME_PERSON_DISTANCE` (0.6, dlib's threshold)
apart are taken as the same person.

Geometry
--------
The recogniser wants the 150x150 chip of :func:`dlib.get_face_chip` (padding 0.25) built from dlib's
5-point landmarks. The project's crops are already aligned to the canonical template
(:mod:`unmask.imaging.alignment`), so no detector runs: the crop is resized to
:data:`WORK_SIZE` (bicubic: 64 px crops are upsampled 4x, which is fine; the chip covers ~0.66 of
the crop side, ~42 px of a 64 px crop) and dlib's 5-point shape predictor runs in
:data:`FACE_BOX`, the mean box dlib's HOG detector gives on aligned crops (measured on 287 CelebA
test faces at 256 px). :meth:`IdentityEmbedder.distances` takes the landmarks from the ground
truth alone and cuts the same chip from every restoration, so a distance measures content only.
``num_jitters=1``: no jitter, deterministic.

Measured on the CPU recipe's 1,000 CelebA test faces (64 px): two different faces lie 0.83 apart
on average (0.7 % of pairs under 0.6); on 100 of them, one face at 64 and at 256 px lies 0.17
apart, and from its mirror image 0.23. Cost: ~0.13 s of one core per chip (dlib-bin has no BLAS);
landmarks and chip ~2 ms.

Models are loaded lazily once per process; an embedder pickles as nothing but its class, so it can
go to worker processes like :class:`~unmask.imaging.landmark_detector.FaceLandmarkDetector`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from unmask.imaging.landmark_detector import _import_dlib, _model

__all__ = ["FACE_BOX", "INSTALL_HINT", "SAME_PERSON_DISTANCE", "WORK_SIZE", "IdentityEmbedder"]

#: dlib's same-person threshold on the Euclidean distance of two embeddings.
SAME_PERSON_DISTANCE = 0.6
#: Side (px) the crops are resized to before the shape predictor and the chip.
WORK_SIZE = 256
#: Mean HOG box ``(left, top, right, bottom)`` on aligned crops, as fractions of the crop side.
FACE_BOX = (0.2194, 0.2811, 0.7742, 0.8371)
CHIP_SIZE, CHIP_PADDING, NUM_JITTERS = 150, 0.25, 1

INSTALL_HINT = (
    "the identity measure needs dlib (`pip install dlib-bin`) and the model files of the package "
    "face_recognition_models (`pip install face_recognition_models \"setuptools<81\"`)"
)


def _models() -> tuple[Any, Any]:
    """The process-wide ``(recogniser, 5-point shape predictor)`` (:func:`landmark_detector._model`), loaded
    on first use; ``ImportError`` with this measure's install hint when dlib or the model files are missing."""
    try:
        return _model("recogniser"), _model("shape5")
    except ImportError as exc:
        raise ImportError(f"{exc}. {INSTALL_HINT}") from exc


def _work_image(crop: np.ndarray) -> np.ndarray:
    img = np.asarray(crop)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or img.shape[0] != img.shape[1]:
        raise ValueError(f"expected a square HxWx3 uint8 RGB crop, got {img.dtype} {img.shape}")
    if img.shape[0] == WORK_SIZE:
        return np.ascontiguousarray(img)
    interpolation = cv2.INTER_CUBIC if img.shape[0] < WORK_SIZE else cv2.INTER_AREA
    return cv2.resize(img, (WORK_SIZE, WORK_SIZE), interpolation=interpolation)


def _face_box() -> Any:
    return _import_dlib().rectangle(*(int(round(f * WORK_SIZE)) for f in FACE_BOX))


class IdentityEmbedder:
    """128-d dlib face-recognition embeddings of aligned square crops (RGB uint8, any size)."""

    def __reduce__(self) -> tuple:
        return (IdentityEmbedder, ())  # models live in the per-process cache

    def load(self) -> IdentityEmbedder:
        """Load the models now (otherwise on first use); ImportError naming the package if missing."""
        _models()
        return self

    def landmarks(self, truth: np.ndarray) -> np.ndarray:
        """dlib's 5 points of the face in ``truth``, (5, 2) int64 pixels of the :data:`WORK_SIZE` image."""
        shape = _models()[1](_work_image(truth), _face_box())
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.int64)

    def chip(self, crop: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The 150x150x3 chip of ``crop`` that :func:`dlib.get_face_chip` cuts at ``landmarks``."""
        dlib = _import_dlib()
        shape = dlib.full_object_detection(_face_box(), [dlib.point(int(x), int(y)) for x, y in np.asarray(landmarks)])
        geometry = dlib.get_face_chip_details(shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        return dlib.extract_image_chip(_work_image(crop), geometry)

    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 128) float64 embeddings of 150x150 chips (one batched pass of the network)."""
        if not len(chips):
            return np.zeros((0, 128))
        vectors = _models()[0].compute_face_descriptor([np.ascontiguousarray(c) for c in chips], NUM_JITTERS)
        return np.array([list(v) for v in vectors], dtype=np.float64)

    def embed(self, crop: np.ndarray) -> np.ndarray:
        """(128,) embedding of one aligned crop, chip cut at its own landmarks."""
        return self.embed_chips([self.chip(crop, self.landmarks(crop))])[0]

    def distances(self, truth: np.ndarray, candidates: Sequence[np.ndarray], landmarks: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """``(truth's embedding, distances of candidates to it)``, every chip cut at the truth's landmarks.

        ``landmarks``: the truth's, if already known (:meth:`landmarks`).
        """
        points = self.landmarks(truth) if landmarks is None else landmarks
        vectors = self.embed_chips([self.chip(image, points) for image in (truth, *candidates)])
        return vectors[0], np.linalg.norm(vectors[1:] - vectors[0], axis=1)
