"""Masks pipeline: draws a seeded synthetic face mask over every aligned crop."""

from kedro.pipeline import Node, Pipeline

from unmask.pipelines.masks.nodes import apply_synthetic_masks


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=apply_synthetic_masks,
                inputs=["face_crops", "face_landmarks", "params:masks"],
                outputs=["masked_faces", "mask_maps", "mask_metadata"],
                name="apply_synthetic_masks_node",
            )
        ]
    )
