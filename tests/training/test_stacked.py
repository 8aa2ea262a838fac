"""Variants in one stack: each trains to its run alone's numbers, and only where it may stack."""

import copy
import re

import pytest
import torch

from conftest import denormals_flushed
from quicknets.base.errors import QuicknetsError
from quicknets.config.configs import TrainConfig
from quicknets.data.loading import load_dataset
from quicknets.evaluation.metrics import evaluate
from quicknets.networks.models import network
from quicknets.training.loop import fit
from quicknets.training.stacked import fit_stacked, stack_refusal

# A member of each kind a stack must keep apart: seed, lr and weight decay, dropout, label
# smoothing, momentum (SGD), a schedule, augmentation, and a mix of them.
VARIANTS = [
    dict(seed=0),
    dict(seed=1, lr=0.001, weight_decay=1e-3),
    dict(seed=2, dropout=0.3),
    dict(seed=3, label_smoothing=0.1),
    dict(seed=4, schedule="onecycle"),
    dict(seed=5, translate=1, flip=True),
    dict(seed=6, dropout=0.2, label_smoothing=0.05, lr=0.01),
]
SGD = [
    dict(seed=0, optimizer="sgd", lr=0.05),
    dict(seed=1, optimizer="sgd", lr=0.01, momentum=0.5, weight_decay=1e-4),
]


def configs_and_models(variants: list, spec: str, **common) -> tuple:
    configs, models = [], []
    for v in variants:
        v = dict(v)
        dropout = v.pop("dropout", 0.0)
        config = TrainConfig(threads=1, device="cpu", **common, **v)
        configs.append(config)
        models.append(network(spec, dropout=dropout, seed=config.seed))
    return configs, models


def alone_and_stacked(data, variants, spec="784-32-16-10", **common) -> tuple:
    configs, models = configs_and_models(variants, spec, **common)
    alone = [copy.deepcopy(m) for m in models]
    histories = [fit(m, data, c, quiet=True) for m, c in zip(alone, configs)]
    stacked = fit_stacked(models, [data] * len(models), configs)
    return alone, histories, models, stacked


def biggest_difference(a, b) -> float:
    return max(
        (x - y).abs().max().item() for x, y in zip(a.state_dict().values(), b.state_dict().values())
    )


@pytest.mark.parametrize("variants", [VARIANTS, SGD], ids=["adam", "sgd"])
def test_first_step_weights_agree_with_each_run_alone(tiny, variants):
    """One batch of 64 (tiny data cut to it): every variant's weights within 1e-5 of its run
    alone, whatever setting tells it apart."""
    one = copy.copy(tiny)
    one.train_images, one.train_labels = tiny.train_images[:64], tiny.train_labels[:64]
    alone, histories, stacked, stacked_histories = alone_and_stacked(
        one, variants, epochs=1, batch_size=64
    )
    for a, s, h, hs in zip(alone, stacked, histories, stacked_histories):
        assert biggest_difference(a, s) < 1e-5
        assert hs[0]["train_loss"] == pytest.approx(h[0]["train_loss"], abs=1e-6)
        assert hs[0]["train_accuracy"] == h[0]["train_accuracy"]


def test_accuracy_after_epochs_agrees_with_each_run_alone(fashion):
    """Real Fashion-MNIST (3000 images, 3 epochs of the notebook's network): each variant's
    test accuracy within 0.003 of its run alone (benchmarks/stacking.py checks 7 whole epochs)."""
    data = copy.copy(fashion)
    data.train_images, data.train_labels = fashion.train_images[:3000], fashion.train_labels[:3000]
    data.test_images, data.test_labels = fashion.test_images[:2000], fashion.test_labels[:2000]
    variants = [VARIANTS[0], VARIANTS[1], VARIANTS[2], VARIANTS[3], VARIANTS[4]]
    alone, _, stacked, _ = alone_and_stacked(data, variants, "784-256-128-64-10", epochs=3)
    for a, s in zip(alone, stacked):
        assert evaluate(s, data)["accuracy"] == pytest.approx(
            evaluate(a, data)["accuracy"], abs=0.003
        )
        assert evaluate(s, data)["accuracy"] > 0.7  # it learns


def test_each_variant_stops_early_on_its_own(tiny_dir):
    """Early stopping per variant: one that stops leaves the stack, its history and best
    weights those of its run alone; the others train on to theirs."""
    data = load_dataset("mnist", tiny_dir, verify=False, download=False, val_split=0.2)
    variants = [
        dict(seed=0, lr=0.01, patience=1, min_delta=1.0),  # asks too much: stops early
        dict(seed=1, lr=0.003, patience=2, min_delta=0.01),
        dict(seed=0, lr=0.001),
    ]
    alone, histories, stacked, stacked_histories = alone_and_stacked(data, variants, epochs=6)
    assert "stopped" in histories[0][-1] and len(histories[0]) < 6  # the case is met
    for a, s, h, hs in zip(alone, stacked, histories, stacked_histories):
        assert [r["epoch"] for r in hs] == [r["epoch"] for r in h]
        assert [r.get("best_epoch") for r in hs] == [r.get("best_epoch") for r in h]
        assert [r.get("stopped") for r in hs] == [r.get("stopped") for r in h]
        assert biggest_difference(a, s) < 1e-4


def test_a_diverging_variant_fails_alone(tiny):
    configs, models = configs_and_models([dict(seed=0), dict(seed=1)], "784-32-10", epochs=2)
    with torch.no_grad():
        models[0][3].bias.fill_(float("nan"))  # its loss becomes nan
    with pytest.raises(QuicknetsError, match="diverged") as alone:
        fit(copy.deepcopy(models[0]), tiny, configs[0], quiet=True)
    out = fit_stacked(models, [tiny, tiny], configs)
    assert isinstance(out[0], QuicknetsError) and str(out[0]) == str(alone.value)
    assert len(out[1]) == 2


def test_variants_own_their_weights_after_the_stack(tiny):
    configs, models = configs_and_models([dict(seed=0), dict(seed=1)], "784-32-10", epochs=1)
    fit_stacked(models, [tiny, tiny], configs)
    for m in models:
        for p in m.parameters():
            assert p.untyped_storage().nbytes() == p.numel() * 4  # not a view into a stack
            assert p.grad is None


@pytest.mark.parametrize(
    "specs, settings, reason",
    [
        (["784-32-10", "784-64-10"], [{}, {}], "differ in shape"),
        (["784-32-10", "784-32-10"], [{}, {"batch_size": 32}], "differ in batch_size"),
        (["784-32-10", "784-32-10"], [{}, {"epochs": 2}], "differ in epochs"),
        (["784-32-10", "784-32-10"], [{}, {"optimizer": "sgd"}], "differ in optimizer"),
        (["784-32-10", "conv8-fc16"], [{}, {}], "Linear+ReLU MLPs"),
        (["784-32-10", "784-32-10"], [{}, {"bf16": True}], "fp32 on the CPU"),
        (["784-32-10", "784-32-10"], [{}, {"class_weights": "auto"}], "--class-weights"),
        (["784-32-10", "784-32-10"], [{"class_weights": "T-shirt/top=2"}] * 2, "--class-weights"),
    ],
)
def test_what_cannot_stack_says_why(tiny, specs, settings, reason):
    models = [network(s, seed=0) for s in specs]
    configs = [TrainConfig(threads=1, device="cpu", **s) for s in settings]
    assert reason in stack_refusal(models, configs, [tiny, tiny])
    with pytest.raises(QuicknetsError, match="cannot train in one stack: .*" + re.escape(reason)):
        fit_stacked(models, [tiny, tiny], configs)


def test_the_callers_generator_and_threads_are_left_alone(tiny):
    configs, models = configs_and_models([dict(seed=0, dropout=0.5), dict(seed=1)], "784-16-10")
    threads = torch.get_num_threads()
    before = torch.get_rng_state()
    fit_stacked(models, [tiny, tiny], [c.replace(epochs=1) for c in configs])
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.get_num_threads() == threads


def test_a_stack_gives_the_same_numbers_at_any_thread_count(tiny):
    """What lets its core lease lend threads to other runs (loop.thread_free): in MKL's strict
    mode, 1 and 2 threads give the same weights, bit for bit."""
    from quicknets.base.machine import thread_invariant

    if not thread_invariant():
        pytest.skip("MKL's strict mode is not available here")
    weights = []
    for threads in (1, 2):
        variants = [dict(seed=0, dropout=0.2), dict(seed=1, lr=0.01)]
        configs, models = configs_and_models(variants, "784-64-32-10", epochs=1)
        fit_stacked(models, [tiny, tiny], [c.replace(threads=threads) for c in configs])
        weights.append([p.clone() for m in models for p in m.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_training_flushes_denormals_and_restores_after(tiny):
    """Each way of training (a run alone, a stack) runs with denormal floats flushed to zero
    (machine.flush_denormals: Adam's decaying moments stay off the CPU's slow path); after it,
    torch's default again."""
    configs, models = configs_and_models(VARIANTS[:2], "784-32-16-10", epochs=2)
    seen = []

    def look(*args, **kwargs):
        seen.append(denormals_flushed())

    fit(models[0], tiny, configs[0], quiet=True, after_epoch=look)
    fit_stacked(models, [tiny, tiny], configs, after_epochs=[look, look])
    assert seen == [True] * 6
    assert not denormals_flushed()


@pytest.mark.parametrize(
    "variants, applies",
    [(VARIANTS[:3], True), ([dict(seed=0, optimizer="adamw"), dict(seed=1)], True), (SGD, False)],
    ids=["adam", "adamw", "sgd"],
)
def test_the_stack_steps_fused_adam_optimizers_together(variants, applies):
    """make_optimizer's Adam (adam.Adam) and AdamW (torch's fused) step as one StackedAdam,
    their state the stacked moments' views; other optimizers step themselves."""
    from quicknets.training.adam import StackedAdam
    from quicknets.training.fused import StackedStep
    from quicknets.training.loop import make_optimizer
    from quicknets.training.stacked import mlp_layers

    configs, models = configs_and_models(variants, "784-32-16-10")
    if len({c.optimizer for c in configs}) > 1:  # AdamW with AdamW: one kind per stack
        configs = [c.replace(optimizer="adamw") for c in configs]
    opts = [make_optimizer(m, c) for m, c in zip(models, configs)]
    k = len(models)
    step = StackedStep([mlp_layers(m)[0] for m in models], [0.0] * k, [0.0] * k, [])
    stacked = StackedAdam.build(opts, step)
    assert (stacked is not None) == applies
    if applies:
        first = models[0][1].weight
        assert opts[0].state[first]["exp_avg"].data_ptr() == stacked.moments[0][0][0].data_ptr()
