"""unmask.mlflow_model: the logged model's code rebuilds the network from its safetensors files and restores
batches of faces in the input's shape and dtype."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow.pyfunc import PythonModelContext

from unmask.mlflow_model import NETWORK_ARTIFACT, WEIGHTS_FILE, MaskedFaceRestorer
from unmask.models import build_model
from unmask.models.checkpoint import save_model


@pytest.fixture
def network() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("unet", [4, 8]).eval()


@pytest.fixture
def restorer(network, tmp_path) -> MaskedFaceRestorer:
    save_model(network, tmp_path / NETWORK_ARTIFACT / WEIGHTS_FILE)
    restorer = MaskedFaceRestorer()
    restorer.load_context(PythonModelContext(artifacts={NETWORK_ARTIFACT: str(tmp_path / NETWORK_ARTIFACT)},
                                             model_config=None))
    return restorer


def test_restorations_keep_the_shape_and_dtype_and_match_the_network(network, restorer):
    masked = np.random.default_rng(0).random((2, 8, 8, 3))  # float64
    with torch.no_grad():
        expected = network(torch.from_numpy(masked).permute(0, 3, 1, 2).float()).permute(0, 2, 3, 1).numpy()
    restored = restorer.predict(None, masked)
    assert restored.dtype == np.float64 and restored.shape == masked.shape
    np.testing.assert_allclose(restored, expected, rtol=0, atol=1e-6)
    as_bytes = restorer.predict(None, np.round(masked * 255).astype(np.uint8))
    assert as_bytes.dtype == np.uint8 and as_bytes.shape == masked.shape


@pytest.mark.parametrize(("images", "error"), [
    (np.zeros((8, 8, 3), np.uint8), ValueError),  # one image, not a batch
    (np.zeros((1, 8, 8, 1), np.uint8), ValueError),  # grey
    (np.zeros((1, 8, 8, 3), np.int64), TypeError),
])
def test_other_inputs_are_refused(restorer, images, error):
    with pytest.raises(error):
        restorer.predict(None, images)
