"""Your own data: CSV files, image folders, .npz, the MNIST family by name; every bad-data case.

Three datasets made here go through train, classify, show and report: (a) the Fashion-MNIST test
set as a Kaggle-style CSV pair, (b) the same as PNGs in class folders, (c) generated 32x32 RGB
images in 3 class folders. Small subsets: the 60,000-image timings are in the README.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import need
from quicknets.base.errors import QuicknetsError
from quicknets.cli import main
from quicknets.config.configs import RunConfig
from quicknets.data import csvdata, imagefolders, sources
from quicknets.data.idx import write_idx
from quicknets.data.images import load_image
from quicknets.data.loading import describe, load_dataset, load_recorded
from quicknets.data.preprocessing import Preprocessing
from quicknets.records.experiment import fit_network, run
from quicknets.records.runs import load_model, load_run

FOLDER_NAMES = [
    "T-shirt-top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle Boot",
]  # Fashion-MNIST's classes as folder names


def write_csv(path, images, labels, header=True):
    """A Kaggle-style CSV: label,pixel1,...,pixelP."""
    rows = np.concatenate(
        [np.asarray(labels)[:, None], np.asarray(images).reshape(len(images), -1)], 1
    )
    with open(path, "w") as f:
        if header:
            f.write("label," + ",".join(f"pixel{i + 1}" for i in range(rows.shape[1] - 1)) + "\n")
        np.savetxt(f, rows, fmt="%d", delimiter=",")
    return path


def write_folder(root, images, labels, names):
    """One PNG per image in a folder per class: root/<name>/<i>.png."""
    for i, (x, y) in enumerate(zip(images, labels)):
        (root / names[y]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(x)).save(root / names[y] / f"{i:05d}.png")
    return root


def rgb_images(n_per_class=40, size=32, seed=0):
    """Noise with a bright square in the class's colour channel: (N, 32, 32, 3), labels."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c in range(3):
        for _ in range(n_per_class):
            x = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
            x[8:24, 8:24, c] = rng.integers(180, 256)
            images.append(x)
            labels.append(c)
    return np.stack(images), np.array(labels)


def cli(capsys, *args) -> str:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def predicted(out: str) -> str:
    """The class in the first banner of `quicknets classify` output."""
    banner = [line for line in out.splitlines() if line.startswith("#") and line.strip("#")]
    return banner[0].strip("#").strip()


def error(call) -> str:
    with pytest.raises(QuicknetsError) as e:
        call()
    message = str(e.value)
    assert "\n" not in message, message
    return message


def train_show_report(capsys, dataset, runs, *flags) -> str:
    """train --dataset, then show and report: the run's folder name."""
    out = cli(
        capsys,
        "train",
        "--dataset",
        dataset,
        "--threads",
        "1",
        "--runs-dir",
        runs,
        "--quiet",
        *flags,
    )
    assert "test accuracy:" in out
    name = Path(out.strip().splitlines()[-1].removeprefix("saved: ")).name
    out = cli(capsys, "show", name, "--runs-dir", runs)
    for figure in ("curves", "confusion", "predictions", "top_losses", "reliability"):
        assert (runs / name / "figures" / f"{figure}.png").stat().st_size > 1000
    cli(capsys, "report", name, "--runs-dir", runs)
    page = (runs / name / "report.html").read_text()
    # the run's 4 figures, and reliability, familiarity, attribution of "Can you trust it?"
    assert page.count("data:image/png;base64,") == 7
    return name


# -- (a) a Kaggle-style CSV pair ---------------------------------------------------------------


@pytest.fixture
def kaggle(fashion, tmp_path) -> Path:
    """fashion-mnist_train.csv (1600 rows) and fashion-mnist_test.csv (400) with a header, made
    from the first 2000 Fashion-MNIST test images."""
    x, y = fashion.test_images[:2000].numpy(), fashion.test_labels[:2000].numpy()
    folder = tmp_path / "kaggle"
    folder.mkdir()
    write_csv(folder / "fashion-mnist_test.csv", x[1600:], y[1600:])
    return write_csv(folder / "fashion-mnist_train.csv", x[:1600], y[:1600])


def test_csv_pair_gives_the_idx_files_tensors_and_accuracy(kaggle, fashion, tmp_path):
    x, y = fashion.test_images[:2000].numpy(), fashion.test_labels[:2000].numpy().astype(np.uint8)
    idx = tmp_path / "idx"
    idx.mkdir()
    for stem, images, labels in (("train", x[:1600], y[:1600]), ("t10k", x[1600:], y[1600:])):
        write_idx(idx / f"{stem}-images-idx3-ubyte", images)
        write_idx(idx / f"{stem}-labels-idx1-ubyte", labels)
    from_csv = load_dataset(kaggle)
    from_idx = load_dataset("fashion-mnist", idx, verify=False)
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(from_csv, key), getattr(from_idx, key)), key
    assert from_csv.classes == [str(i) for i in range(10)] and from_csv.name == "fashion-mnist"
    common = dict(network="784-64-10", epochs=2, threads=1, seed=3)
    _, by_csv = run(RunConfig.build(dataset=str(kaggle), **common), tmp_path / "runs", quiet=True)
    _, by_idx = run(
        RunConfig.build(dataset="fashion-mnist", data_dir=str(idx), verify=False, **common),
        tmp_path / "runs",
        quiet=True,
    )
    assert by_csv["accuracy"] == by_idx["accuracy"] and by_csv["loss"] == by_idx["loss"]
    assert by_csv["accuracy"] > 0.6


def test_csv_train_classify_show_report(kaggle, fashion, tmp_path, capsys):
    runs = tmp_path / "runs"
    name = train_show_report(capsys, kaggle, runs, "--epochs", "3")
    assert name.startswith("fashion-mnist_train_mlp-256-128-64_adam_lr0.003_s0-")
    record = load_run(name, runs)
    data = record.meta["data"]
    assert data["path"] == str(kaggle) and data["format"] == "csv"
    assert data["test_path"] == str(kaggle.with_name("fashion-mnist_test.csv"))
    assert data["shape"] == [1, 28, 28] and data["classes"] == [str(i) for i in range(10)]
    assert len(data["digest"]) == 64
    # a file classified is brought to the data's shape: a test image saved as PNG gets the
    # class its index gets
    Image.fromarray(fashion.test_images[1600].numpy()).save(tmp_path / "x.png")
    by_index = predicted(cli(capsys, "classify", name, "--index", "0", "--runs-dir", runs))
    by_file = predicted(cli(capsys, "classify", name, tmp_path / "x.png", "--runs-dir", runs))
    assert by_index == by_file


# -- (b) the Fashion-MNIST test set as PNGs in class folders -----------------------------------


def test_png_folder_train_classify_show_report(fashion, tmp_path, capsys):
    x, y = fashion.test_images[:500].numpy(), fashion.test_labels[:500].numpy()
    root = tmp_path / "fashion-png"
    write_folder(root / "train", x[:400], y[:400], FOLDER_NAMES)
    write_folder(root / "test", x[400:], y[400:], FOLDER_NAMES)
    (root / "train" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # ignored, as hidden files are
    data = load_dataset(root)
    assert data.classes == sorted(FOLDER_NAMES) and data.train_images.shape == (400, 28, 28)
    order = [sorted(FOLDER_NAMES).index(FOLDER_NAMES[c]) for c in range(10)]
    train_files, _ = imagefolders.list_images(root / "train")
    for path, label in train_files[:50]:  # pixel for pixel, labels by folder name
        i = int(Path(path).stem)
        j = [p for p, _ in train_files].index(path)
        assert torch.equal(data.train_images[j], torch.from_numpy(x[i]))
        assert label == order[y[i]] == int(data.train_labels[j])
    runs = tmp_path / "runs"
    name = train_show_report(capsys, root, runs, "--epochs", "4")
    assert name.startswith("fashion-png_mlp-256-128-64_")
    test_files, _ = imagefolders.list_images(root / "test")
    for i, _ in enumerate(test_files):  # a test image the model gets right ...
        out = cli(capsys, "classify", name, "--index", i, "--runs-dir", runs)
        if f"(true class: {predicted(out)})" in out:
            break
    # ... is named by its folder when classified as a file
    assert (
        predicted(cli(capsys, "classify", name, path, "--runs-dir", runs)) == Path(path).parent.name
    )


# -- (c) 32x32 RGB images in 3 class folders, no test folder: the default command --------------


@pytest.fixture
def rgb(tmp_path) -> Path:
    images, labels = rgb_images()
    return write_folder(tmp_path / "shapes", images, labels, ["blue-ish", "green", "red"][::-1])


def test_rgb_folder_default_command_auto_mean_classify_show_report(rgb, tmp_path, capsys):
    runs = tmp_path / "runs"
    name = train_show_report(capsys, rgb, runs, "--mean", "auto", "--std", "auto")
    record = load_run(name, runs)
    assert record.config.network.network == "3072-256-128-64-3"  # the default, fitted
    assert record.config.data.mean == "auto" and record.results["accuracy"] == 1.0
    data = record.meta["data"]
    assert data["shape"] == [3, 32, 32] and data["classes"] == ["blue-ish", "green", "red"]
    assert data["test_path"] is None and data["test_fraction"] == 0.2 and data["test"] == 24
    model = load_model(record)
    pixels = load_dataset(rgb).train_images.double() / 255  # (96, 3, 32, 32)
    assert model.preprocessing.mean == pytest.approx(pixels.mean((0, 2, 3)).tolist(), abs=1e-6)
    assert model.preprocessing.std == pytest.approx(
        pixels.std((0, 2, 3), correction=0).tolist(), abs=1e-6
    )
    for folder in ("red", "green", "blue-ish"):
        file = rgb / folder / sorted(p.name for p in (rgb / folder).iterdir())[0]
        assert predicted(cli(capsys, "classify", name, file, "--runs-dir", runs)) == folder


def test_rgb_folder_explain_from_the_command_line_and_python(rgb, tmp_path, capsys):
    """Attribution on your own 32x32 RGB images: `classify --explain` draws the map over the
    colour image, explain() gives (32, 32), and a method the network lacks is one line."""
    need("captum")
    from quicknets.evaluation.attribution import explain
    from quicknets.plots.attribution import normalized_map
    from quicknets.plots.figures import image_pixels, view_classify

    runs = tmp_path / "runs"
    for network in ("conv4-fc16", "mlp"):
        cli(capsys, "train", "--dataset", rgb, "--network", network, "--epochs", "1",
            "--threads", "1", "--runs-dir", runs, "--quiet")  # fmt: skip
    cnn, mlp = (load_run(n, runs) for n in sorted(p.name for p in runs.iterdir() if p.is_dir()))
    assert cnn.config.network.network == "conv4-fc16"
    file = rgb / "red" / sorted(p.name for p in (rgb / "red").iterdir())[0]
    plot = tmp_path / "why.png"
    out = cli(capsys, "classify", cnn.path, file, "--explain", "gradcam", "--plot", plot)
    assert f"explanation: Grad-CAM for {predicted(out)}\n" in out and plot.stat().st_size > 1000
    model = load_model(cnn)
    for method in ("integrated_gradients", "occlusion", "grad_cam"):
        heat = explain(model, file, method)
        assert heat.shape == (32, 32) and heat.abs().sum() > 0, method
    fig = view_classify(file, model, explanation=heat)
    under, over = fig.axes[1].images
    pixels = load_image(file, model.preprocessing.shape, model.preprocessing.layout)
    np.testing.assert_allclose(under.get_array(), image_pixels(pixels))  # (32, 32, 3): colour
    np.testing.assert_allclose(over.get_array(), normalized_map(heat.numpy()))
    assert main(["classify", str(mlp.path), str(file), "--explain", "grad_cam"]) == 1
    assert capsys.readouterr().err == (
        "error: Grad-CAM needs a convolutional network, and this one has no conv layer; for it "
        "choose from integrated_gradients, occlusion, saliency\n"
    )


def test_rgb_folder_robustness_recorded_and_in_the_report(rgb, tmp_path, capsys):
    """32x32 RGB own data: every corruption on 3 channels of another size, severity 0 the
    clean accuracy, and the report's trust section with the robustness figure."""
    runs = tmp_path / "runs"
    name = train_show_report(capsys, rgb, runs)
    out = cli(capsys, "evaluate", name, "--robustness", "--runs-dir", runs).splitlines()
    accuracy = next(line for line in out if line.startswith("test accuracy:")).split()[2]
    start = out.index(next(line for line in out if line.startswith("corruption ")))
    rows = [line.split() for line in out[start + 1 : start + 11]]
    assert len(rows) == 10 and all(row[1] == accuracy for row in rows)
    assert any(float(a) < float(accuracy) for row in rows for a in row[2:])  # it bites
    record = load_run(name, runs)
    assert record.results["robustness"]["clean_accuracy"] == record.results["accuracy"]
    cli(capsys, "report", name, "--runs-dir", runs)
    page = (runs / name / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 8 and 'alt="robustness"' in page


def test_rgb_folder_familiarity_and_ood(rgb, tmp_path, capsys):
    """Own 32x32 RGB data: the familiarity fit after training, evaluate --ood against a folder
    of photo crops and an .npz of noise (the oracle: the library's scores), wrong channels."""
    import re

    from quicknets.evaluation.familiarity import (
        familiarity_scores,
        load_outside,
        ood_metrics,
        reference_sets,
    )

    runs = tmp_path / "runs"
    out = cli(
        capsys, "train", "--dataset", rgb, "--epochs", "2", "--threads", "1", "--runs-dir", runs
    )
    name = next(line for line in out.splitlines() if line.startswith("saved: "))[7:]
    record = load_run(name, runs)
    assert record.results["familiarity"]["threshold_split"] == "train"
    model = load_model(record)
    assert model.familiarity.describe() == {
        k: v for k, v in record.results["familiarity"].items() if k != "file"
    }
    photos = tmp_path / "photos"
    write_folder(
        photos,
        reference_sets((3, 32, 32), crops=20)["photos"].permute(0, 2, 3, 1),
        [0] * 20,
        ["crops"],
    )
    noise = tmp_path / "noise.npz"
    np.savez(noise, x_test=np.random.default_rng(0).integers(0, 256, (30, 32, 32, 3), np.uint8))
    inside = familiarity_scores(model, load_dataset(rgb).test_images, model.familiarity)
    for source in (photos, noise):
        out = cli(capsys, "evaluate", name, "--ood", source, "--runs-dir", runs)
        outside = load_outside(source, model.preprocessing)
        want = ood_metrics(inside, familiarity_scores(model, outside, model.familiarity))
        assert f"ood auroc: {want['auroc']:.4f}  fpr95: {want['fpr95']:.4f}\n" in out
    grey = tmp_path / "grey.npz"
    np.savez(grey, x_test=np.zeros((4, 32, 32), np.uint8))
    assert main(["evaluate", name, "--ood", str(grey), "--runs-dir", str(runs)]) == 1
    assert re.fullmatch(
        r"error: .*grey.npz holds images of shape \(1, 32, 32\); the model takes \(3, 32, 32\)\n",
        capsys.readouterr().err,
    )


def test_the_held_out_test_set_is_fixed_and_stratified(rgb):
    a, b = load_dataset(rgb, seed=0), load_dataset(rgb, seed=5)  # the run's seed: no effect
    assert torch.equal(a.test_images, b.test_images)
    assert a.test_labels.bincount().tolist() == [8, 8, 8]
    assert len(load_dataset(rgb, test=0.5).test_labels) == 60
    with pytest.raises(QuicknetsError, match="a test fraction must be between 0 and 1"):
        load_dataset(rgb, test="1.5")


# -- PyTorch's ecosystem -----------------------------------------------------------------------


def test_dataset_len_indexing_torch_dataset_and_loader(rgb):
    data = load_dataset(rgb, mean=(0.2, 0.3, 0.4), std=0.5)
    assert len(data) == 96
    x, y = data[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    assert torch.equal(x, data.normalize(data.train_images[:1])[0])
    test = data.split("test")
    assert isinstance(test, torch.utils.data.Dataset) and len(test) == 24
    xb, yb = next(iter(data.loader("train", batch_size=10, seed=1)))
    again, _ = next(iter(data.loader("train", batch_size=10, seed=1)))
    assert xb.shape == (10, 3, 32, 32) and yb.dtype == torch.int64 and torch.equal(xb, again)
    assert torch.equal(next(iter(data.loader("test", batch_size=24)))[1], data.test_labels)
    with pytest.raises(QuicknetsError, match="no val split"):
        data.split("val")


# -- the network spec adapts or says what fits -------------------------------------------------


def test_the_default_mlp_takes_the_datas_ends_and_written_sizes_are_checked():
    rgb3 = Preprocessing((3, 32, 32), classes=("a", "b", "c"))
    assert fit_network("784-256-128-64-10", rgb3) == "3072-256-128-64-3"
    assert fit_network("mlp", rgb3) == "3072-256-128-64-3"
    assert fit_network("cnn", rgb3) == "cnn" and fit_network("conv8-fc16", rgb3) == "conv8-fc16"
    assert fit_network("784-10", Preprocessing(classes=tuple("0123456789"))) == "784-10"
    assert error(lambda: fit_network("784-128-10", rgb3)) == (
        "the first size must be the input size 3072 (3x32x32 images) and the last the number "
        "of classes 3, got 784-128-10: give --network 3072-128-3"
    )


# -- cache and digest --------------------------------------------------------------------------


def test_parsed_once_then_cached_and_a_changed_file_is_noticed(tmp_path, monkeypatch, capsys):
    images = np.arange(30 * 16).reshape(30, 16) % 256
    path = write_csv(tmp_path / "small.csv", images, np.arange(30) % 3)
    first = load_dataset(path)

    def parse_again(*args):
        raise LookupError("parsed again")

    monkeypatch.setattr(csvdata, "parse_csv", parse_again)
    again = load_dataset(path)  # from the cache
    assert torch.equal(first.train_images, again.train_images)
    assert first.origin["digest"] == again.origin["digest"]
    config = RunConfig.build(dataset=str(path))
    recorded = describe(first)
    write_csv(path, images[::-1], np.arange(30) % 3)  # the same size, another content
    with pytest.raises(LookupError, match="parsed again"):
        load_dataset(path)
    monkeypatch.undo()
    assert error(lambda: load_recorded(config, recorded=recorded, changed="error")).startswith(
        f"{path} changed since the run was made: its content digest is "
    )
    load_recorded(config, recorded=recorded)  # show, report, evaluate: a warning
    assert "warning: " in capsys.readouterr().err


def test_data_that_moved_says_to_give_data_dir(tmp_path):
    """evaluate/show/report/classify of a run whose CSV moved said "--dataset takes a built-in
    name", a flag those commands do not have."""
    images = np.arange(30 * 16).reshape(30, 16) % 256
    path = write_csv(tmp_path / "small.csv", images, np.arange(30) % 3)
    config, recorded = RunConfig.build(dataset=str(path)), describe(load_dataset(path))
    (tmp_path / "new").mkdir()
    path.rename(tmp_path / "new" / "small.csv")
    assert error(lambda: load_recorded(config, recorded=recorded)) == (
        f"the run's data {path} is not there any more: if it moved, give the folder now "
        f"holding small.csv with --data-dir"
    )
    assert error(lambda: load_recorded(config, tmp_path / "elsewhere", recorded)) == (
        f"the run's data small.csv is not in {tmp_path / 'elsewhere'}"
    )
    data = load_recorded(config, tmp_path / "new", recorded)
    assert len(data.train_labels) == 24  # 0.2 held out
    assert error(lambda: load_recorded(config)).startswith(  # not a run's: a new train's
        f"no file or folder {path} (--dataset takes a built-in name: "
    )


def test_a_large_folder_is_decoded_by_worker_processes(rgb, monkeypatch):
    in_process = load_dataset(rgb, test=0.25)
    monkeypatch.setattr(imagefolders, "_workers", lambda n: 2)
    monkeypatch.setattr(sources, "CACHE_FORMAT", -1)  # a fresh cache key: decoded again
    pooled = load_dataset(rgb, test=0.25)
    assert torch.equal(in_process.train_images, pooled.train_images)


# -- .npz, the MNIST family by name ------------------------------------------------------------


def test_npz_as_keras_returns_it(tmp_path):
    images, labels = rgb_images(n_per_class=5)
    np.savez(
        tmp_path / "cifar-like.npz",
        x_train=images[::2],
        y_train=labels[::2, None],
        x_test=images[1::2],
        y_test=labels[1::2, None],
    )  # (N, H, W, 3), CIFAR's (N, 1)
    data = load_dataset(tmp_path / "cifar-like.npz")
    assert data.train_images.shape == (8, 3, 32, 32) and data.classes == ["0", "1", "2"]
    assert torch.equal(data.test_images[0], torch.from_numpy(images[1].transpose(2, 0, 1)))
    np.savez(tmp_path / "grey.npz", x_train=images[:, :, :, 0], y_train=labels)
    grey = load_dataset(tmp_path / "grey.npz")  # no test arrays: held out
    assert grey.train_images.shape == (12, 32, 32) and len(grey.test_labels) == 3
    np.savez(tmp_path / "bad.npz", x_train=images, labels=labels)
    assert error(lambda: load_dataset(tmp_path / "bad.npz")) == (
        f"{tmp_path / 'bad.npz'} has no y_train (it holds x_train, labels; expected x_train, "
        "y_train, x_test, y_test)"
    )


def _idx_int32(path, array):
    """An IDX file of big-endian int32 (QMNIST's labels)."""
    header = bytes([0, 0, 0x0C, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    path.write_bytes(header + array.astype(">i4").tobytes())


def test_emnist_and_qmnist_by_name_from_local_files(tmp_path):
    images = np.zeros((27, 28, 28), np.uint8)
    images[:, 2, 5] = 255  # stored transposed: upright, this pixel is at row 5, column 2
    raw = tmp_path / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    for split in ("train", "test"):
        write_idx(raw / f"emnist-letters-{split}-images-idx3-ubyte.gz", images, compress=True)
        write_idx(
            raw / f"emnist-letters-{split}-labels-idx1-ubyte.gz",
            np.arange(27, dtype=np.uint8) % 26 + 1,
            compress=True,
        )
    letters = load_dataset("emnist-letters", tmp_path, download=False)
    assert letters.classes[:3] == ["N/A", "a", "b"] and len(letters.classes) == 27
    assert letters.train_images[0, 5, 2] == 255 and letters.train_images[0, 2, 5] == 0
    raw = tmp_path / "QMNIST" / "raw"
    raw.mkdir(parents=True)
    labels = np.zeros((27, 8), np.int64)
    labels[:, 0] = np.arange(27) % 10  # the class; the other 7 columns are QMNIST's extras
    labels[:, 1] = 1234
    for split in ("train", "test"):
        write_idx(raw / f"qmnist-{split}-images-idx3-ubyte", images)
        _idx_int32(raw / f"qmnist-{split}-labels-idx2-int", labels)
    qmnist = load_dataset("qmnist", tmp_path)
    assert qmnist.train_labels.tolist() == (np.arange(27) % 10).tolist()
    assert qmnist.classes[0] == "0 - zero"
    message = error(lambda: load_dataset("emnist-byclass", tmp_path))
    assert "could not be downloaded into it (quicknets does not download it)" in message


# -- bad data: one line naming the file and the row or the image -------------------------------


def _csv(tmp_path, text, name="d.csv"):
    (tmp_path / name).write_text(text)
    return tmp_path / name


@pytest.mark.parametrize(
    "text, message",
    [
        ("0,1,2,3,4\n1,1,2,3\n", "line 2 has 4 value(s); line 1 has 5 (a label, then the pixels)"),
        ("label,a,b,c,d\n0,1,2,3,4\n1,1,2,x,4\n", "line 3, column 4: 'x' is not a number"),
        ("0,1,2,3,4\n1,1,,3,4\n", "line 2, column 3: an empty cell"),
        (
            "0,1,2,3,4\n1,1,2,300,4\n",
            "line 2, column 4: 300 is not a pixel value (whole numbers 0..255)",
        ),
        ("0,1,2,3,4\n1,1,2.5,3,4\n", "line 2, column 3: 2.5 is not a pixel value"),
        ("0,1,2,3,4\n-1,1,2,3,4\n", "line 2: label -1 is negative"),
        (
            "0,1,2,3,4\n12345,1,2,3,4\n",
            "line 2: label 12345 is too large; class numbers run from 0",
        ),
        ("2,1,2,3,4\n2,1,2,3,4\n", "holds a single class (2); a classifier needs at least two"),
        (
            "0,1,2,3,4,5\n1,1,2,3,4,5\n",
            "rows of 5 pixels are not a square image in 1 or 3 "
            "channels (28x28 = 784, 3x32x32 = 3072)",
        ),
        ("0,1,2,3,4\n\n1,1,2,3,4\n", "line 2 is empty"),
        ("", "is empty"),
        ("label,p1,p2,p3,p4\n", "holds a header but no rows"),
    ],
)
def test_bad_csv(tmp_path, text, message):
    path = _csv(tmp_path, text)
    got = error(lambda: load_dataset(path))
    assert got.startswith(str(path)) and message in got, got


def test_bad_test_csv(tmp_path):
    train = _csv(tmp_path, "0,1,2,3,4\n1,1,2,3,4\n2,0,0,0,0\n" * 2, "digits_train.csv")
    test = _csv(tmp_path, "0,1,2,3,4\n7,1,2,3,4\n", "digits_test.csv")
    assert error(lambda: load_dataset(train)) == (
        f"{test} line 2: label 7 is not one of the 3 classes of {train} (0, 1, 2)"
    )
    names = _csv(tmp_path, "cat,1,2,3,4\ndog,1,2,3,4\n", "pets.csv")
    other = _csv(tmp_path, "bird,1,2,3,4\n", "other.csv")
    assert error(lambda: load_dataset(names, test=other)) == (
        f"{other} line 1: label bird is not one of the 2 classes of {names} (cat, dog)"
    )
    _csv(tmp_path, "1,2,3,4\n", "digits_test.csv")  # Kaggle's test.csv has no labels
    assert "give --test 0.2 to hold out part of the training set" in error(
        lambda: load_dataset(train)
    )
    held = load_dataset(train, test="0.34")  # a fraction given: the file beside is not read
    assert len(held.test_labels) == 3 and len(held.train_labels) == 3


def test_csv_without_header_of_names_and_converted_sizes(tmp_path):
    rows = "".join(
        f"{name},{','.join(str((i * 7 + k) % 256) for k in range(3 * 16))}\n"
        for i, name in enumerate(["cat", "dog", "cat", "dog", "cat", "dog"])
    )
    path = _csv(tmp_path, rows, "pets.csv")
    data = load_dataset(path, test=0.34)
    assert data.classes == ["cat", "dog"] and data.train_images.shape == (4, 3, 4, 4)
    assert load_dataset(path, test=0.34, image_size=8).train_images.shape == (4, 3, 8, 8)
    grey = load_dataset(path, test=0.34, channels=1)
    assert grey.train_images.shape == (4, 4, 4)
    r, g, b = (data.train_images[0, i].int() for i in range(3))
    assert torch.equal(
        grey.train_images[0].int(), (r * 19595 + g * 38470 + b * 7471 + 32768) >> 16
    )  # as PIL makes grey


def _grey_folder(root, sizes=((16, 16),) * 6, mode="L"):
    for i, size in enumerate(sizes):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.new(mode, size[::-1], 40 * i).save(folder / f"{i}.png")
    return root


def test_hidden_files_are_ignored(tmp_path):
    root = _grey_folder(tmp_path / "f")
    for junk in (".DS_Store", "a/.DS_Store", "a/._0.png", "b/Thumbs.db", ".git/x.png"):
        (root / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / junk).write_bytes(b"junk")
    (root / "b" / ".ipynb_checkpoints").mkdir()
    (root / "b" / ".ipynb_checkpoints" / "x.png").write_bytes(b"junk")
    data = load_dataset(root, test=0.34)
    assert data.classes == ["a", "b"] and len(data.train_labels) + len(data.test_labels) == 6


def test_bad_folders(tmp_path):
    root = _grey_folder(tmp_path / "corrupt")
    (root / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "b" / "notes.txt").write_text("hello")
    message = error(lambda: load_dataset(root))
    assert message.startswith(
        f"2 of 8 files in {root} cannot be read as images, so none were "
        f"used; the first: cannot read {root / 'a' / 'broken.png'} as an "
        "image ("
    )
    root = _grey_folder(tmp_path / "empty")
    (root / "c").mkdir()
    assert (
        error(lambda: load_dataset(root)) == f"{root / 'c'} holds no images (an empty class folder)"
    )
    root = tmp_path / "one"
    (root / "cat").mkdir(parents=True)
    Image.new("L", (8, 8)).save(root / "cat" / "1.png")
    assert (
        error(lambda: load_dataset(root))
        == f"{root} holds a single class folder (cat); a classifier needs at least two"
    )
    (tmp_path / "none").mkdir()
    assert error(lambda: load_dataset(tmp_path / "none")).startswith(
        f"{tmp_path / 'none'} holds no class folders"
    )
    root = _grey_folder(tmp_path / "sizes", [(16, 16)] * 5 + [(20, 24)])
    assert error(lambda: load_dataset(root)) == (
        f"{root} holds images of 2 sizes (16x16: 5, 20x24: 1; e.g. {root / 'a' / '5.png'}); "
        "give --image-size SIZE to bring them to SIZE x SIZE"
    )
    assert load_dataset(root, image_size=12, test=0.34).train_images.shape == (4, 12, 12)
    root = _grey_folder(tmp_path / "colours")
    Image.new("RGB", (16, 16), (200, 10, 10)).save(root / "a" / "red.png")
    assert error(lambda: load_dataset(root)).startswith(
        f"{root} holds grey and colour images: 6 grey (e.g. "
    )
    assert load_dataset(root, channels=3, test=0.34).train_images.shape == (5, 3, 16, 16)
    train = _grey_folder(tmp_path / "split" / "train")
    _grey_folder(tmp_path / "split" / "test")
    (tmp_path / "split" / "test" / "zebra").mkdir()
    Image.new("L", (16, 16)).save(tmp_path / "split" / "test" / "zebra" / "1.png")
    assert error(lambda: load_dataset(tmp_path / "split")) == (
        f"{tmp_path / 'split' / 'test' / 'zebra'} is a class that {train} does not have (its "
        "classes: a, b)"
    )


def test_bad_paths_and_the_cli_line(tmp_path, capsys):
    assert error(lambda: load_dataset(tmp_path / "nope.csv")).startswith(
        f"no file or folder {tmp_path / 'nope.csv'} (--dataset takes a built-in name: "
    )
    (tmp_path / "x.zip").write_bytes(b"PK")
    assert error(lambda: load_dataset(tmp_path / "x.zip")) == (
        f"{tmp_path / 'x.zip'} is not a CSV file (.csv, .csv.gz), an .npz file or a folder of "
        "class folders"
    )
    assert error(lambda: load_dataset("cifar")).startswith(
        "unknown dataset 'cifar': not a built-in one (fashion-mnist, "
    )
    bad = _csv(tmp_path, "0,1,2,3,4\n1,1,2,x,4\n")
    assert main(["train", "--dataset", str(bad), "--runs-dir", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {bad} line 2, column 4: 'x' is not a number\n"
    assert not (tmp_path / "runs").exists()
