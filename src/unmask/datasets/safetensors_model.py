"""A Kedro dataset for trained networks: safetensors weights plus a JSON of the architecture."""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError
from torch import nn

logger = logging.getLogger(__name__)


class SafetensorsModelDataset(AbstractDataset[nn.Module, nn.Module]):
    """Saves a network as ``<name>.safetensors`` + ``<name>.json`` and loads it back without unpickling.

    When an MLflow run is active, both files are also logged as artifacts under
    ``mlflow_artifact_path`` so every run keeps the model it trained.
    """

    def __init__(
        self,
        filepath: str,
        mlflow_artifact_path: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if not str(filepath).endswith(".safetensors"):
            raise DatasetError(f"SafetensorsModelDataset filepath must end in .safetensors, got {filepath!r}")
        self._filepath = PurePosixPath(filepath)
        self._mlflow_artifact_path = mlflow_artifact_path
        self.metadata = metadata

    def load(self) -> nn.Module:
        """Rebuild the network from its JSON and load its weights (``weights_only`` by construction)."""
        from unmask.models.checkpoint import load_model

        return load_model(Path(self._filepath))

    def save(self, data: nn.Module) -> None:
        """Write both files atomically, then log them to the active MLflow run, if any."""
        from unmask.models.checkpoint import save_model

        path = Path(self._filepath)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_model(data, path)
        self._log_to_mlflow(path)

    def _log_to_mlflow(self, path: Path) -> None:
        if self._mlflow_artifact_path is None:
            return
        import mlflow

        if mlflow.active_run() is None:
            return
        for file in (path, path.with_suffix(".json")):
            if file.exists():
                mlflow.log_artifact(str(file), artifact_path=self._mlflow_artifact_path)

    def _exists(self) -> bool:
        path = Path(self._filepath)
        return path.exists() and path.with_suffix(".json").exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "mlflow_artifact_path": self._mlflow_artifact_path}
