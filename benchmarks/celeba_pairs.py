"""Masked/clean face pairs from real CelebA images, for benchmarks and manual checks (never for tests).

Each image is aligned with the aligned-CelebA template landmarks (the shared zip has no
annotations) to a ``size`` x ``size`` crop and masked by the project's own renderer, seeded per
image, as the ``faces`` and ``masks`` pipelines do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unmask.imaging.alignment import align_face
from unmask.imaging.celeba import image_id, list_images, locate_celeba, read_image, template_landmarks
from unmask.imaging.mask_renderer import render_masked_face, sample_mask_spec

SHARED_ZIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba_dev_9k_89x109.zip"


def celeba_pairs(path: str | Path, count: int, size: int, seed: int = 0, start: int = 0
                 ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, masked, clean) for ``count`` images from ``start``: uint8 arrays of N x size x size x 3."""
    source = locate_celeba(path)
    members = list_images(source)[start:start + count]
    if len(members) < count:
        raise ValueError(f"{path} has only {len(members) + start} images; asked for {count} from {start}")
    ids, masked, clean = [], np.empty((count, size, size, 3), np.uint8), np.empty((count, size, size, 3), np.uint8)
    for i, member in enumerate(members):
        image = read_image(source, member)
        crop, points, _ = align_face(image, template_landmarks(image.shape[1], image.shape[0]), size)
        spec = sample_mask_spec(points, size, np.random.default_rng([seed, i + start]))
        ids.append(image_id(member))
        clean[i], masked[i] = crop, render_masked_face(crop, spec)
    return ids, masked, clean
