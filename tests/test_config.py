"""Typed configs: conversion from strings, bounds, choices, unknown keys, and the flags."""
import argparse

import pytest

from quicknets.config import DataConfig, ModelConfig, TrainConfig, add_flags, from_args, make
from quicknets.errors import QuicknetsError


def test_strings_convert_to_field_types():
    cfg = make(TrainConfig, {"lr": "0.01", "epochs": "3", "optimizer": "sgd"})
    assert cfg.lr == 0.01 and cfg.epochs == 3 and cfg.optimizer == "sgd"
    assert make(DataConfig, {"verify": "false"}).verify is False


@pytest.mark.parametrize("values, message", [
    ({"lr": "fast"}, "--lr must be float"),
    ({"lr": "nan"}, "--lr must be float"),
    ({"epochs": 2.5}, "--epochs must be int"),
    ({"epochs": True}, "--epochs must be int"),
    ({"batch_size": 0}, "--batch-size must be at least 1"),
    ({"momentum": 1.5}, "--momentum must be at most"),
    ({"optimizer": "lbfgs"}, "--optimizer must be one of"),
    ({"learning_rate": 1}, "unknown TrainConfig setting"),
])
def test_bad_values(values, message):
    with pytest.raises(QuicknetsError, match=message):
        make(TrainConfig, values)


def test_flags_map_one_to_one_to_fields():
    parser = argparse.ArgumentParser()
    for cls in (DataConfig, ModelConfig, TrainConfig):
        add_flags(parser, cls)
    args = parser.parse_args(["--layers", "784-10", "--batch-size", "32", "--no-verify",
                              "--batchnorm"])
    assert from_args(ModelConfig, args) == ModelConfig(model="784-10", batchnorm=True)
    assert from_args(TrainConfig, args) == TrainConfig(batch_size=32)
    assert from_args(DataConfig, args) == DataConfig(verify=False)
