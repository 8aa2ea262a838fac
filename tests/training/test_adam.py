"""adam.Adam against torch.optim.Adam(fused=True): the same bits, the same state_dict, and no
torch._dynamo import."""

import subprocess
import sys

import pytest
import torch

from quicknets.training.adam import Adam


def model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(12, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))


def train(net, opt, steps: int, first: int = 0, set_to_none: bool = True) -> None:
    """`steps` autograd steps on seeded data, the lr changed at every step as a schedule does."""
    for k in range(first, first + steps):
        g = torch.Generator().manual_seed(k)
        x, y = torch.randn(16, 12, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.param_groups[0]["lr"] = 0.01 / (1 + k)
        opt.zero_grad(set_to_none=set_to_none)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()


def same(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("set_to_none", [True, False])
def test_the_same_bits_as_torch_optim(weight_decay, set_to_none):
    ours, theirs = model(0), model(0)
    train(ours, Adam(ours.parameters(), lr=0.01, weight_decay=weight_decay), 6, 0, set_to_none)
    reference = torch.optim.Adam(
        theirs.parameters(), lr=0.01, weight_decay=weight_decay, fused=True
    )
    train(theirs, reference, 6, 0, set_to_none)
    assert same(ours, theirs) and not same(ours, model(0))  # trained, and alike


@pytest.mark.parametrize("direction", ["ours to torch's", "torch's to ours"])
def test_state_dicts_load_either_way(direction):
    """A checkpoint of one goes on in the other as if nothing changed: the same weights after
    more steps as one optimizer throughout."""
    straight, resumed = model(1), model(1)
    train(straight, torch.optim.Adam(straight.parameters(), lr=0.01, fused=True), 6)
    make_first, make_second = (
        (lambda p: Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01, fused=True))
        if direction == "ours to torch's"
        else (lambda p: torch.optim.Adam(p, lr=0.01, fused=True), lambda p: Adam(p, lr=0.01))
    )
    first = make_first(resumed.parameters())
    train(resumed, first, 3)
    saved = first.state_dict()
    second = make_second(resumed.parameters())
    second.load_state_dict(saved)
    assert second.state_dict()["param_groups"] == saved["param_groups"]
    train(resumed, second, 3, first=3)
    assert same(straight, resumed)


def test_a_state_dict_for_other_parameters_is_refused():
    opt = Adam(model(0).parameters(), lr=0.01)
    saved = Adam(list(model(0).parameters())[:2], lr=0.01).state_dict()
    with pytest.raises(ValueError, match="holds 2 parameters, this one 4"):
        opt.load_state_dict(saved)


def test_training_with_adam_does_not_import_torch_dynamo(tiny_dir):
    """What the start-up saves: a whole training with Adam never imports torch._dynamo (torch.
    optim's optimizers import it when built); SGD, through torch.optim, still does."""
    script = (
        "import sys\n"
        "from quicknets import load_dataset, network, train\n"
        f"data = load_dataset('mnist', {str(tiny_dir)!r}, verify=False, download=False)\n"
        "train(network('784-16-10'), data, optimizer=sys.argv[1], epochs=1, threads=1, "
        "quiet=True)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = [
        subprocess.run(
            [sys.executable, "-c", script, name], check=True, capture_output=True, text=True
        ).stdout.split()[-1]
        for name in ("adam", "sgd")
    ]
    assert out == ["False", "True"]
