import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tests.conftest import base_params
from unmask.models import build_model, save_model
from unmask.models.metrics import masked_ssim, ssim
from unmask.pipelines.evaluate.nodes import (
    IDENTITY_NAMES,
    METHOD_PREFIXES,
    METRIC_NAMES,
    _ssim_and_masked_ssim,
    comparison_grid,
    metrics_for_mlflow,
    score_test_set,
    select_model,
    summarise_evaluation,
)
from unmask.pipelines.evaluate.report import evaluation_table

# identity off here (dlib's recogniser takes ~0.1 s per face and method on one core); its own tests turn it on;
# no loader workers, so that the streaming test sees the loads in this process
PARAMS = base_params("evaluate", batch_size=4, device="cpu", precision="fp32", timing_images=2, grid_images=2,
                     coverage_bins=[0.0, 0.3, 1.0], identity=False, num_workers=0)


@pytest.fixture
def mask_metadata(tiny_partitions):
    ids = tiny_partitions["data_split"]["image_id"]
    return pd.DataFrame({"image_id": ids, "style": ["surgical", "cloth"] * (len(ids) // 2), "coverage": 0.4})


class Identity(nn.Module):
    """Returns its input: must score exactly like the unchanged-input baseline."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, 1, 1, 1))

    def forward(self, x):
        return x


def _evaluate(model, p, mask_metadata, params=PARAMS):
    model, info = select_model(model, params)
    per_image, timing = score_test_set(model, p["face_crops"], p["masked_faces"], p["mask_maps"], p["data_split"],
                                       mask_metadata, params)
    return per_image, summarise_evaluation(per_image, timing, info)


def test_every_method_is_scored_with_timing_device_and_breakdowns(tiny_partitions, mask_metadata):
    per_image, metrics = _evaluate(build_model("ra_unet", filters=(4, 8)), tiny_partitions, mask_metadata)
    assert metrics["n_images"] == 8 and len(per_image) == 8
    for prefix in METHOD_PREFIXES.values():
        for name in METRIC_NAMES:
            assert math.isfinite(metrics[prefix + name]), prefix + name
            assert per_image[prefix + name].notna().all()
    assert metrics["device"] == "cpu" and metrics["device_name"] and metrics["precision"] == "fp32"
    assert metrics["seconds_per_image_batch1_median"] > 0 and metrics["telea_seconds_per_image_median"] > 0
    assert metrics["image_size"] == 16 and metrics["architecture"] == "ra_unet" and metrics["parameters"] > 0
    # the masked input differs from the truth only inside the mask, and so do the OpenCV fills
    assert metrics["input_psnr_mask"] < metrics["input_psnr"]
    assert metrics["input_psnr_outside"] == metrics["telea_psnr_outside"] == 100.0  # the cap: exact
    assert metrics["psnr_outside"] < 100.0  # an untrained network changes everything
    assert "| exact |" in evaluation_table(metrics)
    # given the mask, Telea fills a smooth gradient far better than leaving the blue patch
    assert metrics["telea_psnr_mask"] > metrics["input_psnr_mask"] + 5
    assert set(metrics["by_style"]) == {"surgical", "cloth"}
    assert sum(g["n_images"] for g in metrics["by_style"].values()) == 8
    assert set(metrics["by_coverage"]) <= {"0.00-0.30", "0.30-1.00"}
    assert (per_image["coverage_bin"] == "0.30-1.00").all() and (per_image["mask_coverage"] > 0.3).all()
    assert metrics["checkpoint"].startswith("trained_model") and metrics["composite"] is False


def test_an_identity_model_scores_like_the_unchanged_input(tiny_partitions, mask_metadata):
    per_image, metrics = _evaluate(Identity(), tiny_partitions, mask_metadata)
    for name in METRIC_NAMES:
        assert metrics[name] == pytest.approx(metrics["input_" + name]), name
    np.testing.assert_allclose(per_image["l1_mask"], per_image["input_l1_mask"])


def test_identity_distances_for_every_method_in_the_csv_metrics_report_and_mlflow(tiny_partitions, mask_metadata):
    # 4 faces, 2 per style; the baselines' distances come from the loader's worker
    params = {**PARAMS, "identity": True, "num_workers": 1, "limit": 4}
    per_image, metrics = _evaluate(Identity(), tiny_partitions, mask_metadata, params)
    for prefix in METHOD_PREFIXES.values():
        for name in IDENTITY_NAMES:
            assert per_image[prefix + name].notna().all() and math.isfinite(metrics[prefix + name]), prefix + name
            assert math.isfinite(metrics["by_style"]["surgical"][prefix + name])
        assert set(per_image[prefix + "same_person"]) <= {0.0, 1.0}
        assert (per_image[prefix + "identity_distance"] >= 0).all()
        np.testing.assert_array_equal(per_image[prefix + "same_person"],
                                      per_image[prefix + "identity_distance"] < 0.6)
    # the model returns its input: the same chips, the same distances
    np.testing.assert_allclose(per_image["identity_distance"], per_image["input_identity_distance"], atol=1e-6)
    assert metrics["same_person"] == pytest.approx(per_image["same_person"].mean())
    table = evaluation_table(metrics)
    assert "## Identity: does the person stay the person?" in table
    assert "| all | 4 |" in table and "| surgical | 2 |" in table and " %" in table
    logged = metrics_for_mlflow(metrics)
    assert {"telea_identity_distance", "navier_stokes_same_person", "by_style.cloth.identity_distance"} <= set(logged)


def test_identity_off_leaves_no_identity_fields(tiny_partitions, mask_metadata):
    per_image, metrics = _evaluate(Identity(), tiny_partitions, mask_metadata)
    assert not [c for c in per_image.columns if "identity" in c or "same_person" in c]
    assert "identity_distance" not in metrics and "## Identity" not in evaluation_table(metrics)


def test_ssim_from_one_float32_pass_matches_the_project_metrics():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(3, 3, 32, 32, generator=g)
    pred = (clean + 0.1 * torch.randn(3, 3, 32, 32, generator=g)).clamp(0, 1)
    mask = torch.zeros(3, 1, 32, 32)
    mask[:, :, 16:, 4:28] = 1
    whole, in_mask = _ssim_and_masked_ssim(pred, clean, mask)
    torch.testing.assert_close(whole, ssim(pred, clean), atol=1e-5, rtol=0)
    torch.testing.assert_close(in_mask, masked_ssim(pred, clean, mask), atol=1e-5, rtol=0)


def test_the_test_set_streams_in_batches(tiny_partitions, mask_metadata):
    p = tiny_partitions
    loaded = []
    masked = {k: (lambda k=k, f=f: (loaded.append(k), f())[1]) for k, f in p["masked_faces"].items()}
    seen_at_forward = []

    class Recorder(Identity):
        def forward(self, x):
            seen_at_forward.append(len(set(loaded)))
            return x

    model, _ = select_model(Recorder(), PARAMS)
    score_test_set(model, p["face_crops"], masked, p["mask_maps"], p["data_split"], mask_metadata, PARAMS)
    # the first batch is restored after loading one batch of images, not the whole test set
    assert seen_at_forward[0] == PARAMS["batch_size"] < 8


def test_another_checkpoint_is_evaluated_by_parameter(tiny_partitions, mask_metadata, tmp_path):
    other = build_model("unet", filters=(4, 8))
    save_model(other, tmp_path / "other.safetensors")
    _, metrics = _evaluate(build_model("ra_unet", filters=(4, 8)), tiny_partitions, mask_metadata,
                           {**PARAMS, "checkpoint": str(tmp_path / "other.safetensors")})
    assert metrics["architecture"] == "unet" and metrics["checkpoint"] == str(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError, match="not found"):
        select_model(Identity(), {**PARAMS, "checkpoint": str(tmp_path / "missing.safetensors")})
    with pytest.raises(ValueError, match="safetensors"):
        select_model(Identity(), {**PARAMS, "checkpoint": str(tmp_path / "model.pt")})


def test_report_table_and_grid(tiny_partitions, mask_metadata):
    p = tiny_partitions
    _, metrics = _evaluate(Identity(), p, mask_metadata)
    table = evaluation_table(metrics)
    assert "| Method | SSIM | PSNR (dB) | SSIM in mask | PSNR in mask (dB) |" in table
    for label in ("Ours", "Masked input, unchanged", "OpenCV Telea", "OpenCV Navier-Stokes", "reported"):
        assert label in table
    assert "## Inside the mask, by mask style" in table and "| surgical | 4 |" in table
    ids = ["000003", "000001"]
    figure = comparison_grid(Identity(), p["face_crops"], p["masked_faces"], p["mask_maps"], p["data_split"],
                             {**PARAMS, "grid_ids": ids})
    assert len(figure.axes) == 2 * 4
    assert [ax.get_title() for ax in figure.axes[:4]] == ["masked", "ours (blind)", "Telea (true mask)", "ground truth"]
    assert [figure.axes[0].get_ylabel(), figure.axes[4].get_ylabel()] == ids
    with pytest.raises(ValueError, match="not test images"):
        comparison_grid(Identity(), p["face_crops"], p["masked_faces"], p["mask_maps"], p["data_split"],
                        {**PARAMS, "grid_ids": ["000039"]})


def test_a_composite_model_is_named_so_in_the_report(tiny_partitions, mask_metadata):
    _, metrics = _evaluate(build_model("ra_unet", filters=(4, 8), composite=True), tiny_partitions, mask_metadata)
    assert metrics["composite"] is True
    assert "| Ours: ra_unet + mask head, composited, blind |" in evaluation_table(metrics)


def test_a_batch_norm_model_is_named_so_in_the_report(tiny_partitions, mask_metadata):
    model = build_model("ra_unet", filters=(4, 8), composite=True, batch_norm=True).eval()
    _, metrics = _evaluate(model, tiny_partitions, mask_metadata)
    assert metrics["batch_norm"] is True
    assert "| Ours: ra_unet + batch norm + mask head, composited, blind |" in evaluation_table(metrics)


def test_flip_average_scores_the_averaged_restoration_and_says_so(tiny_partitions, mask_metadata):
    torch.manual_seed(0)
    model = build_model("ra_unet", filters=(4, 8))
    plain, _ = _evaluate(model, tiny_partitions, mask_metadata)
    averaged, metrics = _evaluate(model, tiny_partitions, mask_metadata, {**PARAMS, "flip_average": True})
    assert metrics["flip_average"] is True
    assert "| Ours: ra_unet + flip averaging, blind |" in evaluation_table(metrics)
    assert not np.allclose(plain["psnr"], averaged["psnr"])
    assert np.allclose(plain["telea_psnr"], averaged["telea_psnr"])  # the baselines do not change


def test_metrics_for_mlflow_flattens_and_keeps_finite_numbers_only():
    logged = metrics_for_mlflow({"psnr": 30.0, "device": "cpu", "bad": float("nan"), "n_images": 8,
                                 "by_style": {"surgical": {"psnr_mask": 20.0}}})
    assert logged == {"psnr": {"value": 30.0, "step": 0}, "n_images": {"value": 8.0, "step": 0},
                      "by_style.surgical.psnr_mask": {"value": 20.0, "step": 0}}


@pytest.mark.parametrize("override", [{"batch_size": 0}, {"timing_images": 0}, {"grid_images": "4"},
                                      {"coverage_bins": [0.5, 0.1]}, {"dilate_px": -1}, {"batchsize": 4},
                                      {"flip_average": "yes"}, {"identity": 1}, {"precision": "fp8"},
                                      {"limit": 0}, {"inpaint_radius": 0}, {"grid_ids": "000001"}])
def test_bad_parameters_are_rejected(tiny_partitions, mask_metadata, override):
    p = tiny_partitions
    ((key, value),) = override.items()
    # the message names the key and the bad value (or calls an unknown key unknown)
    named = rf"evaluate\.{key}={re.escape(repr(value))}: " if key in PARAMS else rf"unknown parameter evaluate\.{key}"
    with pytest.raises(ValueError, match=named):
        score_test_set(Identity(), p["face_crops"], p["masked_faces"], p["mask_maps"], p["data_split"],
                       mask_metadata, {**PARAMS, **override})


def test_a_missing_parameter_is_named():
    with pytest.raises(ValueError, match=r"evaluate\.identity is missing"):
        select_model(Identity(), {k: v for k, v in PARAMS.items() if k != "identity"})
