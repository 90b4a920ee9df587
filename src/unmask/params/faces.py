"""Schema of ``params:faces`` (defaults: ``conf/base/parameters_faces.yml``): the aligned face crops."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from unmask.imaging.alignment import BORDER_MODES
from unmask.params import ParamsModel

__all__ = ["BorderMode", "FacesParams"]

BorderMode = Literal[tuple(BORDER_MODES)]  # how the warp fills pixels outside the image: reflect, replicate, constant


class FacesParams(ParamsModel):
    """The ``faces`` group: crop side and border fill."""

    size: int = Field(ge=16)
    border: BorderMode

    @field_validator("size")
    @classmethod
    def _halves_four_times(cls, size: int) -> int:
        if size % 16:
            raise ValueError("must be divisible by 16 (the UNet halves the crop 4 times), e.g. 64 or 256")
        return size
