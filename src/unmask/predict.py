"""Unmasking users' photos: detect each face, align it as in training, restore it blind, blend it back.

For every face the offline detector finds (:class:`unmask.imaging.face_detector.BlazeFaceDetector`:
MediaPipe's BlazeFace for the boxes, dlib's shape predictor for the landmarks; nose and mouth placed
from the eyes when the lower face is covered), the photo is warped into the ``S`` x ``S`` crop the
model was trained on (:func:`unmask.imaging.alignment.align_face`, the same template as the
``faces`` stage; past the photo's edge the crop repeats edge pixels, ``PHOTO_BORDER``), restored
by the model without any mask, and blended back at the photo's own resolution where the model
changed the crop (:mod:`unmask.imaging.blending`). Pixels outside the faces' crops, and inside
them where the model changed nothing, are untouched.

A network with a mask head (``composite``) also says where it sees a mask. A face is restored only
when that predicted mask (probability > 0.5) covers at least ``min_mask_fraction`` of the crop, and
only inside it (grown by ``S / 32``) where the output also changed: an unmasked face is left
bit-identical. A network without a mask head restores every face it is given.

Which model runs without ``--checkpoint`` (:func:`choose_checkpoint`): the project's own
``data/06_models/model.safetensors`` when its JSON says ``"trained_on": "celeba"``, otherwise the
CelebA model shipped in the repository (``models/unmask_ra_unet_64.safetensors``).

The crop size ``S`` is the one the model was trained at, taken from the first of: an explicit
``size``; ``crop_size`` (or ``faces.size``) in the checkpoint's JSON metadata; the size of the face
crops of the project the checkpoint sits in (``<project>/data/03_primary/face_crops``); that
project's ``conf/base/parameters_faces.yml``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from PIL import Image, ImageOps

from unmask.imaging.alignment import align_face
from unmask.imaging.blending import blend_weight, paste_crop, paste_region, restored_region
from unmask.imaging.face_detector import BlazeFaceDetector, frame_face
from unmask.imaging.landmark_detector import Detection, FaceLandmarkDetector
from unmask.models.checkpoint import load_model, load_model_metadata
from unmask.models.data import image_to_tensor, tensor_to_image
from unmask.models.inference import has_mask_head, prepare_for_inference, restore

__all__ = [
    "DEFAULT_CHECKPOINT",
    "DEFAULT_MIN_MASK_FRACTION",
    "SHIPPED_CHECKPOINT",
    "IMAGE_SUFFIXES",
    "FaceResult",
    "PhotoResult",
    "Unmasker",
    "choose_checkpoint",
    "crop_size_for",
    "default_detector",
    "read_photo",
]

DEFAULT_CHECKPOINT = Path("data/06_models/model.safetensors")
#: The CelebA model committed to the repository (``<repo>/models``, beside ``src/``).
SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[2] / "models" / "unmask_ra_unet_64.safetensors"
#: A face is restored when the mask head's mask covers at least this fraction of its crop. Tuned with
#: benchmarks/bench_real_photos.py on every 6th real photo from the 2nd (a preview of the
#: conf/celeba_sample CelebA model): masked faces' masks cover a median 19 % of the crop, unmasked faces' 0 % (95th
#: percentile 0.2 %); at 0.04, 87.9 % of the masked photos and 2.2 % of the unmasked ones pass
#: (0.08: 85.6 % and 1.8 %; 0.02: 90.5 % and 2.5 %).
DEFAULT_MIN_MASK_FRACTION = 0.04
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MISSING_MODEL_HINT = (
    "Train one first: `kedro run` in the project folder (the embedded demo, about 2 minutes on 2 CPU "
    "cores) or `kedro run --env=celeba` on real CelebA; it is written to data/06_models/. "
    "Or pass --checkpoint PATH to a .safetensors file with its .json beside it."
)


def _trained_on(checkpoint: Path) -> str | None:
    """``metadata.trained_on`` of the checkpoint's JSON (lower case), None when absent or unreadable."""
    try:
        value = (load_model_metadata(checkpoint).get("metadata") or {}).get("trained_on")
    except (FileNotFoundError, ValueError):
        return None
    return str(value).strip().lower() if value else None


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, else as it is."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def choose_checkpoint(checkpoint: str | os.PathLike | None = None, *, project: str | os.PathLike | None = None,
                      shipped: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The model ``unmask predict`` runs and one line saying why.

    An explicit ``checkpoint`` always wins. Otherwise the ``project``'s model when its JSON
    metadata says ``"trained_on": "celeba"``, else the ``shipped`` CelebA model, else (no shipped
    model) the project's model whatever it was trained on. FileNotFoundError when there is none.
    ``project`` and ``shipped`` default to :data:`DEFAULT_CHECKPOINT` and :data:`SHIPPED_CHECKPOINT`.
    """
    if checkpoint is not None:
        return Path(checkpoint), f"using {checkpoint} (--checkpoint)"
    project = Path(DEFAULT_CHECKPOINT if project is None else project)
    shipped = Path(SHIPPED_CHECKPOINT if shipped is None else shipped)
    if project.is_file():
        trained_on = _trained_on(project)
        if trained_on == "celeba":
            return project, (f"using the project's model {_shown(project)} (trained on CelebA); "
                             "pass --checkpoint to override")
        what = (f"was trained on {'the procedural demo faces' if 'demo' in trained_on else trained_on}" if trained_on
                else "does not say it was trained on CelebA (no trained_on in its JSON)")
        if shipped.is_file():
            return shipped, (f"the project's model {_shown(project)} {what}; using the shipped CelebA model "
                             f"{_shown(shipped)}; pass --checkpoint to override")
        return project, (f"using the project's model {_shown(project)}, which {what} (the shipped CelebA model "
                         f"{_shown(shipped)} is missing); pass --checkpoint to override")
    if shipped.is_file():
        return shipped, (f"no model of this project at {project}; using the shipped CelebA model {_shown(shipped)}; "
                         "pass --checkpoint to override")
    raise FileNotFoundError(f"No trained model at {project}, and no shipped model at {shipped}. {MISSING_MODEL_HINT}")


def default_detector() -> BlazeFaceDetector:
    """The face detector ``unmask predict`` uses."""
    return BlazeFaceDetector()


def read_photo(path: str | os.PathLike) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB, turned upright by its EXIF orientation; ValueError if unreadable."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read the image ({exc})") from None
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit and float greyscale: scale, not clip
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    rgb = np.asarray(image.convert("RGB"))
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise ValueError(f"the image is too small ({rgb.shape[1]}x{rgb.shape[0]} pixels)")
    return np.ascontiguousarray(rgb)


def _first_png(folder: Path) -> Path | None:
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".png") and entry.is_file():
                    return Path(entry.path)
    except OSError:
        return None
    return None


def crop_size_for(checkpoint: str | os.PathLike, size: int | None = None) -> tuple[int, str]:
    """The crop side the model of ``checkpoint`` expects and where that number came from (see the module doc)."""
    if size is not None:
        return int(size), "--size"
    checkpoint = Path(checkpoint)
    metadata = load_model_metadata(checkpoint).get("metadata") or {}
    for key in ("crop_size", "image_size"):
        if isinstance(metadata.get(key), int):
            return int(metadata[key]), f"{checkpoint.with_suffix('.json').name} ({key})"
    if isinstance(metadata.get("faces"), dict) and isinstance(metadata["faces"].get("size"), int):
        return int(metadata["faces"]["size"]), f"{checkpoint.with_suffix('.json').name} (faces.size)"
    project = checkpoint.resolve().parent.parent.parent  # <project>/data/06_models/model.safetensors
    crop = _first_png(project / "data" / "03_primary" / "face_crops")
    if crop is not None:
        with Image.open(crop) as image:
            if image.width == image.height:
                return int(image.width), f"the training crops ({crop.parent})"
    params = project / "conf" / "base" / "parameters_faces.yml"
    if params.is_file():
        faces = (yaml.safe_load(params.read_text()) or {}).get("faces") or {}
        if isinstance(faces.get("size"), int):
            return int(faces["size"]), str(params)
    raise ValueError(
        f"cannot tell which crop size the model {checkpoint} was trained at (no crop_size in its JSON, no "
        "project beside it): pass --size N, the faces.size it was trained with."
    )


@dataclasses.dataclass(frozen=True)
class FaceResult:
    """One face found: its box in the photo, the detector step that found it, whether the detector
    judged its lower face covered, and what the model did with it."""

    box: tuple[float, float, float, float]
    method: str
    masked: bool
    changed_fraction: float  # fraction of the crop blended back (0 when the face was left alone)
    mask_fraction: float | None = None  # fraction of the crop the mask head calls mask (None: no mask head)
    restored: bool = True  # False: the photo was left unchanged there
    landmarks: np.ndarray | None = dataclasses.field(default=None, repr=False)  # the 5 points it was aligned on


@dataclasses.dataclass(frozen=True)
class PhotoResult:
    """The photo with every face restored, the map of the pixels that were replaced, and the faces."""

    image: np.ndarray
    region: np.ndarray
    faces: list[FaceResult]


#: How the aligned crop is filled where it reaches past the photo. A face that fills the frame
#: (a selfie, a tight crop) leaves the photo at the chin: "reflect" (the training crops' border)
#: mirrors the chin and mouth into a second lower face the mask head reads as a mask, and unmasked
#: faces got changed; repeating the edge pixels does not (dev photos, every 10th: unmasked photos
#: changed 3.0 % -> 0.6 %, masked photos restored unchanged; docs/real_photos.md).
PHOTO_BORDER = "replicate"

#: When no face was restored, a photo at least this tall for its width (portrait or square, as face
#: crops are) in which no face found is wider than ``FRAME_MAX_FACE_WIDTH`` of it is also tried as a
#: face crop itself (:func:`unmask.imaging.face_detector.frame_face`): the detector misses many
#: tight crops of masked faces. A face that wide found and left alone is trusted instead, which
#: keeps unmasked selfies bit-identical (dev photos: 6 % more masked photos restored, 0.3 % more
#: unmasked ones changed; docs/real_photos.md).
FRAME_MIN_ASPECT = 0.9
FRAME_MAX_FACE_WIDTH = 0.3
#: The face boxes tried on such a photo, as ``(above, beside)`` of :func:`frame_face`: the frame, and
#: the frame with the forehead or the cheeks cut off; the one whose predicted mask is largest wins.
FRAME_BOXES = ((0.0, 0.0), (0.25, 0.0), (0.5, 0.0), (0.25, 0.1))


def _predicted_region(mask: np.ndarray) -> np.ndarray:
    """Where the mask head sees a mask (probability > 0.5) on the ``S`` x ``S`` crop, holes filled,
    grown by ``S / 32``."""
    size = mask.shape[0]
    region = (mask > 0.5).astype(np.uint8)
    if not region.any():
        return region.astype(bool)
    background = np.pad(1 - region, 1, constant_values=1)
    cv2.floodFill(background, np.zeros((size + 4, size + 4), np.uint8), (0, 0), 2)
    region = (background[1:-1, 1:-1] != 2).astype(np.uint8)
    radius = max(1, round(size / 32))
    return cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)).astype(bool)


class Unmasker:
    """Loads a checkpoint once and restores the faces of any number of photos.

    ``checkpoint`` None: the model :func:`choose_checkpoint` picks (``checkpoint_reason`` says why).
    ``min_mask_fraction``: with a mask head, restore a face only when the predicted mask covers at
    least this fraction of its crop (see the module doc); ignored without one. ``grain``: add the
    photo's own fine grain to scaled-up restorations (:func:`unmask.imaging.blending.paste_crop`).
    ``frame_fallback``: try a photo where no face was restored as a face crop itself (see
    ``FRAME_MIN_ASPECT``); only with a mask head, whose gate then decides.
    """

    def __init__(self, checkpoint: str | os.PathLike | None = None, *, device: str = "auto",
                 precision: str = "auto", size: int | None = None, threshold: float = 0.1,
                 detector: FaceLandmarkDetector | BlazeFaceDetector | None = None, flip_average: bool = True,
                 min_mask_fraction: float = DEFAULT_MIN_MASK_FRACTION, grain: bool = True,
                 frame_fallback: bool = True) -> None:
        checkpoint, self.checkpoint_reason = choose_checkpoint(checkpoint)
        if not checkpoint.is_file():
            raise FileNotFoundError(f"No trained model at {checkpoint}. {MISSING_MODEL_HINT}")
        if not 0.0 <= min_mask_fraction <= 1.0:
            raise ValueError(f"min_mask_fraction must be between 0 and 1, got {min_mask_fraction}")
        model = load_model(checkpoint)
        self.size, self.size_source = crop_size_for(checkpoint, size)
        levels = len(model.config.get("filters", [])) if hasattr(model, "config") else 0
        stride = 2 ** max(0, levels - 1)
        if self.size < 8 or self.size % stride:
            raise ValueError(f"crop size {self.size} does not suit this {levels}-level network: it needs a "
                             f"multiple of {stride} (from {self.size_source}); pass --size N.")
        self.model, self.dtype = prepare_for_inference(model, device, precision)
        self.device = next(self.model.parameters()).device
        self.threshold = float(threshold)
        self.flip_average = bool(flip_average)
        self.min_mask_fraction = float(min_mask_fraction)
        self.grain = bool(grain)  # give a scaled-up restoration the photo's own fine grain
        self.frame_fallback = bool(frame_fallback)
        self.detector = detector or default_detector()
        self.checkpoint = checkpoint

    @property
    def has_mask_head(self) -> bool:
        """True when the model predicts where the mask is (and so gates and confines the restoration)."""
        return has_mask_head(self.model)

    def restore_crop(self, crop: np.ndarray) -> np.ndarray:
        """The model's restoration of one aligned ``S`` x ``S`` x 3 uint8 crop."""
        restored = restore(self.model, image_to_tensor(crop).unsqueeze(0), self.dtype, self.flip_average)
        return tensor_to_image(restored[0])

    def restore_crop_with_mask(self, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The restoration of one crop and the mask head's ``S`` x ``S`` float32 probabilities (None without a head)."""
        if not self.has_mask_head:
            return self.restore_crop(crop), None
        restored, mask = restore(self.model, image_to_tensor(crop).unsqueeze(0), self.dtype, self.flip_average,
                                 with_mask=True)
        return tensor_to_image(restored[0]), mask[0, 0].cpu().numpy()

    def unmask(self, photo: np.ndarray) -> PhotoResult:
        """Restore every masked face found in ``photo`` (HxWx3 uint8 RGB); the photo unchanged where none is."""
        out = photo.copy()
        region = np.zeros(photo.shape[:2], bool)
        faces: list[FaceResult] = []
        for found in self.detector.detect(photo):
            out = self._restore_face(photo, found, self._look(photo, found), out, region, faces)
        if self._try_frame(photo, faces):
            best = self._best_frame_face(photo)
            if best is not None:
                out = self._restore_face(photo, *best, out, region, faces)
        return PhotoResult(out, region, faces)

    def _look(self, photo: np.ndarray, found: Detection
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """``(crop, matrix, restored, mask)``: the face's aligned crop, its photo->crop matrix, the model's
        restoration of it and the mask head's probabilities (None without a head)."""
        crop, _, matrix = align_face(photo, found.landmarks, self.size, border=PHOTO_BORDER)
        return (crop, matrix, *self.restore_crop_with_mask(crop))

    def _best_frame_face(self, photo: np.ndarray) -> tuple[Detection, tuple] | None:
        """Of the ``FRAME_BOXES`` faces of the frame, the one the mask head sees the most mask on, with its look."""
        best, most = None, -1.0
        for above, beside in FRAME_BOXES:
            found = frame_face(photo, above, beside)
            if found is None:
                return None
            look = self._look(photo, found)
            fraction = float((look[3] > 0.5).mean())
            if fraction > most:
                best, most = (found, look), fraction
        return best

    def _try_frame(self, photo: np.ndarray, faces: list[FaceResult]) -> bool:
        """Whether the photo may be a tight crop of a masked face the detector missed (``FRAME_MIN_ASPECT``)."""
        height, width = photo.shape[:2]
        widest = max((face.box[2] - face.box[0] for face in faces), default=0.0)
        return (self.frame_fallback and self.has_mask_head and not any(face.restored for face in faces)
                and height >= FRAME_MIN_ASPECT * width and widest < FRAME_MAX_FACE_WIDTH * width)

    def _restore_face(self, photo: np.ndarray, found: Detection, look: tuple, out: np.ndarray, region: np.ndarray,
                      faces: list[FaceResult]) -> np.ndarray:
        """Blend ``look`` (:meth:`_look`) of one face into ``out`` when the gate lets it; record it in ``faces``
        and ``region``."""
        crop, matrix, restored, mask = look
        fraction = None if mask is None else float((mask > 0.5).mean())
        if fraction is not None and fraction < self.min_mask_fraction:
            faces.append(FaceResult(found.box, found.method, found.masked, 0.0, fraction, restored=False,
                                    landmarks=found.landmarks))
            return out
        changed = restored_region(crop, restored, self.threshold)
        if mask is not None:
            changed &= _predicted_region(mask)
        if changed.any():
            out = paste_crop(out, restored, matrix, blend_weight(changed), grain=self.grain, seed=len(faces))
            region |= paste_region(photo.shape, changed, matrix)
        faces.append(FaceResult(found.box, found.method, found.masked, float(changed.mean()), fraction,
                                restored=bool(changed.any()), landmarks=found.landmarks))
        return out

    def describe(self) -> str:
        """One line: which model, crop size and device."""
        config = getattr(self.model, "config", {})
        return (f"model {self.checkpoint} ({config.get('name', '?')}, filters {config.get('filters', '?')}), "
                f"{self.size}x{self.size} crops (from {self.size_source}), {str(self.dtype).replace('torch.', '')} "
                f"on {self.device}, {torch.get_num_threads()} threads"
                + (", flip averaging" if self.flip_average else "")
                + (f", mask head: faces with >= {self.min_mask_fraction:.0%} of the crop masked" if self.has_mask_head
                   else ", no mask head: every face is restored"))
