"""Presets: valid settings, each preset's code path on a tiny budget, and `--preset` in the CLI
(explicit flags win; the resolved config is saved). Their timing and accuracy are measured by
benchmarks/accuracy.py, not here. Also the ResNet builder the `best` preset uses."""

import json
import math
from pathlib import Path

import pytest
import torch

from quicknets.base.errors import QuicknetsError
from quicknets.base.machine import native_bf16
from quicknets.cli import main
from quicknets.config.configs import RunConfig
from quicknets.config.presets import PRESETS, preset_settings
from quicknets.evaluation.metrics import evaluate
from quicknets.networks.models import network
from quicknets.networks.specs import NETWORKS
from quicknets.records.runs import load_model, load_run, save_run
from quicknets.training.loop import train


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_settings_are_valid_configs(name, device):
    canonical, settings = preset_settings(name, device)
    config = RunConfig.build(**settings)
    assert canonical == name and config.preset is None
    if device == "cuda":
        assert settings["batch_size"] >= PRESETS[name]["settings"]["batch_size"]


def test_bf16_only_where_it_is_native():
    assert preset_settings("fast", "cpu")[1]["bf16"] is native_bf16("cpu")
    assert preset_settings("fast", "mps")[1]["bf16"] is False


def test_preset_settings_are_fresh_copies():
    preset_settings("fast")[1]["epochs"] = 999
    assert PRESETS["fast"]["settings"]["epochs"] != 999


def test_unknown_preset_fails_and_the_old_name_is_read():
    with pytest.raises(QuicknetsError, match="unknown preset 'slow'"):
        preset_settings("slow")
    assert preset_settings("cnn")[0] == "accurate"


def test_presets_and_networks_have_distinct_names():
    assert not set(PRESETS) & set(NETWORKS)


@pytest.mark.parametrize("name", list(PRESETS))
def test_each_preset_trains_one_tiny_epoch(name, tiny):
    config = RunConfig.build(preset=name, device_type="cpu", epochs=1, threads=1, device="cpu")
    n = config.network
    model = network(n.network, batchnorm=n.batchnorm, flip_tta=n.flip_tta)
    history = train(model, tiny, config.train, quiet=True)
    assert len(history) == 1 and math.isfinite(history[0]["train_loss"])
    assert 0.0 <= history[0]["train_accuracy"] <= 1.0
    results = evaluate(model, tiny)  # in eval mode, with flip averaging where the preset has it
    assert results["n"] == 100 and math.isfinite(results["loss"])


def test_flip_tta_averages_in_eval_mode_only():
    torch.manual_seed(0)
    model = network("conv4-fc8", batchnorm=True, flip_tta=True)
    assert model.config["flip_tta"] is True
    plain = torch.nn.Sequential(
        *[m for m in model if type(m).__name__ not in ("_FlipPair", "_MeanPair")]
    )
    x = torch.randn(5, 1, 28, 28)
    model.train()
    assert torch.equal(model(x), plain.train()(x))  # training sees the images as they are
    model.eval()
    both = torch.stack([plain.eval()(x), plain(x.flip(-1))])  # the mean probability of the two
    assert torch.allclose(model(x), torch.logsumexp(both, 0) - math.log(2), atol=1e-6)
    assert model(x[:1]).shape == (1, 10)
    with pytest.raises(QuicknetsError, match="flip_tta needs a conv network"):
        network("784-10", flip_tta=True)


def test_flip_tta_survives_save_and_load(tiny, runs_dir):
    torch.manual_seed(0)
    model = network("conv4-fc8", flip_tta=True).eval()
    config = RunConfig.build(network="conv4-fc8", flip_tta=True)
    path = save_run(model, config, [], {"accuracy": 0.1, "loss": 2.3}, None, runs_dir)
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
    assert network("resnet").config["network"] == "resnet"
    with pytest.raises(QuicknetsError, match="unknown layer 'conv8'"):
        network("res8-conv8")
    with pytest.raises(QuicknetsError, match="too many res blocks"):
        network("res4-res4-res4-res4-res4-res4")


def test_cli_preset_fills_in_and_explicit_flags_win(tiny_dir, tmp_path, capsys):
    code = main(
        [
            "train",
            "--preset",
            "fast",
            "--epochs",
            "1",
            "--batch-size",
            "100",
            "--dataset",
            "mnist",
            "--data-dir",
            str(tiny_dir),
            "--no-verify",
            "--threads",
            "1",
            "--runs-dir",
            str(tmp_path / "runs"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("preset: fast")
    assert "network=784-512-256-10" in out and "schedule=onecycle" in out
    assert "epochs=1 " in out and "batch_size=100 " in out
    saved = Path(out.split("saved: ")[1].strip())
    config = json.loads((saved / "config.json").read_text())
    assert config["preset"] == "fast"
    assert config["train"]["epochs"] == 1 and config["train"]["batch_size"] == 100  # flags
    assert config["train"]["label_smoothing"] == 0.1 and config["network"]["batchnorm"] is True


def test_cli_unknown_preset_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "slow"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'slow'" in capsys.readouterr().err


def test_a_resumed_or_swept_run_rebuilds_its_flip_tta_network(tiny_dir):
    from quicknets.records.experiment import setup

    config = RunConfig.build(
        dataset="mnist",
        data_dir=str(tiny_dir),
        verify=False,
        network="conv4-fc8",
        flip_tta=True,
        threads=1,
    )
    _, model, _ = setup(config)
    assert model.config.get("flip_tta") is True
