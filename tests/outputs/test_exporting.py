"""predict/predict_proba on batches, and exports: ONNX (run by onnxruntime) and TorchScript agree
with the PyTorch model on 1,000 test images, safetensors round-trips the weights, a failed
check leaves no file, classify/evaluate take an exported file, and each error is one line."""

import dataclasses
import json
import re
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import need
from quicknets.base.errors import QuicknetsError
from quicknets.cli import main
from quicknets.config.configs import RunConfig
from quicknets.evaluation.classification import classify, predict, predict_proba
from quicknets.networks.models import network
from quicknets.outputs.exporting import (
    INFO_KEY,
    export,
    export_path,
    format_of,
    load_exported,
)
from quicknets.records.experiment import run
from quicknets.records.runs import load_model, start_run
from quicknets.training.loop import train

onnx, onnxruntime = need("onnx"), need("onnxruntime")
safetensors_torch = need("safetensors.torch")

N = 1000  # test images each export is compared on


@pytest.fixture(scope="module")
def mlp_run(fashion, tmp_path_factory):
    """A recorded run of the default network, 1 epoch on Fashion-MNIST: (folder, model)."""
    runs = tmp_path_factory.mktemp("runs")
    config = RunConfig.build(epochs=1, threads=1)
    path, _ = run(config, runs, data=fashion, quiet=True)
    return path, load_model(path)


@pytest.fixture(scope="module")
def cnn(fashion):
    """A small conv network with BatchNorm and flip TTA (its eval graph differs from its
    training graph), trained 1 epoch on 3,000 images."""
    small = dataclasses.replace(
        fashion, train_images=fashion.train_images[:3000], train_labels=fashion.train_labels[:3000]
    )
    model = network("conv8-conv16-fc32", batchnorm=True, flip_tta=True)
    train(model, small, epochs=1, quiet=True, threads=1)
    return model


def outside_input(info: dict, pixels: torch.Tensor) -> np.ndarray:
    """What a program without quicknets feeds an export: uint8 pixels normalised with the mean
    and std read from the file's own description."""
    pre = info["preprocessing"]
    x = pixels.numpy().astype(np.float32).reshape(-1, *pre["shape"]) / 255.0
    mean = np.asarray(pre["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(pre["std"], np.float32).reshape(1, -1, 1, 1)
    return (x - mean) / std


# predict and predict_proba


def test_predict_is_the_per_image_classification(mlp_run, fashion):
    _, model = mlp_run
    images = fashion.test_images[:N]
    indices = predict(model, images)
    assert indices.dtype == torch.int64 and indices.shape == (N,)
    brute = [classify(model, images[i], top=1)[0]["index"] for i in range(50)]
    assert indices[:50].tolist() == brute
    accuracy = (indices == fashion.test_labels[:N]).float().mean().item()
    assert accuracy > 0.75  # one epoch of the notebook's network: about 0.83
    names = predict(model, images[:5], names=True)
    assert names == [fashion.classes[i] for i in indices[:5].tolist()]


def test_every_input_form_gives_the_same_probabilities(mlp_run, fashion, tmp_path):
    _, model = mlp_run
    pixels = fashion.test_images[:6]  # uint8 (6, 28, 28)
    want = predict_proba(model, pixels)
    assert want.shape == (6, 10) and want.dtype == torch.float32
    assert torch.allclose(want.sum(1), torch.ones(6), atol=1e-5)
    files = []
    for i, image in enumerate(pixels):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(image.numpy()).save(files[-1])  # 28x28 on black: used pixel for pixel
    forms = {
        "numpy": pixels.numpy(),
        "channels": pixels[:, None],
        "flat": pixels.reshape(6, -1),
        "list": list(pixels),
        "files": files,
        "strings": [str(f) for f in files],
        "floats": model.preprocessing.normalize(pixels),
    }
    for form, images in forms.items():
        assert torch.allclose(predict_proba(model, images), want, atol=1e-6), form
    one_file = predict_proba(model, files[2])
    assert torch.allclose(one_file, want[2:3], atol=1e-6)
    in_batches = predict_proba(model, fashion.test_images[:N], batch_size=7)
    assert torch.allclose(in_batches, predict_proba(model, fashion.test_images[:N]), atol=1e-6)


def test_predict_leaves_the_model_in_its_mode(fashion):
    model = network("784-16-10", dropout=0.5)
    model.preprocessing = fashion.preprocessing
    model.train()
    first = predict_proba(model, fashion.test_images[:20])
    assert model.training  # restored
    assert torch.equal(first, predict_proba(model, fashion.test_images[:20]))  # eval: no dropout


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.zeros(3, 27, 27, dtype=torch.uint8), "not (3, 27, 27)"),
        (torch.zeros(28, 28, dtype=torch.uint8), "one image: images[None]"),
        (
            np.full((2, 28, 28), 300, dtype=np.int64),
            "torch.int64 images hold values from 300 to 300; pixels are 0..255",
        ),
        ([torch.zeros(28, 28, dtype=torch.uint8), torch.zeros(28, 28)], "mixes pixels"),
        (torch.full((2, 28, 28), float("nan")), "NaN or infinite"),
        (torch.full((2, 28, 28), 300.0), "values from 300 to 300, outside 0..255"),
        (torch.zeros(2, 28, 28, dtype=torch.bool), "not torch.bool"),
        ("no-such.png", "no image file no-such.png"),
        ({"a": 1}, "cannot predict a dict"),
    ],
)
def test_predict_refuses_what_it_cannot_read(images, message, fashion):
    model = network("784-16-10")
    model.preprocessing = fashion.preprocessing
    with pytest.raises(
        QuicknetsError,
        match=message.replace("(", r"\(")
        .replace(")", r"\)")
        .replace("[", r"\[")
        .replace("]", r"\]"),
    ):
        predict(model, images)


# exports


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_onnx_and_torchscript_agree_with_pytorch_on_1000_test_images(
    which, mlp_run, cnn, fashion, tmp_path
):
    model = mlp_run[1] if which == "mlp" else cnn
    images = fashion.test_images[:N]
    want = predict_proba(model, images)  # (N, 10)
    # ONNX, through onnxruntime alone, preprocessed from the file's own description
    done = export(model, tmp_path / "m.onnx", images=images)
    assert done["format"] == "onnx" and done["images"] == N and done["max_difference"] <= 1e-5
    proto = onnx.load(tmp_path / "m.onnx")
    onnx.checker.check_model(proto)
    info = json.loads({p.key: p.value for p in proto.metadata_props}[INFO_KEY])
    assert info["preprocessing"]["classes"] == fashion.classes
    assert info["preprocessing"]["mean"] == [0.5] and info["preprocessing"]["shape"] == [1, 28, 28]
    session = onnxruntime.InferenceSession(
        str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert session.get_inputs()[0].shape[0] == "batch"  # dynamic
    got = np.exp(session.run(["log_probabilities"], {"images": outside_input(info, images)})[0])
    assert got.shape == (N, 10)
    assert (got.argmax(1) == want.argmax(1).numpy()).all()
    assert np.abs(got - want.numpy()).max() <= 1e-5
    one = np.exp(session.run(None, {"images": outside_input(info, images[:1])})[0])
    assert one.shape == (1, 10) and np.abs(one - want[:1].numpy()).max() <= 1e-5

    # TorchScript, through torch.jit.load alone
    export(model, tmp_path / "m.torchscript", images=images)
    extra = {"quicknets.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in torch 2.14
        scripted = torch.jit.load(str(tmp_path / "m.torchscript"), _extra_files=extra)
    info = json.loads(extra["quicknets.json"])
    with torch.no_grad():
        got = scripted(torch.from_numpy(outside_input(info, images))).exp()
    assert torch.equal(got.argmax(1), want.argmax(1))
    assert (got - want).abs().max().item() <= 1e-5


def test_safetensors_weights_round_trip(mlp_run, fashion, tmp_path):
    path, model = mlp_run
    export(model, tmp_path / "m.safetensors", images=fashion.test_images[:N])
    tensors = safetensors_torch.load_file(tmp_path / "m.safetensors")
    state = model.state_dict()
    fitted = model.familiarity  # the run's familiarity statistics travel beside the weights
    assert sorted(tensors) == sorted([*state, *(f"familiarity.{k}" for k in fitted.statistics)])
    for key, value in state.items():
        assert torch.equal(tensors[key], value), key
    assert torch.equal(tensors["familiarity.bank"], fitted.statistics["bank"])
    from safetensors import safe_open

    with safe_open(tmp_path / "m.safetensors", "pt") as f:
        info = json.loads(f.metadata()[INFO_KEY])
    assert info["network"]["network"] == "784-256-128-64-10"
    assert info["preprocessing"]["classes"] == fashion.classes
    loaded = load_exported(tmp_path / "m.safetensors")
    assert type(loaded).__name__ == "Network" and loaded.preprocessing == model.preprocessing
    assert torch.equal(
        predict_proba(loaded, fashion.test_images[:N]),
        predict_proba(model, fashion.test_images[:N]),
    )
    assert info["familiarity"] == fitted.describe()
    assert loaded.familiarity.describe() == fitted.describe()
    noise = torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8)
    for images in (fashion.test_images[:N], noise):
        assert torch.equal(
            predict(loaded, images, familiarity=True)[1],
            predict(model, images, familiarity=True)[1],
        )
    # ONNX and TorchScript carry none, and asking for the scores says so
    scripted = tmp_path / "m.torchscript"
    export(model, scripted, images=fashion.test_images[:N])
    with pytest.raises(QuicknetsError, match="carries no familiarity statistics"):
        predict(load_exported(scripted), noise, familiarity=True)


def test_the_temperature_travels_in_every_format(mlp_run, fashion, tmp_path):
    """A model's temperature is in each export's description, loaded back with it, and
    predict_proba of the file gives the tempered probabilities; a program without quicknets
    gets them as softmax(log_probabilities / temperature) from the file alone."""
    import copy

    _, model = mlp_run
    tempered = copy.deepcopy(model)
    tempered.preprocessing = dataclasses.replace(model.preprocessing, temperature=1.7)
    images = fashion.test_images[:N]
    want = predict_proba(tempered, images)
    assert (want - predict_proba(model, images)).abs().max() > 0.01
    for suffix in (".onnx", ".torchscript", ".safetensors"):
        export(tempered, tmp_path / f"m{suffix}", images=images)
        loaded = load_exported(tmp_path / f"m{suffix}")
        assert loaded.preprocessing.temperature == 1.7, suffix
        assert loaded.info["preprocessing"]["temperature"] == 1.7
        assert (predict_proba(loaded, images) - want).abs().max().item() <= 1e-5, suffix
    session = onnxruntime.InferenceSession(
        str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]
    )
    info = json.loads(session.get_modelmeta().custom_metadata_map[INFO_KEY])
    z = session.run(None, {"images": outside_input(info, images)})[0]
    z = z / info["preprocessing"]["temperature"]
    outside = np.exp(z - z.max(1, keepdims=True))
    outside /= outside.sum(1, keepdims=True)
    assert np.abs(outside - want.numpy()).max() <= 1e-5


def test_own_data_models_need_images_to_check_on(tmp_path):
    """A model of your own data is named after its file: `pets` was "unknown dataset 'pets'",
    and a Kaggle CSV's `fashion-mnist` would have been checked on the built-in dataset."""
    from quicknets.data.preprocessing import Preprocessing

    model = network("784-10")
    for name in ("pets", "fashion-mnist"):
        model.preprocessing = Preprocessing(
            classes=tuple("0123456789"), dataset=name, layout="resize"
        )
        with pytest.raises(
            QuicknetsError,
            match=r"^give images= to check the export on, such "
            r"as data.test_images\[:1000\]: the model "
            "names no built-in dataset",
        ):
            export(model, tmp_path / "m.torchscript")
    assert not (tmp_path / "m.torchscript").exists()
    export(model, tmp_path / "m.torchscript", images=torch.zeros(4, 28, 28, dtype=torch.uint8))
    assert load_exported(tmp_path / "m.torchscript").preprocessing.dataset == "fashion-mnist"


def test_a_failed_check_is_an_error_and_leaves_no_file(mlp_run, fashion, tmp_path, monkeypatch):
    from quicknets.outputs import exporting

    _, model = mlp_run
    loaded_as_usual = exporting.from_bytes

    def off_by_a_little(data, format, threads=None):  # an exporter that rounds too much
        exported = loaded_as_usual(data, format, threads)
        forward = exported.forward
        exported.forward = lambda x: forward(x) + 1e-3 * torch.arange(10.0)
        return exported

    monkeypatch.setattr(exporting, "from_bytes", off_by_a_little)
    (tmp_path / "kept.onnx").write_bytes(b"an earlier file")
    for file in ("new.torchscript", "kept.onnx"):
        with pytest.raises(
            QuicknetsError,
            match=r"does not match the PyTorch model on 1000 test "
            r"images .*nothing was written",
        ):
            export(model, tmp_path / file, images=fashion.test_images[:N])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.onnx"]
    assert (tmp_path / "kept.onnx").read_bytes() == b"an earlier file"


def test_the_docs_snippet_runs(fashion, tmp_path, monkeypatch, capsys):
    """docs/use-it-elsewhere.md's first snippet, here with the names it must print."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "use-it-elsewhere.md").read_text()
    code = re.findall(r"```python\n(.*?)```", page, re.S)[0]
    assert code.count("epochs=7") == 1
    monkeypatch.chdir(tmp_path)  # it writes fashion.onnx
    exec(code.replace("epochs=7", "epochs=1, quiet=True, threads=1"), {})
    assert capsys.readouterr().out == "['Ankle Boot', 'Pullover', 'Trouser']\n"
    assert (tmp_path / "fashion.onnx").is_file()


# the command line


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def scores(line: str) -> tuple:
    """(accuracy, loss, images) of evaluate's `test accuracy: A  test loss: L  images: N`."""
    match = re.fullmatch(r"test accuracy: (\S+)  test loss: (\S+)  images: (\d+)", line)
    assert match, line
    return float(match[1]), float(match[2]), int(match[3])


def test_export_then_classify_and_evaluate_the_file(mlp_run, capsys, tmp_path, monkeypatch):
    path, _ = mlp_run
    code, out, err = cli(capsys, "evaluate", path)
    assert code == 0, err
    recorded = scores(out.splitlines()[1])
    monkeypatch.chdir(tmp_path)
    for format, suffix in (
        ("onnx", ".onnx"),
        ("torchscript", ".torchscript"),
        ("safetensors", ".safetensors"),
    ):
        code, out, err = cli(capsys, "export", path, "--format", format)
        assert code == 0, err
        file = tmp_path / f"{path.name}{suffix}"  # the default: the run's name, here
        assert out.splitlines() == [
            out.splitlines()[0],
            f"wrote: {file.name} ({file.stat().st_size / 1e6:.2f} MB)",
        ]
        assert out.startswith(
            f"checked: {format} against PyTorch on 1000 test images: the same top-1 class for each"
        )
        code, out, err = cli(capsys, "evaluate", file)
        assert code == 0, err
        assert out.splitlines()[0] == f"model: {file} ({format} export of run {path.name})"
        # Another engine (onnxruntime; TorchScript's own kernels) sums in another order: the
        # same images, top-1 the same but for a near tie or two (the export check's 1,000
        # agree), and a mean loss within 2e-4 (the printed 4 places' rounding on each side,
        # plus probabilities within the export check's 1e-5)
        accuracy, loss, n = scores(out.splitlines()[1])
        assert n == recorded[2] and abs(accuracy - recorded[0]) <= 2 / n, (format, out)
        assert abs(loss - recorded[1]) <= 2e-4, (format, out)
        code, out, err = cli(capsys, "classify", file, "--index", "0")
        assert code == 0, err
        assert out.splitlines()[0] == "test image 0 (true class: Ankle Boot)"
        assert out.count("#" * 40) == 2


def test_export_errors_are_one_line(mlp_run, capsys, tmp_path, monkeypatch):
    path, _ = mlp_run
    unfinished = start_run(RunConfig.build(epochs=3), runs_dir=tmp_path / "runs")
    (tmp_path / "junk.onnx").write_bytes(b"\x08not a model")  # starts as an ONNX model does
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # was "onnx needs onnxruntime"
    (tmp_path / "plain.safetensors").write_bytes(safetensors_torch.save({"w": torch.zeros(2)}))
    cases = [
        (
            ["export", path, "--format", "tflite"],
            "unknown export format 'tflite': choose onnx, torchscript, safetensors",
        ),
        (
            ["export", path, "--format", "onnx", "--out", tmp_path / "m.safetensors"],
            "has the suffix of a safetensors file, not onnx",
        ),
        (
            ["export", unfinished],
            f"cannot export: run {unfinished.name} is not finished "
            "(stopped before its first epoch ended",
        ),
        (
            ["classify", tmp_path / "junk.onnx", "--index", "0"],
            f"cannot load {tmp_path / 'junk.onnx'} as a quicknets export (onnx): ",
        ),
        (
            ["evaluate", tmp_path / "photo.png"],
            f"{tmp_path / 'photo.png'} is not a run, nor a "
            "file written by `quicknets export` (ONNX, "
            "TorchScript or safetensors)",
        ),
        (
            ["evaluate", tmp_path / "plain.safetensors"],
            "it holds no quicknets description (was it written by `quicknets export`?)",
        ),
    ]
    for args, message in cases:
        code, out, err = cli(capsys, *args)
        assert code == 1 and out == "", args
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    code, out, err = cli(capsys, "export", path, "--out", tmp_path / "m.onnx")
    assert code == 1 and not (tmp_path / "m.onnx").exists()
    assert err == (
        "error: onnx needs the Python package onnxruntime, an optional extra: "
        "pip install 'quicknets[export]'\n"
    )


def test_an_export_is_named_as_its_format(tmp_path):
    assert export_path(tmp_path / "m.onnx", "onnx") == tmp_path / "m.onnx"
    assert export_path(tmp_path / "m.pt", "torchscript") == tmp_path / "m.pt"  # as torch.jit's
    for name, format in [("m.pt", "onnx"), ("m.txt", "torchscript"), ("m.onnx", "safetensors")]:
        with pytest.raises(QuicknetsError, match=f"{format} exports are .* files"):
            export_path(tmp_path / name, format)
    assert format_of("torchscript", "m.pt") == "torchscript"
    with pytest.raises(QuicknetsError, match=r"not m.pt \(or name the format: --format torchscr"):
        export_path("m.pt", format_of(None, "m.pt"))  # no format named: ONNX, as before
