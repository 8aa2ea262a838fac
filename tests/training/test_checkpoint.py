"""Checkpoints and exact resume (in process, after SIGKILL, after Ctrl-C); atomic, corrupt files."""

import json
import signal
import subprocess
import sys

import pytest
import torch

from conftest import HANG_S, finish, wait_until
from quicknets.base.errors import QuicknetsError
from quicknets.networks.models import network
from quicknets.training.checkpoint import load_checkpoint, save_checkpoint
from quicknets.training.loop import train

TIMING = ("seconds",)


def without_timing(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resume_in_process_repeats_the_uninterrupted_run(tiny, tmp_path, optimizer):
    settings = dict(optimizer=optimizer, lr=0.01, epochs=4, batch_size=32, seed=5, threads=1)
    torch.manual_seed(5)
    reference = network("784-64-10", dropout=0.3)  # dropout: the global RNG must be restored
    start = {k: v.clone() for k, v in reference.state_dict().items()}
    full = train(reference, tiny, quiet=True, **settings)

    file = tmp_path / "checkpoint.pt"
    saved = []

    def after_epoch(epoch, model, opt, generator, history, best, scaler):
        if epoch == 2:
            save_checkpoint(file, epoch, model, opt, generator, history, best, scaler)
            saved.append(epoch)

    first = network("784-64-10", dropout=0.3)
    first.load_state_dict(start)
    train(first, tiny, quiet=True, after_epoch=after_epoch, **settings)
    assert saved == [2]

    resumed = network("784-64-10", dropout=0.3)  # fresh weights: all must come from the file
    history = train(resumed, tiny, quiet=True, resume=load_checkpoint(file), **settings)
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert without_timing(history) == without_timing(full)
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


@pytest.mark.parametrize("at", ["before", "stopped"])
def test_resume_with_early_stopping_and_fp16_repeats_the_run(tiny_dir, tmp_path, at):
    """The early-stopping state (the best weights; the rest follows from the history) and the
    fp16 scaler are in the checkpoint: resumed before the stop, or right at it, the run ends as
    the uninterrupted one, best weights restored."""
    from quicknets.data.loading import load_dataset

    data = load_dataset("mnist", tiny_dir, val_split=0.2, verify=False)
    settings = dict(
        epochs=10,
        patience=2,
        monitor="val_accuracy",
        lr=0.01,
        batch_size=32,
        seed=5,
        threads=1,
        fp16=True,
    )
    reference = network("784-64-10", dropout=0.3)
    start = {k: v.clone() for k, v in reference.state_dict().items()}
    full = train(reference, data, quiet=True, **settings)
    assert "stopped" in full[-1] and len(full) < 10
    assert full[-1]["best_epoch"] < full[-1]["epoch"]  # the weights were put back
    stop_at = 2 if at == "before" else len(full)

    file, first = tmp_path / "checkpoint.pt", network("784-64-10", dropout=0.3)
    first.load_state_dict(start)

    def after_epoch(epoch, *state):
        if epoch == stop_at:
            save_checkpoint(file, epoch, *state)

    train(first, data, quiet=True, after_epoch=after_epoch, **settings)
    saved = load_checkpoint(file)
    assert saved["best"] is not None and saved["scaler"]["scale"] > 0

    resumed = network("784-64-10", dropout=0.3)
    history = train(resumed, data, quiet=True, resume=saved, **settings)
    assert without_timing(history) == without_timing(full)
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_checkpoint_holds_what_resume_needs(tiny, tmp_path):
    file = tmp_path / "c.pt"
    train(
        network("784-32-10"),
        tiny,
        quiet=True,
        epochs=1,
        threads=1,
        after_epoch=lambda *state: save_checkpoint(file, *state),
    )
    state = load_checkpoint(file)
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert state["optimizer"]["state"]  # Adam's moments, not just the hyperparameters
    assert state["generator"].dtype == torch.uint8 and state["threads"] == 1


def test_corrupt_or_missing_checkpoint_is_a_clear_error(tmp_path):
    file = tmp_path / "c.pt"
    with pytest.raises(QuicknetsError, match="no checkpoint"):
        load_checkpoint(file)
    model = network("784-10")
    opt = torch.optim.Adam(model.parameters())
    save_checkpoint(file, 1, model, opt, torch.Generator(), [])
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    with pytest.raises(QuicknetsError, match="is corrupt or foreign, not loaded"):
        load_checkpoint(file)
    for content, why in [  # torch's advice (weights_only=False: run its code) is never passed on
        (b"garbage, not a torch file", "it is corrupt or not a file of plain tensors"),
        (torch.nn.Linear(2, 2), "it holds objects other than weights"),
    ]:
        if isinstance(content, bytes):
            file.write_bytes(content)
        else:
            torch.save(content, file)
        with pytest.raises(QuicknetsError, match=why) as e:
            load_checkpoint(file)
        assert "weights_only" not in str(e.value) and len(str(e.value).splitlines()) == 1
    torch.save({"something": 1}, file)
    with pytest.raises(QuicknetsError, match="not a quicknets checkpoint"):
        load_checkpoint(file)


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    file = tmp_path / "c.pt"
    model = network("784-10")
    opt = torch.optim.Adam(model.parameters())
    save_checkpoint(file, 1, model, opt, torch.Generator(), [{"epoch": 1}])
    real_save = torch.save

    def dying_save(obj, f):
        real_save(obj, f)
        raise KeyboardInterrupt  # after writing the bytes, before the rename

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(file, 2, model, opt, torch.Generator(), [{"epoch": 1}, {"epoch": 2}])
    monkeypatch.undo()
    assert load_checkpoint(file)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temporary file left


# A `quicknets` process that runs epoch STOP completely in memory, then hangs before saving it,
# so the test can kill it there: its weights are past the last checkpoint (epoch STOP - 1).
HANG_IN_EPOCH = """
import sys, time
import quicknets.training.loop as t
real, calls = t.train_epoch, []
def train_epoch(*args, **kwargs):
    out = real(*args, **kwargs)
    calls.append(1)
    if len(calls) == {stop}:
        open({marker!r}, "w").close()
        while True:  # until the test's signal comes, however late
            time.sleep(60)
    return out
t.train_epoch = train_epoch
from quicknets.cli import main
sys.exit(main(sys.argv[1:]))
"""


def quicknets(*args, script=None):
    cmd = [sys.executable, "-c", script] if script else [sys.executable, "-m", "quicknets"]
    return cmd + [str(a) for a in args]


def train_args(tiny_dir, runs):
    return [
        "train",
        "--dataset",
        "mnist",
        "--data-dir",
        tiny_dir,
        "--no-verify",
        "--epochs",
        4,
        "--batch-size",
        32,
        "--layers",
        "784-64-32-10",
        "--dropout",
        0.2,
        "--val-split",
        0.1,
        "--seed",
        3,
        "--threads",
        1,
        "--runs-dir",
        runs,
        "--quiet",
    ]


def saved_run(stdout):
    return next(line.split("saved: ")[1] for line in stdout.splitlines() if "saved: " in line)


def start_and_stop(tiny_dir, tmp_path, runs, sig):
    """Start a training, wait until it hangs inside epoch 3, send `sig`; the run's folder."""
    marker = tmp_path / "in-epoch-3"
    proc = subprocess.Popen(
        quicknets(
            *train_args(tiny_dir, runs), script=HANG_IN_EPOCH.format(stop=3, marker=str(marker))
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(marker.exists, proc, "hang inside epoch 3")  # the state, not a time
    (folder,) = [p for p in runs.iterdir() if p.is_dir()]
    assert load_checkpoint(folder / "checkpoint.pt")["epoch"] == 2
    proc.send_signal(sig)
    out, err = finish(proc)
    return folder, proc.returncode, err


def records(folder):
    results = json.loads((folder / "results.json").read_text())
    return without_timing(json.loads((folder / "history.json").read_text())), results


@pytest.mark.parametrize(
    "sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["SIGKILL", "SIGINT", "SIGTERM"]
)
def test_stopped_run_resumes_to_the_same_final_numbers(tiny_dir, tmp_path, sig):
    done = subprocess.run(
        quicknets(*train_args(tiny_dir, tmp_path / "ref")),
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert done.returncode == 0, done.stderr
    reference = records(tmp_path / "ref" / saved_run(done.stdout).split("/")[-1])

    runs = tmp_path / "runs"
    folder, code, err = start_and_stop(tiny_dir, tmp_path, runs, sig)
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
        expected_status = "stopped"  # its process is gone, the index still says running
    else:  # Ctrl-C, or a polite kill (systemd, a batch system): the run keeps its epochs
        assert code == (143 if sig == signal.SIGTERM else 130), err
        assert "interrupted" in err and "--resume" in err
        assert "Traceback" not in err
        expected_status = "interrupted"
    assert not (folder / "results.json").exists()  # never mistaken for a finished run
    listing = subprocess.run(
        quicknets("runs", "--status", "all", "--runs-dir", runs),
        capture_output=True,
        text=True,
        timeout=HANG_S,
    ).stdout
    assert f"{folder.name:<52} {expected_status}" in listing
    code = subprocess.run(
        quicknets("evaluate", folder.name, "--runs-dir", runs),
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert code.returncode == 1 and "not finished" in code.stderr

    resumed = subprocess.run(
        quicknets("train", "--resume", folder.name, "--runs-dir", runs),
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and "epoch: 3/4" in resumed.stdout
    assert "epoch: 1/4" not in resumed.stdout  # the numbering continues
    assert saved_run(resumed.stdout) == str(folder)
    assert records(folder) == reference
    assert not (folder / "checkpoint.pt").exists()  # a finished record is closed


def test_resume_refuses_other_settings_and_finished_runs(tiny_dir, tmp_path):
    runs = tmp_path / "runs"
    from quicknets.cli import main

    assert (
        main(
            [
                "train",
                "--dataset",
                "mnist",
                "--data-dir",
                str(tiny_dir),
                "--no-verify",
                "--epochs",
                "1",
                "--threads",
                "1",
                "--runs-dir",
                str(runs),
                "--quiet",
            ]
        )
        == 0
    )
    (name,) = [p.name for p in runs.iterdir() if p.is_dir()]
    with pytest.raises(QuicknetsError, match="drop --lr"):
        from quicknets.cli import build_parser
        from quicknets.commands.train import resume

        resume(
            build_parser().parse_args(
                ["train", "--resume", name, "--lr", "0.1", "--runs-dir", str(runs)]
            )
        )
    with pytest.raises(QuicknetsError, match="is finished"):
        from quicknets.records.experiment import resume

        resume(name, runs)
    from quicknets.records.runs import start_run

    training = start_run(json.loads((runs / name / "config.json").read_text()), {}, runs)
    from quicknets.records.runs import hold_run

    with (
        hold_run(training),  # as its trainer does
        pytest.raises(QuicknetsError, match="is being trained by process"),
    ):
        resume(training.name, runs)
