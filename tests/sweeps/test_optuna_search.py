"""sweeps/optuna_search.py: studies, the pruner's warm-up, lines per trial, Ctrl-C, shared studies
on a real PostgreSQL server."""

import json
import os
import re
import signal
import subprocess
import sys

import pytest

from conftest import finish, wait_until
from quicknets.cli import main
from quicknets.records.index import query

optuna = pytest.importorskip("optuna")
from quicknets.sweeps.optuna_search import FIRST_PRUNABLE_EPOCH, make_pruner, pruning_check  # noqa: E402
from quicknets.sweeps.pool import Job  # noqa: E402

CORES = len(os.sched_getaffinity(0))


def data_flags(tiny_dir) -> list:
    return ["--dataset", "mnist", "--data-dir", str(tiny_dir), "--no-verify"]


def test_the_pruner_never_judges_a_first_epoch():
    assert FIRST_PRUNABLE_EPOCH == 2  # as the README says: from the second epoch on
    study = optuna.create_study(direction="maximize", pruner=make_pruner())
    for _ in range(3):  # the startup trials, all good
        trial = study.ask()
        trial.report(0.9, 1)
        trial.report(0.9, 2)
        study.tell(trial, 0.9)
    hopeless = study.ask()
    hopeless.report(0.1, 1)
    assert not hopeless.should_prune()  # epoch 1: far below the median, still kept
    hopeless.report(0.1, 2)
    assert hopeless.should_prune()


class AlwaysPrune:  # what a pruner says after each epoch, recorded
    def __init__(self):
        self.reported = []

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return True


@pytest.mark.parametrize(
    "metric, key",
    [
        ("test_accuracy", "train_accuracy"),
        ("test_loss", "train_loss"),
        ("train_accuracy", "train_accuracy"),
    ],
)
def test_a_pruned_trial_stays_as_a_resumable_unfinished_run(tiny_dir, runs_dir, metric, key):
    import threading

    from quicknets.records.experiment import resume
    from quicknets.sweeps.pool import train_job

    trial = AlwaysPrune()
    job = Job(
        {"dataset": "mnist", "data_dir": str(tiny_dir), "verify": False, "epochs": 2},
        {"seed": 0},
        "p",
        metric,
        runs_dir=runs_dir,
    )
    outcome = train_job(job, threading.Event(), on_epoch=pruning_check(trial, metric))
    assert outcome.status == "pruned" and outcome.message.startswith(
        f"pruned after epoch 1: {key} "
    )
    assert [step for step, _ in trial.reported] == [1]
    (row,) = query(runs_dir, status="all")
    assert row["status"] == "pruned" and row["epochs_done"] == 1 and row["sweep"] == "p"
    path, results = resume(row["name"], runs_dir, quiet=True)  # e.g. to finish it
    assert len(json.loads((path / "history.json").read_text())) == 2
    assert query(runs_dir)[0]["status"] == "done"


def test_optuna_sweep_local(tiny_dir, runs_dir, capsys):
    workers = min(2, CORES)
    assert (
        main(
            [
                "sweep",
                "--search",
                "optuna",
                "--trials",
                "5",
                *data_flags(tiny_dir),
                "--epochs",
                "2",
                "--lr",
                "log:0.001:0.03",
                "--layers",
                "784-16-10,784-32-10",
                "--workers",
                str(workers),
                "--threads",
                "1",
                "--name",
                "o1",
                "--runs-dir",
                str(runs_dir),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Optuna TPE with pruning" in out and "ranked by test_accuracy" in out
    lines = [line for line in out.splitlines() if line.startswith("trial ")]
    # SQLite has no row locks: two local workers can take one queued trial at the same moment;
    # the second's run is then trained but not counted, and says so (a shared PostgreSQL study
    # has no such race: test_study's tests count every cell exactly once)
    extra = [line for line in lines if "this run is not counted" in line]
    counted = [line for line in lines if line not in extra]
    assert len(counted) == 5  # one per finished trial, from either worker, pruned ones too
    assert {line.split()[1] for line in counted} == {f"{n}/5" for n in range(1, 6)}
    assert all(
        re.search(r" test_accuracy (0\.\d{4}|1\.0000)\b", line)  # 1.0 on tiny data too
        or " pruned: pruned after epoch " in line
        for line in counted
    ), counted
    storage = f"sqlite:///{runs_dir.resolve()}/optuna.sqlite3"
    study = optuna.load_study(study_name="o1", storage=storage)
    assert len(study.trials) == 5
    names = [n for t in study.trials for n in t.user_attrs["runs"]]
    folders = [p.name for p in runs_dir.iterdir() if p.is_dir() and p.name != "sweeps"]
    assert set(names) <= set(folders) and len(folders) - len(set(names)) <= len(extra)
    assert main(["sweep", "--resume-sweep", "o1", "--runs-dir", str(runs_dir)]) == 0
    assert "\ntrial " not in capsys.readouterr().out  # the study holds its 5 trials already
    assert len(optuna.load_study(study_name="o1", storage=storage).trials) == 5
    # The name is taken: by the runs folder, and by the study in a shared storage.
    assert (
        main(
            [
                "sweep",
                "--search",
                "optuna",
                "--lr",
                "log:0.001:0.03",
                "--name",
                "o1",
                "--runs-dir",
                str(runs_dir),
            ]
        )
        == 1
    )
    assert "'o1' is already used" in capsys.readouterr().err
    assert (
        main(
            [
                "sweep",
                "--search",
                "optuna",
                "--lr",
                "log:0.001:0.03",
                "--name",
                "o1",
                "--storage",
                storage,
                "--runs-dir",
                str(runs_dir.parent / "other"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "an Optuna study named 'o1' exists" in err and "--resume-sweep o1" in err


def test_failed_optuna_trials_say_why(tiny_dir, runs_dir, capsys):
    assert (
        main(
            [
                "sweep",
                "--search",
                "optuna",
                "--trials",
                "2",
                *data_flags(tiny_dir),
                "--lr",
                "log:0.001:0.03",
                "--layers",
                "784-16-11",
                "--workers",
                "1",
                "--name",
                "o2",
                "--runs-dir",
                str(runs_dir),
            ]
        )
        == 1
    )
    out, err = capsys.readouterr()
    why = (
        "failed: the first size must be the input size 784 (1x28x28 images) and the last the "
        "number of classes 10, got 784-16-11: give --network 784-16-10"
    )
    assert out.count(why) == 4
    assert "Traceback" not in err and err == "error: no trial of sweep o2 finished\n"
    study = optuna.load_study(
        study_name="o2", storage=f"sqlite:///{runs_dir.resolve()}/optuna.sqlite3"
    )
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    assert all("classes 10" in t.user_attrs["message"] for t in study.trials)


@pytest.mark.parametrize("workers", [1, 2])  # in this process, and in worker processes
def test_ctrl_c_stops_an_optuna_sweep_with_one_line(tiny_dir, runs_dir, workers):
    if workers > CORES:
        pytest.skip("needs two cores for two workers")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quicknets",
            "sweep",
            "--search",
            "optuna",
            "--trials",
            "5",
            *data_flags(tiny_dir),
            "--epochs",
            "100000",
            "--lr",
            "log:0.001:0.01",
            "--workers",
            str(workers),
            "--threads",
            "1",
            "--runs-dir",
            str(runs_dir),
            "--name",
            "oc",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_until(
        lambda: len(list(runs_dir.glob("*/checkpoint.pt"))) >= workers,
        proc,
        "checkpoint of every worker",
    )
    os.killpg(proc.pid, signal.SIGINT)
    out, err = finish(proc)
    assert proc.returncode == 130, err
    assert err.splitlines() == [
        f"interrupted: sweep oc: stopped; its interrupted runs keep "
        f"their last finished epoch; continue the study with "
        f"`quicknets sweep --resume-sweep oc --runs-dir {runs_dir}`"
    ]
    assert out.count("interrupted: it keeps its last finished epoch") == workers
    rows = query(runs_dir, status="all")
    assert len(rows) == workers and {r["status"] for r in rows} == {"interrupted"}
    study = optuna.load_study(
        study_name="oc", storage=f"sqlite:///{runs_dir.resolve()}/optuna.sqlite3"
    )
    stopped = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(stopped) == workers and {t.user_attrs["outcome"] for t in stopped} == {"interrupted"}
    # each is queued again (with its settings), for whichever worker continues the study
    copies = [t for t in study.trials if t.system_attrs.get("retry_history")]
    assert sorted(t.system_attrs["retry_history"][-1] for t in copies) == sorted(
        t.number for t in stopped
    )
    assert all(t.state.name == "WAITING" for t in copies)


# --- a shared study on a real PostgreSQL server, started here on loopback ---


def test_two_machines_share_a_postgresql_study(tiny_dir, tmp_path, postgres):
    url = postgres.replace("postgresql://", "postgresql+psycopg://")
    runs = [tmp_path / "runs-a", tmp_path / "runs-b"]  # each machine its own runs folder
    common = ["--storage", postgres, "--workers", "1", "--threads", "1", "--quiet"]
    first = [
        "sweep",
        "--search",
        "optuna",
        "--trials",
        "6",
        "--name",
        "shared",
        *data_flags(tiny_dir),
        "--epochs",
        "30",
        "--no-prune",
        "--lr",
        "log:0.001:0.03",
        "--layers",
        "784-16-10,784-32-10",
        *common,
        "--runs-dir",
        runs[0],
    ]
    join = ["sweep", "--resume-sweep", "shared", *common, "--runs-dir", runs[1]]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "quicknets", *map(str, first)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    ]

    def taken_by(proc) -> bool:
        if "shared" not in optuna.get_all_study_names(storage=url):
            return False
        trials = optuna.load_study(study_name="shared", storage=url).get_trials(deepcopy=False)
        return any(str(t.user_attrs.get("worker", "")).endswith(f":{proc.pid}") for t in trials)

    wait_until(lambda: taken_by(procs[0]), procs[0], "study made by the first, and its first trial")
    # the first is held still until the second has taken a trial: both take part on any
    # machine, however fast the first's trials and however slow the second's start
    os.kill(procs[0].pid, signal.SIGSTOP)
    try:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "quicknets", *map(str, join)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        wait_until(lambda: taken_by(procs[1]), procs[1], "second machine's first trial")
    finally:
        os.kill(procs[0].pid, signal.SIGCONT)
    for p in procs:
        out, err = finish(p)
        assert p.returncode == 0, err
        assert "ranked by test_accuracy" in out
    trials = optuna.load_study(study_name="shared", storage=url).trials
    assert len(trials) == 6  # queued when the study was made: each taken once
    assert {t.state.name for t in trials} == {"COMPLETE"}
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both took part
    names = [n for t in trials for n in t.user_attrs["runs"]]
    assert len(names) == len(set(names)) == len(trials)  # one run per trial, none twice
    folders = {p.name for r in runs for p in r.iterdir() if p.is_dir() and p.name != "sweeps"}
    assert folders == set(names)  # none lost, none extra
    for t in trials:
        (folder,) = [
            r / t.user_attrs["runs"][0] for r in runs if (r / t.user_attrs["runs"][0]).is_dir()
        ]
        meta = json.loads((folder / "meta.json").read_text())
        config = json.loads((folder / "config.json").read_text())
        assert meta["sweep"] == "shared"
        assert config["train"]["lr"] == t.params["lr"]
        assert config["network"]["network"] == t.params["network"]
    assert (runs[1] / "sweeps" / "shared.json").is_file()  # the joiner knows the sweep now
