"""The masks pipeline, run whole by Kedro's SequentialRunner on the tiny crops."""

from __future__ import annotations

import numpy as np
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner

from tests.conftest import base_params
from unmask.pipelines.masks.pipeline import create_pipeline


def test_masks_pipeline_masks_every_crop(tiny_partitions):
    catalog = DataCatalog()
    catalog["face_crops"] = tiny_partitions["face_crops"]
    catalog["face_landmarks"] = tiny_partitions["face_landmarks"]
    catalog["params:masks"] = base_params("masks")

    outputs = {name: dataset.load() for name, dataset in SequentialRunner().run(create_pipeline(), catalog).items()}

    ids = tiny_partitions["face_landmarks"]["image_id"].tolist()
    masked, maps, metadata = outputs["masked_faces"], outputs["mask_maps"], outputs["mask_metadata"]
    assert list(masked) == list(maps) == metadata["image_id"].tolist() == ids
    mask = np.asarray(maps[ids[0]]())
    assert mask.shape == (16, 16) and mask.any()
    assert set(metadata["style"]) <= set(base_params("masks")["styles"])
