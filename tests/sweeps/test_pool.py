"""sweeps/pool.py: the thread plan, jobs, the one worker pool, crashes, Ctrl-C, the script guard."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

from conftest import HANG_S, finish, wait_until
from quicknets.base.errors import QuicknetsError
from quicknets.base.interrupts import ctrl_c_deferred
from quicknets.records.index import query
from quicknets.sweeps.pool import (
    Job,
    Outcome,
    execute,
    kept,
    on_ctrl_c,
    plan_workers,
    train_job,
)
from quicknets.sweeps.study import quiet_optuna, storage_of

CORES = len(os.sched_getaffinity(0))


def test_worker_plan_never_oversubscribes():
    assert plan_workers(24, cores=2, free=2) == (2, 1)
    assert plan_workers(24, cores=2, free=1) == (1, 1)  # the other core is busy
    assert plan_workers(1, cores=8, free=8) == (1, 8)  # one trial: all the threads
    assert plan_workers(24, threads=2, cores=8, free=8) == (4, 2)
    assert plan_workers(24, workers=2, cores=2, free=1) == (2, 1)
    for workers, threads in [(3, 0), (2, 2)]:
        with pytest.raises(QuicknetsError, match="oversubscribe"):
            plan_workers(24, workers, threads, cores=2, free=2)
    for workers, threads in [(-1, 0), (0, -2), (1.5, 0), ("2", 0), (True, 0)]:
        with pytest.raises(QuicknetsError, match="must be a whole number of at least 1"):
            plan_workers(24, workers, threads, cores=2, free=2)


def test_a_job_is_its_trial_config():
    job = Job(
        {"epochs": 2, "dataset": "mnist"},
        {"network": "784-32-10", "lr": 0.01, "seed": 1},
        "s",
        "test_accuracy",
        threads=1,
    )
    config = job.config()
    assert config.network.network == "784-32-10" and config.data.dataset == "mnist"
    assert config.train.lr == 0.01 and config.train.threads == 1 and config.train.seed == 1
    assert config.train.momentum is None and config.train.weight_decay == 0.0  # the defaults


def base(tiny_dir):
    return {
        "dataset": "mnist",
        "data_dir": str(tiny_dir),
        "verify": False,
        "epochs": 1,
        "batch_size": 32,
    }


def test_a_failing_trial_is_an_outcome(tiny_dir, runs_dir):
    stop = threading.Event()
    done = train_job(
        Job(
            base(tiny_dir), {"network": "784-16-10", "seed": 0}, "f", "test_loss", runs_dir=runs_dir
        ),
        stop,
    )
    assert done.status == "done" and len(done.runs) == 1 and done.value > 0  # a loss
    unfit = train_job(
        Job(
            base(tiny_dir),
            {"network": "784-16-11", "seed": 0},
            "f",
            "test_accuracy",
            runs_dir=runs_dir,
        ),
        stop,
    )
    assert unfit.status == "failed" and unfit.runs == []  # refused before a record was made
    assert "number of classes 10" in unfit.message
    diverged = train_job(
        Job(
            base(tiny_dir),
            {
                "network": "784-64-64-64-64-64-64-10",
                "seed": 0,
                "optimizer": "sgd",
                "lr": 100.0,
                "momentum": 0.99,
            },
            "f",
            "test_accuracy",
            runs_dir=runs_dir,
        ),
        stop,
    )
    assert diverged.status == "failed" and "diverged" in diverged.message
    assert {r["status"] for r in query(runs_dir, [f"name={diverged.runs[0]}"], status="all")} == {
        "failed"
    }  # its record says so
    stop.set()
    assert train_job(Job(base(tiny_dir), {"seed": 0}, "f", "test_accuracy"), stop) is None


def write_lock_is_free(path) -> bool:
    """Whether another connection can take SQLite's exclusive lock on `path` at once."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def test_ctrl_c_inside_a_storage_write_waits_for_the_write_to_end(tmp_path):
    import optuna

    path = tmp_path / "study.sqlite3"
    written = []
    with quiet_optuna(), on_ctrl_c(signal.default_int_handler):
        storage = storage_of(f"sqlite:///{path}")
        # raised at the block's end, as Ctrl-C would have raised at once
        with pytest.raises(KeyboardInterrupt), ctrl_c_deferred():
            os.kill(os.getpid(), signal.SIGINT)  # pressed before the write starts
            study = optuna.create_study(storage=storage, study_name="s")
            study.set_user_attr("k", 1)
            written.append(True)
        assert written == [True] and study.user_attrs == {"k": 1}
        assert write_lock_is_free(path)
        # an ignored Ctrl-C (a worker process outside a training) stays ignored
        with on_ctrl_c(signal.SIG_IGN), ctrl_c_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            study.set_user_attr("k", 2)
        assert study.user_attrs == {"k": 2}
        # a handler of its own is called once, after the block, and outranks the block's error
        calls = []

        def handler(signum, frame):
            calls.append(signum)
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt), on_ctrl_c(handler), ctrl_c_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            assert calls == []
            raise ValueError("the block's own error")
        assert calls == [signal.SIGINT]


def test_ctrl_c_during_a_trial_s_callbacks_stops_the_training_after_them(tiny_dir, runs_dir):
    """The pruning check (on_epoch) and the run's link (on_start) write to the study: a Ctrl-C
    inside them stops the training once they end, marked interrupted."""
    for where in ("on_start", "on_epoch"):
        ended = []

        def callback(*args, where=where, ended=ended):
            os.kill(os.getpid(), signal.SIGINT)
            ended.append(where)  # not reached if the Ctrl-C raised inside the callback

        job = Job(
            base(tiny_dir) | {"epochs": 3},
            {"network": "784-16-10", "seed": 0},
            "c",
            "test_accuracy",
            runs_dir=runs_dir,
        )
        outcome = train_job(job, threading.Event(), **{where: callback})
        assert ended == [where] and outcome.status == "interrupted", (where, outcome)


def echo(task, tell, stop):
    """A work function for the pool (module level: a spawned worker imports it by name)."""
    if task == "die":
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
    tell(Outcome({"task": task}, "done", 0.0, message=str(os.getpid())))


@pytest.mark.parametrize("workers", [1, 2])
def test_the_pool_tells_every_trial_here(workers):
    told = []
    assert execute(echo, ["a", "b", "c"], workers, 1, told.append) is False
    assert sorted(o.settings["task"] for o in told) == ["a", "b", "c"]
    pids = {o.message for o in told}
    assert (pids == {str(os.getpid())}) == (workers == 1)  # in this process only for one


def test_a_worker_that_dies_fails_its_trial_only():
    told = []
    execute(echo, ["a", "die", "b", "c"], 2, 1, told.append)
    assert sorted(o.settings.get("task", "") for o in told if o.status == "done") == ["a", "b", "c"]
    (dead,) = [o for o in told if o.status == "failed"]
    assert dead.settings == {} and "signal 9" in dead.message


def test_ctrl_c_stops_a_parallel_sweep_cleanly(tiny_dir, runs_dir):
    workers = min(2, CORES)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quicknets",
            "sweep",
            "--dataset",
            "mnist",
            "--data-dir",
            str(tiny_dir),
            "--no-verify",
            "--epochs",
            "100000",
            "--layers",
            "784-16-10,784-32-10,784-64-10",
            "--workers",
            str(workers),
            "--threads",
            "1",
            "--runs-dir",
            str(runs_dir),
            "--name",
            "c",
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
    )  # every worker is training
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = finish(proc)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.splitlines() == [
        f"interrupted: sweep c: {workers} run(s) interrupted, "
        f"{3 - workers} not started; continue it with `quicknets "
        f"sweep --resume-sweep c --runs-dir {runs_dir}`"
    ]
    assert out.count("interrupted: it keeps its last finished epoch") == workers
    rows = query(runs_dir, status="all")
    assert len(rows) == workers and {r["status"] for r in rows} == {"interrupted"}


def test_ctrl_c_stops_a_stacked_sweep_and_counts_its_runs(tiny_dir, runs_dir):
    """A stack's runs, interrupted together, are counted as interrupted (not as not started),
    each with its line, and each is resumable."""
    argv = [sys.executable, "-m", "quicknets", "sweep", "--dataset", "mnist", "--data-dir"]
    argv += [str(tiny_dir), "--no-verify", "--epochs", "100000", "--layers", "784-16-10"]
    argv += ["--lr", "0.001,0.003", "--seeds", "2", "--workers", "1", "--threads", "1"]
    argv += ["--runs-dir", str(runs_dir), "--name", "s"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    wait_until(
        lambda: len(list(runs_dir.glob("*/checkpoint.pt"))) == 4, proc, "the stack's checkpoints"
    )  # the stack of 4 is past its first epoch
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = finish(proc)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "stacked: 4 runs in 1 stack(s) of 4" in out.splitlines()[0]
    assert err.splitlines() == [
        "interrupted: sweep s: 4 run(s) interrupted, 0 not started; continue it with "
        f"`quicknets sweep --resume-sweep s --runs-dir {runs_dir}`"
    ]
    assert out.count("interrupted: it keeps its last finished epoch") == 4
    assert [r["status"] for r in query(runs_dir, status="all")] == ["interrupted"] * 4


@pytest.mark.skipif(CORES < 2, reason="needs two cores for two workers")
def test_a_script_without_the_main_guard_gets_one_clear_error(tiny_dir, runs_dir, tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(f"""
        from quicknets import sweep
        print("script body")
        sweep({base(tiny_dir)!r}, grid={{"lr": [0.001, 0.003]}}, workers=2, threads=1,
              runs_dir={str(runs_dir)!r}, name="g", stack=False)  # stacked: 1 task, no worker
        print("after the sweep")
        """)
    )
    p = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=HANG_S
    )
    assert p.returncode == 1 and "after the sweep" not in p.stdout
    assert p.stderr.count("QuicknetsError:") == 1 and p.stderr.count("Traceback") == 1
    assert p.stderr.strip().splitlines()[-1] == (
        "quicknets.base.errors.QuicknetsError: sweep() ran again in a worker process: "
        "a script that "
        'runs a sweep must call it under `if __name__ == "__main__":` (each worker process '
        "imports the script again, and would start the sweep again)"
    )
    assert query(runs_dir, status="all") == []  # nothing trained, not even once
    assert not (runs_dir / "sweeps" / "g.json").exists()  # the name is still free
    guarded = (
        script.read_text()
        .replace("from quicknets import sweep\n", "")
        .replace(
            "\nsweep(", '\nfrom quicknets import sweep\nif __name__ == "__main__":\n    sweep('
        )
    )
    script.write_text(guarded.replace("\n      runs_dir", "\n          runs_dir"))
    p = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=HANG_S
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("script body") == 3  # the parent and each worker import it
    assert len(query(runs_dir)) == 2  # trained once


def test_ctrl_c_outside_a_training_in_this_process_only_stops_the_sweep():
    """With one worker the sweep runs here, where Ctrl-C raised at once: between a study's
    trial being taken and its training (a trial left running, never told), or in the middle
    of a trial's closing. As in a worker process, it now only sets `stop`: the task in hand
    ends whole, and no other starts."""
    from quicknets.base.interrupts import watch_ctrl_c
    from quicknets.sweeps.pool import execute

    done, told = [], []

    def work(task, tell, stop):
        if stop.is_set():
            return
        if task == 0:
            os.kill(os.getpid(), signal.SIGINT)  # e.g. right after the trial was taken
        done.append(task)
        tell(task)

    with watch_ctrl_c():
        assert execute(work, [0, 1, 2], 1, 1, told.append) is True  # stopped early
    assert done == told == [0]


def test_an_interrupted_trial_says_what_its_run_keeps(tmp_path):
    assert kept(None) == "stopped before it trained"
    assert kept(tmp_path) == "stopped before its first epoch ended: nothing kept, it trains again"
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    assert kept(tmp_path) == "it keeps its last finished epoch"
