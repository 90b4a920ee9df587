"""Train pipeline: fits the RA-UNet on the train split and keeps the best-on-validation weights."""

from kedro.pipeline import Node, Pipeline

from unmask.pipelines.train.nodes import plot_training_curves, train_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=train_model,
                inputs=["face_crops", "masked_faces", "mask_maps", "mask_metadata", "face_landmarks", "data_split",
                        "celeba_source", "real_mask_cutouts", "params:train", "params:masks"],
                outputs=["trained_model", "training_history"],
                name="train_model_node",
            ),
            Node(
                func=plot_training_curves,
                inputs="training_history",
                outputs="training_curves",
                name="plot_training_curves_node",
            ),
        ]
    )
