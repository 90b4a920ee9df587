"""Evaluate pipeline: scores the current trained model on the current test split, no retraining."""

from kedro.pipeline import Node, Pipeline

from unmask.pipelines.evaluate.nodes import evaluate_model, metrics_for_mlflow


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=evaluate_model,
                inputs=["trained_model", "face_crops", "masked_faces", "mask_maps", "data_split", "params:evaluate"],
                outputs=["evaluation_metrics", "per_image_metrics", "restoration_grid"],
                name="evaluate_model_node",
            ),
            Node(
                func=metrics_for_mlflow,
                inputs="evaluation_metrics",
                outputs="evaluation_mlflow_metrics",
                name="log_evaluation_metrics_node",
            ),
        ]
    )
