"""The training loop: it learns on real data, it is deterministic, it stops on divergence;
early stopping, fp16, the optimizers, lr auto, the notebook bar and live plot; the temperature
fitted at the end."""

import dataclasses

import numpy as np
import pytest
import torch

from quicknets.base.errors import QuicknetsError
from quicknets.config.configs import TrainConfig
from quicknets.evaluation.metrics import evaluate
from quicknets.networks.models import network
from quicknets.training.loop import (
    batch_bounds,
    early_stopping,
    format_epoch,
    progress_bar,
    start_live_plot,
    train,
)


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


@pytest.mark.parametrize(
    "optimizer, lr",
    [
        ("adam", 0.003),
        ("sgd", 0.05),
        ("adamw", 0.003),
        ("rmsprop", 0.001),
        ("nadam", 0.003),
        ("radam", 0.003),
        ("adagrad", 0.01),
    ],
)
def test_each_optimizer_learns_tiny_data(tiny, optimizer, lr):
    model, history = run_tiny(
        tiny, optimizer=optimizer, lr=lr, epochs=8, batch_size=32, weight_decay=1e-4
    )
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert evaluate(model, tiny)["accuracy"] > 0.5  # chance is 0.1


def test_validation_columns_when_split_exists(tiny_dir):
    from quicknets.data.loading import load_dataset

    data = load_dataset("mnist", tiny_dir, val_split=0.2, verify=False)
    lines = []
    torch.manual_seed(0)
    history = train(network("784-32-10"), data, epochs=2, log=lines.append, threads=1)
    assert {"val_loss", "val_accuracy"} <= set(history[0])
    assert len(lines) == 2 and lines[0].startswith("epoch: 1/2  train_loss_sum: ")
    assert "val_accuracy: " in lines[1]
    # the validation numbers are evaluate()'s on the split, with the model's preprocessing
    scores = evaluate(network("784-32-10").eval(), data, "val")
    assert scores["n"] == 60


def test_no_validation_columns_without_split(tiny):
    _, history = run_tiny(tiny, epochs=1)
    assert "val_loss" not in history[0]


def test_divergence_stops_with_a_clear_message(tiny):
    model = network("784-10")
    with torch.no_grad():
        model[1].weight.mul_(1e37)  # weights about to overflow: logits become inf, the loss nan
    lines = []
    with pytest.raises(
        QuicknetsError, match=r"diverged in epoch 1: the loss became (nan|inf).*lower --lr"
    ):
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


def test_train_leaves_the_callers_thread_count_alone(tiny):
    before = torch.get_num_threads()
    torch.set_num_threads(2 if before == 1 else 1)
    try:
        mine = torch.get_num_threads()
        run_tiny(tiny, epochs=1)  # trains with threads=1
        assert torch.get_num_threads() == mine
    finally:
        torch.set_num_threads(before)


def test_train_leaves_the_callers_random_generator_alone(tiny):
    model = network("784-32-10", dropout=0.2)
    torch.manual_seed(7)
    before = torch.get_rng_state()
    train(model, tiny, epochs=1, quiet=True, threads=1)
    assert torch.equal(torch.get_rng_state(), before)


def test_the_model_keeps_its_datas_preprocessing(tiny_dir):
    from quicknets.data.loading import load_dataset

    data = load_dataset("mnist", tiny_dir, mean=0.2, std=0.4, verify=False)
    model = network("784-32-10")
    train(model, data, epochs=1, quiet=True, threads=1)
    pre = model.preprocessing
    assert pre.mean == (0.2,) and pre.std == (0.4,) and pre.shape == (1, 28, 28)
    assert pre.classes == tuple(data.classes) and pre.dataset == "mnist"
    assert pre.layout == "digits"


def test_training_fits_the_temperature_of_the_kept_weights_on_the_validation_split(tiny_dir):
    """The temperature is fit_temperature on the validation split's log-probabilities of the
    weights training kept (here computed again, in this process: the same bits); the history
    and the network's own outputs are the loop's as before; no split, no temperature."""
    from quicknets.data.loading import load_dataset
    from quicknets.evaluation.calibration import fit_temperature
    from quicknets.evaluation.metrics import log_probabilities

    data = load_dataset("mnist", tiny_dir, val_split=0.2, verify=False)
    model = network("784-32-10")
    history = train(model, data, epochs=2, quiet=True, threads=1)
    pre = model.preprocessing
    val = log_probabilities(model, pre.normalize(data.val_images))
    assert pre.temperature == fit_temperature(val, data.val_labels)
    assert pre.temperature != 1.0 and len(data.val_labels) == 60
    # the validation loss recorded for the last epoch is the network's own, untempered
    assert evaluate(model, data, "val")["loss"] == history[-1]["val_loss"]
    assert torch.equal(model(pre.normalize(data.val_images)), val)  # outputs as trained

    without = network("784-32-10")
    train(without, load_dataset("mnist", tiny_dir, verify=False), epochs=1, quiet=True, threads=1)
    assert without.preprocessing.temperature == 1.0


@pytest.mark.parametrize(
    "n, batch, batchnorm, expected",
    [
        (10, 3, True, [(0, 3), (3, 6), (6, 10)]),  # a last batch of one joins the one before
        (10, 3, False, [(0, 3), (3, 6), (6, 9), (9, 10)]),
        (9, 3, True, [(0, 3), (3, 6), (6, 9)]),
        (1, 64, False, [(0, 1)]),
    ],
)
def test_batch_bounds(n, batch, batchnorm, expected):
    assert batch_bounds(n, batch, batchnorm) == expected


def test_batchnorm_with_a_last_batch_of_one_image_trains(tiny_dir):
    from quicknets.data.loading import load_dataset

    data = load_dataset("mnist", tiny_dir, verify=False)  # 300 training images
    model = network("784-32-10", batchnorm=True)
    history = train(model, data, epochs=1, batch_size=299, quiet=True, threads=1)
    assert history[0]["train_loss_sum"] == pytest.approx(history[0]["train_loss"])  # one step
    with pytest.raises(QuicknetsError, match="BatchNorm needs batches of at least 2"):
        train(network("784-32-10", batchnorm=True), data, batch_size=1, quiet=True)


@pytest.mark.parametrize(
    "model, data, message",
    [
        ("net", None, "train needs a dataset"),
        (None, "tiny", "train needs a network"),
        ("five", "tiny", "the network has 5 outputs, but the data has 10 classes"),
        ("big", "tiny", "GiB to train"),
    ],
)
def test_wrong_inputs_are_one_clear_error(tiny, model, data, message):
    models = {
        "net": network("784-10"),
        None: None,
        "five": network("784-5", num_classes=5),
        "big": network("conv30000-fc10"),
    }
    datas = {"tiny": tiny, None: None}
    if model == "big":
        with pytest.raises(QuicknetsError, match=message):
            train(models[model], tiny, batch_size=300, quiet=True, threads=1, epochs=1)
        return
    with pytest.raises(QuicknetsError, match=message):
        train(models[model], datas[data], epochs=1, quiet=True, threads=1)


def strip(history, keys=("seconds",)):
    return [{k: v for k, v in row.items() if k not in keys} for row in history]


@pytest.fixture(scope="module")
def fashion_small(fashion):
    """1000 Fashion-MNIST training images and the next 1000 as the validation set: a network
    overfits them within a few epochs, so its validation loss turns up again."""
    return dataclasses.replace(
        fashion,
        train_images=fashion.train_images[:1000],
        train_labels=fashion.train_labels[:1000],
        val_images=fashion.train_images[1000:2000],
        val_labels=fashion.train_labels[1000:2000],
        val_split=0.5,
    )


def test_early_stopping_rule_on_a_constructed_history():
    rows = [
        {"epoch": i + 1, "val_loss": v, "val_accuracy": a}
        for i, (v, a) in enumerate([(1.0, 0.5), (0.8, 0.6), (0.85, 0.6), (0.79, 0.65), (0.9, 0.7)])
    ]
    assert early_stopping(rows, "val_loss") == (4, 1)
    assert early_stopping(rows, "val_loss", min_delta=0.05) == (2, 3)  # 0.79 is not 0.05 better
    assert early_stopping(rows, "val_accuracy") == (5, 0)  # higher is better (METRICS)
    assert early_stopping(rows[:3], "val_accuracy") == (2, 1)  # a tie is no improvement
    assert early_stopping([], "val_loss") == (0, 0)


def test_early_stopping_stops_at_the_right_epoch_with_the_best_weights(fashion_small):
    torch.manual_seed(0)
    full = train(network("784-128-10"), fashion_small, epochs=15, quiet=True, threads=1)
    losses = [row["val_loss"] for row in full]
    # by hand: the first epoch 3 epochs after the lowest validation loss so far
    best = stop = 0
    for epoch, loss in enumerate(losses, 1):
        if loss < losses[best - 1] or best == 0:
            best = epoch
        elif epoch - best == 3:
            stop = epoch
            break
    # measured: val_loss falls to epoch 6 (0.5583), then rises; the next lowest (0.5814) is 4%
    # above, far beyond what another CPU's rounding (~1e-7) could move
    assert (best, stop) == (6, 9)

    model, lines = network("784-128-10"), []
    history = train(model, fashion_small, epochs=15, patience=3, log=lines.append, threads=1)
    assert len(history) == stop
    assert strip(history, ("seconds", "best_epoch", "stopped")) == strip(full[:stop])
    assert [row["best_epoch"] for row in history] == [1, 2, 3, 4, 5, 6, 6, 6, 6]
    assert history[-1]["stopped"] == (
        "val_loss did not improve by more than 0 for 3 epochs; the best was epoch 6"
    )
    assert "stopped" not in history[-2]
    assert lines[-1] == f"restored: the weights of epoch 6 (val_loss {losses[5]:.4f})"
    # the restored weights are epoch 6's: evaluate here, at this process's thread count, gives
    # the bits the loop got at 1 thread (the same function, in MKL's strict mode: conftest)
    scores = evaluate(model, fashion_small, "val")
    assert scores["accuracy"] == history[5]["val_accuracy"]
    assert scores["loss"] == history[5]["val_loss"]
    assert scores["accuracy"] != history[-1]["val_accuracy"]


def test_early_stopping_on_accuracy_with_min_delta(tiny_dir):
    """A min_delta no accuracy can beat: epoch 1 stays the best, the run stops after
    `patience` more epochs, and the model ends with epoch 1's weights."""
    from quicknets.data.loading import load_dataset

    data = load_dataset("mnist", tiny_dir, val_split=0.2, verify=False)
    model = network("784-32-10")
    history = train(
        model,
        data,
        epochs=10,
        patience=2,
        monitor="val_accuracy",
        min_delta=1.0,
        quiet=True,
        threads=1,
    )
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["best_epoch"] == 1 and "for 2 epochs" in history[-1]["stopped"]
    assert evaluate(model, data, "val")["loss"] == history[0]["val_loss"]
    assert history[2]["val_loss"] != history[0]["val_loss"]


def test_early_stopping_needs_a_validation_set(tiny):
    lines = []
    with pytest.raises(
        QuicknetsError, match="early stopping .* watches val_loss on a validation set.*val_split"
    ):
        train(network("784-10"), tiny, patience=2, log=lines.append, threads=1)
    assert lines == []
    with pytest.raises(QuicknetsError, match="--monitor must be one of val_loss, val_accuracy"):
        train(network("784-10"), tiny, patience=2, monitor="train_loss")


def test_fp16_trains_with_a_gradient_scaler(tiny):
    """fp16 autocast and the GradScaler's scale/step/update path, on the CPU."""
    model, history = run_tiny(tiny, epochs=6, fp16=True, lr=0.01)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert evaluate(model, tiny)["accuracy"] > 0.5
    _, plain = run_tiny(tiny, epochs=1, lr=0.01)
    assert strip(history[:1]) != strip(plain)  # float16 products: not the fp32 numbers
    with pytest.raises(QuicknetsError, match="--bf16 and --fp16 exclude each other"):
        train(network("784-10"), tiny, bf16=True, fp16=True)


def test_lr_auto_trains_exactly_as_the_rate_it_found(tiny):
    """A run set up with lr auto trains at the finder's rate, exactly as one given that rate:
    the finder works on a copy of the network, with generators of its own."""
    from quicknets.config.configs import RunConfig
    from quicknets.records.experiment import setup
    from quicknets.training.lr_finder import lr_find

    settings = dict(network="784-32-10", dropout=0.2, epochs=2, batch_size=16, threads=1)
    config, model, _ = setup(RunConfig.build(lr="auto", **settings), data=tiny)
    found = lr_find(network("784-32-10", dropout=0.2), tiny, threads=1, batch_size=16)
    assert config.train.lr == found.lr and config.lr_find == found.record()
    auto = train(model, tiny, config.train, quiet=True)
    given = train(
        network("784-32-10", dropout=0.2),
        tiny,
        lr=found.lr,
        epochs=2,
        batch_size=16,
        quiet=True,
        threads=1,
    )
    assert strip(auto) == strip(given)
    with pytest.raises(QuicknetsError, match="lr 'auto' is found when a run is set up"):
        train(network("784-32-10"), tiny, lr="auto")


def test_no_bar_and_no_live_plot_outside_jupyter(tiny, capsys):
    assert progress_bar(10, "epoch 1", False) is None  # pytest's stderr is not a terminal
    assert start_live_plot() is None
    run_tiny(tiny, epochs=1, live_plot=True)  # a no-op here
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_a_fixed_run_on_busy_cores_says_so(tiny, monkeypatch):
    """A run whose numbers depend on its thread count keeps it (it takes turns with other
    quicknets runs); on cores busy with other work it says so."""
    import quicknets.base.machine as machine
    from quicknets.base.machine import usable_cores

    if usable_cores() < 2:
        pytest.skip("one core: a single thread is never crowded out")
    monkeypatch.setattr(machine, "runnable_now", lambda samples=5, interval=0.02: 9)
    lines = []
    train(network("conv4-fc8", batchnorm=True), tiny, epochs=1, threads=2, log=lines.append)
    assert (
        lines[0].startswith("note: the cores are busy with other work (8 other threads")
        and "--threads 1" in lines[0]
    )
    lines.clear()
    train(network("conv4-fc8", batchnorm=True), tiny, epochs=1, threads=1, log=lines.append)
    assert not lines[0].startswith("note")


def test_each_optimizer_runs_with_its_own_momentum(tiny):
    """make_optimizer gives sgd 0.9 and rmsprop 0 unless told; rmsprop at the defaults learns
    (with SGD's 0.9, as before, it fell far behind)."""
    from quicknets.config.configs import TrainConfig
    from quicknets.training.loop import make_optimizer

    model = network("784-16-10", seed=0)
    for optimizer, want in (("sgd", 0.9), ("rmsprop", 0.0)):
        opt = make_optimizer(model, TrainConfig(optimizer=optimizer, lr=0.01))
        assert opt.param_groups[0]["momentum"] == want
        opt = make_optimizer(model, TrainConfig(optimizer=optimizer, lr=0.01, momentum=0.5))
        assert opt.param_groups[0]["momentum"] == 0.5
    accuracy = {}
    for momentum in (None, 0.9):
        model = network("784-32-10", seed=0)
        train(model, tiny, optimizer="rmsprop", momentum=momentum, epochs=2, threads=1, quiet=True)
        accuracy[momentum] = evaluate(model, tiny)["accuracy"]
    assert accuracy[None] >= 0.8 and accuracy[None] > accuracy[0.9] + 0.3, accuracy  # 0.9, 0.33
    with pytest.raises(
        QuicknetsError, match="--momentum 0.9 is for sgd and rmsprop; adam has no momentum setting"
    ):
        train(network("784-16-10"), tiny, optimizer="adam", momentum=0.9, quiet=True)
    sgd = TrainConfig(optimizer="sgd", lr=0.01, epochs=1, threads=1)
    assert sgd.momentum == 0.9  # the number it uses, as the config line and the record say
    model = network("784-16-10", seed=0)
    train(model, tiny, sgd, optimizer="rmsprop", quiet=True)  # another optimizer: its own
    assert TrainConfig(optimizer="sgd").replace(optimizer="rmsprop").momentum == 0.0


def test_a_setting_that_does_nothing_here_is_said_once(tiny, monkeypatch):
    """bf16 on a CPU that emulates it and channels-last for a network without convolutions
    train as told, with one note line each; a conv network's channels-last and a native bf16
    say nothing, and quiet says nothing."""
    from quicknets.base import machine

    def notes(spec, native, **settings):
        monkeypatch.setattr(machine, "native_bf16", lambda device_type: native)
        lines = []
        train(
            network(spec), tiny, epochs=1, threads=1, batch_size=256, log=lines.append, **settings
        )
        return [line for line in lines if line.startswith("note: --")]

    emulated = notes("784-16-10", False, bf16=True)
    assert len(emulated) == 1 and "--bf16 on this CPU" in emulated[0] and "emulated" in emulated[0]
    assert notes("784-16-10", True, bf16=True) == []
    flat = notes("784-16-10", True, channels_last=True)
    assert len(flat) == 1 and "--channels-last" in flat[0] and "changes nothing" in flat[0]
    assert notes("conv4-fc16", True, channels_last=True) == []
    both = notes("784-16-10", False, bf16=True, channels_last=True)
    assert [line.split()[1] for line in both] == ["--bf16", "--channels-last"]
    lines = []
    train(
        network("784-16-10"),
        tiny,
        epochs=1,
        threads=1,
        channels_last=True,
        quiet=True,
        log=lines.append,
    )
    assert lines == []


def weights(model) -> list:
    return [t.clone() for t in model.state_dict().values()]


def test_the_trained_model_is_left_in_eval_mode(tiny):
    """After train (and fit), model(x) is the trained function: dropout off, BatchNorm on its
    running statistics, as Keras and skorch users expect after fit."""
    x = tiny.preprocessing.normalize(tiny.test_images[:16])  # (16, 1, 28, 28)
    for model in (
        network("784-32-10", dropout=0.5, seed=0),
        network("784-32-10", batchnorm=True, seed=0),
        network("conv4-fc8", dropout=0.3, batchnorm=True, seed=0),
    ):
        train(model, tiny, epochs=1, quiet=True, threads=1)
        assert not any(m.training for m in model.modules())
        with torch.no_grad():
            once, again = model(x), model(x)
            alone = torch.cat([model(x[i : i + 1]) for i in range(len(x))])  # no batch statistics
        assert torch.equal(once, again)
        torch.testing.assert_close(once, alone)  # one image or sixteen: the same outputs


TWO_RUNS = [
    dict(network=("784-32-10", dict(dropout=0.3)), seed=1, threads=1),  # global RNG
    dict(network=("784-16-10", dict(batchnorm=True)), seed=2, threads=2),
]  # threads


def train_one(run: dict, data):
    spec, kwargs = run["network"]
    model = network(spec, seed=run["seed"], **kwargs)
    history = train(
        model, data, epochs=4, batch_size=16, seed=run["seed"], quiet=True, threads=run["threads"]
    )
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history], weights(model)


def test_two_threads_training_at_once_get_their_numbers_alone(tiny):
    """Dropout draws from torch's global generator and the thread count is process-wide: two
    train() calls in two threads of one process each end with the numbers they have alone."""
    import threading

    from quicknets.base.machine import usable_cores

    runs = [dict(r, threads=min(r["threads"], usable_cores())) for r in TWO_RUNS]
    alone = [train_one(r, tiny) for r in runs]
    together = [None, None]

    def work(i):
        together[i] = train_one(runs[i], tiny)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (h, w), (h0, w0) in zip(together, alone):
        assert h == h0
        assert all(torch.equal(a, b) for a, b in zip(w, w0))


def few_of_class_3(data):
    """`data` with class 3 cut to a tenth of its training images: imbalanced."""
    y = data.train_labels
    keep = (y != 3) | (torch.cumsum(y == 3, 0) % 10 == 1)  # every tenth image of class 3
    return dataclasses.replace(data, train_images=data.train_images[keep], train_labels=y[keep])


@pytest.mark.parametrize("settings", [{}, {"label_smoothing": 0.1}])
def test_class_weights_auto_are_sklearns_numbers_in_the_loss(tiny, settings):
    """auto trains exactly as the explicit weights of sklearn's compute_class_weight
    ("balanced") written out by class name: the weights reach the loss, with or without
    label smoothing (the fused pass and autograd)."""
    from sklearn.utils.class_weight import compute_class_weight

    from quicknets.training.loop import class_weights

    data = few_of_class_3(tiny)
    y = data.train_labels.numpy()
    expected = compute_class_weight("balanced", classes=np.arange(10), y=y)
    assert class_weights(TrainConfig(class_weights="auto"), data) == pytest.approx(
        expected.tolist(), rel=1e-15
    )
    explicit = ",".join(f"{c}={w!r}" for c, w in zip(data.classes, expected.tolist()))
    _, auto = run_tiny(data, epochs=2, class_weights="auto", **settings)
    _, written = run_tiny(data, epochs=2, class_weights=explicit, **settings)
    _, plain = run_tiny(data, epochs=2, **settings)
    assert strip(auto) == strip(written)
    assert auto[0]["train_loss"] != plain[0]["train_loss"]


def test_the_fused_pass_trains_a_weighted_run_to_autograds_history(tiny, monkeypatch):
    import quicknets.training.loop as training

    data = few_of_class_3(tiny)
    histories = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(training, "fused_step", lambda *a: None)
        model = network("784-32-10", seed=1)
        histories.append(
            strip(train(model, data, epochs=2, threads=1, quiet=True, class_weights="auto"))
        )
    assert histories[0] == histories[1]


def test_class_weights_raise_the_recall_of_a_rare_class(tiny):
    """The point of them: with class 3 at a tenth of its images, auto weights find more of
    class 3 in the (balanced) test set, and the balanced accuracy does not fall."""
    data = few_of_class_3(tiny)
    scores = []
    for weights in ("none", "auto"):
        model, _ = run_tiny(data, epochs=3, class_weights=weights)
        results = evaluate(model, data)
        scores.append((results["per_class"][3]["accuracy"], results["balanced_accuracy"]))
    (rare, balanced), (rare_w, balanced_w) = scores
    assert rare_w > rare and balanced_w >= balanced, scores


def test_an_unknown_class_is_refused_before_training(tiny):
    model = network("784-32-10")
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(QuicknetsError, match="'Coat', which is not a class of the data"):
        train(model, tiny, class_weights="Coat=2", quiet=True)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
