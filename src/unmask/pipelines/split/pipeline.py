"""Split pipeline: assigns every masked face to test, train or validation."""

from kedro.pipeline import Node, Pipeline

from unmask.pipelines.split.nodes import split_dataset


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=split_dataset,
                inputs=["mask_metadata", "celeba_index", "params:split"],
                outputs=["data_split", "split_report"],
                name="split_dataset_node",
            )
        ]
    )
