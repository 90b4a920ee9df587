"""Torch datasets over the pipeline's image partitions (lazy ``{image_id: load}`` dictionaries).

Augmentation is decided by the sampler, not the dataset: :class:`EpochSampler` yields
``(index, flip)`` pairs drawn from ``(seed, epoch)`` alone, so the order and the flips of an epoch
are the same with or without worker processes, on every rank count, and after a resume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

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


def load_pixels(loader: Loader) -> object:
    """Call a partition loader; loaders with ``read_array`` (ImagePartitionsDataset) skip PIL."""
    read_array = getattr(loader, "read_array", None)
    return read_array() if read_array is not None else loader()


class PairedFaceDataset(Dataset):
    """Yields ``(masked, clean[, mask])`` tensors for the given ids.

    An index is an int, or an ``(int, flip)`` pair from :class:`EpochSampler`: with ``flip`` true
    every tensor of the sample is mirrored left-right (the same flip for input and target).
    """

    def __init__(
        self,
        image_ids: Sequence[str],
        masked_faces: Mapping[str, Loader],
        face_crops: Mapping[str, Loader],
        mask_maps: Mapping[str, Loader] | None = None,
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

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int | tuple[int, bool]) -> tuple[torch.Tensor, ...]:
        index, flip = index if isinstance(index, tuple) else (index, False)
        image_id = self.image_ids[index]
        tensors = [image_to_tensor(load_pixels(self.masked_faces[image_id])),
                   image_to_tensor(load_pixels(self.face_crops[image_id]))]
        if self.mask_maps is not None:
            tensors.append((image_to_tensor(load_pixels(self.mask_maps[image_id])) > 0.5).float())
        if flip:
            tensors = [t.flip(-1) for t in tensors]
        return tuple(tensors)


class EpochSampler(Sampler):
    """This rank's share of an epoch as ``(index, flip)`` pairs, a pure function of seed and epoch.

    With ``shuffle`` the order is a permutation drawn from ``seed + epoch``; with ``flip`` each
    sample is mirrored with probability 1/2 (faces are roughly symmetric, so a horizontal flip is
    a free, label-preserving augmentation). Rank ``r`` of ``world`` takes every ``world``-th
    sample from ``r``; with ``pad`` the epoch is first padded by repeating samples so that every
    rank gets the same count (DistributedDataParallel needs equal step counts), without it the
    ranks' shares differ by at most one. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, size: int, *, shuffle: bool, flip: bool, seed: int = 0, rank: int = 0, world: int = 1,
                 pad: bool = False) -> None:
        if size < 1:
            raise ValueError(f"cannot sample an empty dataset (size {size})")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside 0..{world - 1}")
        self.size, self.shuffle, self.flip, self.seed = size, shuffle, flip, seed
        self.rank, self.world, self.pad = rank, world, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and flips the next iteration yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.pad:
            return -(-self.size // self.world)
        return len(range(self.rank, self.size, self.world))

    def __iter__(self) -> Iterator[tuple[int, bool]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator) if self.shuffle else torch.arange(self.size)
        flips = torch.rand(self.size, generator=generator) < 0.5 if self.flip else torch.zeros(self.size, dtype=torch.bool)
        if self.pad:
            total = len(self) * self.world
            order = torch.cat([order, order[: total - self.size]]) if total > self.size else order
        mine = order[self.rank :: self.world].tolist()
        return iter([(i, bool(flips[i])) for i in mine])
