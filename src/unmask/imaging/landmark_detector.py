"""Offline face + 5-landmark detector (dlib), for CelebA ingestion and for users' (masked) photos.

Models
------
Everything ships inside PyPI packages; nothing is downloaded at run time:

* ``dlib-bin`` (prebuilt dlib): the HOG frontal face detector is compiled into dlib itself;
* ``face_recognition_models``: ``shape_predictor_68_face_landmarks.dat`` (iBUG 68-point layout)
  and ``mmod_human_face_detector.dat`` (dlib's CNN "MMOD" face detector).

The model files are located with :func:`importlib.util.find_spec`, without importing
``face_recognition_models`` (whose ``__init__`` imports the deprecated ``pkg_resources``).

OpenCV is not used for detection: opencv-python-headless 5.x has no ``CascadeClassifier`` and ships
no Haar cascade files, and ``cv2.FaceDetectorYN`` (YuNet) needs an ONNX model that is not in the
wheel.

Cascade
-------
1. The image is resized so that its short side is at least ``min_side`` pixels (small images such
   as the 89x109 CelebA sample are upsampled ~1.8x: dlib's HOG window is 80x80 px) and its long
   side at most ``max_side`` (huge photos are shrunk for speed).
2. ``dlib_hog``: the HOG detector, candidates scoring ``>= hog_threshold`` (dlib's default 0).
3. ``dlib_hog_low``: only when step 2 found nothing, the candidates scoring ``>= low_threshold``
   (from the same HOG run, so free). A face mask costs the HOG detector about 0.5-1 of score.
4. ``dlib_cnn``: only when steps 2-3 found nothing, dlib's CNN detector (~15x slower; loaded on
   first use).
5. ``dlib_hog_verified``: only when steps 2-4 found nothing, HOG candidates down to
   ``verify_threshold`` (from the same HOG run) that pass an upper-face check
   (:func:`upper_face_evidence`): in the crop aligned on the candidate's eyes, the skin between and
   above the eyes has skin chroma, the eyes are darker than the bridge of the nose between them,
   and the eye region is left/right symmetric. A mask hides what HOG scores most (mouth, jaw), so
   many masked faces score between -0.5 and -1; random texture and sideways faces pass this check
   far less often than faces do (numbers below).
6. The 68-point shape predictor runs on every box; the 5 CelebA points are the eye centres (mean
   of points 36-41 and 42-47), the nose tip (30) and the mouth corners (48, 54).

Masked faces
------------
The shape predictor does place nose and mouth points on a masked face, but measured on CelebA
with synthetic masks (``benchmarks/bench_landmarks.py``) those points are poor: compared with the
predictor's own points on the same image unmasked, the mouth corners are ~7 px off at 89x109
(~1/3 of the eye distance) and the nose ~6 px, while the eyes stay good (~1.7 px). For a face
judged masked, the nose and mouth are therefore placed from the two detected eyes with the mean
aligned-CelebA geometry (in the face frame of the eyes: eye line, eye distance), which brings
those errors to ~3.9 px (mouth) and ~4.3 px (nose), about what faces vary around the mean.
``detect(..., masked=None)`` decides per face from the colour of the lower face: when the skin
chroma beside the nose, above the lip and on the chin does not match the skin between and above
the eyes, the lower face is taken as covered (:attr:`Detection.masked`; on the CelebA sample with
the project's synthetic masks ~4 % of clean faces are flagged and ~8 % of masked ones are missed
at the default threshold). ``masked=True`` / ``False`` forces either behaviour: ingestion of
unmasked CelebA should pass ``masked=False``. The raw 68 points are always in
:attr:`Detection.shape68`.

Measured (89x109 CelebA sample, one core): ~150 images/s and 99.6 % found on clean faces; with
synthetic masks ~73 % found by steps 2-4 (HOG and its lower threshold ~60 %, the CNN half of the
rest) at ~19 images/s, the CNN being the cost. The verified step was tuned on images 1-600 and
measured on images 3001-4000 (``benchmarks/bench_landmarks.py``): see the README for the rates.

Coordinates
-----------
OpenCV's pixel convention, as in :mod:`unmask.imaging.alignment`: the centre of pixel
``(col, row)`` is the point ``(x, y) = (col, row)``. Landmarks follow CelebA's order and sides
(``LANDMARK_NAMES``): "left" is the image's left (``lefteye_x < righteye_x`` on a frontal face).
``box`` is ``(x0, y0, x1, y1)``: the outer edges of the detected rectangle in that convention; it
may extend past the image border.

Processes
---------
Models are loaded lazily, once per process, into a module-level cache shared by all detector
instances; a :class:`FaceLandmarkDetector` pickles as its settings only, so it can be handed to
worker processes (each worker loads the models on its first call; a forked worker reuses the
parent's already loaded copy).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from unmask.imaging.alignment import align_face

__all__ = [
    "CELEBA_TEMPLATE_178x218",
    "Detection",
    "FaceLandmarkDetector",
    "INSTALL_HINT",
    "available",
    "five_from_68",
    "lower_face_from_eyes",
    "lower_face_occlusion",
    "model_paths",
    "resize_for_detection",
    "to_original",
    "upper_face_evidence",
]

INSTALL_HINT = (
    "the face/landmark detector needs the packages dlib-bin (prebuilt dlib) and "
    "face_recognition_models (the model files), e.g. "
    "`pip install dlib-bin face_recognition_models \"setuptools<81\"` "
    "(face_recognition_models is a source distribution that imports pkg_resources, hence setuptools<81)"
)

#: Mean aligned-CelebA landmarks in the official 178x218 frame (LANDMARK_NAMES order).
CELEBA_TEMPLATE_178x218: np.ndarray = np.array(
    [[69.0, 111.0], [108.0, 111.0], [89.0, 135.0], [72.0, 152.0], [106.0, 152.0]], dtype=np.float64
)
CELEBA_TEMPLATE_178x218.setflags(write=False)


def _eye_frame_template() -> np.ndarray:
    t = CELEBA_TEMPLATE_178x218
    centre = (t[0] + t[1]) / 2
    d = float(t[1, 0] - t[0, 0])  # the eyes are level in the template
    return (t - centre) / d


#: The CelebA template in the eye frame: X along the eye line, Y down the face, unit = eye distance.
_EYE_FRAME_TEMPLATE = _eye_frame_template()

_MODEL_FILES = {
    "shape68": "shape_predictor_68_face_landmarks.dat",
    "cnn": "mmod_human_face_detector.dat",
    "shape5": "shape_predictor_5_face_landmarks.dat",  # unmask.imaging.identity
    "recogniser": "dlib_face_recognition_resnet_model_v1.dat",  # unmask.imaging.identity
}

# --------------------------------------------------------------------------------------------------
# pure helpers (no dlib needed)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Detection:
    """One detected face.

    ``box``: ``(x0, y0, x1, y1)`` float pixels of the input image (outer edges of the detector's
    rectangle). ``landmarks``: (5, 2) float32 in CelebA order (left eye, right eye, nose tip, left
    mouth corner, right mouth corner; "left" = the image's left). ``score``: the detector's score
    (HOG: SVM margin, >= 0 for a confident hit; CNN: MMOD confidence); only comparable within one
    ``method`` (``"dlib_hog"``, ``"dlib_hog_low"``, ``"dlib_cnn"`` or ``"dlib_hog_verified"``).
    ``masked``: the lower face was judged covered and nose/mouth come from the eyes (see the module
    doc). ``occlusion``: the lower-face colour mismatch behind that decision (NaN when not
    computed). ``shape68``: the raw (68, 2) float32 iBUG points of the shape predictor.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float
    method: str
    masked: bool = False
    occlusion: float = float("nan")
    shape68: np.ndarray | None = None

    def __repr__(self) -> str:
        box = ", ".join(f"{v:.1f}" for v in self.box)
        pts = np.round(np.asarray(self.landmarks, dtype=np.float64), 1).tolist()
        return (f"Detection(box=({box}), landmarks={pts}, score={self.score:.3f}, method={self.method!r}, "
                f"masked={self.masked}, occlusion={self.occlusion:.1f})")


def five_from_68(points: np.ndarray) -> np.ndarray:
    """Reduce iBUG 68-point landmarks to the 5 CelebA points, (5, 2) float32.

    Eye centres = mean of points 36-41 (image-left eye) and 42-47 (image-right eye), nose tip = 30,
    mouth corners = 48 (image left) and 54 (image right).
    """
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got shape {p.shape}")
    out = np.stack([p[36:42].mean(axis=0), p[42:48].mean(axis=0), p[30], p[48], p[54]])
    return out.astype(np.float32)


def lower_face_from_eyes(landmarks: np.ndarray) -> np.ndarray:
    """Replace nose and mouth by where the mean aligned-CelebA face puts them, given the two eyes.

    The template is expressed in the face frame of the eyes (eye centre, eye line, eye distance), so
    it follows the face's position, size and in-plane rotation. Returns (5, 2) float32.
    """
    p = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    centre = (p[0] + p[1]) / 2
    ex = p[1] - p[0]
    d = float(np.hypot(*ex))
    out = p.copy()
    if d < 1e-6:
        return out.astype(np.float32)
    ex /= d
    ey = np.array([-ex[1], ex[0]])  # image y points down: "down the face"
    t = _EYE_FRAME_TEMPLATE
    for k in (2, 3, 4):
        out[k] = centre + t[k, 0] * d * ex + t[k, 1] * d * ey
    return out.astype(np.float32)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if not isinstance(image, np.ndarray) or img.dtype != np.uint8:
        raise ValueError(f"image must be a uint8 numpy array (RGB), got {type(image).__name__} "
                         f"{getattr(img, 'dtype', None)}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.ndim == 3 and img.shape[2] == 1:
        img = cv2.cvtColor(img[..., 0], cv2.COLOR_GRAY2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    elif not (img.ndim == 3 and img.shape[2] == 3):
        raise ValueError(f"image must be HxW, HxWx1, HxWx3 (RGB) or HxWx4, got shape {img.shape}")
    return np.ascontiguousarray(img)


def resize_for_detection(image: np.ndarray, min_side: int = 160, max_side: int = 1280
                         ) -> tuple[np.ndarray, float, float]:
    """Resize ``image`` so that its short side is >= ``min_side`` or its long side <= ``max_side``.

    Upsampling wins when both apply. Returns ``(resized, sx, sy)`` with the exact per-axis scale
    factors (new size / old size); ``(image, 1.0, 1.0)`` when no resizing is needed.
    """
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        return image, 1.0, 1.0
    if min(h, w) < min_side:
        s = min_side / min(h, w)
    elif max(h, w) > max_side:
        s = max_side / max(h, w)
    else:
        return image, 1.0, 1.0
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    interp = cv2.INTER_LINEAR if s > 1 else cv2.INTER_AREA
    return cv2.resize(image, (nw, nh), interpolation=interp), nw / w, nh / h


def to_original(points: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Map (N, 2) points of an image resized by ``(sx, sy)`` back to the original image.

    With pixel centres at integer coordinates, a resize maps ``x`` to ``(x + 0.5) * sx - 0.5``;
    this is the inverse.
    """
    p = np.asarray(points, dtype=np.float64)
    return np.stack([(p[..., 0] + 0.5) / sx - 0.5, (p[..., 1] + 0.5) / sy - 0.5], axis=-1)


def _rect_box(left: float, top: float, right: float, bottom: float, sx: float, sy: float
              ) -> tuple[float, float, float, float]:
    # dlib rectangles are inclusive pixel indices: outer edges at left - 0.5 .. right + 0.5
    (x0, y0), (x1, y1) = to_original(np.array([[left - 0.5, top - 0.5], [right + 0.5, bottom + 0.5]]), sx, sy)
    return float(x0), float(y0), float(x1), float(y1)


# lower-face occlusion test: patches in the eye frame (X along the eyes, Y down, unit = eye distance)
_UPPER_PATCHES = np.array([[0.0, -0.05], [0.0, -0.45], [-0.5, -0.35], [0.5, -0.35]])  # between/above eyes
_LOWER_PATCHES = np.array([[0.0, 0.85], [0.0, 1.35], [-0.3, 0.7], [0.3, 0.7]])  # philtrum, chin, beside nose
_PATCH_RADIUS = 0.1


def lower_face_occlusion(image: np.ndarray, landmarks: np.ndarray) -> float:
    """How much the lower face's colour departs from the upper face's skin (higher = more covered).

    Median over four lower-face patches (above the lip, chin, both sides of the nose) of the smallest
    chroma distance (a*, b* of OpenCV's 8-bit Lab) to four patches of skin between and above the eyes.
    Skin of one face under one light has one chroma; surgical, N95, cloth masks mostly do not. NaN
    when the eyes are degenerate or the patches fall outside the image.
    """
    p = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    centre = (p[0] + p[1]) / 2
    ex = p[1] - p[0]
    d = float(np.hypot(*ex))
    if d < 2.0:
        return float("nan")
    ex /= d
    ey = np.array([-ex[1], ex[0]])
    allp = np.vstack([_UPPER_PATCHES, _LOWER_PATCHES])
    pts = centre + allp[:, :1] * d * ex + allp[:, 1:] * d * ey
    r = max(1, int(round(_PATCH_RADIUS * d)))
    h, w = image.shape[:2]
    x0 = int(max(0, np.floor(pts[:, 0].min()) - r - 2))
    y0 = int(max(0, np.floor(pts[:, 1].min()) - r - 2))
    x1 = int(min(w, np.ceil(pts[:, 0].max()) + r + 3))
    y1 = int(min(h, np.ceil(pts[:, 1].max()) + r + 3))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return float("nan")
    roi = image[y0:y1, x0:x1]
    roi = cv2.GaussianBlur(roi, (0, 0), max(0.5, 0.05 * d))
    lab = cv2.cvtColor(roi, cv2.COLOR_RGB2LAB)[..., 1:].astype(np.float32)
    rh, rw = lab.shape[:2]

    def chroma(q: np.ndarray) -> np.ndarray | None:
        cx, cy = int(round(q[0])) - x0, int(round(q[1])) - y0
        a = lab[max(0, cy - r):min(rh, cy + r + 1), max(0, cx - r):min(rw, cx + r + 1)].reshape(-1, 2)
        return np.median(a, axis=0) if len(a) else None

    n_up = len(_UPPER_PATCHES)
    upper = [c for c in (chroma(q) for q in pts[:n_up]) if c is not None]
    lower = [c for c in (chroma(q) for q in pts[n_up:]) if c is not None]
    if not upper or len(lower) < 2:
        return float("nan")
    U = np.array(upper)
    dist = [float(np.min(np.linalg.norm(U - c, axis=1))) for c in lower]
    return float(np.median(dist))


# upper-face check on a 64 px crop aligned on the eyes (eyes at (24.2, 27.9) and (39.8, 27.9))
_EVIDENCE_SIZE = 64
_FOREHEAD = (slice(14, 24), slice(24, 40))  # between and above the eyes
_EYES = ((slice(26, 31), slice(19, 29)), (slice(26, 31), slice(35, 45)))
_BRIDGE = (slice(24, 32), slice(29, 35))  # between the eyes
_SYMMETRY_BAND = (slice(8, 40), slice(8, 56))  # forehead and eyes
# skin chroma in OpenCV's 8-bit Lab (a*, b* offset by 128): reddish and yellowish, for every skin tone
_SKIN_A, _SKIN_B = (133, 170), (133, 185)


def upper_face_evidence(image: np.ndarray, landmarks: np.ndarray) -> tuple[float, float, float]:
    """``(skin, eye_contrast, symmetry)`` of the upper face in the crop aligned on the two eyes.

    ``skin``: fraction of skin-chroma pixels between and above the eyes; ``eye_contrast``: how much
    darker (8-bit grey levels) the eyes are than the bridge of the nose between them; ``symmetry``:
    correlation of the forehead-and-eyes band with its mirror image. Only the eyes of
    ``landmarks`` are used, so a mask over the lower face does not change it.
    """
    five = lower_face_from_eyes(np.asarray(landmarks, dtype=np.float64).reshape(5, 2))
    crop, _, _ = align_face(_as_rgb(image), five, _EVIDENCE_SIZE)
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB)[_FOREHEAD].astype(np.float32)
    a, b = lab[..., 1], lab[..., 2]
    skin = float(np.mean((a > _SKIN_A[0]) & (a < _SKIN_A[1]) & (b > _SKIN_B[0]) & (b < _SKIN_B[1])))
    eye_contrast = float(grey[_BRIDGE].mean() - (grey[_EYES[0]].mean() + grey[_EYES[1]].mean()) / 2)
    band = grey[_SYMMETRY_BAND]
    u, v = band - band.mean(), band[:, ::-1] - band.mean()
    symmetry = float((u * v).sum() / (np.sqrt((u * u).sum() * (v * v).sum()) + 1e-6))
    return skin, eye_contrast, symmetry


# --------------------------------------------------------------------------------------------------
# models


def _models_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [os.path.dirname(spec.origin)]
    for root in roots:
        folder = Path(root) / "models"
        if folder.is_dir():
            return folder
    return None


def model_paths() -> dict[str, Path]:
    """Paths of the model files shipped by ``face_recognition_models`` (ImportError if missing)."""
    folder = _models_dir()
    if folder is None:
        raise ImportError(f"face_recognition_models is not installed: {INSTALL_HINT}")
    paths = {k: folder / v for k, v in _MODEL_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise ImportError(f"face_recognition_models is incomplete (missing {missing}): {INSTALL_HINT}")
    return paths


def _import_dlib() -> Any:
    try:
        import dlib  # optional dependency, imported on first use
    except ImportError as exc:
        raise ImportError(f"dlib is not installed: {INSTALL_HINT}") from exc
    return dlib


def available() -> bool:
    """True when dlib and the face_recognition_models files are installed (loads nothing)."""
    try:
        if importlib.util.find_spec("dlib") is None:
            return False
        model_paths()
    except (ImportError, ValueError):
        return False
    return True


_CACHE: dict[str, Any] = {}
_CACHE_LOCK = threading.Lock()


def _model(name: str) -> Any:
    """The process-wide instance of ``"hog"``, ``"shape68"``, ``"cnn"``, ``"shape5"`` or ``"recogniser"``
    (loaded on first use)."""
    m = _CACHE.get(name)
    if m is not None:
        return m
    with _CACHE_LOCK:
        m = _CACHE.get(name)
        if m is None:
            dlib = _import_dlib()
            if name == "hog":
                m = dlib.get_frontal_face_detector()
            elif name == "shape68":
                m = dlib.shape_predictor(str(model_paths()["shape68"]))
            elif name == "cnn":
                m = dlib.cnn_face_detection_model_v1(str(model_paths()["cnn"]))
            elif name == "shape5":
                m = dlib.shape_predictor(str(model_paths()["shape5"]))
            elif name == "recogniser":
                m = dlib.face_recognition_model_v1(str(model_paths()["recogniser"]))
            else:  # pragma: no cover
                raise KeyError(name)
            _CACHE[name] = m
    return m


# --------------------------------------------------------------------------------------------------
# detector


class FaceLandmarkDetector:
    """Face boxes + 5 CelebA landmarks with dlib (HOG, then a lower HOG threshold, then CNN).

    Parameters
    ----------
    min_side, max_side:
        Detection runs on the image resized so that its short side is >= ``min_side`` (small
        images are upsampled; 160 puts an 89x109 CelebA crop at 1.8x) or else its long side is
        <= ``max_side``. Landmarks are predicted on the upsampled image, or on the original when
        the image was shrunk, and always mapped back to the input's pixels.
    hog_threshold, low_threshold:
        HOG score for a detection, and the lower score accepted when nothing reaches
        ``hog_threshold`` (masked faces). ``low_threshold >= hog_threshold`` disables that step.
    use_cnn, cnn_max_side:
        Run dlib's CNN detector when HOG finds nothing (slow: ~0.1 s on a 160x196 image, ~2 s on a
        1024x1024 photo), on a copy shrunk to at most ``cnn_max_side`` pixels (its smallest face is
        ~80 px there: ~130 px in a 1024 px photo).
    verify_threshold, verify_skin, verify_eye_contrast, verify_symmetry:
        The last step (masked faces): HOG candidates down to ``verify_threshold`` are kept when
        :func:`upper_face_evidence` reaches all three minimums. ``verify_threshold >=
        low_threshold`` disables that step.
    occlusion_threshold:
        Above this :func:`lower_face_occlusion` value a face counts as masked (``masked=None``).
    """

    def __init__(
        self,
        *,
        min_side: int = 160,
        max_side: int = 1280,
        hog_threshold: float = 0.0,
        low_threshold: float = -0.5,
        use_cnn: bool = True,
        cnn_max_side: int = 640,
        occlusion_threshold: float = 9.0,
        verify_threshold: float = -0.8,
        verify_skin: float = 0.5,
        verify_eye_contrast: float = 10.0,
        verify_symmetry: float = -1.0,
    ) -> None:
        if min_side < 1 or max_side < min_side:
            raise ValueError(f"need 1 <= min_side <= max_side, got {min_side}, {max_side}")
        if cnn_max_side < 80:
            raise ValueError(f"cnn_max_side must be at least 80 (the CNN's smallest face), got {cnn_max_side}")
        self.min_side = int(min_side)
        self.max_side = int(max_side)
        self.hog_threshold = float(hog_threshold)
        self.low_threshold = float(low_threshold)
        self.use_cnn = bool(use_cnn)
        self.cnn_max_side = int(cnn_max_side)
        self.occlusion_threshold = float(occlusion_threshold)
        self.verify_threshold = float(verify_threshold)
        self.verify_skin = float(verify_skin)
        self.verify_eye_contrast = float(verify_eye_contrast)
        self.verify_symmetry = float(verify_symmetry)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.__getstate__().items())
        return f"{type(self).__name__}({args})"

    # settings only: models live in the per-process cache
    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in
                ("min_side", "max_side", "hog_threshold", "low_threshold", "use_cnn", "cnn_max_side",
                 "occlusion_threshold",
                 "verify_threshold", "verify_skin", "verify_eye_contrast", "verify_symmetry")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def load(self) -> FaceLandmarkDetector:
        """Load the models now (otherwise on the first :meth:`detect`); the CNN only if enabled."""
        _model("hog")
        _model("shape68")
        if self.use_cnn:
            _model("cnn")
        return self

    def _boxes(self, img: np.ndarray, use_cnn: bool) -> list[tuple[Any, float, str]]:
        hog = _model("hog")
        low = min(self.low_threshold, self.hog_threshold)
        rects, scores, _ = hog.run(img, 0, min(low, self.verify_threshold))
        found = [(r, float(s), "dlib_hog") for r, s in zip(rects, scores) if s >= self.hog_threshold]
        if not found and self.low_threshold < self.hog_threshold:
            found = [(r, float(s), "dlib_hog_low") for r, s in zip(rects, scores) if s >= low]
        if not found and use_cnn:
            found = [(r, c, "dlib_cnn") for r, c in self._cnn(img)]
        if not found and self.verify_threshold < low:
            found = [(r, float(s), "dlib_hog_verified") for r, s in zip(rects, scores)
                     if s < low and self._upper_face_passes(img, r)]
        found.sort(key=lambda t: -t[1])
        return found

    def _cnn(self, img: np.ndarray) -> list[tuple[Any, float]]:
        """The CNN detector's boxes, run on a copy shrunk to ``cnn_max_side`` (its cost grows with the pixels)."""
        scale = min(1.0, self.cnn_max_side / max(img.shape[:2]))
        if scale >= 1.0:
            return [(d.rect, float(d.confidence)) for d in _model("cnn")(img, 0)]
        small = cv2.resize(img, (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        dlib = _import_dlib()
        out = []
        for d in _model("cnn")(small, 0):
            r = d.rect
            out.append((dlib.rectangle(int(round(r.left() / scale)), int(round(r.top() / scale)),
                                       int(round(r.right() / scale)), int(round(r.bottom() / scale))),
                        float(d.confidence)))
        return out

    def _upper_face_passes(self, img: np.ndarray, rect: Any) -> bool:
        shape = _model("shape68")(img, rect)
        pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        try:
            skin, eyes, symmetry = upper_face_evidence(img, five_from_68(pts))
        except ValueError:  # degenerate eyes
            return False
        return skin >= self.verify_skin and eyes >= self.verify_eye_contrast and symmetry >= self.verify_symmetry

    def detect(self, image: np.ndarray, *, masked: bool | None = None, max_faces: int | None = None,
               use_cnn: bool | None = None) -> list[Detection]:
        """All faces of an RGB uint8 image (grey or RGBA accepted), best first; [] when none.

        ``masked``: ``None`` decides per face whether the lower face is covered (then nose and
        mouth come from the eyes), ``True`` / ``False`` forces it for every face.
        ``max_faces`` keeps only the first ``max_faces`` detections. ``use_cnn`` overrides the
        detector's own setting for this call.
        """
        img = _as_rgb(image)
        if img.shape[0] < 2 or img.shape[1] < 2:
            return []
        det_img, sx, sy = resize_for_detection(img, self.min_side, self.max_side)
        boxes = self._boxes(det_img, self.use_cnn if use_cnn is None else bool(use_cnn))
        if max_faces is not None:
            boxes = boxes[:max(0, int(max_faces))]
        return self._landmarks(img, det_img, sx, sy, boxes, masked)

    def detect_in_region(self, image: np.ndarray, region: tuple[float, float, float, float], *,
                         masked: bool | None = None) -> list[Detection]:
        """Faces found by HOG inside ``region`` only, best first; [] when none.

        ``region`` is ``(x0, y0, x1, y1)`` in the image's pixels. The image is scaled exactly as
        :meth:`detect` scales it and HOG scans only that window (candidates down to
        ``low_threshold``; no CNN, no verified step), which is ~4x cheaper when the face's place
        is known beforehand, as in aligned CelebA. Boxes and landmarks are in the whole image's
        pixels. A caller falls back to :meth:`detect` when this finds nothing.
        """
        img = _as_rgb(image)
        if img.shape[0] < 2 or img.shape[1] < 2:
            return []
        det_img, sx, sy = resize_for_detection(img, self.min_side, self.max_side)
        dh, dw = det_img.shape[:2]
        x0, y0, x1, y1 = region
        # start on the 8-px HOG cell grid of the whole image, so the window sees the same cells
        c0, r0 = max(0, int(np.floor((x0 + 0.5) * sx)) // 8 * 8), max(0, int(np.floor((y0 + 0.5) * sy)) // 8 * 8)
        c1, r1 = min(dw, int(np.ceil((x1 + 0.5) * sx))), min(dh, int(np.ceil((y1 + 0.5) * sy)))
        if c1 - c0 < 2 or r1 - r0 < 2:
            return []
        window = np.ascontiguousarray(det_img[r0:r1, c0:c1])
        rects, scores, _ = _model("hog").run(window, 0, min(self.low_threshold, self.hog_threshold))
        dlib = _import_dlib()
        boxes = []
        for r, s in sorted(zip(rects, scores), key=lambda t: -t[1]):
            method = "dlib_hog" if s >= self.hog_threshold else "dlib_hog_low"
            boxes.append((dlib.rectangle(r.left() + c0, r.top() + r0, r.right() + c0, r.bottom() + r0),
                          float(s), method))
        return self._landmarks(img, det_img, sx, sy, boxes, masked)

    def _landmarks(self, img: np.ndarray, det_img: np.ndarray, sx: float, sy: float,
                   boxes: list[tuple[Any, float, str]], masked: bool | None) -> list[Detection]:
        """A :class:`Detection` per ``(rect, score, method)`` box of ``det_img`` (``img`` scaled by ``sx, sy``)."""
        if not boxes:
            return []
        dlib = _import_dlib()
        predictor = _model("shape68")
        # landmarks on the upsampled image (finer than a tiny original), else on the original
        up = sx >= 1.0 and sy >= 1.0
        pred_img = det_img if up else img
        out = []
        for rect, score, method in boxes:
            if up:
                r = rect
            else:
                x0, y0, x1, y1 = _rect_box(rect.left(), rect.top(), rect.right(), rect.bottom(), sx, sy)
                r = dlib.rectangle(int(round(x0 + 0.5)), int(round(y0 + 0.5)),
                                   int(round(x1 - 0.5)), int(round(y1 - 0.5)))
            shape = predictor(pred_img, r)
            pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            if up:
                pts = to_original(pts, sx, sy)
            pts = pts.astype(np.float32)
            five = five_from_68(pts)
            occ = float("nan")
            is_masked = bool(masked)
            if masked is None:
                occ = lower_face_occlusion(img, five)
                is_masked = bool(np.isfinite(occ) and occ > self.occlusion_threshold)
            if is_masked:
                five = lower_face_from_eyes(five)
            out.append(Detection(
                box=_rect_box(rect.left(), rect.top(), rect.right(), rect.bottom(), sx, sy),
                landmarks=five, score=score, method=method, masked=is_masked, occlusion=occ,
                shape68=pts,
            ))
        return out

    def detect_one(self, image: np.ndarray, *, masked: bool | None = None) -> Detection | None:
        """The best face of ``image`` (see :meth:`detect` for the order), or None."""
        found = self.detect(image, masked=masked, max_faces=1)
        return found[0] if found else None
