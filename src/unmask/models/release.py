"""Shipping a trained model with the repository: half-precision weights, their JSON, and a check.

``python -m unmask.models.release data/06_models/model.safetensors models/unmask_ra_unet_64.safetensors``
writes the weights in float16 (half the size; the network still runs in float32 or bf16 after
loading), the JSON sidecar with the training metadata plus ``source`` (where the weights came
from) and ``sha256`` of the weights, and refuses a model that was not trained on real faces or
whose half-precision restorations differ from the original's by more than ``tolerance``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch

from unmask.models.checkpoint import load_model, metadata_path, save_model

__all__ = ["ship_model"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ship_model(checkpoint: Path, target: Path, tolerance: float = 2.0 / 255, seed: int = 0) -> dict:
    """Write ``checkpoint`` as float16 ``target`` (+ JSON); return the JSON's metadata.

    Checks on random faces-sized inputs that the float16 copy restores within ``tolerance`` (max
    absolute difference on [0, 1]) of the original, in float32 on the CPU.
    """
    model = load_model(checkpoint)
    trained_on = model.metadata.get("trained_on")
    if trained_on != "celeba":
        raise ValueError(f"{checkpoint} was trained on {trained_on or 'unrecorded data'!r}, not real CelebA faces: "
                         "only a model trained on real faces is shipped.")
    size = int(model.metadata.get("crop_size", 64))
    target.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, target, metadata={"source": str(checkpoint)}, dtype=torch.float16)
    shipped = load_model(target)
    x = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        gap = float((model(x) - shipped(x)).abs().max())
    if gap > tolerance:
        target.unlink()
        metadata_path(target).unlink()
        raise ValueError(f"the float16 copy differs from {checkpoint} by {gap:.4f} (> {tolerance:.4f}); not shipped.")
    doc = json.loads(metadata_path(target).read_text(encoding="utf-8"))
    doc["metadata"].update(sha256=_sha256(target), float16_max_difference=round(gap, 6))
    metadata_path(target).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return doc["metadata"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a trained model's .safetensors (its .json beside it)")
    parser.add_argument("target", type=Path,
                        help="where to write the float16 copy, e.g. models/unmask_ra_unet_64.safetensors")
    args = parser.parse_args(argv)
    metadata = ship_model(args.checkpoint, args.target)
    size_mb = args.target.stat().st_size / 1e6
    print(f"wrote {args.target} ({size_mb:.1f} MB, float16, max difference {metadata['float16_max_difference']:.4f}) "
          f"and {metadata_path(args.target)}")


if __name__ == "__main__":
    main()
