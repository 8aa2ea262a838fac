"""tricks.py against brute-force references, and the train loop's trick paths on tiny data."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from quicknets.config.configs import TrainConfig
from quicknets.evaluation.metrics import evaluate
from quicknets.networks.models import network
from quicknets.training.loop import make_optimizer, train, train_epoch
from quicknets.training.tricks import augment, draw_augment, lr_at


def test_constant_schedule_is_the_peak():
    assert [lr_at(s, 10, 0.5) for s in range(10)] == [0.5] * 10


def test_linear_schedule_falls_from_peak_to_zero():
    lrs = [lr_at(s, 11, 1.0, "linear") for s in range(11)]
    assert lrs[0] == 1.0 and lrs[-1] == 0.0
    assert lrs == pytest.approx([1 - s / 10 for s in range(11)])


def test_onecycle_rises_from_a_tenth_to_the_peak_then_falls_to_zero():
    lrs = [lr_at(s, 101, 2.0, "onecycle", warmup=0.2) for s in range(101)]
    assert lrs[0] == pytest.approx(0.2)
    assert max(lrs) == pytest.approx(2.0) and lrs.index(max(lrs)) == 20
    assert all(a < b for a, b in zip(lrs[:20], lrs[1:21]))
    assert all(a > b for a, b in zip(lrs[20:-1], lrs[21:]))
    assert lrs[-1] == 0.0


def test_unknown_schedule_fails():
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_at(1, 10, 0.1, "cosine")


def reference_augment(x, shifts, flips, t):
    """One image at a time: replicate-pad by t, cut the shifted window, mirror if asked."""
    out = []
    for img, (dy, dx), f in zip(x, shifts.tolist(), flips.tolist()):
        padded = F.pad(img[None], (t, t, t, t), mode="replicate")[0]
        h, w = img.shape[-2:]
        moved = padded[:, t - dy : t - dy + h, t - dx : t - dx + w]
        out.append(moved.flip(-1) if f else moved)
    return torch.stack(out)


def test_augment_matches_a_per_image_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1, 28, 28, generator=g)
    shifts, flips = draw_augment(16, 3, True, g)
    assert shifts.abs().max() <= 3 and shifts.abs().max() > 0 and 0 < flips.sum() < 16
    assert torch.equal(augment(x, shifts, flips, 3), reference_augment(x, shifts, flips, 3))


def test_augment_moves_the_content_down_and_right():
    x = torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 1, 28, 28)
    shifts = torch.tensor([[1, 0], [0, 2]])
    out = augment(x, shifts, torch.zeros(2, dtype=torch.bool), 2)
    assert torch.equal(out[0, :, 1:], x[0, :, :-1])  # one row down
    assert torch.equal(out[0, :, 0], x[0, :, 0])  # the top row repeated into the gap
    assert torch.equal(out[1, :, :, 2:], x[1, :, :, :-2])


def test_augment_without_moves_is_the_identity():
    x = torch.randn(4, 1, 28, 28)
    shifts, flips = draw_augment(4, 0, False, torch.Generator().manual_seed(1))
    assert torch.equal(augment(x, shifts, flips, 0), x)


def test_train_epoch_follows_the_schedule_to_its_last_step(tiny):
    cfg = TrainConfig(lr=0.01, schedule="linear", batch_size=100)
    model = network("784-16-10")
    opt = make_optimizer(model, cfg)
    x, y = tiny.normalize(tiny.train_images), tiny.train_labels  # 300 images: 3 steps
    train_epoch(
        model,
        opt,
        nn.NLLLoss(),
        x,
        y,
        100,
        torch.Generator().manual_seed(0),
        config=cfg,
        first_step=3,
        total_steps=7,
    )
    assert opt.param_groups[0]["lr"] == pytest.approx(lr_at(5, 7, 0.01, "linear"))


def test_every_recipe_together_learns_and_repeats(tiny):
    # the tiny set's class is a bright row band, so shifts stay at 1 row
    settings = dict(
        epochs=4,
        batch_size=32,
        lr=0.01,
        schedule="onecycle",
        label_smoothing=0.1,
        translate=1,
        flip=True,
        bf16=True,
        channels_last=True,
        seed=3,
        threads=1,
        device="cpu",
    )
    histories = []
    for _ in range(2):
        torch.manual_seed(3)
        model = network("conv8-fc32", batchnorm=True)
        histories.append(train(model, tiny, quiet=True, **settings))
    strip = [[{k: v for k, v in row.items() if k != "seconds"} for row in h] for h in histories]
    assert strip[0] == strip[1]  # seeded: augmentation and shuffling repeat exactly
    assert all(math.isfinite(row["train_loss"]) for row in histories[0])
    assert evaluate(model, tiny)["accuracy"] > 0.5  # 10 classes: chance is 0.1
