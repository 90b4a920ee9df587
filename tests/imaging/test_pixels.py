"""unmask.imaging.pixels.image_array: the one way a partition value becomes pixels."""

from __future__ import annotations

import numpy as np
from PIL import Image

from unmask.imaging.pixels import image_array

RGB = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)


class _Job:
    """A lazy job (like MaskedFace): ``render_array`` gives the pixels without PIL."""

    def render_array(self) -> np.ndarray:
        return RGB

    def __call__(self) -> Image.Image:
        raise AssertionError("the array path must be used")


class _Loader:
    """A saved partition (like PngPartition): ``read_array`` gives the pixels without PIL."""

    def read_array(self) -> np.ndarray:
        return RGB[:, :, 0]

    def __call__(self) -> Image.Image:
        raise AssertionError("the array path must be used")


def test_jobs_and_loaders_give_their_arrays_without_pil():
    np.testing.assert_array_equal(image_array(_Job()), RGB)
    np.testing.assert_array_equal(image_array(_Loader()), RGB[:, :, 0])


def test_callables_and_images_in_lossless_8_bit_modes_become_arrays():
    np.testing.assert_array_equal(image_array(lambda: Image.fromarray(RGB)), RGB)
    np.testing.assert_array_equal(image_array(Image.fromarray(RGB[:, :, 1], mode="L")), RGB[:, :, 1])
    binary = Image.fromarray(RGB[:, :, 0] > 20).convert("1")
    np.testing.assert_array_equal(image_array(binary), np.where(RGB[:, :, 0] > 20, 255, 0))
    np.testing.assert_array_equal(image_array(RGB), RGB)


def test_other_images_are_returned_as_they_are():
    rgba = Image.fromarray(np.dstack([RGB, np.full((4, 5), 128, np.uint8)]), mode="RGBA")
    assert image_array(lambda: rgba) is rgba
