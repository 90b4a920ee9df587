"""Evaluate pipeline: scores a trained model and the baselines on the current test split, no retraining."""

from kedro.pipeline import Node, Pipeline

from unmask.pipelines.evaluate.nodes import (
    comparison_grid,
    metrics_for_mlflow,
    score_test_set,
    select_model,
    summarise_evaluation,
)
from unmask.pipelines.evaluate.report import evaluation_table

_IMAGES = ["face_crops", "masked_faces", "mask_maps", "data_split"]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=select_model,
                inputs=["trained_model", "params:evaluate"],
                outputs=["evaluation_model", "evaluation_model_info"],
                name="select_evaluation_model_node",
            ),
            Node(
                func=score_test_set,
                inputs=["evaluation_model", *_IMAGES, "mask_metadata", "params:evaluate"],
                outputs=["per_image_metrics", "evaluation_timing"],
                name="score_test_set_node",
            ),
            Node(
                func=summarise_evaluation,
                inputs=["per_image_metrics", "evaluation_timing", "evaluation_model_info"],
                outputs="evaluation_metrics",
                name="summarise_evaluation_node",
            ),
            Node(
                func=evaluation_table,
                inputs="evaluation_metrics",
                outputs="evaluation_report",
                name="evaluation_table_node",
            ),
            Node(
                func=comparison_grid,
                inputs=["evaluation_model", *_IMAGES, "params:evaluate"],
                outputs="restoration_grid",
                name="comparison_grid_node",
            ),
            Node(
                func=metrics_for_mlflow,
                inputs="evaluation_metrics",
                outputs="evaluation_mlflow_metrics",
                name="log_evaluation_metrics_node",
            ),
        ]
    )
