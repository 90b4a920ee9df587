"""The train pipeline, run whole by Kedro's SequentialRunner: one epoch of a tiny network on the tiny faces."""

from __future__ import annotations

from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from matplotlib.figure import Figure

from tests.conftest import base_params
from unmask.pipelines.train.pipeline import create_pipeline


def test_train_pipeline_returns_a_model_its_history_and_curves(tiny_partitions, tmp_path):
    catalog = DataCatalog()
    for name in ("face_crops", "masked_faces", "mask_maps", "mask_metadata", "face_landmarks", "data_split"):
        catalog[name] = tiny_partitions[name]
    catalog["celeba_source"] = {"dataset": "demo"}
    catalog["real_mask_cutouts"] = {}
    catalog["params:train"] = base_params("train", filters=[4, 8, 16], epochs=1, batch_size=8, device="cpu",
                                          precision="fp32", num_workers=0, sample_count=2,
                                          checkpoint_dir=str(tmp_path / "checkpoints"))
    catalog["params:masks"] = base_params("masks")

    outputs = {name: dataset.load() for name, dataset in SequentialRunner().run(create_pipeline(), catalog).items()}

    assert set(outputs) == {"trained_model", "training_curves"}  # training_history feeds the curves
    model = outputs["trained_model"]
    assert model.config["filters"] == [4, 8, 16] and model.metadata == {"crop_size": 16, "trained_on": "demo"}
    assert isinstance(outputs["training_curves"], Figure)
