"""A folder of PNG images, one per sample, saved from lazy partitions by worker processes.

The data stages hand over ``{image_id: job}`` where a job is a picklable zero-argument callable
that computes one image (the crop of a face, its masked version, its mask). Kedro's
``PartitionedDataset`` calls the jobs one after another in the main process and encodes with
Pillow's default PNG settings: one core, about 16 ms per 256x256 image for the encoding alone.
:class:`ImagePartitionsDataset` keeps its folder layout and loaded form and changes how it saves:

* chunks of jobs go to a pool of worker processes (:mod:`unmask.parallel`); each worker runs the
  job, encodes the PNG (:mod:`unmask.imaging.png`: lossless, about 0.5 ms at 256x256) and writes
  the file, so pixels never travel between processes and memory stays flat;
* with ``overwrite`` (the default) the new folder is written beside the old one under a temporary
  name and swapped in only when every image is written: an interrupted or failed run leaves the
  previous layer as it was; without it, every file is written under a temporary name and renamed;
* a progress bar counts the images and their rate.

Loading returns ``{partition_id: loader}`` like ``PartitionedDataset``; calling a loader returns
the PIL image (``RGB`` or ``L``). Loaders are small picklable objects (:class:`PngPartition`) that
also give the pixels as a NumPy array (``read_array``), which the masks stage uses to skip PIL.
Values that are not callable (PIL images, uint8 arrays) are saved as they are. Jobs that cannot be
pickled (lambdas, closures) are run in this process. Folders on remote file systems (``s3://``...)
are saved and loaded by ``PartitionedDataset`` itself.
"""

from __future__ import annotations

import itertools
import logging
import os
import pickle
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from kedro.io.core import DatasetError
from kedro_datasets.partitions import PartitionedDataset
from PIL import Image

from unmask.datasets.lazy_partitions import LazyPartitions
from unmask.errors import MissingInputError
from unmask.imaging.pixels import image_array
from unmask.imaging.png import decode_png, read_png, write_png
from unmask.parallel import chunked, map_chunks, pool_args

logger = logging.getLogger(__name__)

__all__ = ["ImagePartitionsDataset", "PngPartition", "image_array"]

_LOCAL_PROTOCOLS = ("file", "local", "")


class PngPartition:
    """Loader of one saved image: ``loader()`` is the PIL image, ``loader.read_array()`` its pixels."""

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)

    def read_array(self) -> np.ndarray:
        """Pixels as uint8 ``(H, W)`` or ``(H, W, 3)`` RGB."""
        return read_png(self.path)

    def __call__(self) -> Image.Image:
        data = Path(self.path).read_bytes()
        try:
            return Image.fromarray(decode_png(data))
        except ValueError:
            pass
        with Image.open(self.path) as image:  # not a PNG we can decode: Pillow, as ImageDataset does
            return image.copy()

    def __getstate__(self) -> str:
        return self.path

    def __setstate__(self, state: str) -> None:
        self.path = state

    def __repr__(self) -> str:
        return f"PngPartition({self.path!r})"


def _write_one(folder: Path, relative: str, value: Any, atomic: bool) -> None:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = image_array(value)
    if isinstance(pixels, Image.Image):  # RGBA, 16-bit...: Pillow keeps them lossless
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        pixels.save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)
        return
    if pixels.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {pixels.dtype}")
    write_png(path, pixels, atomic=atomic)


def write_partitions(folder: str, items: Sequence[tuple[str, Any]], atomic: bool) -> int:
    """Compute and write every ``(relative path, value)`` of ``items`` under ``folder`` (a worker task)."""
    root = Path(folder)
    for relative, value in items:
        try:
            _write_one(root, relative, value, atomic)
        except Exception as exc:  # re-raised with the partition that failed
            raise RuntimeError(f"partition {relative!r}: {type(exc).__name__}: {exc}") from None
    return len(items)


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:  # any failure means "run it here"
        return False
    return True


class ImagePartitionsDataset(PartitionedDataset):
    """One PNG per sample in one folder, saved in parallel by worker processes (see the module doc).

    Example (``catalog.yml``)::

        face_crops:
          type: unmask.datasets.ImagePartitionsDataset
          path: data/03_primary/face_crops
          workers: null        # worker processes (null: one per core)
          chunk_size: 32       # images per task handed to a worker
          parallel_from: 200   # fewer images are saved in this process
    """

    def __init__(
        self,
        *,
        path: str,
        filename_suffix: str = ".png",
        overwrite: bool = True,
        workers: int | None = None,
        chunk_size: int = 32,
        parallel_from: int = 200,
        progress: bool = True,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if filename_suffix.lower() != ".png":
            raise DatasetError(f"ImagePartitionsDataset stores PNG files: filename_suffix must be '.png', "
                               f"got {filename_suffix!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise DatasetError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        super().__init__(path=path, dataset={"type": "pillow.ImageDataset"}, filename_suffix=filename_suffix,
                         overwrite=overwrite, credentials=credentials, fs_args=fs_args, metadata=metadata)
        self._workers = workers
        self._chunk_size = chunk_size
        self._parallel_from = int(parallel_from)
        self._progress = bool(progress)

    @property
    def _local(self) -> bool:
        return str(self._protocol or "") in _LOCAL_PROTOCOLS

    @property
    def _folder(self) -> Path:
        return Path(self._filesystem._strip_protocol(self._path))

    # ---------------------------------------------------------------------------------- load ----

    def load(self) -> dict[str, PngPartition]:
        """``{partition_id: loader}`` for every ``.png`` under the folder, sorted by id."""
        if not self._local:
            return super().load()
        root = self._folder
        suffix = self._filename_suffix
        found: list[str] = []
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.name.startswith("."):  # temporary files of a write in progress
                    continue
                if entry.is_dir():
                    stack.append(Path(entry.path))
                elif entry.name.endswith(suffix):
                    found.append(entry.path)
        if not found:
            # Kedro's wording (OptionalPartitionedDataset looks for it), caused by a user's mistake for the CLI
            raise DatasetError(f"No partitions found in '{self._path}'") from MissingInputError(
                f"There are no images in {self._path}: the stage that makes them has not run yet. Run `kedro run` "
                f"(every stage) or `dvc repro` (the stages that are out of date) first.")
        partitions = {}
        for file in sorted(found):
            relative = Path(file).relative_to(root).as_posix()
            partitions[relative[: -len(suffix)]] = PngPartition(file)
        return partitions

    # ---------------------------------------------------------------------------------- save ----

    def _relative_path(self, partition_id: str) -> str:
        relative = PurePosixPath(str(partition_id).replace("\\", "/") + self._filename_suffix)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise DatasetError(f"partition id {partition_id!r} must be a relative path inside '{self._path}'")
        return relative.as_posix()

    def save(self, data: Mapping[str, Any]) -> None:
        """Write every partition (see the module doc); the folder is complete or unchanged."""
        if not self._local:
            super().save(dict(data))
            return
        if not isinstance(data, Mapping):
            raise DatasetError(f"ImagePartitionsDataset saves a mapping {{partition_id: image or job}}, "
                               f"got {type(data).__name__}")
        root = self._folder
        # Streamed in key order: a LazyPartitions makes each job only when its chunk is sent, a
        # dict is walked through its sorted keys; either way no list of all the jobs is built.
        pairs = data.iter_items() if isinstance(data, LazyPartitions) else ((k, data[k]) for k in sorted(data))
        workers, chunk_size = pool_args(len(data), self._workers, self._chunk_size, self._parallel_from)
        chunks = chunked(((self._relative_path(pid), value) for pid, value in pairs), chunk_size)
        first = next(chunks, [])
        if workers > 1 and first and not _picklable(first[:1]):
            logger.info("%s: the images cannot be sent to worker processes (not picklable); writing them here.",
                        root)
            workers = 1

        root.parent.mkdir(parents=True, exist_ok=True)
        staging = root.with_name(f".{root.name}.partial-{os.getpid()}") if self._overwrite else root
        if self._overwrite and staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True, exist_ok=True)
        try:
            for _ in map_chunks(_WriteTask(str(staging), not self._overwrite), itertools.chain([first], chunks),
                                workers=workers, total=len(data), desc=f"Writing {root.name}",
                                progress=self._progress):
                pass
        except BaseException:
            if self._overwrite:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        if self._overwrite:
            _swap_in(staging, root)
        logger.info("Wrote %d images to %s (%d process%s)", len(data), root, workers, "es" if workers > 1 else "")
        self._invalidate_caches()


class _WriteTask:
    """``write_partitions`` bound to a folder (picklable, unlike a lambda)."""

    __slots__ = ("atomic", "folder")

    def __init__(self, folder: str, atomic: bool) -> None:
        self.folder, self.atomic = folder, atomic

    def __call__(self, items: Sequence[tuple[str, Any]]) -> int:
        return write_partitions(self.folder, items, self.atomic)

    def __getstate__(self) -> tuple[str, bool]:
        return self.folder, self.atomic

    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.folder, self.atomic = state


def _swap_in(staging: Path, root: Path) -> None:
    """Replace the folder ``root`` by ``staging`` (two renames; the old folder is deleted after)."""
    old = root.with_name(f".{root.name}.old-{os.getpid()}")
    if old.exists():
        shutil.rmtree(old)
    if root.exists():
        os.rename(root, old)
    try:
        os.rename(staging, root)
    except OSError:
        if old.exists() and not root.exists():
            os.rename(old, root)
        raise
    shutil.rmtree(old, ignore_errors=True)
