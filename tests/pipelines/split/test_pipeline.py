"""The split pipeline, run whole by Kedro's SequentialRunner on 40 masked faces of 10 people."""

from __future__ import annotations

import pandas as pd
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner

from tests.conftest import base_params
from unmask.pipelines.split.pipeline import create_pipeline


def test_split_pipeline_assigns_every_face_once(tiny_partitions):
    metadata = tiny_partitions["mask_metadata"]
    index = pd.DataFrame({"image_id": metadata["image_id"],
                          "identity": pd.array([i // 4 for i in range(len(metadata))], dtype="Int64")})
    catalog = DataCatalog()
    catalog["mask_metadata"] = metadata
    catalog["celeba_index"] = index
    catalog["params:split"] = base_params("split", test_count=8)

    outputs = {name: dataset.load() for name, dataset in SequentialRunner().run(create_pipeline(), catalog).items()}

    table, report = outputs["data_split"], outputs["split_report"]
    assert sorted(table["image_id"]) == sorted(metadata["image_id"])
    assert report["counts"]["test"] == 8 and sum(report["counts"].values()) == 40
    assert (table.groupby("identity")["split"].nunique() == 1).all()
