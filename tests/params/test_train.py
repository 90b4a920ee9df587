"""unmask.params.train: the train group's schema (defaults in conf/base/parameters_train.yml only)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import base_params
from unmask.params import validated
from unmask.params.train import VARIETY_KEYS, TrainParams


def _train(**overrides) -> TrainParams:
    return validated(TrainParams, "train", base_params("train", **overrides))


def test_the_base_configuration_is_valid_and_the_schema_holds_no_defaults():
    params = _train()
    # the values that ran (the YAML's), not the old code defaults (1e-4, 40 epochs, no workers)
    assert (params.learning_rate, params.epochs, params.num_workers) == (1e-3, 20, 2)
    assert all(field.is_required() for field in TrainParams.model_fields.values())
    assert set(VARIETY_KEYS) <= set(TrainParams.model_fields)


def test_filters_become_a_tuple_and_numbers_may_be_written_as_integers():
    params = _train(filters=[4, 8, 16], learning_rate=1, loss_weight=2)
    assert params.filters == (4, 8, 16)
    assert isinstance(params.learning_rate, float) and params.learning_rate == 1.0


@pytest.mark.parametrize(("override", "message"), [
    ({"composite": False, "mask_loss_weight": 0.5}, "train.mask_loss_weight=0.5: Value error, a mask loss needs"),
    ({"validate_every": 3, "scheduler": "plateau"}, "train.scheduler='plateau': Value error, plateau steps"),
    ({"checkpoint_dir": "", "resume": True}, "train.resume=True: Value error, train.checkpoint_dir is not set"),
    ({"fresh_masks": False, "degrade_fraction": 0.1},
     "train.degrade_fraction=0.1: Value error, needs train.fresh_masks"),
    ({"fresh_masks": True, "cutout_fraction": -0.1}, "train.cutout_fraction=-0.1: Input should be greater than"),
    ({"channels_last": "yes"}, "train.channels_last='yes'"),
    ({"flip": 1}, "train.flip=1: Input should be a valid boolean"),
    ({"holdout_styles": "cloth"}, "train.holdout_styles='cloth': Input should be a valid list"),
])
def test_bad_values_name_the_key_the_value_and_the_rule(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        _train(**override)


def test_cross_field_rules_accept_what_they_allow():
    assert _train(composite=True, mask_loss_weight=0.5).mask_loss_weight == 0.5
    assert _train(validate_every=1, scheduler="plateau").scheduler == "plateau"
    assert _train(fresh_masks=True, degrade_fraction=0.1).degrade_fraction == 0.1
