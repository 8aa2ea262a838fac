"""Each builder's output shapes, the notebook's exact network, presets, summary and spec errors."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from quicknets.base.errors import QuicknetsError
from quicknets.networks.models import from_config, layer_table, network, summary, totals
from quicknets.networks.specs import NETWORKS


def test_notebook_network_layer_by_layer():
    model = network("784-256-128-64-10")
    kinds = [type(m) for m in model]
    assert kinds == [
        nn.Flatten,
        nn.Linear,
        nn.ReLU,
        nn.Linear,
        nn.ReLU,
        nn.Linear,
        nn.ReLU,
        nn.Linear,
        nn.LogSoftmax,
    ]
    sizes = [(m.in_features, m.out_features) for m in model if isinstance(m, nn.Linear)]
    assert sizes == [(784, 256), (256, 128), (128, 64), (64, 10)]


@pytest.mark.parametrize(
    "spec",
    [
        "784-256-128-64-10",
        [784, 10],
        "cnn",
        "conv8-fc16",
        "conv4-conv4-conv4",
        "convp4-conv4-fc8",
        "fc32",
        *NETWORKS,
    ],
)
@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (5, 784)])
def test_output_is_log_probabilities(spec, shape):
    model = network(spec)
    out = model(torch.randn(shape))
    assert out.shape == (5, 10)
    assert torch.allclose(out.exp().sum(1), torch.ones(5), atol=1e-5)


def test_options_add_layers():
    model = network([784, 32, 16, 10], activation="gelu", dropout=0.3, batchnorm=True)
    kinds = [type(m) for m in model]
    assert kinds.count(nn.GELU) == 2 and kinds.count(nn.Dropout) == 2
    assert kinds.count(nn.BatchNorm1d) == 2
    cnn = network("conv8-conv8-fc16", batchnorm=True, dropout=0.5)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in cnn) == 2
    assert sum(isinstance(m, nn.Dropout) for m in cnn) == 1


def test_convp_pools_before_batchnorm_and_activation():
    kinds = [type(m) for m in network("convp8-conv8-fc16", batchnorm=True)][1:9]
    assert kinds == [
        nn.Conv2d,
        nn.MaxPool2d,
        nn.BatchNorm2d,
        nn.ReLU,  # convp8: pooled first
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ReLU,
        nn.MaxPool2d,
    ]  # conv8
    assert network("convp8-convp8-fc16")(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert network("convp8-fc16", batchnorm=True)[3].num_features == 8


def test_config_rebuilds_the_same_architecture():
    model = network("conv8-fc16", activation="tanh", dropout=0.1)
    again = from_config(model.config)
    assert [type(m) for m in again] == [type(m) for m in model]
    again.load_state_dict(model.state_dict())


def test_network_by_name():
    assert network("mlp").config["network"] == "mlp"
    assert [m.out_features for m in network("mlp") if isinstance(m, nn.Linear)] == [
        256,
        128,
        64,
        10,
    ]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("784", "at least two sizes"),
        ([784], "at least two sizes"),
        ("784-0-10", "must be positive"),
        ("100-64-10", "first size must be the input size 784"),
        ("784-64-7", "last size must be the number of classes 10"),
        ("conv8-pool", "unknown layer 'pool'"),
        ("conv0-fc8", "needs a positive size"),
        ("fc8-conv8", "after a dense layer"),
        ("conv2-conv2-conv2-conv2-conv2-conv2", "too many conv layers"),
        ("resnet9000", "unknown network"),
        ("", "cannot read the network spec"),
    ],
)
def test_impossible_specs(spec, message):
    with pytest.raises(QuicknetsError, match=message):
        network(spec)


def test_bad_options():
    with pytest.raises(QuicknetsError, match="unknown activation 'swish'"):
        network(activation="swish")
    with pytest.raises(QuicknetsError, match="dropout"):
        network(dropout=1.0)


def test_summary_counts_parameters():
    model = network("784-256-128-64-10")
    text = summary(model)
    assert "(1, 256)" in text and "(1, 10)" in text
    assert f"total params: {sum(p.numel() for p in model.parameters()):,}" in text
    assert "242,762" in text  # 784*256+256 + 256*128+128 + 128*64+64 + 64*10+10
    assert model.training  # summary leaves the mode as it found it
    # FLOPs: 2 per multiply-add of each matrix product
    assert "total FLOPs: 484,608 per forward pass of 1 image(s)" in text
    assert totals(model) == (242_762, 2 * (784 * 256 + 256 * 128 + 128 * 64 + 64 * 10))


def test_flops_per_layer_match_the_formulas():
    """torch's FlopCounterMode, per layer, against the textbook counts (2 per multiply-add;
    pooling, activations and BatchNorm count nothing)."""
    model = network("conv8-conv16-fc32", batchnorm=True)
    rows = {r["layer"]: r for r in layer_table(model, (2, 1, 28, 28))}  # a batch of 2
    convs = [r for r in rows.values() if r["type"] == "Conv2d"]
    assert [r["flops"] for r in convs] == [
        2 * 2 * 28 * 28 * 8 * 9 * 1,
        2 * 2 * 14 * 14 * 16 * 9 * 8,
    ]
    linears = [r for r in rows.values() if r["type"] == "Linear"]
    assert [r["flops"] for r in linears] == [2 * 2 * 16 * 7 * 7 * 32, 2 * 2 * 32 * 10]
    assert convs[0]["output shape"] == (2, 8, 28, 28) and convs[0]["params"] == 8 * 9
    assert all(r["flops"] == 0 for r in rows.values() if r["type"] not in ("Conv2d", "Linear"))
    resnet = layer_table(network("res16"))  # nested blocks are found by their full names
    assert any(r["layer"].endswith("body.0") and r["flops"] > 0 for r in resnet)


@pytest.mark.parametrize(
    "spec, settings, shape",
    [
        ("784-256-128-64-10", {}, (1, 28, 28)),
        ("784-64-10", {"batchnorm": True, "dropout": 0.2, "activation": "gelu"}, (1, 28, 28)),
        ("3072-32-10", {"activation": "tanh"}, (3, 32, 32)),
        ("conv8-convp16-fc32", {"batchnorm": True}, (1, 28, 28)),
        ("convp8-fc16", {"flip_tta": True, "activation": "silu"}, (3, 20, 24)),
        ("conv8", {}, (1, 9, 9)),
        ("res8-res16", {"dropout": 0.1}, (1, 28, 28)),
    ],
)
def test_flops_from_shapes_are_flop_counters(spec, settings, shape):
    """The count from each layer's shapes (what `quicknets train` prints, without importing
    torch._dynamo) against FlopCounterMode's, row by row, for every kind of network quicknets
    builds, in batches of 1 and 3."""
    model = network(spec, input_shape=shape, **settings)
    for batch in (1, 3):
        by_shape = layer_table(model, (batch, *shape))
        assert by_shape == layer_table(model, (batch, *shape), by_shape=False)
        assert sum(r["flops"] for r in by_shape) > 0


def test_a_module_of_another_kind_is_counted_by_flop_counter():
    """A module whose forward does its own products is not counted from shapes (it would count
    0): FlopCounterMode sees its matrix product."""

    class Bilinear(torch.nn.Module):
        def forward(self, x):
            return x @ x.T  # (B, B): 2 * B * B * D FLOPs

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), Bilinear())
    rows = {r["layer"]: r["flops"] for r in layer_table(model, (5, 4))}
    assert rows == {"0": 0, "1": 2 * 5 * 4 * 3, "2": 2 * 5 * 5 * 3}


def test_train_prints_flops_without_importing_torch_dynamo(tiny_dir, tmp_path):
    """The FLOPs line of `quicknets train` (not --quiet) imports neither torch._dynamo nor
    torch.utils.flop_counter (1.3-2 s of start-up: FlopCounterMode's dispatch mode imports
    dynamo); counting with FlopCounterMode still does."""
    script = (
        "import sys, runpy\n"
        "heavy = ('torch._dynamo', 'torch.utils.flop_counter')\n"
        "sys.argv = ['quicknets', 'train', '--network', '784-16-10', '--epochs', '1', "
        f"'--data-dir', {str(tiny_dir)!r}, '--dataset', 'mnist', '--no-verify', '--runs-dir', "
        f"{str(tmp_path)!r}, '--threads', '1']\n"
        "try:\n"
        "    runpy.run_module('quicknets', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('dynamo', *(m in sys.modules for m in heavy))\n"
        "from quicknets.networks.models import layer_table, network\n"
        "layer_table(network('784-16-10'), by_shape=False)\n"
        "print('dynamo', *(m in sys.modules for m in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    assert "FLOPs per image" in out
    assert [line for line in out.splitlines() if line.startswith("dynamo")] == [
        "dynamo False False",
        "dynamo True True",
    ]


def test_slices_are_networks_too():
    model = network("784-256-128-64-10")
    head = model[:4]  # Flatten, Linear, ReLU, Linear
    assert head(torch.zeros(2, 784)).shape == (2, 128)
    assert head.config == {}


def params(model):
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("spec", ["784-256-128-64-10", "conv8-fc16", "res8-res16"])
def test_seeded_by_default_and_the_global_generator_is_left_alone(spec):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = network(spec), network(spec)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's draws are not shifted
    assert all(torch.equal(x, y) for x, y in zip(params(a), params(b)))
    c = network(spec, seed=1)
    assert not all(torch.equal(x, y) for x, y in zip(params(a), params(c)))
    torch.manual_seed(5)  # seed=None: the global generator, as torch's own layers do
    d = network(spec, seed=None)
    torch.manual_seed(5)
    e = network(spec, seed=None)
    assert all(torch.equal(x, y) for x, y in zip(params(d), params(e)))


def test_seed_0_is_what_the_command_line_always_drew():
    """torch.manual_seed(seed) then building: the weights of every run recorded so far."""
    torch.manual_seed(0)
    old = nn.Linear(784, 256)
    assert torch.equal(network("784-256-10")[1].weight, old.weight)


@pytest.mark.parametrize(
    "spec, message",
    [
        (None, "a network spec is a string"),
        (3, "a network spec is a string"),
        ([784, 256.5, 10], "whole numbers"),
        ([784, True, 10], "whole numbers"),
        ("784-4000000-10", "GiB to train"),
        ("784-4000000000-10", "GiB to train"),
        ("conv30000-conv30000-fc10", "GiB to train"),
    ],
)
def test_wrong_types_and_impossible_sizes_are_refused_before_allocating(spec, message):
    with pytest.raises(QuicknetsError, match=message):
        network(spec)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"input_shape": (28, 28)}, "input_shape"),
        ({"dropout": "0.1"}, "dropout"),
    ],
)
def test_wrong_keyword_types(kwargs, message):
    with pytest.raises(QuicknetsError, match=message):
        network("conv8-fc16", **kwargs)


@pytest.mark.parametrize("spec", ["3072-64-10", "conv8-conv8-fc16", "res8-res8"])
def test_other_image_shapes(spec):
    model = network(spec, input_shape=(3, 32, 32))
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert model(torch.zeros(2, 3072)).shape == (2, 10)
    wide = network("conv8-fc16", input_shape=(1, 20, 36), num_classes=4)
    assert wide(torch.zeros(2, 1, 20, 36)).shape == (2, 4)


def test_saved_model_carries_its_preprocessing(tmp_path):
    from quicknets.data.preprocessing import Preprocessing
    from quicknets.networks.models import load_saved, save_model

    model = network(
        "conv8-fc16", batchnorm=True, flip_tta=True, num_classes=3, input_shape=(1, 12, 12)
    )
    model.preprocessing = Preprocessing(
        (1, 12, 12), (0.2,), (0.3,), ("a", "b", "c"), "mine", "digits"
    )
    save_model(model, tmp_path / "model.pt")
    loaded = load_saved(tmp_path / "model.pt")
    assert loaded.preprocessing == model.preprocessing
    assert loaded.config == model.config and not loaded.training
    x = torch.randn(4, 1, 12, 12)
    assert torch.equal(loaded(x), model.eval()(x))


def test_format_1_model_config_still_builds():
    old = {
        "spec": "784-32-10",
        "activation": "relu",
        "dropout": 0.0,
        "batchnorm": False,
        "in_features": 784,
        "num_classes": 10,
    }
    model = from_config(old)
    assert model.config["network"] == "784-32-10" and model.config["input_shape"] == [1, 28, 28]
