"""Safe model persistence: safetensors weights plus a JSON sidecar that rebuilds the network.

``save_model(model, "model.safetensors")`` writes ``model.safetensors`` (state dict) and
``model.json`` ({"format_version", "config", "metadata"}); ``load_model`` rebuilds the model
with ``build_model(**config)``. No pickle is involved in loading weights. Every file is written
atomically (temporary file in the same folder, then ``os.replace``), so an interrupted save never
leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from unmask.errors import MissingInputError

from .networks import build_model

__all__ = [
    "FORMAT_VERSION",
    "load_model",
    "load_model_metadata",
    "load_training_state",
    "metadata_path",
    "save_model",
    "save_training_state",
]

FORMAT_VERSION = 1
_TRAIN_HINT = "Train a model first with `kedro run` (or only training: `kedro run --pipelines=train`)."

PathLike = str | os.PathLike[str]
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # reading the umask means setting it; done once, at import


def metadata_path(path: PathLike) -> Path:
    """Path of the JSON sidecar: ``<path minus suffix>.json``."""
    return Path(path).with_suffix(".json")


def _fsync(path: str | Path, directory: bool = False) -> None:
    """Flush ``path`` (a file, or a folder's entries) to the disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then move it into place.

    The temporary file is synced before the rename and the folder after it, so that ``path`` is
    the old file or the whole new one even after a kill or a crash; the next ``kedro run``
    removes the temporary file of a killed writer (``unmask.run_guard``; its name ends in
    ``.<pid>.<hex>.tmp``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        # Writers (safetensors, mkstemp) may create owner-only files; a model is meant to be shared.
        os.chmod(tmp, 0o666 & ~_UMASK)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        _fsync(path.parent, directory=True)
    except OSError:  # some file systems cannot sync a folder; the rename itself is still atomic
        pass


def _unwrap(model: nn.Module) -> nn.Module:
    """Strip torch.compile / DataParallel wrappers so state-dict keys match build_model."""
    # Look in _modules directly: OptimizedModule forwards attribute access to the inner model.
    while True:
        if "_orig_mod" in model._modules:
            model = model._modules["_orig_mod"]
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model


def save_model(model: nn.Module, path: PathLike, metadata: dict[str, Any] | None = None,
               dtype: torch.dtype | None = None) -> None:
    """Write the weights to ``path`` (safetensors, CPU, contiguous) and config + metadata JSON.

    The metadata is the model's own ``metadata`` dict (set by training, e.g. ``crop_size``), updated
    with ``metadata``; :func:`load_model` gives it back as the loaded model's ``metadata``.
    ``dtype`` (e.g. ``torch.float16``) stores the floating-point tensors in that precision (half
    the file); :func:`load_model` casts them back into the float32 network.
    """
    path = Path(path)
    model = _unwrap(model)
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError("model has no `config` dict; build it with unmask.models.build_model")
    own = getattr(model, "metadata", None)
    merged = {**(own if isinstance(own, dict) else {}), **(metadata or {})}
    # Serialise first so unserialisable metadata fails before anything is written.
    doc = {"format_version": FORMAT_VERSION, "config": config, "metadata": merged}
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    # channels_last weights are not contiguous; safetensors needs plain row-major CPU tensors.
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    header = {"format": "pt", "unmask_config": json.dumps(config, sort_keys=True)}
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))
    _atomic_write(metadata_path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def load_model_metadata(path: PathLike) -> dict[str, Any]:
    """Return the JSON sidecar of a saved model: {"format_version", "config", "metadata"}."""
    meta = metadata_path(path)
    if not meta.is_file():
        raise MissingInputError(f"model metadata {meta} not found. {_TRAIN_HINT}")
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"model metadata {meta} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise ValueError(f"model metadata {meta} has no 'config' object")
    return doc


def load_model(path: PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model from its JSON config, load the weights strictly, return it in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"model weights {path} not found. {_TRAIN_HINT}")
    doc = load_model_metadata(path)
    try:
        model = build_model(**doc["config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid model config in {metadata_path(path)}: {exc}") from exc
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error type for corrupt files
        raise ValueError(f"cannot read model weights {path}: {exc}") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"weights {path} do not match the config in {metadata_path(path)} "
            f"({doc['config']}): {exc}"
        ) from exc
    model.metadata = dict(doc.get("metadata") or {})
    return model.to(map_location).eval()


def save_training_state(path: PathLike, state: dict[str, Any]) -> None:
    """Atomically ``torch.save`` a resumable training state (optimizer, epoch, RNG, ...)."""
    path = Path(path)
    _atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_training_state(path: PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a training state saved by :func:`save_training_state` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training state {path} not found")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"training state {path} is not a dict")
    return state
