"""BatchNorm1d's thread-invariant training pass: torch's bits at one thread for any thread count,
float64's numbers within float32 rounding, and only where it applies."""

import copy
from contextlib import contextmanager, nullcontext

import pytest
import torch
from torch import nn

import quicknets.training.batchnorm as batchnorm
from quicknets.config.configs import TrainConfig
from quicknets.networks.models import network
from quicknets.training.batchnorm import InvariantBatchNorm
from quicknets.training.loop import thread_free, train

# (N, C) as the MLPs give it, odd sizes among them, and (N, C, L)
SHAPES = [(37, 64), (64, 1031), (256, 512), (512, 1024), (128, 256), (8, 5, 7)]


def batchnorm1d(channels: int, momentum, affine=True) -> nn.BatchNorm1d:
    """A BatchNorm1d with weights and running statistics away from their starting values."""
    g = torch.Generator().manual_seed(channels)
    m = nn.BatchNorm1d(channels, momentum=momentum, affine=affine)
    with torch.no_grad():
        if affine:
            m.weight.copy_(torch.rand(channels, generator=g) + 0.5)
            m.bias.copy_(torch.randn(channels, generator=g))
        m.running_mean.copy_(torch.randn(channels, generator=g))
        m.running_var.copy_(torch.rand(channels, generator=g) + 0.5)
    return m


def two_steps(m: nn.BatchNorm1d, shape: tuple, dtype=torch.float32, within=nullcontext) -> list:
    """Two training steps of m on fixed inputs (2 + x * 3, its mean away from 0): the outputs
    and the gradients of x, weight and bias of each step, and the state after both."""
    g = torch.Generator().manual_seed(len(shape) + shape[0])
    out = []
    for _ in range(2):
        x = (torch.randn(shape, generator=g) * 3 + 2).to(dtype).requires_grad_()
        dy = torch.randn(shape, generator=g).to(dtype)
        m.zero_grad()
        with within():
            y = m(x)
        y.backward(dy)
        out += [y.detach(), x.grad] + [p.grad for p in m.parameters()]
    return out + [t.clone() for t in m.state_dict().values()]


@contextmanager
def threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


CASES = [(0.1, True), (None, True), (0.3, False)]  # momentum None: the cumulative average


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum, affine", CASES)
def test_torchs_bits_at_one_thread_at_any_thread_count(shape, momentum, affine):
    """Outputs, gradients (x, weight, bias) and the state after them (running statistics,
    num_batches_tracked) over two steps at 1, 2 and 3 threads: torch's at 1 thread, bit for
    bit (computed here, in MKL's strict mode: conftest)."""
    m = batchnorm1d(shape[1], momentum, affine)
    with threads(1):
        torchs = two_steps(copy.deepcopy(m), shape)
    assert len(torchs) == (13 if affine else 7)
    for n in (1, 2, 3):
        with threads(n):
            ours = two_steps(copy.deepcopy(m), shape, within=InvariantBatchNorm)
        assert all(torch.equal(a, b) for a, b in zip(ours, torchs))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("momentum, affine", CASES)
def test_the_numbers_are_float64s_within_float32_rounding(shape, momentum, affine):
    """At 2 threads, against torch's kernel in float64: within 2e-6 of the largest value of
    each output, gradient and running statistic (float32 rounds at 6e-8)."""
    m = batchnorm1d(shape[1], momentum, affine)
    with threads(2):
        ours = two_steps(copy.deepcopy(m), shape, within=InvariantBatchNorm)
    exact = two_steps(copy.deepcopy(m).double(), shape, torch.float64)
    for a, r in zip(ours, exact):
        if r.is_floating_point():
            torch.testing.assert_close(a.double(), r, rtol=1e-5, atol=2e-6 * r.abs().max().item())
        else:
            assert a == r == 2  # num_batches_tracked


def test_twice_differentiable_as_torchs():
    """A gradient of a gradient (create_graph): torch's bits at 1 thread, from 2 threads."""
    m = batchnorm1d(64, 0.1)
    g = torch.Generator().manual_seed(1)
    x, dy = torch.randn(32, 64, generator=g), torch.randn(32, 64, generator=g)
    results = []
    for n, within in ((1, nullcontext), (2, InvariantBatchNorm)):
        mm, xx = copy.deepcopy(m), x.clone().requires_grad_()
        with threads(n):
            with within():
                y = mm(xx)
            (gx,) = torch.autograd.grad((y * dy).sum(), xx, create_graph=True)
            (gx * gx).sum().backward()
        results.append([xx.grad, mm.weight.grad, mm.bias.grad])
    assert results[0][2] is None and results[1][2] is None  # dx does not depend on the bias
    assert all(torch.equal(a, b) for a, b in zip(results[0][:2], results[1][:2]))


def counted(monkeypatch) -> list:
    """batchnorm.batch_norm, counting its calls."""
    calls, real = [], batchnorm.batch_norm

    def count(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(batchnorm, "batch_norm", count)
    return calls


@pytest.mark.parametrize(
    "module, shape, dtype, autocast",
    [
        (nn.BatchNorm2d(4), (8, 4, 5, 5), torch.float32, False),
        (nn.BatchNorm1d(16).eval(), (8, 16), torch.float32, False),
        (nn.BatchNorm1d(16).double(), (8, 16), torch.float64, False),
        (nn.BatchNorm1d(16).to(torch.bfloat16), (8, 16), torch.bfloat16, False),
        (nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16)), (8, 16), torch.float32, True),
    ],
    ids=["BatchNorm2d", "eval", "float64", "bf16", "bf16 autocast"],
)
def test_elsewhere_torchs_kernel_runs(monkeypatch, module, shape, dtype, autocast):
    """BatchNorm2d, eval mode (running statistics), other dtypes, autocast: torch's own
    kernel, its bits; the other calls in the mode run as they would."""
    calls = counted(monkeypatch)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    outs = []
    for within in (nullcontext, InvariantBatchNorm):
        m = copy.deepcopy(module)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), within():
            outs.append([m(x)] + [t.clone() for t in m.state_dict().values()])
    assert calls == []
    assert all(torch.equal(a, b) for a, b in zip(*outs))
    with InvariantBatchNorm():  # and where it applies, it runs
        nn.BatchNorm1d(16)(torch.randn(8, 16))
    assert len(calls) == 1


def test_a_batch_of_one_value_per_channel_is_refused_as_torch_does():
    with InvariantBatchNorm(), pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(8)(torch.randn(1, 8))


def test_batchnorm_mlps_are_thread_free_and_the_rest_stays_fixed(monkeypatch):
    """loop.thread_free: BatchNorm1d now among the layers of any thread count; BatchNorm2d,
    convolutions and bf16 keep theirs."""
    import quicknets.training.loop as loop

    monkeypatch.setattr(loop, "thread_invariant", lambda: True)  # MKL's strict mode
    cpu, config = torch.device("cpu"), TrainConfig()
    assert thread_free(network("784-64-10", batchnorm=True), config, cpu)
    assert thread_free(network("784-512-256-10", batchnorm=True, dropout=0.2), config, cpu)
    assert not thread_free(network("784-64-10", batchnorm=True), TrainConfig(bf16=True), cpu)
    assert not thread_free(network("conv8-fc16", batchnorm=True), config, cpu)  # BatchNorm2d
    assert not thread_free(network("conv8-fc16"), config, cpu)
    assert not thread_free(nn.Sequential(nn.Flatten(), nn.BatchNorm2d(1)), config, cpu)


def test_the_loop_runs_its_steps_in_the_mode_only_where_it_applies(monkeypatch):
    """loop.batchnorm_mode: the mode for a BatchNorm1d network in fp32 on the CPU in MKL's
    strict mode; nothing for the rest (torch's kernel, and no dispatch through Python)."""
    import quicknets.training.loop as loop

    monkeypatch.setattr(loop, "thread_invariant", lambda: True)
    cpu, config, bn = torch.device("cpu"), TrainConfig(), network("784-64-10", batchnorm=True)
    assert isinstance(loop.batchnorm_mode(bn, config, cpu), InvariantBatchNorm)
    assert isinstance(loop.batchnorm_mode(bn, None, cpu), InvariantBatchNorm)
    for model, cfg, device in [
        (bn, TrainConfig(bf16=True), cpu),
        (bn, TrainConfig(compile=True), cpu),
        (bn, config, torch.device("meta")),
        (network("784-64-10"), config, cpu),
        (network("conv8-fc16", batchnorm=True), config, cpu),  # BatchNorm2d only
    ]:
        assert isinstance(loop.batchnorm_mode(model, cfg, device), nullcontext)
    monkeypatch.setattr(loop, "thread_invariant", lambda: False)  # the matmuls differ anyway
    assert isinstance(loop.batchnorm_mode(bn, config, cpu), nullcontext)


class Held:
    """A core lease that keeps the run's threads whatever else runs, and notes them each step."""

    def __init__(self, threads: int, flexible: bool):
        self.flexible, self.crowded, self.threads = flexible, 0, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def step(self):
        self.threads.append(torch.get_num_threads())


def test_a_batchnorm_run_trains_to_the_same_bits_at_1_and_2_threads(tiny, monkeypatch):
    """784-64-10 with BatchNorm, two epochs of train() at 1 thread and at 2 (held, where the
    machine's lease would give fewer to a flexible run on busy cores): the same history and
    weights, computed here (torch's kernel gave other last bits)."""
    import quicknets.training.loop as loop

    leases = []
    monkeypatch.setattr(
        loop, "CoreLease", lambda *a, **k: leases.append(Held(*a, **k)) or leases[-1]
    )
    runs = []
    for threads in (1, 2):
        model = network("784-64-10", batchnorm=True, seed=0)
        history = train(model, tiny, epochs=2, batch_size=64, threads=threads, quiet=True)
        runs.append(([{k: v for k, v in r.items() if k != "seconds"} for r in history], model))
    assert [set(lease.threads) for lease in leases] == [{1}, {2}]
    assert [lease.flexible for lease in leases] == [True, True]
    (h1, m1), (h2, m2) = runs
    assert h1 == h2
    assert all(
        torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values())
    )
