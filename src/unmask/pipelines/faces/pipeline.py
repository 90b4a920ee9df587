"""Faces pipeline: aligns every indexed CelebA image to a square crop around the face."""

from kedro.pipeline import Node, Pipeline

from unmask.pipelines.faces.nodes import crop_faces


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=crop_faces,
                inputs=["celeba_index", "params:faces"],
                outputs=["face_crops", "face_landmarks"],
                name="crop_faces_node",
            )
        ]
    )
