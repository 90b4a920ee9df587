"""The faces pipeline, run whole by Kedro's SequentialRunner on six demo images."""

from __future__ import annotations

import pandas as pd
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner

from tests.conftest import base_params
from unmask.imaging.demo_faces import generate_demo_celeba
from unmask.imaging.landmarks import LANDMARK_COLUMNS
from unmask.pipelines.faces.pipeline import create_pipeline


def _demo_index(root) -> pd.DataFrame:
    """``celeba_index`` rows (id, source, member, annotated landmarks) of the demo at ``root``."""
    lines = (root / "list_landmarks_align_celeba.txt").read_text().splitlines()[2:]
    rows = [line.split() for line in lines]
    table = pd.DataFrame([[float(v) for v in row[1:]] for row in rows], columns=LANDMARK_COLUMNS)
    table.insert(0, "image_id", [row[0].removesuffix(".jpg") for row in rows])
    table.insert(1, "source", str(root))
    table.insert(2, "member", [f"img_align_celeba/{row[0]}" for row in rows])
    return table


def test_faces_pipeline_aligns_every_indexed_image(tmp_path):
    index = _demo_index(generate_demo_celeba(tmp_path / "demo", 6, 2, seed=0))
    catalog = DataCatalog()
    catalog["celeba_index"] = index
    catalog["params:faces"] = base_params("faces", size=32)

    outputs = {name: dataset.load() for name, dataset in SequentialRunner().run(create_pipeline(), catalog).items()}

    crops, landmarks = outputs["face_crops"], outputs["face_landmarks"]
    assert list(crops) == landmarks["image_id"].tolist() == index["image_id"].tolist()
    assert crops["000001"]().size == (32, 32)
    assert (landmarks["size"] == 32).all() and landmarks[LANDMARK_COLUMNS].notna().all().all()
