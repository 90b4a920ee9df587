import numpy as np
import pandas as pd
import pytest

from unmask.imaging.grids import image_grid, training_curves


def _faces(n: int, value: int) -> list[np.ndarray]:
    return [np.full((8, 8, 3), value, np.uint8) for _ in range(n)]


@pytest.mark.parametrize(("n", "rows", "cols"), [(3, 3, 2), (8, 8, 2), (16, 8, 4), (9, 5, 4)])
def test_image_grid_wraps_long_columns_into_blocks(n, rows, cols):
    fig = image_grid({"masked": _faces(n, 10), "ours": _faces(n, 200)}, row_labels=[str(i) for i in range(n)])
    axes = np.array(fig.axes).reshape(rows, cols)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 2 * n  # every sample once per column, spare cells blank
    assert axes[0][0].get_title() == "masked" and axes[0][1].get_title() == "ours"
    if cols == 4:  # the second block repeats the titles and continues the labels
        assert axes[0][2].get_title() == "masked" and axes[0][2].get_ylabel() == str(rows)
    assert axes[0][1].images[0].get_array()[0, 0, 0] == 200


def test_training_curves_has_a_panel_per_measure():
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.6],
                            "val_psnr": [20.0, 22.0], "val_ssim": [0.7, 0.8]})
    assert [ax.get_title() for ax in training_curves(history).axes] == ["loss", "PSNR (dB)", "SSIM"]
