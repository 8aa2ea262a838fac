"""The hand-written Linear+ReLU pass: bit for bit autograd's numbers, and only where it applies."""

import pytest
import torch
from torch import nn

from quicknets.config.configs import TrainConfig
from quicknets.networks.models import network
from quicknets.training.fused import fusable, fused_step
from quicknets.training.loop import make_optimizer, train, train_epoch


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


WEIGHTS = [0.5, 3.0, 1.0, 1.0, 0.25, 1.0, 2.0, 1.0, 1.0, 7.5]  # one per class of `tiny`


@pytest.mark.parametrize(
    "spec, batch, settings, weights",
    [
        ("784-256-128-64-10", 64, {}, None),
        ("784-10", 7, {}, None),
        (
            "784-32-16-10",
            100,
            dict(optimizer="sgd", lr=0.05, schedule="onecycle", translate=2, flip=True),
            None,
        ),
        ("784-32-16-10", 64, {}, WEIGHTS),
        ("784-10", 7, dict(optimizer="sgd", lr=0.05), WEIGHTS),
    ],
)
def test_fused_epoch_equals_autograd_bit_for_bit(tiny, spec, batch, settings, weights):
    """Two epochs, a last batch smaller than the rest, weight decay, another optimizer, a
    schedule, augmentation, class weights (against nn.NLLLoss(weight)): the same losses and
    the same weights."""
    x = tiny.preprocessing.normalize(tiny.train_images)
    results = []
    for use_fused in (False, True):
        model = network(spec, seed=0)
        config = TrainConfig(batch_size=batch, weight_decay=1e-4, threads=1, **settings)
        opt = make_optimizer(model, config)
        fused = fused_step(model, config, torch.device("cpu"), weights) if use_fused else None
        loss_fn = nn.NLLLoss(weight=None if weights is None else torch.tensor(WEIGHTS))
        assert (fused is not None) == use_fused
        g = torch.Generator().manual_seed(0)
        steps = 2 * -(-len(x) // batch)
        sums = [
            train_epoch(
                model,
                opt,
                loss_fn,
                x,
                tiny.train_labels,
                batch,
                g,
                config=config,
                fused=fused,
                first_step=e * steps // 2,
                total_steps=steps,
            )
            for e in range(2)
        ]
        results.append((sums, state(model)))
    (sums_a, weights_a), (sums_f, weights_f) = results
    assert sums_a == sums_f
    assert all(torch.equal(weights_a[k], weights_f[k]) for k in weights_a)


def test_the_weighted_fused_loss_and_gradient_are_the_weighted_mean(tiny):
    """One batch: the fused loss is sum(w_y * nll) / sum(w_y), and its gradients are those of
    that formula written out in float64 (to float32's rounding, 1e-5 relative)."""
    model = network("784-16-10", seed=3)
    x, y = tiny.preprocessing.normalize(tiny.train_images[:50]), tiny.train_labels[:50]
    loss, _ = fused_step(model, TrainConfig(batch_size=50), torch.device("cpu"), WEIGHTS)(x, y)
    grads = [p.grad.clone() for p in model.parameters()]
    reference = network("784-16-10", seed=3).double()
    nll = -reference(x.double()).gather(1, y[:, None])[:, 0]
    w = torch.tensor(WEIGHTS, dtype=torch.float64)[y]
    expected = (w * nll).sum() / w.sum()
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    for got, p in zip(grads, reference.parameters()):
        assert torch.allclose(got.double(), p.grad, rtol=1e-5, atol=1e-7)


def test_train_takes_the_fused_path_to_the_same_history(tiny, monkeypatch):
    import quicknets.training.loop as training

    used = []
    monkeypatch.setattr(training, "fused_step", lambda *a: used.append(fused_step(*a)) or used[-1])
    fused_model = network("784-32-10", seed=1)
    fused_history = train(fused_model, tiny, epochs=2, threads=1, quiet=True)
    assert used[-1] is not None
    monkeypatch.setattr(training, "fused_step", lambda *a: None)
    autograd_model = network("784-32-10", seed=1)
    history = train(autograd_model, tiny, epochs=2, threads=1, quiet=True)

    def drop(h):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in h]

    assert drop(history) == drop(fused_history)
    assert all(
        torch.equal(a, b)
        for a, b in zip(state(fused_model).values(), state(autograd_model).values())
    )


def test_what_the_fused_pass_covers():
    cpu = torch.device("cpu")
    assert fusable(network("784-32-16-10")) is not None
    assert fusable(network("conv8-fc16")) is None
    for kwargs in (dict(dropout=0.2), dict(batchnorm=True), dict(activation="gelu")):
        assert fusable(network("784-32-10", **kwargs)) is None, kwargs
    hooked = network("784-32-10")
    handle = hooked[1].register_forward_hook(lambda *a: None)
    assert fusable(hooked) is None
    handle.remove()
    assert fusable(hooked) is not None
    handle = nn.modules.module.register_module_forward_hook(lambda *a: None)
    try:
        assert fusable(hooked) is None  # a hook on every module sees every layer
    finally:
        handle.remove()
    model = network("784-32-10")
    for settings in (
        dict(bf16=True),
        dict(fp16=True),
        dict(compile=True),
        dict(label_smoothing=0.1),
    ):
        assert fused_step(model, TrainConfig(**settings), cpu) is None, settings
    assert fused_step(model, TrainConfig(), torch.device("meta")) is None


def test_which_runs_may_change_threads(monkeypatch):
    """Networks of matrix products, elementwise layers and BatchNorm1d, in fp32 on the CPU, are
    thread-free (their numbers do not depend on the thread count); convolutions, BatchNorm2d,
    bf16 are not (test_batchnorm.py has BatchNorm's cases)."""
    import quicknets.training.loop as training
    from quicknets.training.loop import thread_free

    monkeypatch.setattr(training, "thread_invariant", lambda: True)  # MKL's strict mode
    cpu, config = torch.device("cpu"), TrainConfig()
    assert thread_free(network("784-32-10"), config, cpu)
    assert thread_free(
        network("784-32-10", dropout=0.2, activation="gelu"),
        TrainConfig(label_smoothing=0.1, translate=2),
        cpu,
    )
    assert thread_free(network("784-32-10", batchnorm=True), config, cpu)
    assert not thread_free(network("conv8-fc16"), config, cpu)
    assert not thread_free(network("784-32-10"), TrainConfig(bf16=True), cpu)
    assert not thread_free(network("784-32-10"), config, torch.device("meta"))
    monkeypatch.setattr(training, "thread_invariant", lambda: False)  # MKL in its usual mode
    assert not thread_free(network("784-32-10"), config, cpu)
