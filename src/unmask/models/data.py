"""Torch datasets over the pipeline's image partitions (lazy ``{image_id: load}`` dictionaries).

Augmentation is decided by the sampler, not the dataset: :class:`EpochSampler` yields
``(index, flip)`` pairs (or ``(index, flip, epoch)`` triples) drawn from ``(seed, epoch)`` alone,
so the order, the flips and the fresh masks of an epoch are the same with or without worker
processes, on every rank count, and after a resume.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from unmask.imaging.mask_appearance import degrade_pair, paste_cutout, vary_material
from unmask.imaging.mask_renderer import (
    image_seed,
    rasterize_mask,
    render_masked_face,
    seeded_mask_spec,
)
from unmask.imaging.pixels import image_array

Loader = Callable[[], object]
Index = int | tuple[int, bool] | tuple[int, bool, int]


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

    def __getitem__(self, index: Index) -> tuple[torch.Tensor, ...]:
        index, flip = index[:2] if isinstance(index, tuple) else (index, False)
        image_id = self.image_ids[index]
        tensors = [image_to_tensor(image_array(self.masked_faces[image_id])),
                   image_to_tensor(image_array(self.face_crops[image_id]))]
        if self.mask_maps is not None:
            tensors.append((image_to_tensor(image_array(self.mask_maps[image_id])) > 0.5).float())
        if flip:
            tensors = [t.flip(-1) for t in tensors]
        return tuple(tensors)


class FreshMasks:
    """A new synthetic mask for a face crop every epoch, from ``(seed, image_id, epoch)`` alone.

    Epoch ``e >= 1`` draws variant ``e`` of :func:`~unmask.imaging.mask_renderer.image_seed`
    (variant 0 is the stored mask of the masks pipeline), so a model sees each face under many
    masks instead of memorising one, and any worker, rank or resumed run draws the same one.
    ``landmarks`` holds the five crop-space landmarks of each id (10 numbers, x then y).
    Beyond the renderer (:mod:`unmask.imaging.mask_appearance`): ``clean_fraction`` of the draws
    show the face with no mask (empty map, target = input), ``cutout_fraction`` of the masks are
    real ones (RGBA ``cutouts`` in the canonical aligned frame, cut out of photos) instead of the
    renderer's, ``material_fraction`` of the masks get a new material, and ``degrade_fraction`` of
    the pairs a camera degradation.
    Picklable: DataLoader workers get their own copy.
    """

    def __init__(self, landmarks: Mapping[str, Sequence[float]], seed: int, styles: Sequence[str], *,
                 clean_fraction: float = 0.0, material_fraction: float = 0.0, degrade_fraction: float = 0.0,
                 cutouts: Sequence[np.ndarray] = (), cutout_fraction: float = 0.0) -> None:
        if not styles:
            raise ValueError("FreshMasks needs at least one mask style to draw from.")
        for name, value in (("clean_fraction", clean_fraction), ("material_fraction", material_fraction),
                            ("degrade_fraction", degrade_fraction), ("cutout_fraction", cutout_fraction)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"train.{name} must be a number from 0 to 1, got {value!r}.")
        self.landmarks = {str(k): tuple(float(v) for v in points) for k, points in landmarks.items()}
        bad = [k for k, points in self.landmarks.items() if len(points) != 10 or not np.isfinite(points).all()]
        if bad:
            raise ValueError(f"{len(bad)} face(s) have no complete set of 5 landmarks (first: {bad[:5]}); "
                             "re-run `kedro run --pipelines=faces`.")
        self.seed, self.styles = int(seed), tuple(str(s) for s in styles)
        self.clean_fraction = float(clean_fraction)
        self.material_fraction = float(material_fraction)
        self.degrade_fraction = float(degrade_fraction)
        self.cutouts = tuple(np.ascontiguousarray(c) for c in cutouts)
        bad = [c.shape for c in self.cutouts if c.ndim != 3 or c.shape[2] != 4 or c.dtype != np.uint8]
        if bad:
            raise ValueError(f"mask cut-outs must be HxWx4 uint8 RGBA images, got {bad[:3]}.")
        if cutout_fraction and not self.cutouts:
            raise ValueError("train.cutout_fraction > 0 needs mask cut-outs: set masks.real_photos and re-run "
                             "`kedro run --pipelines=masks`.")
        self.cutout_fraction = float(cutout_fraction)

    def __contains__(self, image_id: str) -> bool:
        return image_id in self.landmarks

    def variety_rng(self, image_id: str, epoch: int, stream: int = 1) -> np.random.Generator:
        """The generator of this draw's variety (stream 1: clean or not, material, degradation; 2: donor face)."""
        return np.random.default_rng([image_seed(self.seed, image_id, variant=int(epoch)), int(stream)])

    def __call__(
        self, image_id: str, crop: np.ndarray, epoch: int, donor: np.ndarray | Callable[[], np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(masked crop, target crop, mask map)`` for this face in this epoch (HxWx3, HxWx3, HxW {0, 1} uint8).

        The target is ``crop`` itself unless the draw degrades the pair; ``donor`` (another face
        crop) lends real texture to a new material.
        """
        size = crop.shape[0]
        if crop.shape[:2] != (size, size):
            raise ValueError(f"face crop {image_id} is {crop.shape[1]}x{crop.shape[0]}, not square.")
        rng = self.variety_rng(image_id, epoch)
        if rng.random() < self.clean_fraction:
            masked, mask = crop.copy(), np.zeros((size, size), np.uint8)
        else:
            if self.cutouts and rng.random() < self.cutout_fraction:
                masked, mask = paste_cutout(crop, self.cutouts[int(rng.integers(0, len(self.cutouts)))], rng)
            else:
                points = np.asarray(self.landmarks[image_id], dtype=np.float32).reshape(5, 2)
                spec = seeded_mask_spec(points, size, image_seed(self.seed, image_id, variant=int(epoch)), self.styles)
                masked, mask = render_masked_face(crop, spec), rasterize_mask(spec, size)
            if rng.random() < self.material_fraction:
                masked = vary_material(masked, mask, donor() if callable(donor) else donor, rng)
        target = crop
        if rng.random() < self.degrade_fraction:
            masked, target = degrade_pair(masked, crop, rng)
        return masked, target, mask

    def digest_text(self) -> str:
        """What determines the masks drawn (for checkpoint fingerprints)."""
        text = f"fresh_masks seed={self.seed} styles={','.join(self.styles)}"
        if self.clean_fraction or self.material_fraction or self.degrade_fraction:
            text += (f" clean={self.clean_fraction} material={self.material_fraction} "
                     f"degrade={self.degrade_fraction}")
        if self.cutout_fraction:
            digest = hashlib.sha256(b"".join(c.tobytes() for c in self.cutouts)).hexdigest()[:16]
            text += f" cutouts={len(self.cutouts)}:{digest} cutout_fraction={self.cutout_fraction}"
        return text


class FreshlyMaskedFaceDataset(Dataset):
    """Yields ``(masked, clean[, mask])`` tensors with a mask drawn for the sample's epoch.

    An index is an ``(int, flip, epoch)`` triple from an :class:`EpochSampler` made with
    ``with_epoch=True``; a plain int or pair uses epoch 1. ``with_mask`` adds the drawn mask map
    (for the mask loss of a composite network).
    """

    def __init__(self, image_ids: Sequence[str], face_crops: Mapping[str, Loader], fresh_masks: FreshMasks,
                 with_mask: bool = False) -> None:
        missing = [i for i in image_ids if i not in face_crops or i not in fresh_masks]
        if missing:
            raise KeyError(
                f"{len(missing)} split ids have no stored face crop or landmarks (first: {missing[:5]}); the split "
                "is older than the faces: re-run `kedro run --pipelines=faces,masks,split`."
            )
        self.image_ids = list(image_ids)
        self.face_crops = face_crops
        self.fresh_masks = fresh_masks
        self.with_mask = with_mask

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: Index) -> tuple[torch.Tensor, ...]:
        if not isinstance(index, tuple):
            index = (index, False)
        index, flip, epoch = (*index, 1) if len(index) == 2 else index
        image_id = self.image_ids[index]
        crop = self._crop(image_id)
        donor = None
        if self.fresh_masks.material_fraction > 0 and len(self.image_ids) > 1:
            pick = int(self.fresh_masks.variety_rng(image_id, epoch, stream=2).integers(0, len(self.image_ids) - 1))
            # any face but this one, read only if this draw re-draws a material
            donor = functools.partial(self._crop, self.image_ids[pick + (pick >= index)])
        masked, target, mask = self.fresh_masks(image_id, crop, epoch, donor)
        tensors = [image_to_tensor(masked), image_to_tensor(target)]
        if self.with_mask:
            tensors.append(torch.from_numpy(mask).float()[None])
        if flip:
            tensors = [t.flip(-1) for t in tensors]
        return tuple(tensors)

    def _crop(self, image_id: str) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(image_array(self.face_crops[image_id]))[:, :, :3])


class EpochSampler(Sampler):
    """This rank's share of an epoch as ``(index, flip)`` pairs, a pure function of seed and epoch.

    With ``shuffle`` the order is a permutation drawn from ``seed + epoch``; with ``flip`` each
    sample is mirrored with probability 1/2 (faces are roughly symmetric, so a horizontal flip is
    a free, label-preserving augmentation). Rank ``r`` of ``world`` takes every ``world``-th
    sample from ``r``; with ``pad`` the epoch is first padded by repeating samples so that every
    rank gets the same count (DistributedDataParallel needs equal step counts), without it the
    ranks' shares differ by at most one. With ``with_epoch`` each pair also carries the epoch
    (``(index, flip, epoch)``), for datasets that draw something new per epoch
    (:class:`FreshlyMaskedFaceDataset`). Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, size: int, *, shuffle: bool, flip: bool, seed: int = 0, rank: int = 0, world: int = 1,
                 pad: bool = False, with_epoch: bool = False) -> None:
        if size < 1:
            raise ValueError(f"cannot sample an empty dataset (size {size})")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside 0..{world - 1}")
        self.size, self.shuffle, self.flip, self.seed = size, shuffle, flip, seed
        self.rank, self.world, self.pad, self.with_epoch = rank, world, pad, with_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order and flips the next iteration yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.pad:
            return -(-self.size // self.world)
        return len(range(self.rank, self.size, self.world))

    def __iter__(self) -> Iterator[tuple[int, bool] | tuple[int, bool, int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator) if self.shuffle else torch.arange(self.size)
        flips = (torch.rand(self.size, generator=generator) < 0.5 if self.flip
                 else torch.zeros(self.size, dtype=torch.bool))
        if self.pad:
            total = len(self) * self.world
            order = torch.cat([order, order[: total - self.size]]) if total > self.size else order
        mine = order[self.rank :: self.world].tolist()
        if self.with_epoch:
            return iter([(i, bool(flips[i]), self.epoch) for i in mine])
        return iter([(i, bool(flips[i])) for i in mine])


@dataclasses.dataclass
class TrainingData:
    """Ids of the train and validation images and the lazy image partitions they live in."""

    train_ids: list[str]
    val_ids: list[str]
    masked_faces: Mapping[str, Loader]
    face_crops: Mapping[str, Loader]
    #: the true masks, only for a loss on a composite network's predicted mask (never its input);
    #: with ``fresh_masks`` the training images' drawn maps are used, and this only asks for them
    mask_maps: Mapping[str, Loader] | None = None
    #: draw a new mask on every training face each epoch instead of the stored ``masked_faces``
    #: (validation keeps the stored masks, so its curve compares like with like)
    fresh_masks: FreshMasks | None = None

    def datasets(self) -> tuple[PairedFaceDataset | FreshlyMaskedFaceDataset, PairedFaceDataset]:
        """The train and validation datasets (checks that every id has its images)."""
        if self.fresh_masks is not None:
            train = FreshlyMaskedFaceDataset(self.train_ids, self.face_crops, self.fresh_masks,
                                             with_mask=self.mask_maps is not None)
        else:
            train = PairedFaceDataset(self.train_ids, self.masked_faces, self.face_crops, self.mask_maps)
        return train, PairedFaceDataset(self.val_ids, self.masked_faces, self.face_crops)

    def digest(self) -> str:
        """A fingerprint of the split (and of fresh masks), so a checkpoint is never resumed on other data."""
        text = "train\n" + "\n".join(self.train_ids) + "\nval\n" + "\n".join(self.val_ids)
        if self.fresh_masks is not None:
            text += "\n" + self.fresh_masks.digest_text()
        return hashlib.sha256(text.encode()).hexdigest()[:16]
