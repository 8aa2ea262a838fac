"""Which variants stack, from their configs alone: what may differ, what trains apart and why,
and no torch to say so."""

import subprocess
import sys

from quicknets.config.configs import RunConfig
from quicknets.training.stackable import stack_key


def test_stack_key_groups_what_may_differ():
    key = stack_key(RunConfig.build(lr=0.01, seed=3, dropout=0.2, weight_decay=1e-4))
    assert key == stack_key(RunConfig.build(schedule="onecycle", label_smoothing=0.1))
    assert key != stack_key(RunConfig.build(network="784-64-10"))
    assert key != stack_key(RunConfig.build(batch_size=32))
    assert "MLPs" in stack_key(RunConfig.build(network="conv8-fc16"))
    assert "BatchNorm" in stack_key(RunConfig.build(batchnorm=True))
    assert "fp32" in stack_key(RunConfig.build(bf16=True))
    for weights in ("auto", "Shirt=2", {"Coat": 0.5, "Bag": 3}):  # the loss is unweighted
        assert "--class-weights" in stack_key(RunConfig.build(class_weights=weights))


def test_stack_keys_need_no_torch():
    code = (
        "import sys; from quicknets.config.configs import RunConfig; "
        "from quicknets.training.stackable import stack_key; "
        "stack_key(RunConfig.build(network='mlp', device='cpu')); "
        "stack_key(RunConfig.build(network='cnn')); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout == "False\n", out.stderr
