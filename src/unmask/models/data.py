"""Torch datasets over the pipeline's image partitions (lazy ``{image_id: load}`` dictionaries)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

Loader = Callable[[], object]


def image_to_tensor(image: object) -> torch.Tensor:
    """PIL image or HxWxC uint8 array -> float CHW tensor in [0, 1] (a mask gets one channel)."""
    array = np.array(image)  # a writable copy: PIL buffers are read-only
    if array.ndim == 2:
        array = array[:, :, None]
    if array.dtype != np.uint8:
        raise TypeError(f"Expected 8-bit images, got dtype {array.dtype}.")
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """Float CHW tensor in [0, 1] -> HxWx3 uint8 array (rounded, clipped)."""
    array = tensor.detach().float().clamp(0, 1).mul(255).round().byte().cpu().numpy()
    return array.transpose(1, 2, 0)


class PairedFaceDataset(Dataset):
    """Yields ``(masked, clean[, mask])`` tensors for the given ids, optionally flipping left-right."""

    def __init__(
        self,
        image_ids: Sequence[str],
        masked_faces: Mapping[str, Loader],
        face_crops: Mapping[str, Loader],
        mask_maps: Mapping[str, Loader] | None = None,
        flip: bool = False,
    ) -> None:
        missing = [i for i in image_ids if i not in masked_faces or i not in face_crops]
        if mask_maps is not None:
            missing += [i for i in image_ids if i not in mask_maps]
        if missing:
            raise KeyError(
                f"{len(missing)} split ids have no stored image (first: {missing[:5]}); the split is older "
                "than the images: re-run `kedro run --pipelines=faces,masks,split`."
            )
        self.image_ids = list(image_ids)
        self.masked_faces = masked_faces
        self.face_crops = face_crops
        self.mask_maps = mask_maps
        self.flip = flip

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        image_id = self.image_ids[index]
        tensors = [image_to_tensor(self.masked_faces[image_id]()), image_to_tensor(self.face_crops[image_id]())]
        if self.mask_maps is not None:
            tensors.append((image_to_tensor(self.mask_maps[image_id]()) > 0.5).float())
        # Faces are roughly symmetric, so a horizontal flip is a free, label-preserving augmentation.
        if self.flip and torch.rand(()) < 0.5:
            tensors = [t.flip(-1) for t in tensors]
        return tuple(tensors)
