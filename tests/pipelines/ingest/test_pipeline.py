"""The ingest pipeline, run whole by Kedro's SequentialRunner on a 12-image demo."""

from __future__ import annotations

from kedro.io import DataCatalog
from kedro.runner import SequentialRunner

from tests.conftest import base_params
from unmask.pipelines.ingest.pipeline import create_pipeline


def test_ingest_pipeline_indexes_the_demo_and_reports_its_counts(tmp_path):
    catalog = DataCatalog()
    catalog["params:ingest"] = base_params("ingest", source="demo", demo_path=str(tmp_path / "demo_celeba"),
                                           celeba_path=str(tmp_path / "celeba"), demo_images=12, demo_identities=4,
                                           workers=1)

    outputs = {name: dataset.load() for name, dataset in SequentialRunner().run(create_pipeline(), catalog).items()}

    assert set(outputs) == {"ingest_report", "ingest_mlflow_metrics"}
    report = outputs["ingest_report"]
    assert report["ingest.images"] == report["ingest.landmarks.annotation"] == 12
    assert report["ingest.quarantined"] == 0
    assert outputs["ingest_mlflow_metrics"]["images"] == {"value": 12, "step": 0}
