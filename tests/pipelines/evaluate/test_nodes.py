import math

import numpy as np
import pytest
import torch
from torch import nn

from unmask.models import build_model
from unmask.pipelines.evaluate.nodes import evaluate_model, metrics_for_mlflow

PARAMS = {"batch_size": 4, "device": "cpu", "timing_images": 2, "grid_images": 2}


def test_metrics_cover_whole_image_mask_and_timing(tiny_partitions):
    p = tiny_partitions
    model = build_model("ra_unet", filters=(4, 8))
    metrics, per_image, figure = evaluate_model(
        model, p["face_crops"], p["masked_faces"], p["mask_maps"], p["data_split"], PARAMS
    )
    assert metrics["n_images"] == 8 and len(per_image) == 8
    for key in ("psnr", "ssim", "psnr_mask", "ssim_mask", "l1", "l1_mask", "input_psnr", "input_psnr_mask"):
        assert math.isfinite(metrics[key]), key
    assert metrics["seconds_per_image_batch1_median"] > 0 and metrics["device"] == "cpu"
    # The masked input differs from the truth only inside the mask.
    assert metrics["input_psnr_mask"] < metrics["input_psnr"]
    assert (per_image["mask_coverage"] > 0.3).all()
    assert len(figure.axes) == 2 * 3


def test_an_identity_model_scores_like_the_unchanged_input(tiny_partitions):
    p = tiny_partitions
    # A model that returns its input must score exactly like the unchanged-input baseline.
    class Identity(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return x

    metrics, per_image, _ = evaluate_model(
        Identity(), p["face_crops"], p["masked_faces"], p["mask_maps"], p["data_split"], PARAMS
    )
    assert metrics["psnr"] == pytest.approx(metrics["input_psnr"])
    assert metrics["ssim_mask"] == pytest.approx(metrics["input_ssim_mask"])
    np.testing.assert_allclose(per_image["l1"], per_image["input_l1"])


def test_metrics_for_mlflow_keeps_finite_numbers_only():
    logged = metrics_for_mlflow({"psnr": 30.0, "device": "cpu", "bad": float("nan"), "n_images": 8})
    assert logged == {"psnr": {"value": 30.0, "step": 0}, "n_images": {"value": 8.0, "step": 0}}


@pytest.mark.parametrize("override", [{"batch_size": 0}, {"timing_images": 0}, {"grid_images": "4"}])
def test_bad_parameters_are_rejected(tiny_partitions, override):
    p = tiny_partitions
    with pytest.raises(ValueError, match="evaluate\\."):
        evaluate_model(build_model("ra_unet", filters=(4, 8)), p["face_crops"], p["masked_faces"], p["mask_maps"],
                       p["data_split"], {**PARAMS, **override})
