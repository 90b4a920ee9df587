"""Draw the README's before/after figure: CelebA test faces in larger photos, masked, then unmasked.

    .venv/bin/python docs/make_photo_pairs.py --celeba ../shared/data/celeba_dev_9k_89x109.zip \
        --checkpoint models/unmask_ra_unet_64.safetensors

Each test face (ids 008001-009000, never trained on) is scaled up ``--scale`` times into a
larger photo, a mask is drawn on it at the photo's own resolution (the renderer's designs in new
materials, aligned on the face's detected landmarks) and ``unmask predict``'s pipeline
(:class:`unmask.predict.Unmasker`: detection, alignment, blind restoration, blending with the
photo's grain) restores it. Rows: original | masked | restored; written to ``--out``
(``docs/restoration_photos.png`` by default, well under 1 MB).
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

DEFAULT_IDS = ["008017", "008075", "008305", "008606", "008730", "008910"]
CROP = 256  # the mask is drawn on a large aligned crop, then warped onto the photo


def _read(archive: Path, image_id: str) -> np.ndarray:
    with zipfile.ZipFile(archive) as zf, zf.open(f"img_align_celeba/{image_id}.jpg") as handle:
        return np.asarray(Image.open(handle).convert("RGB"))


def _masked(photo: np.ndarray, seed: int) -> np.ndarray:
    """``photo`` with a mask drawn at its own resolution on the face the detector finds."""
    from unmask.imaging.alignment import estimate_alignment, template_points, warp_to_crop
    from unmask.imaging.blending import paste_crop
    from unmask.imaging.landmark_detector import FaceLandmarkDetector
    from unmask.imaging.mask_appearance import vary_material
    from unmask.imaging.mask_renderer import MASK_STYLES, rasterize_mask, render_masked_face, seeded_mask_spec

    face = FaceLandmarkDetector().detect_one(photo, masked=False)
    if face is None:
        raise ValueError("no face found in the scaled-up test image; pick another id")
    matrix = estimate_alignment(face.landmarks, CROP)
    crop = warp_to_crop(photo, matrix, CROP)
    spec = seeded_mask_spec(template_points(CROP), CROP, seed, MASK_STYLES)
    mask = rasterize_mask(spec, CROP)
    drawn = render_masked_face(crop, spec)
    if seed % 2:  # every other face in a new material, as training draws them
        drawn = vary_material(drawn, mask, None, np.random.default_rng(seed))
    return paste_crop(photo, drawn, matrix, cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.7))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--celeba", type=Path, required=True, help="img_align_celeba zip (or the 9k sample)")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "unmask_ra_unet_64.safetensors")
    parser.add_argument("--ids", nargs="+", default=DEFAULT_IDS)
    parser.add_argument("--scale", type=float, default=4.0, help="how much larger than the 89x109 sample the photo is")
    parser.add_argument("--tile", type=int, default=240, help="height of each tile in the figure")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "restoration_photos.png")
    args = parser.parse_args(argv)
    if not args.celeba.is_file():
        parser.error(f"no CelebA zip at {args.celeba}")

    from unmask.predict import Unmasker

    unmasker = Unmasker(args.checkpoint)
    print(unmasker.describe())
    rows = []
    for k, image_id in enumerate(args.ids):
        small = _read(args.celeba, image_id)
        photo = cv2.resize(small, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_CUBIC)
        masked = _masked(photo, seed=k)
        result = unmasker.unmask(masked)
        print(f"{image_id}: {len(result.faces)} face(s), {result.region.mean():.1%} of the photo restored")
        tiles = [cv2.resize(t, (round(t.shape[1] * args.tile / t.shape[0]), args.tile), interpolation=cv2.INTER_AREA)
                 for t in (photo, masked, result.image)]
        rows.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], axis=1))
    # two faces side by side per row of the figure
    pairs = [np.concatenate(rows[i:i + 2], axis=1) if i + 1 < len(rows) else rows[i] for i in range(0, len(rows), 2)]
    width = max(p.shape[1] for p in pairs)
    figure = np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in pairs])
    Image.fromarray(figure).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} KB)")


if __name__ == "__main__":
    main()
