import math

import pandas as pd
import pytest
import torch

from unmask.models import build_loss
from unmask.models.data import PairedFaceDataset
from unmask.pipelines.train.nodes import plot_training_curves, train_model

PARAMS = {
    "model": "ra_unet", "filters": [4, 8, 16], "loss": "ssim_l1", "loss_weight": 1.0, "learning_rate": 1e-2,
    "batch_size": 8, "epochs": 3, "early_stopping_patience": 5, "device": "cpu", "precision": "fp32",
    "num_workers": 0, "seed": 0, "sample_count": 2,
}


def test_training_lowers_the_loss_and_returns_the_best_model(tiny_partitions):
    p = tiny_partitions
    model, history = train_model(p["face_crops"], p["masked_faces"], p["data_split"], PARAMS)
    assert list(history["epoch"]) == [1, 2, 3]
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert all(math.isfinite(v) for v in history["val_psnr"])
    assert model.config["filters"] == [4, 8, 16] and not model.training
    with torch.no_grad():
        out = model(torch.rand(1, 3, 16, 16))
    assert out.shape == (1, 3, 16, 16) and float(out.min()) >= 0 and float(out.max()) <= 1


def test_the_returned_weights_are_those_of_the_best_validation_epoch(tiny_partitions):
    p = tiny_partitions
    # A large learning rate makes later epochs overshoot, so the best epoch is not always the last.
    params = {**PARAMS, "epochs": 4, "learning_rate": 0.05}
    model, history = train_model(p["face_crops"], p["masked_faces"], p["data_split"], params)
    val = PairedFaceDataset(sorted(p["data_split"].query("split == 'val'")["image_id"]), p["masked_faces"], p["face_crops"])
    masked = torch.stack([val[i][0] for i in range(len(val))])
    clean = torch.stack([val[i][1] for i in range(len(val))])
    with torch.no_grad():
        loss = float(build_loss("ssim_l1", 1.0)(model(masked), clean))
    assert loss == pytest.approx(history["val_loss"].min(), rel=1e-4)


def test_training_is_reproducible_for_a_seed(tiny_partitions):
    p = tiny_partitions
    params = {**PARAMS, "epochs": 1}
    first, _ = train_model(p["face_crops"], p["masked_faces"], p["data_split"], params)
    second, _ = train_model(p["face_crops"], p["masked_faces"], p["data_split"], params)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_early_stopping_stops_when_validation_does_not_improve(tiny_partitions):
    p = tiny_partitions
    # A zero learning rate can never improve on the first epoch's validation loss.
    params = {**PARAMS, "epochs": 10, "early_stopping_patience": 2, "learning_rate": 1e-12}
    _, history = train_model(p["face_crops"], p["masked_faces"], p["data_split"], params)
    assert len(history) < 10


@pytest.mark.parametrize(
    "override", [{"epochs": 0}, {"batch_size": "8"}, {"learning_rate": -1}, {"model": "resnet"}, {"loss": "hinge"}]
)
def test_bad_parameters_are_rejected_before_training(tiny_partitions, override):
    p = tiny_partitions
    with pytest.raises(ValueError):
        train_model(p["face_crops"], p["masked_faces"], p["data_split"], {**PARAMS, **override})


def test_missing_images_for_split_ids_say_how_to_fix(tiny_partitions):
    p = tiny_partitions
    crops = dict(p["face_crops"])
    crops.pop("000020")
    with pytest.raises(KeyError, match="--pipelines=faces,masks,split"):
        train_model(crops, p["masked_faces"], p["data_split"], PARAMS)


def test_training_curves_figure_has_three_panels():
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [1, 0.5], "val_loss": [1, 0.6],
                            "val_psnr": [10, 12], "val_ssim": [0.3, 0.4]})
    assert len(plot_training_curves(history).axes) == 3
