"""Where does it break? Accuracy under corruptions at graded severities, as MNIST-C and ImageNet-C.

    x = corrupt(data.test_images, "rotate", severity=3)   # uint8, same shape, seeded
    result = robustness(model, data.test_images, data.test_labels)
    result["accuracy"]["gaussian_noise"]      # [clean, severity 1, ..., severity 5]
    result["mean_corruption_accuracy"]        # over every corruption and severities 1-5

Corruptions (CORRUPTIONS), on uint8 batches (N, H, W) grey or (N, C, H, W), each at severities
1-5 (severity 0 is the identity: the images as they are, so its accuracy is the clean one).
The parameters follow MNIST-C (Mu & Gilmer, arXiv:1906.02337, 2019: github.com/google-research/
mnist-c, corruptions.py) and ImageNet-C (Hendrycks & Dietterich, ICLR 2019), for 28x28 images;
lengths in pixels scale with the image's width / 28:
    translate       shifted by 1..5 pixels in x and in y, each direction drawn per image
    rotate          0.2..1.0 radians (11..57 degrees) about the centre, sign drawn per image
    scale           shrunk about the centre to 0.9..0.5 of its size
    shear           MNIST-C's shear 0.2..1.0 (x' = x - sin(c) y, y' = cos(c) y, about the
                    centre), sign drawn per image
    gaussian_noise  + normal noise of std .08, .12, .18, .26, .38 (pixels in [0, 1])
    impulse_noise   a share .03, .06, .09, .17, .27 of the values set to 0 or 255 (half each)
    gaussian_blur   Gaussian blur of std 1, 2, 3, 4, 6 pixels (edges extended)
    contrast        (x - mean) * .4, .3, .2, .1, .05 + mean, per image and channel
    brightness      + .1 .. .5 on HSV's value (V), hue and saturation kept
    stripe          an occlusion: MNIST-C's stripe (the outer 7 columns on each side inverted,
                    x -> 255 - x), here 1, 2, 3, 5, 7 columns (per 28) on each side
Geometric ones sample bilinearly with a black fill (the datasets' background). Everything is
drawn from one torch.Generator seeded by (seed, corruption, severity): the same call gives the
same bytes. Results are rounded to the nearest whole pixel value and clipped to 0..255.
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

from quicknets.base.errors import QuicknetsError
from quicknets.base.machine import use_strict_math
from quicknets.data.preprocessing import preprocessing_of
from quicknets.evaluation.metrics import log_probabilities

SEVERITIES = (1, 2, 3, 4, 5)
CORRUPTIONS = (
    "translate",
    "rotate",
    "scale",
    "shear",
    "gaussian_noise",
    "impulse_noise",
    "gaussian_blur",
    "contrast",
    "brightness",
    "stripe",
)
PARAMETERS = {  # severity 1..5, for 28-pixel-wide images (MNIST-C / ImageNet-C)
    "translate": (1, 2, 3, 4, 5),  # pixels in x and in y
    "rotate": (0.2, 0.4, 0.6, 0.8, 1.0),  # radians
    "scale": (0.9, 0.8, 0.7, 0.6, 0.5),  # size after
    "shear": (0.2, 0.4, 0.6, 0.8, 1.0),  # MNIST-C's shear angle, radians
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),  # std, pixels in [0, 1]
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),  # share of values hit
    "gaussian_blur": (1, 2, 3, 4, 6),  # std, pixels
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),  # contrast kept
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),  # added to HSV's value in [0, 1]
    "stripe": (1, 2, 3, 5, 7),  # columns inverted on each side
}


def _batch(images) -> tuple:
    """uint8 (N, H, W) or (N, C, H, W) -> (float (N, C, H, W) in 0..255, grey?)."""
    if (
        not isinstance(images, torch.Tensor)
        or images.dtype != torch.uint8
        or images.dim() not in (3, 4)
    ):
        raise QuicknetsError(
            "corruptions take uint8 images (N, H, W) or (N, C, H, W), not "
            f"{getattr(images, 'dtype', type(images).__name__)} "
            f"{tuple(getattr(images, 'shape', ()))}"
        )
    grey = images.dim() == 3
    return (images[:, None] if grey else images).float(), grey


def _signs(n: int, generator: torch.Generator, columns: int = 1) -> torch.Tensor:
    return torch.randint(0, 2, (n, columns), generator=generator).float() * 2 - 1  # +-1


def _warp(x: torch.Tensor, linear: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each output pixel p (centred pixel coordinates, x right, y down) takes the input at
    linear @ p + shift: linear (N, 2, 2), shift (N, 2). Bilinear, black outside."""
    n, _, h, w = x.shape
    scale = torch.tensor([w / 2, h / 2])  # normalised -> centred pixels (align_corners=False)
    theta = torch.cat(
        [linear * scale[None, None, :] / scale[None, :, None], (shift / scale)[:, :, None]], 2
    )  # (N, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _blur_matrix(size: int, kernel: torch.Tensor) -> torch.Tensor:
    """(size, size) B such that (row @ B)[j] = sum_t kernel[t] row[clamp(j + t - radius)]: the
    1-D blur of a row with its edges extended, as one matrix product."""
    radius = len(kernel) // 2
    j = torch.arange(size).expand(len(kernel), size)  # (taps, size): the output pixel
    source = (j + torch.arange(-radius, radius + 1)[:, None]).clamp(0, size - 1)
    weights = kernel[:, None].expand(len(kernel), size)
    return torch.zeros(size, size).index_put_((source, j), weights, accumulate=True)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(4 * sigma))  # skimage's truncate=4
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    _, _, h, w = x.shape
    # separable, as two products: 10-20x faster on the CPU than conv2d with one channel
    return _blur_matrix(h, kernel).T @ (x @ _blur_matrix(w, kernel))


def corrupt(images: torch.Tensor, corruption: str, severity: int, seed: int = 0) -> torch.Tensor:
    """`images` (uint8 (N, H, W) or (N, C, H, W)) under `corruption` (see CORRUPTIONS) at
    `severity` 0..5, as a new uint8 tensor of the same shape; severity 0 returns a copy.
    The random draws depend only on (seed, corruption, severity) and N."""
    if corruption not in CORRUPTIONS:
        raise QuicknetsError(
            f"unknown corruption {corruption!r}; choose from {', '.join(CORRUPTIONS)}"
        )
    if isinstance(severity, bool) or severity not in (0, *SEVERITIES):
        raise QuicknetsError(f"severity is a whole number 0..{SEVERITIES[-1]}, not {severity!r}")
    use_strict_math()  # before anything multiplies: the CLI's math mode, as evaluate
    x, grey = _batch(images)
    if severity == 0 or len(x) == 0:
        return images.clone()
    g = torch.Generator().manual_seed(
        seed * 1_000_003 + CORRUPTIONS.index(corruption) * 10 + severity
    )
    c = PARAMETERS[corruption][severity - 1]
    n, channels, h, w = x.shape
    per_pixel = w / 28  # lengths are given for 28-pixel-wide images
    eye = torch.eye(2).expand(n, 2, 2)
    zero = torch.zeros(n, 2)
    if corruption == "translate":
        x = _warp(x, eye, -c * per_pixel * _signs(n, g, 2))  # content moves by +d
    elif corruption in ("rotate", "shear"):
        angle = c * _signs(n, g)[:, 0]
        cos, sin = torch.cos(angle), torch.sin(angle)
        if corruption == "rotate":  # the inverse map: rotate back by the angle
            linear = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)
        else:  # MNIST-C's skimage AffineTransform(shear=c) as the inverse map
            linear = torch.stack(
                [torch.stack([torch.ones(n), -sin], 1), torch.stack([torch.zeros(n), cos], 1)], 1
            )
        x = _warp(x, linear, zero)
    elif corruption == "scale":
        x = _warp(x, eye / c, zero)
    elif corruption == "gaussian_noise":
        x = x + torch.randn(x.shape, generator=g) * (c * 255)
    elif corruption == "impulse_noise":
        u = torch.rand(x.shape, generator=g)
        x = torch.where(u < c / 2, 0.0, torch.where(u < c, 255.0, x))
    elif corruption == "gaussian_blur":
        x = _blur(x, c * per_pixel)
    elif corruption == "contrast":
        mean = x.mean((2, 3), keepdim=True)
        x = (x - mean) * c + mean
    elif corruption == "brightness":  # HSV: V = max channel; scaling RGB by V'/V keeps H and S
        value = x.max(1, keepdim=True).values
        brighter = (value + c * 255).clamp(max=255)
        x = torch.where(value > 0, x * brighter / value.clamp(min=1e-12), brighter)
    elif corruption == "stripe":
        band = max(1, round(c * per_pixel))
        x = x.clone()
        x[..., :band] = 255 - x[..., :band]
        x[..., w - band :] = 255 - x[..., w - band :]
    out = x.round().clamp(0, 255).to(torch.uint8)
    return out[:, 0] if grey else out


def robustness(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    corruptions=CORRUPTIONS,
    severities=SEVERITIES,
    seed: int = 0,
) -> dict:
    """Accuracy of `model` on uint8 `images` (N, H, W) or (N, C, H, W) of its shape with
    `labels` (N,), under each corruption at severity 0 (clean) and each of `severities`:
    {"clean_accuracy", "accuracy": {corruption: [clean, severity 1, ...]}, "severities":
    [0, 1, ...], "mean_corruption_accuracy": the mean over corruptions and severities >= 1,
    "n"}. The images get the model's own preprocessing."""
    pre = preprocessing_of(model)
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or len(labels) != len(images) or len(labels) == 0:
        raise QuicknetsError(
            f"labels must have shape ({len(images)},) for {len(images)} "
            f"images, not {tuple(labels.shape)}"
        )
    shape = tuple(images.shape[1:]) if images.dim() == 4 else (1, *images.shape[1:])
    if shape != tuple(pre.shape):
        raise QuicknetsError(
            f"the model takes images of shape {tuple(pre.shape)}, these are {shape}"
        )
    for s in severities:
        if isinstance(s, bool) or s not in SEVERITIES:
            raise QuicknetsError(f"severities are whole numbers 1..{SEVERITIES[-1]}, not {s!r}")

    def accuracy(x: torch.Tensor) -> float:
        predicted = log_probabilities(model, pre.normalize(x)).argmax(1).cpu()
        # as metrics.evaluate divides, so severity 0 gives its accuracy to the bit
        return (predicted == labels).sum().item() / len(labels)

    clean = accuracy(images)
    table = {
        name: [clean] + [accuracy(corrupt(images, name, s, seed)) for s in severities]
        for name in corruptions
    }
    corrupted = [a for row in table.values() for a in row[1:]]
    return {
        "clean_accuracy": clean,
        "accuracy": table,
        "severities": [0, *severities],
        "mean_corruption_accuracy": sum(corrupted) / len(corrupted) if corrupted else clean,
        "n": len(labels),
    }


def format_robustness(result: dict) -> str:
    """One row per corruption: its accuracy at each severity; then the mean."""
    head = f"{'corruption':<15}" + "".join(f"{f's{s}':>8}" for s in result["severities"])
    rows = [
        f"{name:<15}" + "".join(f"{a:>8.4f}" for a in accs)
        for name, accs in result["accuracy"].items()
    ]
    return "\n".join(
        [head, *rows, f"mean corruption accuracy: {result['mean_corruption_accuracy']:.4f}"]
    )
