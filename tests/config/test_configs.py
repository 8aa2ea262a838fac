"""Typed configs: conversion from strings, bounds, choices, unknown keys, and the flags."""

import argparse

import pytest

from quicknets.base.errors import QuicknetsError
from quicknets.config.configs import (
    DataConfig,
    NetworkConfig,
    RunConfig,
    TrainConfig,
    add_flags,
    check,
    given_flags,
    make,
    read_toml,
    upgrade,
)


def test_strings_convert_to_field_types():
    cfg = make(TrainConfig, {"lr": "0.01", "epochs": "3", "optimizer": "sgd"})
    assert cfg.lr == 0.01 and cfg.epochs == 3 and cfg.optimizer == "sgd"
    assert make(DataConfig, {"verify": "false"}).verify is False


@pytest.mark.parametrize(
    "values, message",
    [
        ({"lr": "fast"}, "--lr must be float"),
        ({"lr": "nan"}, "--lr must be float"),
        ({"epochs": 2.5}, "--epochs must be int"),
        ({"epochs": True}, "--epochs must be int"),
        ({"batch_size": 0}, "--batch-size must be at least 1"),
        ({"momentum": 1.5}, "--momentum must be at most"),
        ({"optimizer": "lbfgs"}, "--optimizer must be one of"),
        ({"learning_rate": 1}, "unknown TrainConfig setting"),
    ],
)
def test_bad_values(values, message):
    with pytest.raises(QuicknetsError, match=message):
        make(TrainConfig, values)


def test_flags_map_one_to_one_to_fields():
    parser = argparse.ArgumentParser()
    for cls in (DataConfig, NetworkConfig, TrainConfig):
        add_flags(parser, cls)
    for flag in ("--network", "--layers", "--model"):  # --layers, --model: earlier names
        args = parser.parse_args(
            [flag, "784-10", "--batch-size", "32", "--no-verify", "--batchnorm"]
        )
        config = RunConfig.build(**given_flags(args))
        assert config.network == NetworkConfig(network="784-10", batchnorm=True)
        assert config.train == TrainConfig(batch_size=32)
        assert config.data == DataConfig(verify=False)


def test_seed_beyond_64_bits_is_refused():
    assert make(TrainConfig, {"seed": 2**63 - 1}).seed == 2**63 - 1
    with pytest.raises(QuicknetsError, match="--seed must be at most"):
        make(TrainConfig, {"seed": str(2**64)})


def test_build_from_keywords_and_presets():
    config = RunConfig.build(layers="784-10", lr="0.01", epochs=3)
    assert config.network.network == "784-10" and config.train.lr == 0.01
    fast = RunConfig.build(preset="fast", device_type="cpu", epochs=2)
    assert fast.preset == "fast" and fast.train.epochs == 2 and fast.network.batchnorm
    assert RunConfig.build(preset="cnn", device_type="cpu").preset == "accurate"  # old name
    with pytest.raises(QuicknetsError, match="unknown setting 'learning_rate'"):
        RunConfig.build(learning_rate=0.1)
    with pytest.raises(QuicknetsError, match="unknown preset 'slow'"):
        RunConfig.build(preset="slow", device_type="cpu")


def test_round_trip_and_format_1_records():
    config = RunConfig.build(network="conv8-fc16", dropout=0.1, seed=3, mean=0.2)
    assert RunConfig.from_dict(config.to_dict()) == config
    old = {
        "data": {"dataset": "mnist", "mean": 0.2},
        "model": {"model": "784-32-10", "spec": "784-32-10", "dropout": 0.1},
        "train": {"lr": 0.01, "seed": 4},
    }
    assert upgrade(old)["network"] == {"network": "784-32-10", "dropout": 0.1}
    again = RunConfig.from_dict(old)
    assert again.network.network == "784-32-10" and again.train.seed == 4
    assert again.flat()["network"] == "784-32-10" and "model" not in again.flat()
    with pytest.raises(QuicknetsError, match="not a quicknets run config"):
        RunConfig.from_dict([1, 2])


def test_replace_checks_values():
    config = RunConfig()
    assert config.replace(threads=1, data_dir="/x").train.threads == 1
    with pytest.raises(QuicknetsError, match="--epochs must be at least 1"):
        config.replace(epochs=0)


def test_toml_file(tmp_path):
    (tmp_path / "run.toml").write_text('preset = "fast"\nepochs = 3\n[network]\ndropout = 0.1\n')
    assert read_toml(tmp_path / "run.toml") == {"preset": "fast", "epochs": 3, "dropout": 0.1}
    (tmp_path / "bad.toml").write_text("epoch = 3\n")
    with pytest.raises(QuicknetsError, match="unknown setting 'epoch'"):
        read_toml(tmp_path / "bad.toml")
    (tmp_path / "latin1.toml").write_bytes("# café\nepochs = 3\n".encode("latin-1"))
    with pytest.raises(QuicknetsError, match="latin1.toml is not valid TOML: not UTF-8 text"):
        read_toml(tmp_path / "latin1.toml")  # was a UnicodeDecodeError traceback


def test_data_settings_for_your_own_data(tmp_path):
    data = RunConfig.build(
        dataset="pets/", mean="auto", std="0.25,0.25,0.3", image_size="32", channels="3", test="0.1"
    ).data
    assert (data.dataset, data.mean, data.std, data.image_size, data.channels, data.test) == (
        "pets/",
        "auto",
        [0.25, 0.25, 0.3],
        32,
        3,
        "0.1",
    )
    assert RunConfig.build(mean="0.2").data.mean == 0.2  # one number stays a float, as recorded
    assert RunConfig.from_dict(RunConfig.build(mean=[0.1, 0.2, 0.3]).to_dict()).data.mean == [
        0.1,
        0.2,
        0.3,
    ]
    from quicknets.config.configs import to_toml

    config = RunConfig.build(dataset="pets/", mean=[0.1, 0.2, 0.3], std="auto", channels=3)
    (tmp_path / "run.toml").write_text(to_toml(config))
    assert RunConfig.build(**read_toml(tmp_path / "run.toml")) == config
    for values, message in (
        (
            {"mean": "middle"},
            "--mean must be auto, a number or one number "
            "per channel (0.49,0.48,0.45), got 'middle'",
        ),
        ({"mean": "0.1,0.2"}, "--mean must be auto, one number or 3"),
        ({"std": "0"}, "--std must be at least 1e-06"),
        ({"channels": "2"}, "--channels must be one of 0, 1, 3"),
    ):
        with pytest.raises(QuicknetsError) as e:
            make(DataConfig, values)
        assert str(e.value).startswith(message)


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--batchnorm"], True),
        (["--batchnorm", "true"], True),
        (["--batchnorm", "false"], False),
        (["--no-batchnorm"], False),
        (["--batchnorm", "--epochs", "2"], True),
        ([], None),
    ],
)
def test_booleans_are_spelled_the_same_everywhere(flags, expected):
    parser = argparse.ArgumentParser()
    for cls in (DataConfig, NetworkConfig, TrainConfig):
        add_flags(parser, cls)
    given = given_flags(parser.parse_args(flags))
    assert ("batchnorm" in given) == (expected is not None)  # not given: the default's
    assert RunConfig.build(**given).network.batchnorm is bool(expected)
    with pytest.raises(QuicknetsError, match="--batchnorm must be bool, got 'maybe'"):
        RunConfig.build(**given_flags(parser.parse_args(["--batchnorm", "maybe"])))


def test_lr_auto_and_the_training_checks():
    assert make(TrainConfig, {"lr": "auto"}).lr == "auto"
    assert make(TrainConfig, {"lr": "AUTO"}).lr == "auto"
    with pytest.raises(QuicknetsError, match="--lr must be float, got 'automatic'"):
        make(TrainConfig, {"lr": "automatic"})
    with pytest.raises(QuicknetsError, match="--epochs must be int"):
        make(TrainConfig, {"epochs": "auto"})  # only fields that say so take auto
    with pytest.raises(QuicknetsError, match="--bf16 and --fp16 exclude each other"):
        RunConfig.build(bf16=True, fp16="true")
    # --fp16 given: a preset's bf16 gives way; both given explicitly is still an error
    assert not RunConfig.build(preset="fast", device_type="cpu", fp16=True).train.bf16
    with pytest.raises(
        QuicknetsError,
        match="--patience 3 .* watches val_loss on a validation set: add --val-split",
    ):
        RunConfig.build(patience=3)
    assert RunConfig.build(patience=3, val_split=0.1).train.patience == 3


def test_monitor_choices_are_the_validation_metrics():
    from dataclasses import fields

    from quicknets.evaluation.metric_names import METRICS

    choices = {f.name: f for f in fields(TrainConfig)}["monitor"].metadata["choices"]
    assert sorted(choices) == sorted(m for m in METRICS if m.startswith("val_"))


def test_to_toml_reads_back_as_the_same_config(tmp_path):
    from quicknets.config.configs import to_toml

    config = RunConfig.build(
        preset="fast",
        device_type="cpu",
        network="784-64-10",
        lr=1e-05,
        data_dir='a "quoted" \\ dir',
        val_split=0.1,
        patience=2,
        seed=2**40,
    )
    (tmp_path / "run.toml").write_text(to_toml(config))
    settings = read_toml(tmp_path / "run.toml")
    assert RunConfig.build(preset=settings.pop("preset"), device_type="cpu", **settings) == config
    assert "lr = 1e-05" in to_toml(config) and "batchnorm = true" in to_toml(config)


def test_print_config_then_config_is_the_same_run(tiny_dir, tmp_path, capsys):
    """`train --print-config FLAGS > run.toml`, then `train --config run.toml`: the same config,
    history and test results as `train FLAGS`."""
    import json

    from quicknets.cli import main

    flags = [
        "--dataset",
        "mnist",
        "--data-dir",
        str(tiny_dir),
        "--no-verify",
        "--layers",
        "784-32-10",
        "--dropout",
        "0.1",
        "--batchnorm",
        "false",
        "--optimizer",
        "nadam",
        "--lr",
        "0.002",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--val-split",
        "0.2",
        "--patience",
        "1",
        "--seed",
        "4",
        "--threads",
        "1",
    ]
    assert main(["train", "--print-config", *flags]) == 0
    toml = capsys.readouterr().out
    assert toml.startswith("# quicknets train --config FILE") and "[train]" in toml
    assert 'device = "cpu"' in toml and "threads = 1" in toml  # resolved, as recorded
    (tmp_path / "run.toml").write_text(toml)
    records = []
    for args, runs in ((["--config", str(tmp_path / "run.toml")], "a"), (flags, "b")):
        assert main(["train", *args, "--runs-dir", str(tmp_path / runs), "--quiet"]) == 0
        (folder,) = [p for p in (tmp_path / runs).iterdir() if p.is_dir()]
        history = json.loads((folder / "history.json").read_text())
        records.append(
            (
                json.loads((folder / "config.json").read_text()),
                [{k: v for k, v in row.items() if k != "seconds"} for row in history],
                json.loads((folder / "results.json").read_text()),
            )
        )
    assert records[0] == records[1]
    assert records[0][0]["train"]["optimizer"] == "nadam" and len(records[0][1]) == 2


def test_momentum_is_the_chosen_optimizers_own():
    """RMSprop took SGD's 0.9 and trained to chance level: unset, each optimizer has its own
    (MOMENTUM), written into the config as the number it uses, and one without momentum
    refuses it."""
    from quicknets.config.configs import MOMENTUM

    assert MOMENTUM == {"sgd": 0.9, "rmsprop": 0.0}
    for optimizer, used in (("sgd", 0.9), ("rmsprop", 0.0), ("adam", None), ("adagrad", None)):
        config = RunConfig.build(optimizer=optimizer)
        assert config.train.momentum == used and config.flat()["momentum"] == used
        assert TrainConfig(optimizer=optimizer).momentum == used
    assert RunConfig.build(optimizer="rmsprop", momentum=0.5).train.momentum == 0.5
    assert RunConfig.build(optimizer="sgd", momentum="0").train.momentum == 0.0
    sgd = RunConfig.build(optimizer="sgd", momentum=0.8)
    assert sgd.replace(optimizer="rmsprop").train.momentum == 0.0  # not SGD's 0.8
    assert sgd.replace(optimizer="adam").train.momentum is None
    assert sgd.replace(lr=0.1).train.momentum == 0.8
    assert sgd.replace(optimizer="sgd").train.momentum == 0.8  # the same optimizer: kept
    assert sgd.train.replace(optimizer="rmsprop").momentum == 0.0  # as train(cfg, optimizer=)
    best = RunConfig.build(preset="best", device_type="cpu")  # the preset's SGD 0.9
    assert best.train.momentum == 0.9
    assert (
        RunConfig.build(preset="best", device_type="cpu", optimizer="adam").train.momentum is None
    )  # the preset's momentum left with its optimizer
    for optimizer in ("adam", "adamw", "nadam", "radam", "adagrad"):
        for build in (
            lambda optimizer=optimizer: RunConfig.build(optimizer=optimizer, momentum=0.9),
            lambda optimizer=optimizer: check(TrainConfig(optimizer=optimizer, momentum=0.9)),
            lambda optimizer=optimizer: sgd.replace(optimizer=optimizer, momentum=0.8),
        ):
            with pytest.raises(
                QuicknetsError,
                match=f"--momentum 0.[89] is for sgd and rmsprop; {optimizer} has no momentum",
            ):
                build()


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"warmup": 0.3}, "--warmup 0.3 is for --schedule onecycle; --schedule constant has none"),
        (
            {"schedule": "linear", "warmup": "0.1"},
            "--warmup 0.1 is for --schedule onecycle; --schedule linear has none",
        ),
        ({"monitor": "val_accuracy"}, "--monitor val_accuracy is for early stopping, which is off"),
        ({"min_delta": 0.01, "val_split": 0.1}, "--min-delta 0.01 is for early stopping"),
        ({"min_delta": 0, "patience": 0}, "--min-delta 0.0 is for early stopping"),
        ({"optimizer": "nadam", "momentum": 0.5}, "--momentum 0.5 is for sgd and rmsprop"),
    ],
)
def test_a_setting_the_recipe_does_not_use_is_refused(tmp_path, capsys, settings, message):
    """Each setting that one recipe alone uses (RECIPE_SETTINGS), given to another, is one error
    line, from keywords, a TOML file, flags and train(); nothing is made."""
    from quicknets.cli import main
    from quicknets.config.configs import to_toml
    from quicknets.training.loop import train

    with pytest.raises(QuicknetsError, match=message):
        RunConfig.build(**settings)
    toml = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in settings.items())
    (tmp_path / "bad.toml").write_text(toml + "\n")
    flags = [x for k, v in settings.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    for args in (flags, ["--config", str(tmp_path / "bad.toml")], [*flags, "--print-config"]):
        assert main(["train", *args, "--runs-dir", str(tmp_path / "runs")]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()  # refused before anything was made
    train_only = {k: v for k, v in settings.items() if k != "val_split"}
    with pytest.raises(QuicknetsError, match=message):
        train(None, None, **train_only)  # before the model and data are looked at
    assert "warmup" not in to_toml(RunConfig.build())  # not used: not written (TOML has no null)


def test_settings_are_filled_in_where_the_recipe_uses_them():
    """Not given, a recipe's own setting takes its default where used and stays None where
    not; a change of recipe gives the old value way only where its default changes."""
    onecycle = RunConfig.build(schedule="onecycle")
    assert onecycle.train.warmup == 0.2 and RunConfig.build().train.warmup is None
    assert onecycle.replace(schedule="constant").train.warmup is None
    assert RunConfig.build(schedule="onecycle", warmup=0.3).replace(lr=0.1).train.warmup == 0.3
    assert RunConfig.build(preset="fast", schedule="constant").train.warmup is None
    early = RunConfig.build(patience=3, val_split=0.1, monitor="val_accuracy", min_delta=0.01)
    assert (early.train.monitor, early.train.min_delta) == ("val_accuracy", 0.01)
    assert early.replace(patience="5").train.monitor == "val_accuracy"  # still early stopping
    off = early.replace(patience=0).train
    assert (off.monitor, off.min_delta) == (None, None)
    default = RunConfig.build(patience=2, val_split=0.1).train
    assert (default.monitor, default.min_delta) == ("val_loss", 0.0)


def test_records_made_before_keep_their_momentum():
    """Format 2 saved momentum 0.9 with every optimizer: sgd and rmsprop trained with it and
    keep it; the others never used it, and it is dropped rather than refused. Format 3 saved
    null for sgd's and rmsprop's own (now their number), and warmup, min_delta and monitor
    with every recipe (dropped where unused)."""
    for optimizer, kept in (("sgd", 0.9), ("rmsprop", 0.9), ("adam", None), ("nadam", None)):
        old = {
            "format": 2,
            "data": {},
            "network": {},
            "train": {"optimizer": optimizer, "momentum": 0.9, "lr": 0.003},
        }
        config = RunConfig.from_dict(old)
        assert config.train.momentum == kept
    v1 = {"data": {}, "model": {"model": "784-10"}, "train": {"optimizer": "adam", "momentum": 0.9}}
    assert RunConfig.from_dict(v1).train.momentum is None
    three = {"warmup": 0.2, "min_delta": 0.0, "monitor": "val_loss", "schedule": "constant"}
    for optimizer, used in (("sgd", 0.9), ("rmsprop", 0.0), ("adam", None)):
        old = {"format": 3, "train": {"optimizer": optimizer, "momentum": None, **three}}
        train = RunConfig.from_dict(old).train
        assert (train.momentum, train.warmup, train.monitor, train.min_delta) == (
            used,
            None,
            None,
            None,
        )
    cycle = {**three, "schedule": "onecycle", "warmup": 0.3, "patience": 2, "min_delta": 0.1}
    old = {"format": 3, "data": {"val_split": 0.1}, "train": cycle}
    train = RunConfig.from_dict(old).train
    assert (train.warmup, train.monitor, train.min_delta) == (0.3, "val_loss", 0.1)
    new = RunConfig.build(optimizer="adam").to_dict()
    assert new["format"] == 4 and new["train"]["momentum"] is None
    assert RunConfig.from_dict(new) == RunConfig.build(optimizer="adam")
    with pytest.raises(QuicknetsError, match="adam has no momentum"):  # format 3 on: as written
        RunConfig.from_dict({**new, "train": {**new["train"], "momentum": 0.9}})
    with pytest.raises(QuicknetsError, match="--warmup 0.2 is for --schedule onecycle"):
        RunConfig.from_dict({**new, "train": {**new["train"], "warmup": 0.2}})


def test_momentum_in_a_toml_file_and_on_the_command_line(tmp_path, capsys):
    from quicknets.cli import main
    from quicknets.config.configs import to_toml

    for optimizer in ("rmsprop", "sgd", "adam"):
        config = RunConfig.build(optimizer=optimizer)
        assert ("momentum" in to_toml(config)) == (optimizer != "adam")  # the number it uses
        (tmp_path / "r.toml").write_text(to_toml(config))
        settings = read_toml(tmp_path / "r.toml")
        assert RunConfig.build(preset=settings.pop("preset", None), **settings) == config
    (tmp_path / "bad.toml").write_text('[train]\noptimizer = "adam"\nmomentum = 0.9\n')
    for args in (
        ["--optimizer", "adam", "--momentum", "0.9"],
        ["--config", str(tmp_path / "bad.toml")],
        ["--optimizer", "adagrad", "--momentum", "0.5", "--print-config"],
    ):
        assert main(["train", *args, "--runs-dir", str(tmp_path / "runs")]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --momentum 0.") and "has no momentum setting" in err
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # refused before anything was made
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "0.9 for sgd as in the notebook, 0 for rmsprop" in " ".join(
        capsys.readouterr().out.split()
    )


@pytest.mark.parametrize(
    "config, message",
    [
        ({"data": {}, "network": {}, "train": {}, "lr": 0.01}, "unknown config key(s) lr: "),
        ({"data": {}, "network": "784-128-10", "train": {}}, "config section(s) network must"),
        ({"data": [], "network": {}, "train": {}}, "config section(s) data must be tables"),
    ],
)
def test_a_hand_edited_config_with_a_stray_key_or_section_is_refused(config, message):
    """A setting written beside the sections (it would be ignored) or a section that is not a
    table (its letters would be read as settings) is one clear error, not a silent default."""
    with pytest.raises(QuicknetsError) as e:
        RunConfig.from_dict(config)
    assert str(e.value).startswith(message)
