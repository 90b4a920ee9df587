"""The trained network as an MLflow "model from code": MLflow logs this file's source, never a pickle.

:func:`unmask.mlflow_hooks.log_network` logs this file as the model's code and the network's
``model.safetensors`` + ``model.json`` (:func:`unmask.models.checkpoint.save_model`) as its
``network`` artifact; loading runs this file and rebuilds the network with the project's own
:func:`~unmask.models.checkpoint.load_model`, so nothing is unpickled. The environment that loads
the model needs ``unmask`` importable. Use::

    restorer = mlflow.pyfunc.load_model(model_uri)                 # on the CPU
    restorer = mlflow.pyfunc.load_model(model_uri, model_config={"device": "cuda"})
    restored = restorer.predict(masked)                            # see MaskedFaceRestorer.predict
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.models
import mlflow.pyfunc
import numpy as np
import torch

#: The name of the artifact folder holding the network's files, and the weights' name in it.
NETWORK_ARTIFACT, WEIGHTS_FILE = "network", "model.safetensors"


class MaskedFaceRestorer(mlflow.pyfunc.PythonModel):
    """Restores batches of masked faces with the network logged beside this code."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Rebuild the network from its safetensors weights and JSON config, on ``model_config["device"]``."""
        from unmask.models.checkpoint import load_model

        device = (context.model_config or {}).get("device", "cpu")
        self.network = load_model(Path(context.artifacts[NETWORK_ARTIFACT]) / WEIGHTS_FILE, map_location=device)

    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        """Restorations of N x H x W x 3 masked faces, uint8 or float in [0, 1], in the input's shape and dtype.

        uint8 comes back rounded and clipped to 0-255, floats clipped to [0, 1]. H and W must be
        multiples of ``2 ** (levels - 1)`` of the network (e.g. 256 x 256, the crops it trained on).
        One plain pass of the network, without the flip averaging ``unmask.predict`` adds.
        """
        from unmask.models.inference import restore

        images = np.asarray(model_input)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected N x H x W x 3 images, got shape {images.shape}")
        if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
            raise TypeError(f"expected uint8 or float images, got dtype {images.dtype}")
        batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
        if images.dtype == np.uint8:
            batch /= 255.0
        restored = restore(self.network, batch).clamp(0, 1).permute(0, 2, 3, 1).cpu()
        if images.dtype == np.uint8:  # as unmask.models.data.tensor_to_image rounds
            return restored.mul(255).round().byte().numpy()
        return restored.numpy().astype(images.dtype, copy=False)


mlflow.models.set_model(MaskedFaceRestorer())
