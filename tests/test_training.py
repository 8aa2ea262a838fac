"""The training loop: it learns on real data, it is deterministic, it stops on divergence."""
import pytest
import torch

from quicknets.config import TrainConfig
from quicknets.errors import QuicknetsError
from quicknets.metrics import evaluate
from quicknets.models import network
from quicknets.training import format_epoch, free_cores, train


def test_notebook_network_learns_in_one_epoch(fashion):
    """One epoch of the notebook's network and settings on the real data: at least 0.82."""
    torch.manual_seed(0)
    model = network("784-256-128-64-10")
    history = train(model, fashion, epochs=1, quiet=True)
    results = evaluate(model, fashion)
    assert results["accuracy"] >= 0.82, results["accuracy"]
    assert history[0]["train_loss_sum"] == pytest.approx(history[0]["train_loss"] * 938)


def run_tiny(data, **settings):
    torch.manual_seed(0)
    model = network("784-32-10", dropout=0.2)
    return model, train(model, data, quiet=True, threads=1, **settings)


def test_same_seed_same_history(tiny):
    _, a = run_tiny(tiny, epochs=3, seed=3)
    _, b = run_tiny(tiny, epochs=3, seed=3)
    _, c = run_tiny(tiny, epochs=3, seed=4)
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]  # noqa: E731
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


@pytest.mark.parametrize("optimizer, lr", [("adam", 0.003), ("sgd", 0.05), ("adamw", 0.003)])
def test_each_optimizer_learns_tiny_data(tiny, optimizer, lr):
    model, history = run_tiny(tiny, optimizer=optimizer, lr=lr, epochs=8, batch_size=32,
                              weight_decay=1e-4)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert evaluate(model, tiny)["accuracy"] > 0.5  # chance is 0.1


def test_validation_columns_when_split_exists(tiny_dir):
    from quicknets.data import load_dataset
    data = load_dataset("mnist", tiny_dir, val_split=0.2, verify=False)
    lines = []
    torch.manual_seed(0)
    history = train(network("784-32-10"), data, epochs=2, log=lines.append, threads=1)
    assert {"val_loss", "val_acc"} <= set(history[0])
    assert len(lines) == 2 and lines[0].startswith("epoch: 1/2  train_loss_sum: ")
    assert "val_acc: " in lines[1]


def test_no_validation_columns_without_split(tiny):
    _, history = run_tiny(tiny, epochs=1)
    assert "val_loss" not in history[0]


def test_divergence_stops_with_a_clear_message(tiny):
    model = network("784-10")
    with torch.no_grad():
        model[1].weight.mul_(1e37)  # weights about to overflow: logits become inf, the loss nan
    lines = []
    with pytest.raises(QuicknetsError, match=r"diverged in epoch 1: the loss became (nan|inf).*lower --lr"):
        train(model, tiny, epochs=5, lr=0.1, log=lines.append, threads=1)
    assert lines == []  # stopped at once: no epoch line with nan was printed


def test_bad_settings_fail_before_training(tiny):
    with pytest.raises(QuicknetsError, match="unknown TrainConfig setting"):
        train(network(), tiny, learning_rate=0.1)
    with pytest.raises(QuicknetsError, match="--batch-size must be at least 1"):
        train(network(), tiny, TrainConfig(batch_size=0))
    with pytest.raises(QuicknetsError, match="no CUDA GPU|unknown device"):
        train(network(), tiny, device="cuda:7" if not torch.cuda.is_available() else "tpu")


def test_more_threads_than_cores_is_refused(tiny):
    import os
    too_many = len(os.sched_getaffinity(0)) + 1
    with pytest.raises(QuicknetsError, match=f"--threads {too_many} is more than the"):
        train(network("784-10"), tiny, threads=too_many, quiet=True)


def test_format_epoch_is_key_value_pairs():
    line = format_epoch({"epoch": 2, "epochs": 7, "train_loss": 0.5, "n": 3})
    assert line == "epoch: 2/7  train_loss: 0.5000  n: 3"


def test_free_cores_counts_a_busy_neighbour_at_once():
    """A process spinning beside us takes a core away now, not once the load average catches up."""
    import os
    import subprocess
    import sys
    usable = len(os.sched_getaffinity(0))
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time
        time.sleep(0.3)  # let it start spinning
        assert 1 <= free_cores() <= max(1, usable - 1)
    finally:
        spinner.kill()
        spinner.wait()


def test_train_leaves_the_callers_thread_count_alone(tiny):
    before = torch.get_num_threads()
    torch.set_num_threads(2 if before == 1 else 1)
    try:
        mine = torch.get_num_threads()
        run_tiny(tiny, epochs=1)  # trains with threads=1
        assert torch.get_num_threads() == mine
    finally:
        torch.set_num_threads(before)
