"""classify: tensors, test-set indices and image files of any size or colour."""

import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from quicknets.base.errors import QuicknetsError
from quicknets.evaluation.classification import banner, classify, load_image, probabilities
from quicknets.networks.models import network


@pytest.fixture
def model():
    torch.manual_seed(0)
    return network("784-32-10")


def test_top_classes_sorted_with_probabilities(model, tiny):
    top = classify(model, 0, tiny, top=3)
    assert len(top) == 3
    probs = [row["probability"] for row in top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    every = probabilities(model, 0, tiny)
    assert every.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert top[0]["index"] == every.argmax().item()
    assert top[0]["class"] == tiny.classes[top[0]["index"]]


def test_uint8_pixels_and_normalised_floats_agree(model, tiny):
    pixels = tiny.test_images[3]
    by_pixels = classify(model, pixels, tiny, top=10)
    by_float = classify(model, tiny.normalize(pixels[None])[0], tiny, top=10)
    assert [r["class"] for r in by_pixels] == [r["class"] for r in by_float]
    assert by_pixels[0]["probability"] == pytest.approx(by_float[0]["probability"])
    assert classify(model, 3, tiny, top=10) == by_pixels


def test_image_file_any_size_and_colour(tmp_path):
    img = Image.new("RGB", (300, 120), (250, 250, 250))  # a wide photo on white
    for x in range(100, 200):
        for y in range(30, 90):
            img.putpixel((x, y), (200, 30, 30))
    img.save(tmp_path / "shoe.jpg")
    pixels = load_image(tmp_path / "shoe.jpg")
    assert pixels.shape == (1, 28, 28) and pixels.dtype == torch.uint8
    pixels = pixels[0]
    assert pixels[0, 0] < 30  # light background inverted to the dataset's black
    assert pixels[14, 14] > 100  # the object is light, centred, and fills the width
    assert pixels[14, 1] > 100 and pixels[14, 26] > 100


def test_grayscale_png_on_black_is_not_inverted(tmp_path):
    img = Image.new("L", (28, 28), 0)
    img.paste(255, (10, 5, 18, 23))
    img.save(tmp_path / "bar.png")
    pixels = load_image(tmp_path / "bar.png")[0]
    assert pixels[0, 0] == 0 and pixels[14, 14] > 200


def test_grayscale_photo_is_turned_upright_by_its_exif_orientation(tmp_path):
    img = Image.new("L", (56, 28), 0)  # a wide bar on black, stored sideways by a camera
    img.paste(255, (4, 10, 52, 18))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    img.save(tmp_path / "bar.jpg", exif=exif)
    pixels = load_image(tmp_path / "bar.jpg")[0]
    assert pixels[:, 14].float().mean() > 150 and pixels[14, 2] < 30  # upright: a tall bar


def test_unreadable_image(tmp_path, model):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(QuicknetsError, match="cannot read .*bad.png as an image"):
        classify(model, tmp_path / "bad.png")
    with pytest.raises(QuicknetsError, match="no image file"):
        classify(model, tmp_path / "missing.png")


def test_wrong_shapes_and_indices(model, tiny):
    with pytest.raises(
        QuicknetsError,
        match=r"laid out \(1, 28, 28\), \(28, 28, 1\), "
        r"\(28, 28\) or flat \(784,\), not \(3, 32, 32\)",
    ):
        classify(model, torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(QuicknetsError, match="outside the test set"):
        classify(model, 100, tiny)
    with pytest.raises(QuicknetsError, match="needs the dataset"):
        classify(model, 0)


def test_banner_centres_the_name():
    lines = banner("Ankle Boot").splitlines()
    assert len(lines) == 3 and lines[0] == "#" * 40
    assert lines[1].startswith("#") and lines[1].endswith("#") and "Ankle Boot" in lines[1]
    assert len(lines[1]) == 40


@pytest.fixture
def trained(tiny_dir):
    """A model trained on MNIST-style data with its own normalisation."""
    from quicknets.data.loading import load_dataset
    from quicknets.training.loop import train

    data = load_dataset("mnist", tiny_dir, mean=0.3, std=0.2, verify=False)
    model = network("784-32-10")
    train(model, data, epochs=2, quiet=True, threads=1)
    return model.eval(), data


def test_a_dataset_image_saved_as_png_gets_the_probabilities_of_its_index(trained, tmp_path):
    model, data = trained
    for i in range(10):
        Image.fromarray(data.test_images[i].numpy()).save(tmp_path / f"{i}.png")
        by_file = probabilities(model, tmp_path / f"{i}.png")
        assert torch.equal(by_file, probabilities(model, i, data))


def test_the_model_brings_its_own_normalisation_and_classes(trained, tiny_dir):
    from quicknets.data.loading import load_dataset

    model, data = trained
    other = load_dataset("mnist", tiny_dir, verify=False)  # loaded with the default 0.5, 0.5
    assert torch.equal(probabilities(model, 5, other), probabilities(model, 5, data))
    top = classify(model, data.test_images[5])  # no data given: the model knows its classes
    assert top[0]["class"] in data.classes


def test_digit_models_lay_files_out_as_mnist(trained, tmp_path):
    from quicknets.data.images import load_image as load

    model, _ = trained
    img = Image.new("L", (100, 200), 0)
    img.paste(255, (40, 20, 60, 180))  # a tall "1"
    img.save(tmp_path / "one.png")
    digits = load(tmp_path / "one.png", layout="digits")
    assert model.preprocessing.layout == "digits"
    x = model.preprocessing.normalize(digits[None])
    with torch.no_grad():
        assert torch.allclose(probabilities(model, tmp_path / "one.png"), model(x)[0].exp())
    assert (digits[0].sum(1) > 0).sum() <= 20  # the digit fits MNIST's 20-pixel box


def test_a_model_for_other_classes_is_refused(tiny):
    five = network("784-5", num_classes=5)
    with pytest.raises(QuicknetsError, match="5 outputs, but the data has 10 classes"):
        classify(five, 0, tiny)


@pytest.fixture(scope="module")
def fashion_mlp(fashion):
    """A small MLP trained for one epoch on Fashion-MNIST (about 0.8 test accuracy)."""
    from quicknets.training.loop import train

    net = network("784-32-10", seed=0)
    train(net, fashion, epochs=1, threads=1, quiet=True)
    return net


def _float_forms(pixels, pre):
    """The ways a user hands over the same images as floats: {name: (images, scale)}."""
    import numpy as np
    from torchvision.transforms import Normalize, ToTensor

    pil = [Image.fromarray(x.numpy()) for x in pixels]
    unit = torch.stack([ToTensor()(p) for p in pil])  # (N, 1, 28, 28) in [0, 1]
    as_float = np.stack([np.asarray(p, dtype=np.float32) for p in pil])  # (N, 28, 28) 0..255
    normalized = Normalize(pre.mean, pre.std)(unit)  # what the notebook's DataLoader gives
    return {
        "ToTensor [0, 1]": unit,
        "float32 0..255 (numpy)": as_float,
        "normalised": normalized,
        "float64 [0, 1]": unit.double(),
        "float64 0..255 (numpy)": as_float.astype(np.float64),
        "normalised float64 (numpy)": normalized.double().numpy(),
        "[0, 1] channels-last (numpy)": unit.permute(0, 2, 3, 1).numpy(),
        "[0, 1] non-contiguous": unit.transpose(2, 3).contiguous().transpose(2, 3),
        "[0, 1] flat": unit.reshape(len(unit), -1),
        "list of ToTensor images": list(unit),
        "half [0, 1]": unit.half(),
    }


def test_float_images_of_every_scale_predict_as_their_uint8_pixels(fashion_mlp, fashion):
    """ToTensor floats in [0, 1] were read as normalised (accuracy 0.80 became 0.48): every
    float form of the test images now gives the uint8 answer."""
    from quicknets.evaluation.classification import predict, predict_proba

    pixels, labels = fashion.test_images[:1000], fashion.test_labels[:1000]
    want = predict(fashion_mlp, pixels)
    accuracy = (want == labels).float().mean().item()
    assert accuracy > 0.75
    probs = predict_proba(fashion_mlp, pixels)
    for name, images in _float_forms(pixels, fashion_mlp.preprocessing).items():
        got = predict(fashion_mlp, images)
        assert torch.equal(got, want), (name, (got == labels).float().mean().item())
        if "half" not in name:  # float16 holds pixel / 255 to 3 digits only
            assert torch.allclose(predict_proba(fashion_mlp, images), probs, atol=1e-5), name
    unit = _float_forms(pixels[:2], fashion_mlp.preprocessing)["ToTensor [0, 1]"]
    same = predict_proba(fashion_mlp, pixels[:2])  # the same batch size: the same kernels
    assert torch.equal(predict_proba(fashion_mlp, unit), same)  # the very same bits
    assert torch.equal(predict_proba(fashion_mlp, unit, scale="unit"), same)


def test_classify_reads_each_float_form_as_its_pixels(fashion_mlp, fashion):
    pixels = fashion.test_images[:5]
    forms = _float_forms(pixels, fashion_mlp.preprocessing)
    for i in range(5):
        want = classify(fashion_mlp, pixels[i], top=10)
        for name, images in forms.items():
            if "list" in name:
                continue
            got = classify(fashion_mlp, images[i], top=10)
            assert [r["index"] for r in got] == [r["index"] for r in want], (name, i)
            assert got[0]["probability"] == pytest.approx(want[0]["probability"], abs=1e-3)


def test_an_unsure_or_impossible_float_reading_says_so(fashion_mlp, fashion):
    import dataclasses
    import warnings

    from quicknets.evaluation.classification import predict, predict_proba

    unit = fashion.test_images[:50].float() / 255
    with pytest.warns(UserWarning, match="read as unit .* no 0 \\(no black pixel\\)"):
        predict(fashion_mlp, unit * 0.5 + 0.25)  # grey, no black pixel: could be normalised
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict(fashion_mlp, unit * 0.5 + 0.25, scale="unit")  # said: no warning
        predict(fashion_mlp, unit)  # black pixels: surely not normalised (black is -1 there)
    cases = [
        (
            unit * 2 - 1.5,
            "auto",
            "read as normalized .* from -1.5 to 0.5, outside -1..1: "
            "normalised with other statistics",
        ),
        (unit * 255, "unit", "read as unit .* from 0 to 255, outside 0..1"),
        (unit * 255 - 20, "pixels", "read as pixels .* from -20"),
        (unit * 1.03, "auto", "could be unit .* that resampling took a little beyond"),
        (unit - 0.02, "auto", "could be unit .* that resampling took a little beyond"),
        (fashion.test_images[:3], "unit", "torch.uint8 images are pixels"),
        (unit, "raw", "scale must be one of auto, pixels, unit, normalized"),
    ]
    for images, scale, message in cases:
        with pytest.raises(QuicknetsError, match=message):
            predict(fashion_mlp, images, scale=scale)
    overshoot = unit.clone()  # as a bicubic resize leaves [0, 1] images: a little beyond
    overshoot[:, 10:12, 10:12] = torch.tensor([[-0.02, 1.03], [1.01, -0.01]])
    assert torch.allclose(
        predict_proba(fashion_mlp, overshoot, scale="unit"),  # taken as given
        predict_proba(fashion_mlp, (overshoot - 0.5) / 0.5),
        atol=1e-6,
    )
    zero_mean = dataclasses.replace(fashion_mlp.preprocessing, mean=(0.0,), std=(0.3,))
    other = network("784-32-10", seed=0)
    other.preprocessing = zero_mean  # black normalises to 0: no sign tells the readings apart
    with pytest.raises(QuicknetsError, match="could be unit or normalised .* scale='unit'"):
        predict(other, unit)
    assert torch.equal(predict(other, unit, scale="unit"), predict(other, fashion.test_images[:50]))
    other.preprocessing = dataclasses.replace(zero_mean, std=(1.0,))  # then they coincide
    assert torch.equal(predict(other, unit), predict(other, fashion.test_images[:50]))


def test_empty_batches_and_other_edges(fashion_mlp, fashion):
    import numpy as np

    from quicknets.evaluation.classification import predict, predict_proba

    for empty in ([], fashion.test_images[:0], np.zeros((0, 28, 28), np.float32)):
        assert predict_proba(fashion_mlp, empty).shape == (0, 10)
        assert predict(fashion_mlp, empty).shape == (0,)
        assert predict(fashion_mlp, empty, names=True) == []
    with pytest.raises(QuicknetsError, match="classify takes one image, not a list"):
        classify(fashion_mlp, [])
    with pytest.raises(QuicknetsError, match="classify takes one image, not a list"):
        classify(fashion_mlp, [fashion.test_images[0]])
    want = predict(fashion_mlp, fashion.test_images[:4])
    as_int = [fashion.test_images[:4].int(), fashion.test_images[:4].numpy().astype(np.int64)]
    for images in as_int:
        assert torch.equal(predict(fashion_mlp, images), want)
    flipped = np.ascontiguousarray(fashion.test_images[:4].numpy()[:, ::-1])[:, ::-1]
    assert flipped.strides[1] < 0 and torch.equal(predict(fashion_mlp, flipped), want)
    assert classify(fashion_mlp, flipped[0])[0]["index"] == want[0]
    keras = fashion.test_images[:4].numpy()[..., None]  # (4, 28, 28, 1)
    assert torch.equal(predict(fashion_mlp, keras), want)
    assert classify(fashion_mlp, keras[0])[0]["index"] == want[0]
    assert classify(fashion_mlp, fashion.test_images[:1])[0]["index"] == want[0]  # (1, 28, 28)


@pytest.mark.parametrize(
    "first",
    [
        "predict_proba(m, torch.zeros(2, 28, 28, dtype=torch.uint8))",
        "classify(m, torch.zeros(28, 28, dtype=torch.uint8))",
        "summary(m)",
    ],
)
def test_classifying_first_puts_the_process_in_the_cli_math_mode(first):
    """Whatever quicknets call multiplies first fixes MKL's mode for the process: each puts it
    in the command line's strict mode, so a train() after it gives the CLI's numbers, with no
    warning (-W error would turn one into a failure)."""
    code = (
        "import torch\n"
        "from quicknets import classify, network, predict_proba, summary\n"
        "from quicknets.base.machine import math_mode\n"
        "m = network('784-8-10')\n"
        f"{first}\n"
        "print(math_mode())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "MKL_CBWR=AUTO,STRICT"
