import math

import numpy as np

from unmask.pipelines.evaluate.methods import METHOD_PREFIXES, METRIC_NAMES
from unmask.pipelines.evaluate.report import GRID_COLUMNS, evaluation_table, restoration_grid


def _metrics(**overrides) -> dict:
    """Metrics as summarise_evaluation writes them, every method scoring the same made-up numbers."""
    scores = {prefix + name: 0.5 for prefix in METHOD_PREFIXES.values() for name in METRIC_NAMES}
    group = {"n_images": 2, **scores}
    return {
        "n_images": 4, **scores, "seconds_per_image_batch1_median": 0.012, "images_per_second_batched": 80.0,
        "batch_size": 4, "telea_seconds_per_image_median": 0.003, "navier_stokes_seconds_per_image_median": 0.004,
        "device": "cpu", "device_name": "a CPU", "precision": "fp32", "threads": 2, "image_size": 16,
        "checkpoint": "trained_model", "architecture": "ra_unet", "filters": [4, 8], "parameters": 1_230_000,
        "by_style": {"surgical": group, "cloth": group}, "by_coverage": {"0.30-1.00": {**group, "n_images": 4}},
        **overrides,
    }


def test_the_table_names_the_model_and_formats_every_cell():
    table = evaluation_table(_metrics(psnr=math.nan, input_psnr_outside=100.0, batch_norm=True))
    assert table.startswith("# Evaluation on the test split\n\n4 test images at 16x16; model `trained_model` "
                            "(ra_unet + batch norm, filters [4, 8], 1.23 M parameters); "
                            "fp32 on cpu (a CPU, 2 threads).")
    assert ("| Ours: ra_unet + batch norm, blind | 0.5000 | n/a | 0.5000 | 0.50 | 0.5000 | 0.50 "
            "| 0.012 s/sample |") in table
    assert "| Masked input, unchanged | 0.5000 | 0.50 | 0.5000 | 0.50 | 0.5000 | exact | 0 |" in table
    assert "| OpenCV Navier-Stokes, given the true mask |" in table and "| 0.004 s/sample |" in table
    assert "Throughput of our model at batch 4: 80.0 images/s." in table
    assert "| surgical | 2 | 0.50 / 0.5000 | 0.50 / 0.5000 | 0.50 / 0.5000 | 0.50 / 0.5000 |" in table
    assert "| 0.30-1.00 | 4 |" in table and "## Identity" not in table


def test_the_grid_has_one_row_per_id_and_the_four_columns():
    images = [np.full((8, 8, 3), value, np.uint8) for value in (0, 255)]
    figure = restoration_grid(images, images, images, images, ["000002", "000001"])
    assert [ax.get_title() for ax in figure.axes[:4]] == list(GRID_COLUMNS)
    assert [figure.axes[0].get_ylabel(), figure.axes[4].get_ylabel()] == ["000002", "000001"]
