"""Presets: valid settings, each preset's code path on a tiny budget, and `--preset` in the CLI
(explicit flags win; the resolved config is saved). Their timing and accuracy are measured by
benchmarks/accuracy.py, not here. Also the ResNet builder the `best` preset uses."""
import json
import math
from pathlib import Path

import pytest
import torch

from quicknets.cli import main
from quicknets.config import ModelConfig, TrainConfig, make
from quicknets.errors import QuicknetsError
from quicknets.metrics import evaluate
from quicknets.models import network
from quicknets.recipes import flip_average
from quicknets.runs import load_model, load_run, save_run
from quicknets.presets import PRESETS, native_bf16, preset_settings
from quicknets.training import train


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_settings_are_valid_configs(name, device):
    settings = preset_settings(name, device)
    make(ModelConfig, settings["model"])
    make(TrainConfig, settings["train"])
    if device == "cuda":
        assert settings["train"]["batch_size"] >= PRESETS[name]["train"]["batch_size"]


def test_bf16_off_where_it_would_be_emulated():
    assert preset_settings("fast", "cpu")["train"]["bf16"] is True
    assert preset_settings("fast", "cpu", bf16=False)["train"]["bf16"] is False
    assert isinstance(native_bf16("cpu"), bool)


def test_preset_settings_are_fresh_copies():
    preset_settings("fast")["train"]["epochs"] = 999
    assert PRESETS["fast"]["train"]["epochs"] != 999


def test_unknown_preset_fails():
    with pytest.raises(QuicknetsError, match="unknown preset 'slow'"):
        preset_settings("slow")


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_trains_one_tiny_epoch(name, tiny):
    settings = preset_settings(name, "cpu")
    cfg = make(TrainConfig, {**settings["train"], "epochs": 1, "threads": 1, "device": "cpu"})
    torch.manual_seed(0)
    model = network(settings["model"]["model"],
                    batchnorm=settings["model"].get("batchnorm", False),
                    flip_tta=settings["model"].get("flip_tta", False))
    history = train(model, tiny, cfg, quiet=True)
    assert len(history) == 1 and math.isfinite(history[0]["train_loss"])
    assert 0.0 <= history[0]["train_acc"] <= 1.0
    results = evaluate(model, tiny)  # in eval mode, with flip averaging where the preset has it
    assert results["n"] == 100 and math.isfinite(results["loss"])


def test_flip_tta_averages_in_eval_mode_only():
    torch.manual_seed(0)
    model = network("conv4-fc8", batchnorm=True, flip_tta=True)
    assert model.config["flip_tta"] is True
    plain = torch.nn.Sequential(*[m for m in model
                                  if type(m).__name__ not in ("_FlipPair", "_MeanPair")])
    x = torch.randn(5, 1, 28, 28)
    model.train()
    assert torch.equal(model(x), plain.train()(x))  # training sees the images as they are
    model.eval()
    assert torch.allclose(model(x), flip_average(plain.eval(), x), atol=1e-6)
    assert model(x[:1]).shape == (1, 10)
    with pytest.raises(QuicknetsError, match="flip_tta needs a conv network"):
        network("784-10", flip_tta=True)


def test_flip_tta_survives_save_and_load(tiny, runs_dir):
    torch.manual_seed(0)
    model = network("conv4-fc8", flip_tta=True).eval()
    config = {"data": {}, "model": {"spec": "conv4-fc8"},
              "train": {"seed": 0, "optimizer": "adam", "lr": 0.003}}
    path = save_run(model, config, [], {}, None, runs_dir)
    loaded = load_model(load_run(path))
    x = tiny.normalize(tiny.test_images[:4])
    assert torch.allclose(loaded.eval()(x), model(x))


def test_resnet_shapes():
    model = network("res8-res16")
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert model(torch.zeros(2, 784)).shape == (2, 10)  # flat input, like the MLP's
    out = torch.zeros(1, 1, 28, 28)
    for layer in list(model)[:6]:  # reshape, conv, BatchNorm, ReLU, pool, residual pair
        out = layer(out)
    assert out.shape == (1, 8, 14, 14)
    assert network("resnet").config["spec"] == "resnet"
    with pytest.raises(QuicknetsError, match="unknown layer 'conv8'"):
        network("res8-conv8")
    with pytest.raises(QuicknetsError, match="too many res blocks"):
        network("res4-res4-res4-res4-res4-res4")


def test_cli_preset_fills_in_and_explicit_flags_win(tiny_dir, tmp_path, capsys):
    code = main(["train", "--preset", "fast", "--epochs", "1", "--batch-size", "100",
                 "--dataset", "mnist", "--data-dir", str(tiny_dir), "--no-verify",
                 "--threads", "1", "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("preset: fast")
    assert "model=784-512-256-10" in out and "schedule=onecycle" in out
    assert "epochs=1 " in out and "batch_size=100 " in out
    saved = Path(out.split("saved: ")[1].strip())
    config = json.loads((saved / "config.json").read_text())
    assert config["preset"] == "fast"
    assert config["train"]["epochs"] == 1 and config["train"]["batch_size"] == 100  # flags
    assert config["train"]["label_smoothing"] == 0.1 and config["model"]["batchnorm"] is True


def test_cli_unknown_preset_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "slow"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'slow'" in capsys.readouterr().err


def test_a_resumed_or_swept_run_rebuilds_its_flip_tta_network(tiny_dir):
    from dataclasses import asdict

    from quicknets.config import DataConfig
    from quicknets.experiment import prepare
    config = {"data": asdict(DataConfig(dataset="mnist", data_dir=str(tiny_dir), verify=False)),
              "model": asdict(ModelConfig(model="conv4-fc8", flip_tta=True)),
              "train": asdict(TrainConfig())}
    model, _ = prepare(config)
    assert model.config.get("flip_tta") is True
