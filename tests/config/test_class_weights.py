"""--class-weights: one spelling, every bad value one error, and `auto` as scikit-learn's
"balanced"."""

import numpy as np
import pytest

from quicknets.base.errors import QuicknetsError
from quicknets.config.class_weights import normalize, resolve
from quicknets.config.configs import RunConfig, TrainConfig, make, to_toml

CLASSES = ["T-shirt/top", "Trouser", "Ankle boot"]


@pytest.mark.parametrize(
    "value, written",
    [
        ("none", "none"),
        ("", "none"),
        ("AUTO", "auto"),
        (" Trouser = 2 , Ankle boot=0.5", "Trouser=2,Ankle boot=0.5"),
        ({"Trouser": 2, "T-shirt/top": 1e-7}, "Trouser=2,T-shirt/top=1e-07"),
        ("T-shirt/top=0.1", "T-shirt/top=0.1"),
    ],
)
def test_one_spelling(value, written):
    assert normalize(value) == written
    assert make(TrainConfig, {"class_weights": value}).class_weights == written
    assert normalize(written) == written  # written back, read back the same


@pytest.mark.parametrize(
    "value, message",
    [
        ("Trouser", "must be none, auto, or NAME=WEIGHT"),
        ("auto,Trouser=2", "must be none, auto, or NAME=WEIGHT"),
        ("=2", r"got \(no name\)='2'"),
        ("Trouser=heavy", "got Trouser='heavy'"),
        ("Trouser=0", "the weight of Trouser must be a positive number, got '0'"),
        ("Trouser=-1", "must be a positive number"),
        ("Trouser=nan", "must be a positive number"),
        ("Trouser=inf", "must be a positive number"),
        ("Trouser=1,Trouser=2", "names Trouser twice"),
        ({"Trouser": True}, "got Trouser=True"),
        (3, "got 3"),
    ],
)
def test_bad_values_are_one_error(value, message):
    with pytest.raises(QuicknetsError, match=message):
        make(TrainConfig, {"class_weights": value})


def test_auto_is_sklearns_balanced():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.repeat([0, 1, 2], [300, 20, 55])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y)
    assert resolve("auto", CLASSES, np.bincount(y).tolist()) == pytest.approx(
        expected.tolist(), rel=1e-15
    )
    # a class without training images weighs 1 (no image uses it); the others as sklearn's
    # over the classes present
    got = resolve("auto", CLASSES + ["Bag"], [*np.bincount(y).tolist(), 0])
    assert got[:3] == pytest.approx(expected.tolist(), rel=1e-15) and got[3] == 1.0


def test_names_are_the_datas_classes():
    assert resolve("none", CLASSES, [1, 1, 1]) is None
    assert resolve("Ankle boot=3,trouser=0.5", CLASSES, [1, 1, 1]) == [1.0, 0.5, 3.0]
    for value, message in (
        (
            "Sandal=2",
            "names 'Sandal', which is not a class of the data; the classes are: "
            "T-shirt/top, Trouser, Ankle boot",
        ),
        ("Trouser=2,TROUSER=3", "names class Trouser twice"),
    ):
        with pytest.raises(QuicknetsError, match=message):
            resolve(value, CLASSES, [1, 1, 1])


def test_a_case_insensitive_name_must_be_one_class():
    assert resolve("a=2", ["A", "B"], [1, 1]) == [2.0, 1.0]
    assert resolve("coat=2", ["Coat", "coat"], [1, 1]) == [1.0, 2.0]  # the exact one first
    with pytest.raises(QuicknetsError, match="'COAT', which is not a class"):
        resolve("COAT=2", ["Coat", "coat"], [1, 1])  # two case-insensitive matches


def test_the_setting_travels_through_toml_and_records():
    config = RunConfig.build(class_weights={"Trouser": 2})
    assert config.train.class_weights == "Trouser=2"
    assert 'class_weights = "Trouser=2"' in to_toml(config)
    assert RunConfig.from_dict(config.to_dict()) == config
    old = config.to_dict()
    del old["train"]["class_weights"]  # a record from before the setting: none
    assert RunConfig.from_dict(old).train.class_weights == "none"


def test_a_config_file_takes_a_string_or_a_table(tmp_path):
    from quicknets.config.configs import read_toml

    for text in (
        'class_weights = {Trouser = 2, "Ankle boot" = 0.5}\n',
        '[train]\nclass_weights = "Trouser=2,Ankle boot=0.5"\n',
    ):
        (tmp_path / "run.toml").write_text(text)
        config = RunConfig.build(**read_toml(tmp_path / "run.toml"))
        assert config.train.class_weights == "Trouser=2,Ankle boot=0.5"
