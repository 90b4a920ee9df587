"""Finding (masked) faces in users' photos: MediaPipe's BlazeFace run by OpenCV, dlib for the landmarks.

dlib's HOG and CNN detectors (:mod:`unmask.imaging.landmark_detector`) look at what a mask hides
(mouth, jaw) and find a face in only about half of real photos of masked people. BlazeFace, the
face detector of Google's MediaPipe, was trained on faces in the wild and finds most masked faces.

Model
-----
``weights/face_detection_full_range.tflite`` (MediaPipe, Apache-2.0; see ``weights/README.md``):
192x192 RGB input in [-1, 1], one 48x48 grid of anchors (stride 4, one anchor per cell), and two
outputs: 2304 scores (logits) and 2304 x 16 regressors, ``(dx, dy, w, h)`` of the box and
``(dx, dy)`` of six keypoints (right eye, left eye, nose tip, mouth centre, right ear, left ear;
"right" is the subject's right, i.e. the image's left on a frontal face), in input pixels relative
to the anchor's centre. OpenCV's DNN module reads the .tflite file (``cv2.dnn.readNetFromTFLite``,
classic engine: the new one exposes only one of the two outputs); no new dependency. The anchor
grid and the decoding are written here (:func:`anchor_centres`, :func:`decode`), after MediaPipe's
``SsdAnchorsCalculator`` and ``TensorsToDetectionsCalculator``; overlapping boxes are merged by
MediaPipe's weighted non-maximum suppression (:func:`weighted_nms`).

Passes
------
Each pass letterboxes a square window of the photo into the 192x192 input:

1. ``blazeface``: the whole photo, padded to a square plus each of ``pads`` (fractions of its
   long side; grey) on every side: a face that fills the frame (tight crops) is larger than
   anything BlazeFace was trained on, and padding shrinks it to a size it knows;
2. ``blazeface_tile``: photos at least ``tile_min_side`` px long are also cut into overlapping
   square tiles (``tile_fraction`` of the long side), so that small faces of group photos get
   enough input pixels;
3. ``blazeface_rotated``: only when 1-2 found no face scoring ``min_score``, the padded photo
   rotated by each angle of ``rotations`` (tilted heads).

The detections of all passes scoring at least ``fallback_score`` are merged (:func:`weighted_nms`),
a box lying mostly inside a better one (a part of that face at another scale) is dropped, and the
faces scoring ``min_score`` are kept; when there is none, the best face scoring
``fallback_score`` whose upper face looks like one is (masks cost BlazeFace confidence): in the
crop aligned on its eyes (:func:`~unmask.imaging.landmark_detector.upper_face_evidence`), at
least ``verify_skin`` of the forehead has skin chroma or the forehead-and-eyes band has a
left/right symmetry of at least ``verify_symmetry``. Without that check the fallback finds a
"face" in 16 of 40 random-noise images; with it in 1 (scoring above ``min_score``), and it keeps
17 of the 21 fallback faces of the tuning photos. BlazeFace's keypoints collapse on faces only a
few input pixels wide: a box whose eyes are closer than ``min_eye_distance`` box widths is
searched again in a window three box widths wide around it, and dropped when its eyes are still
that close (a box on one eye of a close-up). Measured on real photos of masked people
(``benchmarks/bench_real_photos.py``; tuned on every 6th photo from the 2nd, measured on every
3rd from the 1st, ``--detect-only``): a face is found in 97.4 % of 613 photos of masked people
(dlib's cascade: 57.8 %) and in 99.6 % of 552 photos of unmasked ones (dlib: 98.2 %), at a median
0.06-0.07 s per photo on 2 busy CPU cores. Without padding only about half of the masked faces are
found; the fallback score adds a few points, mostly tight crops of masked faces.

Landmarks
---------
The alignment needs CelebA's 5 points (eyes, nose tip, mouth corners). For every box the face is
warped upright (rotated by the angle of BlazeFace's eye line) and scaled to a fixed size, dlib's
68-point shape predictor runs there on a fixed box, and its points are mapped back. Its eye
centres replace BlazeFace's coarser ones unless the two disagree by more than ``max_eye_shift``
eye distances (then BlazeFace's are kept, and nose and mouth come from them). As in the dlib
cascade, a face whose lower half does
not have the colour of the skin around the eyes (:func:`~unmask.imaging.landmark_detector.lower_face_occlusion`)
counts as masked and gets its nose and mouth from the eyes
(:func:`~unmask.imaging.landmark_detector.lower_face_from_eyes`); an uncovered face keeps the
predictor's nose and mouth. Without dlib the eyes are BlazeFace's and nose and mouth always come
from the eyes.

:class:`BlazeFaceDetector` has the :meth:`detect` of
:class:`~unmask.imaging.landmark_detector.FaceLandmarkDetector`: a list of
:class:`~unmask.imaging.landmark_detector.Detection`, best first.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from unmask.imaging.landmark_detector import (
    Detection,
    _as_rgb,
    _model,
    available,
    five_from_68,
    lower_face_from_eyes,
    lower_face_occlusion,
    upper_face_evidence,
)

__all__ = [
    "BlazeFaceDetector",
    "FaceBox",
    "MODEL_PATH",
    "anchor_centres",
    "decode",
    "frame_face",
    "load_blazeface",
    "weighted_nms",
]

MODEL_PATH = Path(__file__).resolve().parent / "weights" / "face_detection_full_range.tflite"
INPUT_SIZE = 192
STRIDE = 4
KEYPOINTS = ("right eye", "left eye", "nose tip", "mouth", "right ear", "left ear")


@dataclasses.dataclass(frozen=True, eq=False)
class FaceBox:
    """One BlazeFace detection in a photo's pixels: ``box`` ``(x0, y0, x1, y1)``, ``score`` in (0, 1),
    ``keypoints`` (6, 2) in :data:`KEYPOINTS` order, and the ``step`` (pass) that found it."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray
    step: str


def anchor_centres(size: int = INPUT_SIZE, stride: int = STRIDE) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1] of a ``size / stride`` square grid, row by row, one per cell."""
    cells = int(np.ceil(size / stride))
    yy, xx = np.mgrid[0:cells, 0:cells]
    return np.stack([(xx.ravel() + 0.5) / cells, (yy.ravel() + 0.5) / cells], axis=1)


def decode(logits: np.ndarray, regressors: np.ndarray, anchors: np.ndarray, size: int = INPUT_SIZE,
           min_score: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scores (K,), boxes (K, 4) as x0, y0, x1, y1, keypoints (K, 6, 2))`` in [0, 1] input
    coordinates, for the anchors scoring at least ``min_score``."""
    logits = np.asarray(logits, np.float64).reshape(-1)
    regressors = np.asarray(regressors, np.float64).reshape(len(logits), -1)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100.0, 100.0)))
    keep = np.flatnonzero(scores >= min_score)
    raw, centre = regressors[keep] / size, anchors[keep]
    xy = centre + raw[:, 0:2]
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([xy - half, xy + half], axis=1)
    keypoints = centre[:, None, :] + raw[:, 4:16].reshape(-1, 6, 2)
    return scores[keep], boxes, keypoints


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def _covered(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The fraction of ``box``'s area inside each of ``boxes``."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return inter / max(float((box[2] - box[0]) * (box[3] - box[1])), 1e-12)


def weighted_nms(scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray, iou: float = 0.3
                 ) -> list[tuple[float, np.ndarray, np.ndarray, int]]:
    """MediaPipe's weighted NMS: each best remaining box absorbs those overlapping it by more than
    ``iou``; its box and keypoints become their score-weighted mean. Returns ``(score, box,
    keypoints, index of the best box)``, best first."""
    order = list(np.argsort(-np.asarray(scores), kind="stable"))
    out = []
    while order:
        best = order[0]
        overlap = _iou(boxes[best], boxes[order]) > iou
        group = [order[i] for i in np.flatnonzero(overlap)]
        order = [order[i] for i in np.flatnonzero(~overlap)]
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(0) / w.sum()
        kps = (keypoints[group] * w[:, :, None]).sum(0) / w.sum()
        out.append((float(scores[best]), box, kps, int(best)))
    return out


_NETS: dict[tuple[int, str], Any] = {}
_NETS_LOCK = threading.Lock()


def load_blazeface(path: str | Path = MODEL_PATH) -> Any:
    """An OpenCV DNN net of the BlazeFace .tflite at ``path`` (one per thread: OpenCV nets are not thread-safe)."""
    key = (threading.get_ident(), str(path))
    net = _NETS.get(key)
    if net is None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"the BlazeFace model {path} is missing: reinstall unmask "
                                    "(it ships as package data)")
        engine = getattr(cv2.dnn, "ENGINE_CLASSIC", None)
        net = cv2.dnn.readNetFromTFLite(str(path), *([] if engine is None else [engine]))
        outputs = list(net.getUnconnectedOutLayersNames())
        if len(outputs) != 2:
            raise RuntimeError(f"{path}: expected two outputs (scores, regressors), OpenCV sees {outputs}")
        with _NETS_LOCK:
            _NETS[key] = net
    return net


def _run_net(net: Any, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores' logits and regressors of one square RGB uint8 window."""
    x = cv2.resize(window, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA if window.shape[0] > INPUT_SIZE
                   else cv2.INTER_LINEAR)
    blob = (x.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
    net.setInput(np.ascontiguousarray(blob))
    first, second = net.forward(list(net.getUnconnectedOutLayersNames()))
    logits, regressors = (first, second) if first.shape[-1] == 1 else (second, first)
    return logits.reshape(-1), regressors.reshape(-1, 16)


_ANCHORS = anchor_centres()


class BlazeFaceDetector:
    """Faces and 5 CelebA landmarks of a photo: BlazeFace boxes (see the module doc), dlib's landmarks.

    Parameters
    ----------
    min_score, fallback_score, verify_skin, verify_symmetry:
        Keep the faces scoring at least ``min_score``, or else the best one scoring at least
        ``fallback_score`` whose forehead is at least ``verify_skin`` skin-coloured or whose upper
        face is at least ``verify_symmetry`` symmetric (see the module doc).
    pads:
        Grey borders (fractions of the long side, on every side) of the whole-photo passes.
    tile_min_side, tile_fraction:
        Photos whose long side is at least ``tile_min_side`` px are also searched in overlapping
        square tiles of ``tile_fraction`` of the long side (0 disables tiles).
    rotations:
        Angles (degrees) of the extra passes run when nothing else found a face.
    min_eye_distance:
        A box whose two eyes are closer than this fraction of its width is searched again, zoomed
        in, and dropped when they still are (see the module doc).
    max_eye_shift:
        Use dlib's eye centres (and nose and mouth) unless they are this many eye distances from
        BlazeFace's; otherwise BlazeFace's eyes, and nose and mouth from them.
    occlusion_threshold:
        Above this lower-face colour mismatch a face counts as masked (``masked=None``).
    """

    def __init__(self, *, min_score: float = 0.5, fallback_score: float = 0.3, verify_skin: float = 0.3,
                 verify_symmetry: float = 0.3, pads: tuple[float, ...] = (0.25, 1.0),
                 tile_min_side: int = 400, tile_fraction: float = 0.5, rotations: tuple[float, ...] = (-30.0, 30.0),
                 min_eye_distance: float = 0.15, max_eye_shift: float = 0.25, occlusion_threshold: float = 9.0,
                 model_path: str | Path = MODEL_PATH) -> None:
        if not 0.0 < fallback_score <= min_score < 1.0:
            raise ValueError(f"need 0 < fallback_score <= min_score < 1, got {fallback_score}, {min_score}")
        if not pads or min(pads) < 0 or not 0.0 <= tile_fraction <= 1.0:
            raise ValueError(f"need pads >= 0 and 0 <= tile_fraction <= 1, got {pads}, {tile_fraction}")
        self.min_score = float(min_score)
        self.fallback_score = float(fallback_score)
        self.verify_skin = float(verify_skin)
        self.verify_symmetry = float(verify_symmetry)
        self.pads = tuple(float(p) for p in pads)
        self.tile_min_side = int(tile_min_side)
        self.tile_fraction = float(tile_fraction)
        self.rotations = tuple(float(a) for a in rotations)
        self.min_eye_distance = float(min_eye_distance)
        self.max_eye_shift = float(max_eye_shift)
        self.occlusion_threshold = float(occlusion_threshold)
        self.model_path = Path(model_path)

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("min_score", "fallback_score", "verify_skin", "verify_symmetry", "pads",
                                              "tile_min_side", "tile_fraction", "rotations", "min_eye_distance",
                                              "max_eye_shift", "occlusion_threshold", "model_path")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.__getstate__().items() if k != "model_path")
        return f"{type(self).__name__}({args})"

    # ---------------------------------------------------------------------------------- boxes

    def _window(self, net: Any, image: np.ndarray, matrix: np.ndarray, side: int, step: str,
                found: list[tuple[float, np.ndarray, np.ndarray, str]]) -> None:
        """Run BlazeFace on the ``side`` x ``side`` window ``matrix`` maps the image to; append its
        detections in image pixels."""
        window = cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=(128, 128, 128))
        logits, regressors = _run_net(net, window)
        scores, boxes, keypoints = decode(logits, regressors, _ANCHORS, INPUT_SIZE, self.fallback_score)
        if not len(scores):
            return
        inverse = cv2.invertAffineTransform(matrix)
        for score, box, kps in zip(scores, boxes, keypoints):
            pts = np.vstack([kps, box.reshape(2, 2), [[box[0], box[3]], [box[2], box[1]]]]) * side
            pts = pts @ inverse[:, :2].T + inverse[:, 2]
            # the box keeps its size around its centre mapped back (a rotated window's box stays upright)
            centre = pts[6:].mean(0)
            half = np.sqrt(abs(np.linalg.det(inverse[:, :2]))) * (box[2:] - box[:2]) * side / 2
            found.append((float(score), np.concatenate([centre - half, centre + half]), pts[:6], step))

    def boxes(self, image: np.ndarray) -> list[FaceBox]:
        """BlazeFace's faces of an RGB uint8 image, best first (all passes merged)."""
        img = _as_rgb(image)
        h, w = img.shape[:2]
        net = load_blazeface(self.model_path)
        long = max(h, w)
        found: list[tuple[float, np.ndarray, np.ndarray, str]] = []
        centre = np.array([(w - 1) / 2, (h - 1) / 2])
        padded = []
        for pad in self.pads:
            side = int(round(long * (1 + 2 * pad)))
            whole = np.array([[1.0, 0.0, (side - 1) / 2 - centre[0]], [0.0, 1.0, (side - 1) / 2 - centre[1]]])
            padded.append((whole, side))
            self._window(net, img, whole, side, "blazeface", found)
        if self.tile_fraction > 0 and long >= self.tile_min_side:
            tile = max(INPUT_SIZE, int(round(self.tile_fraction * long)))
            for y0 in _starts(h, tile):
                for x0 in _starts(w, tile):
                    self._window(net, img, np.array([[1.0, 0, -x0], [0, 1.0, -y0]]), tile, "blazeface_tile", found)
        if not any(f[0] >= self.min_score for f in found):
            whole, side = padded[len(padded) // 2]
            for angle in self.rotations:
                rot = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), angle, 1.0)
                self._window(net, img, rot @ np.vstack([whole, [0, 0, 1]]), side, "blazeface_rotated", found)
        if not found:
            return []
        scores = np.array([f[0] for f in found])
        merged = weighted_nms(scores, np.stack([f[1] for f in found]), np.stack([f[2] for f in found]))
        kept: list[tuple[float, np.ndarray, np.ndarray, int]] = []
        for candidate in merged:  # best first: drop a box mostly inside a better one (a part of that face)
            if not kept or _covered(candidate[1], np.stack([k[1] for k in kept])).max() <= 0.5:
                kept.append(candidate)
        faces = [FaceBox(tuple(float(v) for v in box), score, kps.astype(np.float32), found[i][3])
                 for score, box, kps, i in kept]
        faces = [f for f in (self._refined(net, img, f) for f in faces) if f is not None]
        confident = [f for f in faces if f.score >= self.min_score]
        return confident or [f for f in faces if self._upper_face_passes(img, f)][:1]

    def _eyes_apart(self, face: FaceBox) -> bool:
        return bool(np.hypot(*(face.keypoints[1] - face.keypoints[0])) >= self.min_eye_distance
                    * (face.box[2] - face.box[0]))

    def _refined(self, net: Any, image: np.ndarray, face: FaceBox) -> FaceBox | None:
        """``face`` itself, or when its eyes are closer than ``min_eye_distance`` box widths (BlazeFace's
        keypoints collapse on faces a few input pixels wide), BlazeFace run again on a window three
        box widths wide around it; None when its eyes are still not apart."""
        if self._eyes_apart(face):
            return face
        x0, y0, x1, y1 = face.box
        side = max(8, int(round(3 * (x1 - x0))))
        shift = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) - (side - 1) / 2
        again: list[tuple[float, np.ndarray, np.ndarray, str]] = []
        self._window(net, image, np.array([[1.0, 0.0, -shift[0]], [0.0, 1.0, -shift[1]]]), side, face.step, again)
        for score, box, kps, step in sorted(again, key=lambda f: -f[0]):
            centre = (box[:2] + box[2:]) / 2
            if x0 <= centre[0] <= x1 and y0 <= centre[1] <= y1:
                better = FaceBox(tuple(float(v) for v in box), max(score, face.score), kps.astype(np.float32), step)
                return better if self._eyes_apart(better) else None
        return None

    def _upper_face_passes(self, image: np.ndarray, face: FaceBox) -> bool:
        """The check of a face below ``min_score``: skin-coloured forehead or a symmetric upper face."""
        eyes = np.zeros((5, 2))
        eyes[:2] = face.keypoints[:2]
        try:
            skin, _, symmetry = upper_face_evidence(image, eyes)
        except ValueError:  # degenerate eyes
            return False
        return skin >= self.verify_skin or symmetry >= self.verify_symmetry

    # ------------------------------------------------------------------------------ landmarks

    def detect(self, image: np.ndarray, *, masked: bool | None = None, max_faces: int | None = None,
               **_: Any) -> list[Detection]:
        """All faces of an RGB uint8 image (grey or RGBA accepted) with 5 landmarks, best first; [] when none.

        ``masked``: ``None`` decides per face whether the lower face is covered (then nose and
        mouth come from the eyes), ``True`` / ``False`` forces it. ``max_faces`` keeps the first N.
        """
        img = _as_rgb(image)
        if img.shape[0] < 2 or img.shape[1] < 2:
            return []
        faces = self.boxes(img)
        if max_faces is not None:
            faces = faces[:max(0, int(max_faces))]
        with_dlib = available()
        out = []
        for face in faces:
            # BlazeFace's right eye is the subject's right: the image's left, CelebA's "left eye"
            eyes = face.keypoints[:2].astype(np.float64)
            shape68 = _shape68_upright(img, eyes) if with_dlib else None
            five = np.zeros((5, 2), np.float64)
            five[:2] = eyes
            trusted = False  # dlib's points agree with BlazeFace's eyes: its nose and mouth may be used
            if shape68 is not None:
                dlib_five = five_from_68(shape68).astype(np.float64)
                d = float(np.hypot(*(eyes[1] - eyes[0])))
                if np.all(np.hypot(*(dlib_five[:2] - eyes).T) <= self.max_eye_shift * max(d, 1.0)):
                    five, trusted = dlib_five, True
            occ = float("nan")
            is_masked = bool(masked) if masked is not None else True
            if masked is None:
                occ = lower_face_occlusion(img, lower_face_from_eyes(five))
                is_masked = not (np.isfinite(occ) and occ <= self.occlusion_threshold)
            is_masked = is_masked or not trusted
            if is_masked:
                five = lower_face_from_eyes(five)
            out.append(Detection(box=face.box, landmarks=five.astype(np.float32), score=face.score,
                                 method=face.step, masked=is_masked, occlusion=occ,
                                 shape68=None if shape68 is None else shape68.astype(np.float32)))
        return out

    def detect_one(self, image: np.ndarray, *, masked: bool | None = None) -> Detection | None:
        """The best face of ``image``, or None."""
        found = self.detect(image, masked=masked, max_faces=1)
        return found[0] if found else None


def _starts(length: int, tile: int) -> list[int]:
    """Start offsets of tiles of ``tile`` px covering ``length`` px with at least a third of overlap."""
    if length <= tile:
        return [0]
    count = int(np.ceil((length - tile) / (tile * 2 / 3))) + 1
    return [int(round(v)) for v in np.linspace(0, length - tile, count)]


# the upright crop the shape predictor runs on: eyes level, 40 px apart, their centre at (90, 76); the
# box is where dlib's HOG detector puts its box around such eyes (median over 283 CelebA faces:
# -1.2 / +1.3 eye distances left / right of the eyes' centre, -0.7 above, +1.73 below)
_UPRIGHT_SIZE = 180
_UPRIGHT_EYES = np.array([[70.0, 76.0], [110.0, 76.0]])
_UPRIGHT_BOX = (42, 48, 142, 145)


def _shape68_upright(image: np.ndarray, eyes: np.ndarray) -> np.ndarray | None:
    """dlib's 68 points of the face whose eyes are ``eyes``, found on an upright crop; None if degenerate."""
    import dlib  # only when available() said so

    src, dst = eyes.astype(np.float64), _UPRIGHT_EYES
    d_src, d_dst = src[1] - src[0], dst[1] - dst[0]
    if np.hypot(*d_src) < 2.0:
        return None
    # similarity transform taking the two eyes to the crop's two eyes
    a = complex(*d_dst) / complex(*d_src)
    matrix = np.array([[a.real, -a.imag, 0.0], [a.imag, a.real, 0.0]])
    matrix[:, 2] = dst[0] - matrix[:, :2] @ src[0]
    crop = cv2.warpAffine(image, matrix, (_UPRIGHT_SIZE, _UPRIGHT_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    shape = _model("shape68")(crop, dlib.rectangle(*_UPRIGHT_BOX))
    pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    inverse = cv2.invertAffineTransform(matrix)
    return pts @ inverse[:, :2].T + inverse[:, 2]


def frame_face(image: np.ndarray, above: float = 0.0, beside: float = 0.0) -> Detection | None:
    """The face of a photo that *is* a face crop (the face fills the frame): dlib's 68 points fitted
    to the whole frame, nose and mouth placed from the eyes (the lower face taken as covered).

    BlazeFace misses many such crops (forehead and chin cut off, the lower half a mask); a caller
    tries this only where no face it found could be the frame's face (see
    :meth:`unmask.predict.Unmasker.unmask`). ``above`` / ``beside``: the face's box reaches that
    fraction of the frame's height above it / of its width past each side (a crop that cut off the
    forehead or the cheeks). None without dlib or for a frame under 8 px.
    """
    img = _as_rgb(image)
    h, w = img.shape[:2]
    if min(h, w) < 8 or not available():
        return None
    import dlib  # only when available() said so

    box = (-round(beside * w), -round(above * h), w - 1 + round(beside * w), h - 1)
    shape = _model("shape68")(img, dlib.rectangle(*box))
    points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
    five = lower_face_from_eyes(five_from_68(points))
    return Detection(box=tuple(float(v) for v in (box[0], box[1], box[2] + 1, box[3] + 1)),
                     landmarks=five.astype(np.float32), score=0.0,
                     method="frame", masked=True, shape68=points.astype(np.float32))
