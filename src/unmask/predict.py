"""Unmasking users' photos: detect each face, align it as in training, restore it blind, blend it back.

For every face the offline detector finds (:class:`unmask.imaging.landmark_detector.FaceLandmarkDetector`:
dlib's HOG and CNN detectors with a masked-face fallback; nose and mouth placed from the eyes when
the lower face is covered), the photo is warped into the ``S`` x ``S`` crop the model was trained on
(:func:`unmask.imaging.alignment.align_face`, the same template and border handling as the
``faces`` stage), restored by the model without any mask, and blended back at the photo's own
resolution where the model changed the crop (:mod:`unmask.imaging.blending`). Pixels outside the
faces' crops, and inside them where the model changed nothing, are untouched.

The crop size ``S`` is the one the model was trained at, taken from the first of: an explicit
``size``; ``crop_size`` (or ``faces.size``) in the checkpoint's JSON metadata; the size of the face
crops of the project the checkpoint sits in (``<project>/data/03_primary/face_crops``); that
project's ``conf/base/parameters_faces.yml``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image, ImageOps

from unmask.imaging.alignment import align_face
from unmask.imaging.blending import blend_weight, paste_crop, paste_region, restored_region
from unmask.imaging.landmark_detector import FaceLandmarkDetector
from unmask.models.checkpoint import load_model, load_model_metadata
from unmask.models.data import image_to_tensor, tensor_to_image
from unmask.models.inference import prepare_for_inference, restore

__all__ = [
    "DEFAULT_CHECKPOINT",
    "IMAGE_SUFFIXES",
    "FaceResult",
    "PhotoResult",
    "Unmasker",
    "crop_size_for",
    "read_photo",
]

DEFAULT_CHECKPOINT = Path("data/06_models/model.safetensors")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MISSING_MODEL_HINT = (
    "Train one first: `kedro run` in the project folder (the embedded demo, about 2 minutes on 2 CPU "
    "cores) or `kedro run --env=celeba` on real CelebA; it is written to data/06_models/. "
    "Or pass --checkpoint PATH to a .safetensors file with its .json beside it."
)


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
    """One restored face: its box in the photo, the detector step that found it, whether it looked masked."""

    box: tuple[float, float, float, float]
    method: str
    masked: bool
    changed_fraction: float  # fraction of the crop the model changed (the blended region)


@dataclasses.dataclass(frozen=True)
class PhotoResult:
    """The photo with every face restored, the map of the pixels that were replaced, and the faces."""

    image: np.ndarray
    region: np.ndarray
    faces: list[FaceResult]


class Unmasker:
    """Loads a checkpoint once and restores the faces of any number of photos."""

    def __init__(self, checkpoint: str | os.PathLike = DEFAULT_CHECKPOINT, *, device: str = "auto",
                 precision: str = "auto", size: int | None = None, threshold: float = 0.1,
                 detector: FaceLandmarkDetector | None = None, flip_average: bool = True) -> None:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise FileNotFoundError(f"No trained model at {checkpoint}. {MISSING_MODEL_HINT}")
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
        self.detector = detector or FaceLandmarkDetector()
        self.checkpoint = checkpoint

    def restore_crop(self, crop: np.ndarray) -> np.ndarray:
        """The model's restoration of one aligned ``S`` x ``S`` x 3 uint8 crop."""
        restored = restore(self.model, image_to_tensor(crop).unsqueeze(0), self.dtype, self.flip_average)
        return tensor_to_image(restored[0])

    def unmask(self, photo: np.ndarray) -> PhotoResult:
        """Restore every face found in ``photo`` (HxWx3 uint8 RGB); no face: the photo unchanged, no faces."""
        out = photo.copy()
        region = np.zeros(photo.shape[:2], bool)
        faces = []
        for found in self.detector.detect(photo):
            crop, _, matrix = align_face(photo, found.landmarks, self.size)
            restored = self.restore_crop(crop)
            changed = restored_region(crop, restored, self.threshold)
            out = paste_crop(out, restored, matrix, blend_weight(changed))
            region |= paste_region(photo.shape, changed, matrix)
            faces.append(FaceResult(found.box, found.method, found.masked, float(changed.mean())))
        return PhotoResult(out, region, faces)

    def describe(self) -> str:
        """One line: which model, crop size and device."""
        config = getattr(self.model, "config", {})
        return (f"model {self.checkpoint} ({config.get('name', '?')}, filters {config.get('filters', '?')}), "
                f"{self.size}x{self.size} crops (from {self.size_source}), {str(self.dtype).replace('torch.', '')} "
                f"on {self.device}, {torch.get_num_threads()} threads"
                + (", flip averaging" if self.flip_average else ""))
