"""Corruptions: shapes, dtypes, seeds, severity 0, each against a reference where one is plain;
robustness: the clean accuracy is evaluate()'s, and noise lowers it on a trained network."""

import dataclasses
import math

import pytest
import torch

from quicknets.base.errors import QuicknetsError
from quicknets.evaluation.robustness import (
    CORRUPTIONS,
    PARAMETERS,
    SEVERITIES,
    corrupt,
    format_robustness,
    robustness,
)


def batch(shape, seed=0) -> torch.Tensor:
    return torch.randint(
        0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize("shape", [(5, 28, 28), (4, 3, 32, 32), (3, 1, 28, 28)])
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_keeps_shape_and_dtype_and_is_seeded(name, shape):
    x = batch(shape)
    for severity in SEVERITIES:
        out = corrupt(x, name, severity)
        assert out.shape == x.shape and out.dtype == torch.uint8
        assert torch.equal(out, corrupt(x, name, severity))  # the same call, the same bytes
        assert not torch.equal(out, x)  # severity >= 1 changes something
    assert torch.equal(x, batch(shape))  # the input is left alone


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_severity_zero_is_the_identity(name):
    x = batch((6, 28, 28))
    out = corrupt(x, name, 0)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


@pytest.mark.parametrize(
    "name", ["translate", "rotate", "shear", "gaussian_noise", "impulse_noise"]
)
def test_the_seed_changes_the_random_draws(name):
    x = batch((64, 28, 28))
    assert not torch.equal(corrupt(x, name, 3, seed=0), corrupt(x, name, 3, seed=1))


@pytest.mark.parametrize("severity", SEVERITIES)
def test_translate_moves_each_image_by_whole_pixels(severity):
    x = batch((16, 28, 28), seed=severity)
    out = corrupt(x, "translate", severity)
    d = PARAMETERS["translate"][severity - 1]

    def shifted(image, dy, dx):  # the content moved by (dy, dx), black where it came from
        canvas = torch.zeros(28 + 2 * d, 28 + 2 * d, dtype=torch.uint8)
        canvas[d + dy : d + dy + 28, d + dx : d + dx + 28] = image
        return canvas[d : d + 28, d : d + 28]

    for image, result in zip(x, out):
        assert any(
            torch.equal(result, shifted(image, sy * d, sx * d)) for sy in (-1, 1) for sx in (-1, 1)
        )


def test_pixel_corruptions_against_their_formulas():
    x = batch((8, 3, 16, 16))
    c = PARAMETERS["contrast"][2]
    mean = x.double().mean((2, 3), keepdim=True)
    assert torch.equal(
        corrupt(x, "contrast", 3),
        ((x.double() - mean) * c + mean).round().clamp(0, 255).to(torch.uint8),
    )
    grey = batch((8, 28, 28))
    b = PARAMETERS["brightness"][1] * 255  # grey: HSV's value is the pixel itself
    assert torch.equal(
        corrupt(grey, "brightness", 2), (grey.double() + b).round().clamp(0, 255).to(torch.uint8)
    )
    band = PARAMETERS["stripe"][4]
    expected = grey.clone()
    expected[..., :band] = 255 - grey[..., :band]
    expected[..., 28 - band :] = 255 - grey[..., 28 - band :]
    assert torch.equal(corrupt(grey, "stripe", 5), expected)


def test_brightness_keeps_hue_and_saturation_of_colour():
    rgb = torch.tensor([[[[200]], [[100]], [[50]]]], dtype=torch.uint8)  # (1, 3, 1, 1)
    out = corrupt(rgb, "brightness", 1)[0, :, 0, 0].double()  # V: 200 -> 225.5
    assert out.tolist() == [226.0, 113.0, 56.0]  # x * 225.5 / 200, rounded


def test_noise_has_the_stated_strength():
    grey = torch.full((50, 28, 28), 128, dtype=torch.uint8)  # mid-grey: no clipping at s1
    noisy = corrupt(grey, "gaussian_noise", 1).double() - 128
    assert noisy.std().item() == pytest.approx(PARAMETERS["gaussian_noise"][0] * 255, rel=0.02)
    hit = corrupt(grey, "impulse_noise", 4)
    share = PARAMETERS["impulse_noise"][3]
    assert (hit == 0).double().mean().item() == pytest.approx(share / 2, abs=0.005)
    assert (hit == 255).double().mean().item() == pytest.approx(share / 2, abs=0.005)
    assert ((hit == 0) | (hit == 255) | (hit == 128)).all()


def test_blur_keeps_a_flat_image_and_smooths_the_rest():
    flat = torch.full((2, 28, 28), 77, dtype=torch.uint8)
    assert torch.equal(corrupt(flat, "gaussian_blur", 5), flat)  # edges extended, kernel sums to 1
    x = batch((4, 28, 28))
    stds = [corrupt(x, "gaussian_blur", s).double().std().item() for s in (0, 1, 3, 5)]
    assert stds == sorted(stds, reverse=True)


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 3, 32, 32), (2, 1, 20, 36)])
@pytest.mark.parametrize("severity", SEVERITIES)
def test_blur_is_a_gaussian_convolution_with_the_edges_extended(shape, severity):
    """Against the plain reference: a float64 padded convolution with skimage's kernel
    (truncated at 4 std), each pixel within 1 of it after rounding (float32 sums)."""
    from torch.nn import functional as F

    x = batch(shape, seed=severity)
    sigma = PARAMETERS["gaussian_blur"][severity - 1] * shape[-1] / 28
    radius = max(1, math.ceil(4 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    y = x.double().flatten(0, 1)[:, None]  # (N * C, 1, H, W)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    reference = y.reshape(shape).round().clamp(0, 255)
    out = corrupt(x, "gaussian_blur", severity).double()
    assert (out - reference).abs().max() <= 1 and (out != reference).double().mean() < 0.01


def test_geometric_corruptions_keep_a_centred_blob_centred():
    x = torch.zeros(1, 28, 28, dtype=torch.uint8)
    x[0, 12:16, 12:16] = 255  # centre of the field: 14, 14
    for name in ("rotate", "scale", "shear"):
        out = corrupt(x, name, 5)[0].double()
        rows, cols = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
        centre = ((out * rows).sum() / out.sum(), (out * cols).sum() / out.sum())
        assert centre[0].item() == pytest.approx(13.5, abs=0.3), name
        assert centre[1].item() == pytest.approx(13.5, abs=0.3), name


@pytest.mark.parametrize(
    "args, match",
    [
        ((batch((2, 28, 28)), "fog", 1), "unknown corruption"),
        ((batch((2, 28, 28)), "rotate", 6), "severity"),
        ((batch((2, 28, 28)), "rotate", True), "severity"),
        ((batch((2, 28, 28)).float(), "rotate", 1), "uint8"),
        ((batch((28, 28))[None, None, None], "rotate", 1), "uint8"),
    ],
)
def test_bad_corruption_calls_are_one_clear_error(args, match):
    with pytest.raises(QuicknetsError, match=match):
        corrupt(*args)


def test_robustness_on_tiny_data_starts_at_the_clean_accuracy(tiny):
    from quicknets.evaluation.metrics import evaluate
    from quicknets.networks.models import network
    from quicknets.training.loop import train

    model = network("784-32-10")
    train(model, tiny, epochs=2, quiet=True, threads=1)
    result = robustness(
        model,
        tiny.test_images,
        tiny.test_labels,
        corruptions=("rotate", "stripe"),
        severities=(1, 5),
    )
    clean = evaluate(model, tiny)["accuracy"]
    assert result["clean_accuracy"] == clean and result["severities"] == [0, 1, 5]
    assert [row[0] for row in result["accuracy"].values()] == [clean, clean]
    corrupted = [a for row in result["accuracy"].values() for a in row[1:]]
    assert result["mean_corruption_accuracy"] == pytest.approx(sum(corrupted) / 4)
    text = format_robustness(result)
    assert text.splitlines()[1].startswith("rotate") and "mean corruption accuracy" in text
    with pytest.raises(QuicknetsError, match="shape"):
        robustness(model, batch((3, 32, 32)), torch.zeros(3, dtype=torch.long))
    with pytest.raises(QuicknetsError, match="labels"):
        robustness(model, tiny.test_images, tiny.test_labels[:5])
    with pytest.raises(QuicknetsError, match="severities"):
        robustness(model, tiny.test_images, tiny.test_labels, severities=(0, 1))


def test_noise_lowers_the_accuracy_of_a_trained_network(fashion):
    from quicknets.networks.models import network
    from quicknets.training.loop import train

    small = dataclasses.replace(
        fashion,
        train_images=fashion.train_images[:10000],
        train_labels=fashion.train_labels[:10000],
    )
    model = network("784-128-10")
    train(model, small, epochs=2, quiet=True, threads=1)
    result = robustness(
        model,
        fashion.test_images[:3000],
        fashion.test_labels[:3000],
        corruptions=("gaussian_noise", "impulse_noise", "contrast"),
    )
    for name, accuracy in result["accuracy"].items():
        assert accuracy[0] > 0.75, name  # it learned
        assert accuracy[5] < accuracy[0] - 0.03, name  # the worst severity costs accuracy
        assert all(a >= b - 0.01 for a, b in zip(accuracy, accuracy[1:])), (name, accuracy)
