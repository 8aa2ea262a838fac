"""Each builder's output shapes, the notebook's exact network, presets, summary and spec errors."""
import pytest
import torch
from torch import nn

from quicknets.errors import QuicknetsError
from quicknets.models import PRESETS, network, summary


def test_notebook_network_layer_by_layer():
    model = network("784-256-128-64-10")
    kinds = [type(m) for m in model]
    assert kinds == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU,
                     nn.Linear, nn.LogSoftmax]
    sizes = [(m.in_features, m.out_features) for m in model if isinstance(m, nn.Linear)]
    assert sizes == [(784, 256), (256, 128), (128, 64), (64, 10)]


@pytest.mark.parametrize("spec", ["784-256-128-64-10", [784, 10], "cnn", "conv8-fc16",
                                  "conv4-conv4-conv4", "fc32", *PRESETS])
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


def test_config_rebuilds_the_same_architecture():
    model = network("conv8-fc16", activation="tanh", dropout=0.1)
    again = network(**model.config)
    assert [type(m) for m in again] == [type(m) for m in model]
    again.load_state_dict(model.state_dict())


def test_preset_by_name():
    assert network("mlp").config["spec"] == "mlp"
    assert [m.out_features for m in network("mlp") if isinstance(m, nn.Linear)] == [256, 128, 64, 10]


@pytest.mark.parametrize("spec, message", [
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
])
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


def test_slices_are_networks_too():
    model = network("784-256-128-64-10")
    head = model[:4]  # Flatten, Linear, ReLU, Linear
    assert head(torch.zeros(2, 784)).shape == (2, 128)
    assert head.config == {}
