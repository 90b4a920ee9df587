"""Custom Kedro datasets for what kedro-datasets does not cover."""

from unmask.datasets.safetensors_model import SafetensorsModelDataset

__all__ = ["SafetensorsModelDataset"]
