"""The evaluate pipeline, run whole by Kedro's SequentialRunner: a tiny untrained network on the tiny test split."""

from __future__ import annotations

import math

import pandas as pd
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner

from tests.conftest import base_params
from unmask.models import build_model
from unmask.pipelines.evaluate.pipeline import create_pipeline


def test_evaluate_pipeline_scores_reports_and_draws_the_test_split(tiny_partitions):
    ids = tiny_partitions["data_split"]["image_id"]
    catalog = DataCatalog()
    for name in ("face_crops", "masked_faces", "mask_maps", "data_split"):
        catalog[name] = tiny_partitions[name]
    catalog["mask_metadata"] = pd.DataFrame({"image_id": ids, "style": ["surgical", "cloth"] * (len(ids) // 2),
                                             "coverage": 0.4})
    catalog["trained_model"] = build_model("ra_unet", filters=(4, 8))
    # identity off: dlib's face recogniser takes ~0.1 s per face and method
    catalog["params:evaluate"] = base_params("evaluate", batch_size=4, device="cpu", precision="fp32", num_workers=0,
                                             timing_images=2, grid_images=2, coverage_bins=[0.0, 0.3, 1.0],
                                             identity=False)

    outputs = {name: dataset.load() for name, dataset in SequentialRunner().run(create_pipeline(), catalog).items()}

    assert set(outputs) == {"evaluation_report", "restoration_grid", "evaluation_mlflow_metrics"}
    metrics = outputs["evaluation_mlflow_metrics"]
    assert metrics["n_images"]["value"] == 8 and math.isfinite(metrics["psnr"]["value"])
    assert "| Method | SSIM | PSNR (dB) |" in outputs["evaluation_report"]
    assert outputs["restoration_grid"] is not None
