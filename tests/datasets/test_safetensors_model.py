import pytest
import torch
from kedro.io import DatasetError

from unmask.datasets import SafetensorsModelDataset
from unmask.models import build_model


def test_round_trip_through_the_catalog_dataset(tmp_path):
    dataset = SafetensorsModelDataset(filepath=str(tmp_path / "models" / "model.safetensors"))
    assert not dataset.exists()
    model = build_model("attention_unet", filters=(4, 8)).eval()
    dataset.save(model)
    assert dataset.exists()
    assert (tmp_path / "models" / "model.json").exists()
    loaded = dataset.load()
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(model(x), loaded(x))
    assert loaded.config == model.config


def test_only_safetensors_paths_are_accepted(tmp_path):
    with pytest.raises(DatasetError, match=".safetensors"):
        SafetensorsModelDataset(filepath=str(tmp_path / "model.pt"))


def test_missing_model_says_how_to_train_one(tmp_path):
    dataset = SafetensorsModelDataset(filepath=str(tmp_path / "model.safetensors"))
    with pytest.raises(DatasetError, match="kedro run"):
        dataset.load()
