"""Ingest pipeline: locate CelebA (or generate the demo), index its usable images, report the counts."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from unmask.pipelines.ingest.nodes import index_celeba_images, locate_celeba_source, report_ingest


def create_pipeline(**kwargs) -> Pipeline:
    """``params:ingest`` -> ``celeba_source`` -> (``celeba_index``, ``quarantine``) -> the counts
    (``ingest_report`` JSON and ``ingest_mlflow_metrics``)."""
    return Pipeline(
        [
            Node(
                func=locate_celeba_source,
                inputs="params:ingest",
                outputs="celeba_source",
                name="locate_celeba_source_node",
            ),
            Node(
                func=index_celeba_images,
                inputs=["celeba_source", "params:ingest"],
                outputs=["celeba_index", "quarantine"],
                name="index_celeba_images_node",
            ),
            Node(
                func=report_ingest,
                inputs=["celeba_index", "quarantine"],
                outputs=["ingest_report", "ingest_mlflow_metrics"],
                name="report_ingest_node",
            ),
        ]
    )
