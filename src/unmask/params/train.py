"""Schema of ``params:train`` (defaults: ``conf/base/parameters_train.yml``): network, loop and the masks it sees.

Cross-field rules sit on the later of the two fields (pydantic validates fields in declaration order),
so the message names the key to change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from unmask.models.devices import PRECISION_CHOICES
from unmask.models.losses import LOSS_NAMES
from unmask.models.networks import MODEL_NAMES, build_model
from unmask.params import ParamsModel

__all__ = ["SCHEDULERS", "VARIETY_KEYS", "TrainParams"]

SCHEDULERS = ("none", "cosine", "plateau")
#: shares of the fresh-mask draws varied beyond the renderer (:class:`~unmask.models.data.FreshMasks`)
VARIETY_KEYS = ("clean_fraction", "material_fraction", "degrade_fraction", "cutout_fraction")

Positive = Annotated[int, Field(ge=1)]
Share = Annotated[float, Field(ge=0.0, le=1.0)]


class TrainParams(ParamsModel):
    """The ``train`` group, as the training loop (:func:`unmask.models.training.fit`) and the train node read it."""

    # the network
    model: Literal[MODEL_NAMES]
    filters: tuple[Positive, ...]
    composite: bool
    batch_norm: bool
    mask_loss_weight: float = Field(ge=0.0)
    # the loss and the optimiser
    loss: Literal[LOSS_NAMES]
    loss_weight: float = Field(ge=0.0)
    learning_rate: float = Field(gt=0.0)
    batch_size: int = Field(ge=1)
    epochs: int = Field(ge=1)
    early_stopping_patience: int = Field(ge=1)
    validate_every: int = Field(ge=1)
    scheduler: Literal[SCHEDULERS]
    min_learning_rate: float = Field(ge=0.0)
    plateau_factor: float = Field(gt=0.0, lt=1.0)
    plateau_patience: int = Field(ge=1)
    # where and how it runs
    device: str
    devices: int = Field(ge=1)
    precision: Literal[PRECISION_CHOICES]
    channels_last: Literal["auto", True, False]
    compile: bool
    num_workers: int = Field(ge=0)
    flip: bool
    seed: int = Field(ge=0)
    sample_count: int = Field(ge=0)
    # checkpoints and starting weights
    checkpoint_dir: str | None
    resume: bool
    init_weights: str | None
    # the masks it trains on
    fresh_masks: bool
    holdout_styles: list[str]
    clean_fraction: Share
    material_fraction: Share
    degrade_fraction: Share
    cutout_fraction: Share

    @field_validator("filters", mode="before")
    @classmethod
    def _list_is_a_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("filters")
    @classmethod
    def _filters_build_the_model(cls, value: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        if "model" in info.data:
            build_model(info.data["model"], value)  # raises with the network's own rule on channel counts
        return value

    @field_validator("mask_loss_weight")
    @classmethod
    def _mask_loss_needs_the_mask_head(cls, value: float, info: ValidationInfo) -> float:
        if value and not info.data.get("composite"):
            raise ValueError("a mask loss needs train.composite: true (the mask head it trains)")
        return value

    @field_validator("scheduler")
    @classmethod
    def _plateau_needs_every_epoch(cls, value: str, info: ValidationInfo) -> str:
        if value == "plateau" and info.data.get("validate_every", 1) > 1:
            raise ValueError("plateau steps on every epoch's validation loss; it needs train.validate_every: 1")
        return value

    @field_validator("resume")
    @classmethod
    def _resume_needs_a_checkpoint_dir(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not info.data.get("checkpoint_dir"):
            raise ValueError("train.checkpoint_dir is not set: there is nothing to resume from")
        return value

    @field_validator("init_weights")
    @classmethod
    def _init_weights_is_a_model(cls, value: str | None) -> str | None:
        if value and not Path(value).is_file():
            raise ValueError(f"no model at {value}; give the path of a trained model.safetensors (its .json "
                             "beside it), or null to start from random weights")
        return value

    @field_validator(*VARIETY_KEYS)
    @classmethod
    def _variety_needs_fresh_masks(cls, value: float, info: ValidationInfo) -> float:
        if value and not info.data.get("fresh_masks"):
            raise ValueError("needs train.fresh_masks: true (it varies the masks drawn each epoch)")
        return value
