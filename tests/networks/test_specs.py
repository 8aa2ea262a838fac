"""Network specs without torch: names, an MLP's layer sizes, and errors."""

import subprocess
import sys

import pytest

from quicknets.base.errors import QuicknetsError
from quicknets.networks.specs import NETWORKS, parse_sizes


def test_layer_sizes_of_a_spec():
    assert parse_sizes("784-256-10") == [784, 256, 10]
    assert parse_sizes(" 784 - 32-10 ") == [784, 32, 10]
    assert parse_sizes([784, "64", 10]) == [784, 64, 10]
    assert parse_sizes(NETWORKS["mlp"]) == [784, 256, 128, 64, 10]
    for spec in ("conv32-fc64", NETWORKS["cnn"], "mlp", "", None, 784):
        assert parse_sizes(spec) is None  # not a list of sizes: another builder's, or a name


@pytest.mark.parametrize("spec", [[784, 2.5, 10], [784, True, 10], ["784", "x"], [None]])
def test_sizes_that_are_not_whole_numbers_are_one_error(spec):
    with pytest.raises(QuicknetsError, match="layer sizes must be whole numbers"):
        parse_sizes(spec)


def test_specs_need_no_torch():
    code = (
        "import sys; from quicknets.networks.specs import NETWORKS, parse_sizes; "
        "parse_sizes(NETWORKS['mlp']); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout == "False\n", out.stderr
