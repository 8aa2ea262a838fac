"""Optional loggers: TensorBoard for real, MLflow through a stand-in module, clear errors."""

import sys
import types

import pytest

from quicknets.base.errors import QuicknetsError
from quicknets.training.loggers import numbers, open_loggers, parse_log_to

ROW = {"epoch": 1, "epochs": 2, "train_loss": 0.5, "train_accuracy": 0.8, "seconds": 1.5}


def test_parse_log_to():
    assert parse_log_to("") == ()
    assert parse_log_to("tensorboard, mlflow") == ("tensorboard", "mlflow")
    with pytest.raises(QuicknetsError, match="--log-to must be among"):
        parse_log_to("wandb")
    assert numbers(ROW) == {"train_loss": 0.5, "train_accuracy": 0.8, "seconds": 1.5}


def test_tensorboard_gets_every_epoch(tmp_path):
    pytest.importorskip("tensorboard")  # an optional extra; the test extra installs it
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (logger,) = open_loggers("tensorboard", tmp_path, {"train": {"lr": 0.1}})
    logger.log(ROW, 1)
    logger.log({**ROW, "epoch": 2, "train_loss": 0.25}, 2)
    logger.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train_loss")] == [(1, 0.5), (2, 0.25)]


def test_mlflow_gets_params_and_metrics(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("mlflow")  # stands in for the real package (not installed here)
    for name in ("start_run", "log_params", "set_tag", "log_metrics", "end_run"):
        setattr(fake, name, lambda *a, _n=name, **k: calls.append((_n, a, k)))
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    (logger,) = open_loggers(["mlflow"], tmp_path / "run-1", {"train": {"lr": 0.1}})
    logger.log(ROW, 1)
    logger.close()
    assert [c[0] for c in calls] == ["start_run", "log_params", "set_tag", "log_metrics", "end_run"]
    assert calls[0][2] == {"run_name": "run-1"} and calls[1][1] == ({"train.lr": 0.1},)
    assert calls[3][1] == (numbers(ROW),) and calls[3][2] == {"step": 1}


def test_missing_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import fails
    with pytest.raises(QuicknetsError, match="needs the mlflow package"):
        open_loggers("mlflow", tmp_path, {})


def test_loggers_are_imported_only_when_asked():
    import subprocess

    code = (
        "import sys\nfrom quicknets.records import experiment\n"
        "from quicknets.training import loggers\n"
        "assert 'mlflow' not in sys.modules and 'tensorboard' not in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_train_log_to_tensorboard(tiny_dir, tmp_path):
    pytest.importorskip("tensorboard")
    from quicknets.cli import main

    runs = tmp_path / "runs"
    assert (
        main(
            [
                "train",
                "--dataset",
                "mnist",
                "--data-dir",
                str(tiny_dir),
                "--no-verify",
                "--epochs",
                "2",
                "--threads",
                "1",
                "--runs-dir",
                str(runs),
                "--quiet",
                "--log-to",
                "tensorboard",
            ]
        )
        == 0
    )
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    assert any((run / "tensorboard").iterdir())


@pytest.mark.parametrize("command", [["train"], ["sweep", "--lr", "0.1,0.2"]])
def test_a_missing_logger_package_makes_no_run_folder(
    command, tiny_dir, tmp_path, monkeypatch, capsys
):
    """`train --log-to mlflow` without mlflow left a stopped run record behind."""
    from quicknets.cli import main

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    runs = tmp_path / "runs"
    assert (
        main(
            [
                *command,
                "--dataset",
                "mnist",
                "--data-dir",
                str(tiny_dir),
                "--no-verify",
                "--epochs",
                "1",
                "--threads",
                "1",
                "--runs-dir",
                str(runs),
                "--log-to",
                "mlflow",
            ]
        )
        == 1
    )
    assert capsys.readouterr().err == (
        "error: --log-to mlflow needs the mlflow package: pip install 'quicknets[mlflow]'\n"
    )
    assert not runs.exists()
