"""Draw the README's sample grids of masked crops from the data a `kedro run` left in the catalog.

    .venv/bin/python benchmarks/bench_data.py --celeba ../shared/data/celeba_dev_9k_89x109.zip --keep /tmp/celeba256
    .venv/bin/python docs/make_mask_grids.py --root /tmp/celeba256

(or, without ``--root``, from the project's own data/ after a ``kedro run`` of the data stages)

writes three PNGs into docs/ (each well under 400 KB):

* ``masks_styles.png``: one face per style, rows clean crop | masked crop | mask map (what every
  sample keeps);
* ``masks_medical.png``: surgical, N95 and KN95 masks, one row per style;
* ``masks_fabric.png``: cloth masks (solid, heather, stripes, dots, checks) and bandanas.

Faces are picked at random with ``--seed`` among the images of each style; tiles are shrunk to
``--tile`` pixels with area interpolation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

LABEL_HEIGHT = 18
GAP = 2


def _catalog(root: Path):
    from kedro.config import OmegaConfigLoader
    from kedro.io import DataCatalog

    from unmask.settings import CONFIG_LOADER_ARGS

    config = OmegaConfigLoader(conf_source=str(ROOT / "conf"), **CONFIG_LOADER_ARGS)["catalog"]
    wanted = ("face_crops", "masked_faces", "mask_maps", "mask_metadata")
    entries = {}
    for name in wanted:
        entry = dict(config[name])
        for key in ("path", "filepath"):
            if key in entry and not Path(entry[key]).is_absolute():
                entry[key] = str(root / entry[key])
        entries[name] = entry
    return DataCatalog.from_config(entries)


def _label(width: int, text: str) -> np.ndarray:
    band = np.full((LABEL_HEIGHT, width, 3), 255, np.uint8)
    cv2.putText(band, text, (4, LABEL_HEIGHT - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (30, 30, 30), 1, cv2.LINE_AA)
    return band


def _tile(loader, tile: int) -> np.ndarray:
    pixels = loader.read_array()
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return cv2.resize(pixels, (tile, tile), interpolation=cv2.INTER_AREA)


def _grid(rows: list[tuple[str, list[tuple[str, np.ndarray]]]], tile: int) -> np.ndarray:
    """Rows of (row title, [(caption, tile)]) with a title band above each row and captions below tiles."""
    n_cols = max(len(cells) for _, cells in rows)
    width = n_cols * tile + (n_cols - 1) * GAP
    parts = []
    for title, cells in rows:
        parts.append(_label(width, title))
        line = np.full((tile + LABEL_HEIGHT, width, 3), 255, np.uint8)
        for k, (caption, image) in enumerate(cells):
            x = k * (tile + GAP)
            line[:tile, x : x + tile] = image
            line[tile:, x : x + tile] = _label(tile, caption)
        parts.append(line)
    return np.concatenate(parts, axis=0)


def _save(path: Path, grid: np.ndarray) -> None:
    cv2.imwrite(str(path), grid[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"{path}: {grid.shape[1]}x{grid.shape[0]}, {path.stat().st_size / 1024:.0f} KB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tile", type=int, default=112, help="tile side in pixels")
    ap.add_argument("--per-row", type=int, default=6)
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--root", type=Path, default=ROOT,
                    help="folder holding the data/ tree (default: the project; bench_data.py --keep DIR writes one)")
    args = ap.parse_args(argv)

    catalog = _catalog(args.root.resolve())
    crops, masked, maps = (catalog.load(name) for name in ("face_crops", "masked_faces", "mask_maps"))
    meta: pd.DataFrame = catalog.load("mask_metadata")
    rng = np.random.default_rng(args.seed)

    def pick(frame: pd.DataFrame, n: int) -> pd.DataFrame:
        return frame.iloc[np.sort(rng.choice(len(frame), size=min(n, len(frame)), replace=False))]

    def caption(row) -> str:
        return f"{row.image_id} {row.colour}"

    styles = ["surgical", "n95", "kn95", "cloth", "bandana"]
    one = [pick(meta[meta["style"] == s], 1).iloc[0] for s in styles]
    rows = [
        ("clean crop (ground truth)", [(r.image_id, _tile(crops[r.image_id], args.tile)) for r in one]),
        ("masked crop (model input)", [(r.style, _tile(masked[r.image_id], args.tile)) for r in one]),
        ("mask map (evaluation only)",
         [(f"coverage {r.coverage:.2f}", _tile(maps[r.image_id], args.tile)) for r in one]),
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    _save(args.out / "masks_styles.png", _grid(rows, args.tile))

    rows = []
    for style, title in (("surgical", "surgical: pleats, hems, ear loops"),
                         ("n95", "N95: dome, seam, head straps, valve"),
                         ("kn95", "KN95: centre fold, shaded half, ear loops")):
        chosen = pick(meta[meta["style"] == style], args.per_row)
        rows.append((title, [(caption(r), _tile(masked[r.image_id], args.tile)) for r in chosen.itertuples()]))
    _save(args.out / "masks_medical.png", _grid(rows, args.tile))

    cloth = meta[meta["style"] == "cloth"]
    patterns = ["solid", "heather", "stripes", "dots", "checks"]
    first = [pick(cloth[cloth["pattern"] == p], 1) for p in patterns]
    first = pd.concat([f for f in first if len(f)] + [pick(cloth, args.per_row)]).drop_duplicates("image_id")
    rows = [("cloth: printed patterns, centre seam, ear loops",
             [(f"{r.image_id} {r.pattern}", _tile(masked[r.image_id], args.tile))
              for r in first.head(args.per_row).itertuples()]),
            ("bandana: folded scarf with a print",
             [(caption(r), _tile(masked[r.image_id], args.tile))
              for r in pick(meta[meta["style"] == "bandana"], args.per_row).itertuples()])]
    _save(args.out / "masks_fabric.png", _grid(rows, args.tile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
