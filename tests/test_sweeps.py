"""Sweeps: parsing, grids, random draws, worker plans, local runs, a shared PostgreSQL study."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from quicknets.cli import main
from quicknets.errors import QuicknetsError
from quicknets.runs import list_runs
from quicknets.sweeps import (Range, grid_trials, normalise_space, parse_values, plan_workers,
                             random_trials, seed_list, sweep, trial_config)


def test_parse_values():
    assert parse_values("lr", "0.001,0.003") == [0.001, 0.003]
    assert parse_values("layers", "784-256-10,784-512-256-10") == ["784-256-10", "784-512-256-10"]
    assert parse_values("lr", "log:1e-4:1e-2") == Range(1e-4, 1e-2, True)
    assert parse_values("batch_size", "32:256") == Range(32, 256, False)
    assert parse_values("device", "cuda:0") == ["cuda:0"]  # not a range: not a number
    assert parse_values("batchnorm", "true,false") == [True, False]
    for key, text, message in [("lr", "0.1,abc", "--lr must be float"),
                               ("optimizer", "adam,rmsprop", "--optimizer must be one of"),
                               ("lr", "0.1:0.01", "need LOW < HIGH"),
                               ("dropout", "log:0:0.5", "LOW > 0"),
                               ("lr", "1:2:3", "range must be"),
                               ("colour", "red", "unknown setting 'colour'")]:
        with pytest.raises(QuicknetsError, match=message):
            parse_values(key, text)


def test_grid_and_random_trials():
    space = normalise_space({"layers": ["784-256-10", "784-512-256-10"], "lr": [0.001, 0.003],
                             "optimizer": "adam,sgd"})
    trials = grid_trials(space, seed_list(2))
    assert len(trials) == 2 * 2 * 2 * 2
    assert trials[0] == {"model": "784-256-10", "lr": 0.001, "optimizer": "adam", "seed": 0}
    assert trials[1]["seed"] == 1 and len({json.dumps(t, sort_keys=True) for t in trials}) == 16
    ranged = normalise_space({"lr": {"low": 1e-4, "high": 1e-2, "log": True},
                              "batch_size": Range(16, 128), "optimizer": ["adam", "sgd"]})
    drawn = random_trials(ranged, 20, [0], draw_seed=1)
    assert drawn == random_trials(ranged, 20, [0], draw_seed=1)  # seeded
    assert all(1e-4 <= t["lr"] <= 1e-2 and 16 <= t["batch_size"] <= 128 for t in drawn)
    assert all(isinstance(t["batch_size"], int) for t in drawn)
    assert {t["optimizer"] for t in drawn} == {"adam", "sgd"}
    with pytest.raises(QuicknetsError, match="a grid needs lists"):
        grid_trials(ranged, [0])
    assert seed_list(3) == [0, 1, 2] and seed_list(["4", 7]) == [4, 7]
    with pytest.raises(QuicknetsError, match="lr lists 0.001 more than once"):
        normalise_space({"lr": "0.001,1e-3"})  # would train one run twice, ranked as n = 2
    with pytest.raises(QuicknetsError, match="seeds lists 4 more than once"):
        seed_list(["4", 4])


def test_worker_plan_never_oversubscribes():
    assert plan_workers(24, cores=2, free=2) == (2, 1)
    assert plan_workers(24, cores=2, free=1) == (1, 1)  # the other core is busy
    assert plan_workers(1, cores=8, free=8) == (1, 8)  # one trial: all the threads
    assert plan_workers(24, threads=2, cores=8, free=8) == (4, 2)
    assert plan_workers(24, workers=2, cores=2, free=1) == (2, 1)
    for workers, threads in [(3, 0), (2, 2)]:
        with pytest.raises(QuicknetsError, match="oversubscribe"):
            plan_workers(24, workers, threads, cores=2, free=2)
    for workers, threads in [(-1, 0), (0, -2)]:  # a traceback, and every trial failing, before
        with pytest.raises(QuicknetsError, match="at least 1"):
            plan_workers(24, workers, threads, cores=2, free=2)


def test_trial_config():
    config = trial_config({"epochs": 2, "dataset": "mnist"}, {"layers": "784-32-10", "lr": 0.01,
                                                              "seed": 1}, threads=1)
    assert config["model"]["model"] == "784-32-10" and config["data"]["dataset"] == "mnist"
    assert config["train"]["lr"] == 0.01 and config["train"]["threads"] == 1
    assert config["train"]["momentum"] == 0.9  # unset settings keep their defaults


def base(tiny_dir):
    return {"dataset": "mnist", "data_dir": str(tiny_dir), "verify": False, "epochs": 2,
            "batch_size": 32}


def test_grid_sweep_in_python(tiny_dir, runs_dir):
    lines = []
    groups = sweep(base(tiny_dir), grid={"layers": ["784-16-10", "784-64-10"],
                                         "lr": [0.001, 0.01]}, seeds=2, workers=1,
                   threads=1, runs_dir=runs_dir, name="s1", log=lines.append)
    assert len(groups) == 4 and all(g["n"] == 2 and g["seeds"] == [0, 1] for g in groups)
    means = [g["test_accuracy"][0] for g in groups]
    assert means == sorted(means, reverse=True)  # ranked
    runs = list_runs(runs_dir, sweep="s1")
    assert len(runs) == 8 and all(r.meta["sweep"] == "s1" for r in runs)
    assert {(r.config["model"]["model"], r.config["train"]["lr"], r.config["train"]["seed"])
            for r in runs} == {(m, lr, s) for m in ("784-16-10", "784-64-10")
                               for lr in (0.001, 0.01) for s in (0, 1)}
    assert lines[0] == "sweep s1: 4 variants x 2 seed(s) = 8 runs; 1 worker(s) x 1 thread(s)"
    assert sum(line.startswith("trial ") for line in lines) == 8
    with pytest.raises(QuicknetsError, match="not as a setting"):
        sweep(base(tiny_dir), grid={"seed": [1, 2]}, runs_dir=runs_dir)


def test_sweep_command_with_toml_and_workers(tiny_dir, runs_dir, tmp_path, capsys):
    workers = min(2, len(os.sched_getaffinity(0)))
    toml = tmp_path / "sweep.toml"
    toml.write_text(f'seeds = 2\nworkers = {workers}\nthreads = 1\nname = "t1"\n'
                    f'[base]\ndataset = "mnist"\ndata_dir = "{tiny_dir}"\nverify = false\n'
                    f'epochs = 1\n[vary]\nlayers = ["784-16-10", "784-32-10"]\n')
    assert main(["sweep", "--config", str(toml), "--lr", "0.003,0.03", "--runs-dir",
                 str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert f"4 variants x 2 seed(s) = 8 runs; {workers} worker(s) x 1 thread(s)" in out
    assert "ranked by test_accuracy" in out and out.count(" ± ") >= 8
    assert "best: " in out and "quicknets compare --sweep t1" in out
    assert len(list_runs(runs_dir, sweep="t1")) == 8
    assert main(["compare", "--sweep", "t1", "--runs-dir", str(runs_dir)]) == 0
    assert "differing settings: lr, model, seed" in capsys.readouterr().out
    toml.write_text("[vary]\nlr = [0.1]\ncolour = 1\n")
    assert main(["sweep", "--config", str(toml), "--runs-dir", str(runs_dir)]) == 1
    assert "unknown setting 'colour'" in capsys.readouterr().err
    toml.write_text("seeds = [\n")
    assert main(["sweep", "--config", str(toml)]) == 1
    assert "not valid TOML" in capsys.readouterr().err


def test_optuna_sweep_local(tiny_dir, runs_dir, capsys):
    pytest.importorskip("optuna")
    import optuna
    assert main(["sweep", "--search", "optuna", "--trials", "4", "--dataset", "mnist",
                 "--data-dir", str(tiny_dir), "--no-verify", "--epochs", "2", "--lr",
                 "log:0.001:0.03", "--layers", "784-16-10,784-32-10", "--workers", "1",
                 "--name", "o1", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "Optuna TPE with pruning" in out and "ranked by test_accuracy" in out
    study = optuna.load_study(study_name="o1",
                              storage=f"sqlite:///{runs_dir.resolve()}/optuna.sqlite3")
    assert len(study.trials) == 4
    names = [n for t in study.trials for n in t.user_attrs["runs"]]
    assert sorted(names) == sorted(p.name for p in runs_dir.iterdir() if p.is_dir())


# --- a shared study on a real PostgreSQL server, started here on loopback ---

def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        pytest.fail("PostgreSQL is missing: apt-get install postgresql "
                    "(scripts/setup.sh test does it)")
    return found[-1].parent


@pytest.fixture
def postgres():
    """A private PostgreSQL server on 127.0.0.1 (a free port), stopped and deleted after."""
    bin_dir = pg_bin()
    home = Path(tempfile.mkdtemp(prefix="quicknets-pg-"))
    as_pg = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        shutil.chown(home, "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = lambda *cmd: subprocess.run(as_pg + [str(c) for c in cmd], check=True,  # noqa: E731
                                      capture_output=True, text=True, timeout=120)
    run(bin_dir / "initdb", "-D", home / "data", "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(bin_dir / "pg_ctl", "-D", home / "data", "-l", home / "log", "-w", "-o",
        f"-p {port} -k {home} -c listen_addresses=127.0.0.1", "start")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(bin_dir / "pg_ctl", "-D", home / "data", "-m", "fast", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


def test_two_workers_share_a_postgresql_study(tiny_dir, runs_dir, postgres):
    import optuna
    args = ["sweep", "--search", "optuna", "--trials", "8", "--storage", postgres,
            "--name", "shared", "--workers", "1", "--threads", "1", "--dataset", "mnist",
            "--data-dir", tiny_dir, "--no-verify", "--epochs", "2", "--lr", "log:0.001:0.03",
            "--layers", "784-16-10,784-32-10", "--runs-dir", runs_dir, "--quiet"]
    procs = [subprocess.Popen([sys.executable, "-m", "quicknets", *map(str, args)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]  # two machines, as far as the study can tell
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        assert "ranked by test_accuracy" in out
    url = postgres.replace("postgresql://", "postgresql+psycopg://")
    trials = optuna.load_study(study_name="shared", storage=url).trials
    assert len(trials) >= 8  # a worker may start one more as the other finishes the last
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both took part
    names = [n for t in trials for n in t.user_attrs["runs"]]
    assert len(names) == len(set(names)) == len(trials)  # one run per trial, none twice
    folders = {p.name for p in runs_dir.iterdir() if p.is_dir()}
    assert folders == set(names)  # none lost, none extra
    for t in trials:
        meta = json.loads((runs_dir / t.user_attrs["runs"][0] / "meta.json").read_text())
        config = json.loads((runs_dir / t.user_attrs["runs"][0] / "config.json").read_text())
        assert meta["sweep"] == "shared"
        assert config["train"]["lr"] == t.params["lr"]
        assert config["model"]["model"] == t.params["model"]


def test_ctrl_c_stops_a_parallel_sweep_cleanly(tiny_dir, runs_dir):
    import signal
    import time
    workers = min(2, len(os.sched_getaffinity(0)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "quicknets", "sweep", "--dataset", "mnist", "--data-dir",
         str(tiny_dir), "--no-verify", "--epochs", "100000", "--layers", "784-16-10,784-32-10",
         "--workers", str(workers), "--threads", "1", "--runs-dir", str(runs_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(list(runs_dir.glob("*/checkpoint.pt"))) < workers:  # every worker is training
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "interrupted: " in err and "--resume" in err
    from quicknets.index import query
    rows = query(runs_dir, status="all")
    assert rows and {r["status"] for r in rows} <= {"interrupted"}


def test_random_sweep_in_python(tiny_dir, runs_dir):
    groups = sweep(base(tiny_dir), grid={"lr": "log:0.001:0.03", "batch_size": [16, 64]},
                   search="random", trials=3, workers=1, runs_dir=runs_dir, name="r1",
                   log=lambda *a: None)
    runs = list_runs(runs_dir, sweep="r1")
    assert len(groups) == len(runs) == 3
    assert all(0.001 <= r.config["train"]["lr"] <= 0.03 for r in runs)
    assert {g["settings"]["lr"] for g in groups} == {r.config["train"]["lr"] for r in runs}


def test_a_pruned_trial_stays_as_a_resumable_unfinished_run(tiny_dir, runs_dir):
    optuna = pytest.importorskip("optuna")
    from quicknets.experiment import resume_experiment, run_experiment
    from quicknets.index import query
    from quicknets.optuna_search import pruning_report

    class Trial:  # what the pruner says after each epoch
        reported = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return True
    with pytest.raises(optuna.TrialPruned, match="pruned after epoch 1: train_acc"):
        run_experiment(trial_config(base(tiny_dir), {"seed": 0}, 1), runs_dir, quiet=True,
                       report=pruning_report(Trial(), "test_accuracy"))
    assert [step for step, _ in Trial.reported] == [1]
    (row,) = query(runs_dir, status="all")
    assert row["status"] == "pruned" and row["epochs_done"] == 1
    path, results = resume_experiment(row["name"], runs_dir, quiet=True)  # e.g. to finish it
    assert len(json.loads((path / "history.json").read_text())) == 2
    assert query(runs_dir)[0]["status"] == "done"
