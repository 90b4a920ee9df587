"""unmask.params.masks: the masks group's schema (defaults in conf/base/parameters_masks.yml only)."""

from __future__ import annotations

import pytest

from tests.conftest import base_params
from unmask.imaging.mask_renderer import MASK_STYLES
from unmask.params import validated
from unmask.params.masks import MasksParams


def test_the_base_configuration_is_valid_and_the_schema_holds_no_defaults():
    params = validated(MasksParams, "masks", base_params("masks"))
    assert params.styles == list(MASK_STYLES)
    assert all(field.is_required() for field in MasksParams.model_fields.values())
    with pytest.raises(ValueError, match="masks.chunk_size is missing"):
        validated(MasksParams, "masks", {k: v for k, v in base_params("masks").items() if k != "chunk_size"})


def test_one_style_may_be_given_without_a_list():
    assert validated(MasksParams, "masks", base_params("masks", styles="n95")).styles == ["n95"]


@pytest.mark.parametrize(("override", "message"), [
    ({"workers": -1}, "masks.workers=-1"), ({"workers": True}, "masks.workers"),
    ({"parallel_from": 0}, "masks.parallel_from=0"),
])
def test_pool_settings_are_checked(override, message):
    with pytest.raises(ValueError, match=message):
        validated(MasksParams, "masks", base_params("masks", **override))
    assert validated(MasksParams, "masks", base_params("masks", workers=0)).workers == 0  # 0: one per core
