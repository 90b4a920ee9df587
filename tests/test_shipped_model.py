"""The model shipped in models/: it loads, finds a mask, restores a masked face, and leaves a clean one alone.

The face is matplotlib's bundled ``grace_hopper.jpg`` sample (a real photo, never CelebA), aligned
with the project's detector and masked by the project's renderer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unmask.imaging.alignment import align_face, template_points
from unmask.imaging.landmark_detector import INSTALL_HINT, FaceLandmarkDetector, available
from unmask.imaging.mask_renderer import rasterize_mask, render_masked_face, seeded_mask_spec
from unmask.models.checkpoint import load_model, load_model_metadata
from unmask.models.data import image_to_tensor, tensor_to_image
from unmask.models.metrics import masked_psnr

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "unmask_ra_unet_64.safetensors"


def test_the_shipped_model_is_small_half_precision_and_was_trained_on_real_faces() -> None:
    assert SHIPPED.is_file() and SHIPPED.stat().st_size <= 25e6
    metadata = load_model_metadata(SHIPPED)["metadata"]
    assert metadata["trained_on"] == "celeba" and metadata["crop_size"] == 64
    assert (SHIPPED.parent / "README.md").is_file()  # the model card


@pytest.fixture(scope="module")
def face_crop() -> np.ndarray:
    if not available():
        pytest.skip(INSTALL_HINT)
    from matplotlib import cbook

    photo = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))
    found = FaceLandmarkDetector().detect_one(photo, masked=False)
    assert found is not None
    crop, _, _ = align_face(photo, found.landmarks, 64)
    return crop


@pytest.mark.parametrize("style", ["surgical", "n95", "cloth"])
def test_the_shipped_model_removes_a_mask_from_a_real_face(face_crop: np.ndarray, style: str) -> None:
    model = load_model(SHIPPED)
    spec = seeded_mask_spec(template_points(64), 64, 7, [style])
    masked, mask = render_masked_face(face_crop, spec), rasterize_mask(spec, 64)
    with torch.inference_mode():
        restored, logits = model(image_to_tensor(masked)[None], with_mask=True)
    truth, where = image_to_tensor(face_crop)[None], torch.from_numpy(mask).bool()[None, None]
    gain = float(masked_psnr(restored, truth, where) - masked_psnr(image_to_tensor(masked)[None], truth, where))
    assert gain > 3.0, f"only {gain:.1f} dB better than the masked input inside the mask"
    predicted = torch.sigmoid(logits)[0, 0] > 0.5
    iou = float((predicted & where[0, 0]).sum() / (predicted | where[0, 0]).sum())
    assert iou > 0.6, f"the mask head found the {style} mask with IoU {iou:.2f} only"
    assert tensor_to_image(restored[0]).shape == (64, 64, 3)


def test_the_shipped_model_leaves_an_unmasked_face_alone(face_crop: np.ndarray) -> None:
    model = load_model(SHIPPED)
    with torch.inference_mode():
        restored, logits = model(image_to_tensor(face_crop)[None], with_mask=True)
    # far under the 4 % of the crop `unmask predict` needs before it touches a face
    assert float((torch.sigmoid(logits) > 0.5).float().mean()) < 0.02
    assert float((restored - image_to_tensor(face_crop)[None]).abs().mean()) < 0.005
