"""Preprocessing: the temperature it carries (calibration) is checked, saved and read back;
a preprocessing written before temperatures were has none (1.0)."""

import math

import pytest

from quicknets.base.errors import QuicknetsError
from quicknets.data.preprocessing import Preprocessing


def test_the_temperature_travels_in_to_dict_and_from_dict():
    pre = Preprocessing(classes=("a", "b"), dataset="mnist", layout="digits", temperature=1.25)
    values = pre.to_dict()
    assert values["temperature"] == 1.25
    assert Preprocessing.from_dict(values) == pre


def test_a_preprocessing_from_before_temperatures_has_none():
    old = Preprocessing(classes=("a", "b")).to_dict()
    del old["temperature"]  # as model.pt, exports and records before it hold it
    assert Preprocessing.from_dict(old).temperature == 1.0
    assert Preprocessing().temperature == 1.0


@pytest.mark.parametrize("bad", [0, -1.5, math.nan, math.inf, True, "1.2", None])
def test_a_temperature_is_a_positive_finite_number(bad):
    with pytest.raises(QuicknetsError, match="a temperature is a positive number"):
        Preprocessing(temperature=bad)


def test_a_whole_number_temperature_is_kept_as_a_float():
    assert type(Preprocessing(temperature=2).temperature) is float
