"""sweeps/study.py, worker.py and view.py: every kind of search through one shared study, its
workers as separate machines (each its own runs folder) on a real PostgreSQL server on loopback
or a journal file, a worker killed mid-trial, and the whole sweep shown from a machine that ran
none of it."""

import itertools
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import finish as finish_process
from conftest import wait_until
from quicknets.cli import main
from quicknets.records.runfolder import run_state

optuna = pytest.importorskip("optuna")
sqlalchemy = pytest.importorskip("sqlalchemy")  # optuna's RDB storage needs it too

from quicknets.sweeps.worker import BEAT_ATTR  # noqa: E402

# A heartbeat a live worker cannot miss, however busy the machine (3 missed beats: 3 minutes).
# A killed worker's trial is made stale by ageing its last beat, so no test waits it out.
LONG_BEAT = 60

GRID = {
    "network": ["784-8-10", "784-16-10"],
    "lr": [0.001, 0.01, 0.1],
    "optimizer": ["adam", "sgd"],
}  # 12 cells


def data_flags(tiny_dir) -> list:
    return ["--dataset", "mnist", "--data-dir", str(tiny_dir), "--no-verify"]


def quicknets(*args) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "quicknets", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc) -> str:
    out, err = finish_process(proc)
    assert proc.returncode == 0, err[-3000:]
    return out


def done_runs(folders) -> list:
    """(folder, config, meta) of every finished run in these runs folders."""
    found = []
    for root in folders:
        for path in sorted(Path(root).glob("*/results.json")):
            found.append(
                (
                    path.parent,
                    json.loads((path.parent / "config.json").read_text()),
                    json.loads((path.parent / "meta.json").read_text()),
                )
            )
    return found


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://")


def test_three_machines_run_each_cell_seed_once_and_a_fourth_shows_them_all(
    tiny_dir,
    tmp_path,
    postgres,
    capsys,
):
    runs = [tmp_path / f"machine-{i}" for i in range(3)]
    command = [
        "sweep",
        *data_flags(tiny_dir),
        "--epochs",
        "1",
        "--batch-size",
        "100",
        *[x for k, v in GRID.items() for x in (f"--{k}", ",".join(map(str, v)))],
        "--seeds",
        "2",
        "--name",
        "g12",
        "--storage",
        postgres,
        "--heartbeat",
        "2",
        "--workers",
        "1",
        "--threads",
        "1",
    ]
    # the same command on every machine: the first creates the study, the others join it
    procs = [quicknets(*command, "--runs-dir", r) for r in runs]
    outs = [finish(p) for p in procs]
    for out in outs:  # each prints the whole sweep at the end, whoever ran what
        assert "ranked by test_accuracy" in out and "best: " in out
    assert sum("joining the study" in out for out in outs) == 2

    trials = optuna.load_study(study_name="g12", storage=sqlalchemy_url(postgres)).trials
    cells = [
        {**dict(zip(GRID, combo)), "seed": seed}
        for combo in itertools.product(*GRID.values())
        for seed in (0, 1)
    ]
    assert len(trials) == 24 and {t.state.name for t in trials} == {"COMPLETE"}
    key = lambda settings: repr(sorted(settings.items()))  # noqa: E731
    assert sorted(key(t.params) for t in trials) == sorted(map(key, cells))
    workers = {t.user_attrs["worker"] for t in trials}
    print(
        "trials per worker:", {w: sum(t.user_attrs["worker"] == w for t in trials) for w in workers}
    )
    assert len(workers) >= 2  # three started; on a busy machine one may come late
    recorded = done_runs(runs)  # every cell-seed exactly once, over the three runs folders
    ran = sorted(
        key(
            {
                "network": c["network"]["network"],
                "lr": c["train"]["lr"],
                "optimizer": c["train"]["optimizer"],
                "seed": c["train"]["seed"],
            }
        )
        for _, c, _ in recorded
    )
    assert ran == sorted(map(key, cells))
    assert {m["sweep"] for _, _, m in recorded} == {"g12"}
    assert sorted(p.name for p, _, _ in recorded) == sorted(
        n for t in trials for n in t.user_attrs["runs"]
    )

    # a fourth machine, which ran nothing: the whole sweep from the study alone
    empty = tmp_path / "machine-4"
    out = finish(quicknets("sweep", "--show", "g12", "--storage", postgres, "--runs-dir", empty))
    lines = out.splitlines()
    assert lines[0].startswith("sweep g12: grid search, 12 variants x 2 seed(s); test_accuracy")
    assert lines[1].startswith("trials: 24 done; ")
    table = lines[lines.index(next(x for x in lines if x.startswith("  #  settings"))) + 1 :]
    ranked = [x for x in table if x[:3].strip().isdigit() and x[3:5] == "  "]  # not "27 settings"
    assert [int(x[:3]) for x in ranked] == list(range(1, 13))
    assert all(" 2    0." in x for x in ranked)  # n = 2 seeds, mean ± std
    means = [float(re.search(r" 2 +(\d\.\d{4})", x)[1]) for x in ranked]  # after n: the mean
    assert means == sorted(means, reverse=True)
    assert not empty.exists() or not any(empty.iterdir())  # showing writes nothing there

    capsys.readouterr()
    assert (
        main(
            [
                "compare",
                "--sweep",
                "g12",
                "--storage",
                postgres,
                "--runs-dir",
                str(empty),
                "--plot",
                str(tmp_path / "curves.png"),
            ]
        )
        == 0
    )
    compared = capsys.readouterr().out
    assert compared.splitlines()[2:14] == lines[2:14]  # the same ranking
    assert (tmp_path / "curves.png").stat().st_size > 5000

    page = tmp_path / "g12.html"
    assert (
        main(
            [
                "report",
                "--sweep",
                "g12",
                "--storage",
                postgres,
                "--runs-dir",
                str(empty),
                "--out",
                str(page),
            ]
        )
        == 0
    )
    html = page.read_text()
    assert (
        html.count('src="data:image/png;base64,') == 3 and "<h2>Trials</h2>" in html
    )  # + parallel
    assert html.count("<td>done</td>") == 24 and "<a href" not in html  # no run is local here


def test_a_killed_worker_s_trial_is_trained_again_by_another(tiny_dir, tmp_path, postgres):  # noqa: F811
    runs = {"A": tmp_path / "machine-A", "B": tmp_path / "machine-B"}
    lrs = [0.001 * i for i in range(1, 9)]
    command = [
        "sweep",
        *data_flags(tiny_dir),
        "--epochs",
        "20",
        "--layers",
        "784-64-10",
        "--lr",
        ",".join(map(str, lrs)),
        "--name",
        "k8",
        "--storage",
        postgres,
        "--heartbeat",
        str(LONG_BEAT),
        "--workers",
        "1",
        "--threads",
        "1",
    ]
    url = sqlalchemy_url(postgres)
    a, b = (quicknets(*command, "--runs-dir", runs[w]) for w in "AB")

    # SIGKILL A in the middle of a trial (its run holds a checkpoint: an epoch is done) once
    # B is training too
    def ready():
        assert b.poll() is None, b.communicate()
        return list(runs["A"].glob("*/checkpoint.pt")) and list(runs["B"].glob("*/config.json"))

    wait_until(ready, a, "epoch of A while B trains")
    a.kill()
    a.wait()
    killed_at = datetime.now()  # as Optuna stamps trials
    (victim,) = [
        p.parent
        for p in runs["A"].glob("*/config.json")
        if not (p.parent / "results.json").exists()
    ]
    # A's last beat made a day old: B finds the trial stale at its next look, an event, not
    # a grace period on the clock that a busy machine could also make a live worker miss
    (dead_id,) = [
        t._trial_id
        for t in optuna.load_study(study_name="k8", storage=url).trials
        if t.state.name == "RUNNING" and t.user_attrs.get("runs") == [victim.name]
    ]
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sqlalchemy.text(
                "UPDATE trial_heartbeats SET heartbeat = heartbeat - interval '1 day' "
                "WHERE trial_id = :id"
            ),
            {"id": dead_id},
        )
    engine.dispose()
    out = finish(b)
    assert run_state(victim)["status"] == "stopped"  # the dead worker's partial run stays

    study = optuna.load_study(study_name="k8", storage=url)
    trials = study.trials
    dead = [t for t in trials if t.state.name == "FAIL"]
    assert len(dead) == 1 and dead[0].user_attrs["runs"] == [victim.name]
    (retry,) = [t for t in trials if t.system_attrs.get("retry_history") == [dead[0].number]]
    assert retry.state.name == "COMPLETE" and retry.params == dead[0].params
    b_worker = retry.user_attrs["worker"]
    assert dead[0].user_attrs["worker"] != b_worker
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert sorted(t.params["lr"] for t in complete) == lrs
    # counted once: one finished run per lr, none of them the victim
    recorded = done_runs(runs.values())
    assert sorted(c["train"]["lr"] for _, c, _ in recorded) == lrs
    assert f"trial {retry.number + 1} (trial {dead[0].number + 1} again) (" in out
    t0 = min(t.datetime_start for t in trials)
    print(f"\nA killed at {(killed_at - t0).total_seconds():.1f} s")
    for t in sorted(trials, key=lambda t: t.datetime_start):
        who = "B" if t.user_attrs["worker"] == b_worker else "A"
        end = (t.datetime_complete - t0).total_seconds() if t.datetime_complete else None
        print(
            f"trial {t.number + 1} lr={t.params['lr']} worker {who} "
            f"{(t.datetime_start - t0).total_seconds():.1f}-{end:.1f} s {t.state.name}"
            + (
                f" (again: trial {t.system_attrs['retry_history'][-1] + 1})"
                if t.system_attrs.get("retry_history")
                else ""
            )
        )

    shown = finish(
        quicknets(
            "sweep", "--show", "k8", "--storage", postgres, "--runs-dir", tmp_path / "machine-C"
        )
    )
    assert "trials: 8 done, 1 trained again; 2 worker(s)" in shown
    assert sum(line[:3].strip().isdigit() and line[3:5] == "  " for line in shown.splitlines()) == 8
    assert (
        f"trial {dead[0].number + 1} ({dead[0].user_attrs['worker']}) lost its worker "
        f"(no heartbeat): trained again as trial {retry.number + 1}" in shown
    )


def test_a_journal_file_named_in_the_toml_shares_a_grid(tiny_dir, tmp_path, capsys):
    journal = tmp_path / "shared" / "sweep.log"
    journal.parent.mkdir()
    toml = tmp_path / "sweep.toml"
    toml.write_text(
        f'search = "grid"\nseeds = 2\nstorage = "{journal}"\nheartbeat = 2\n'
        f'[base]\ndataset = "mnist"\ndata_dir = "{tiny_dir}"\nverify = false\n'
        f'epochs = 1\n[vary]\nlr = [0.001, 0.01]\nnetwork = ["784-8-10", '
        f'"784-16-10"]\n'
    )
    runs = tmp_path / "runs"
    workers = min(2, len(os.sched_getaffinity(0)))
    assert (
        main(
            [
                "sweep",
                "--config",
                str(toml),
                "--name",
                "j8",
                "--workers",
                str(workers),
                "--threads",
                "1",
                "--runs-dir",
                str(runs),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"study at {journal}" in out and "8 trials, each taken by one worker" in out
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    trials = optuna.load_study(study_name="j8", storage=storage).trials
    assert len(trials) == 8 and {t.state.name for t in trials} == {"COMPLETE"}
    assert len({repr(sorted(t.params.items())) for t in trials}) == 8
    assert len(done_runs([runs])) == 8
    # the runs folder knows the sweep's study is shared; --show and the page read it
    assert main(["sweep", "--show", "j8", "--runs-dir", str(runs)]) == 1
    assert "give its --storage URL" in capsys.readouterr().err
    assert (
        main(
            ["sweep", "--show", "j8", "--storage", f"journal://{journal}", "--runs-dir", str(runs)]
        )
        == 0
    )
    assert "trials: 8 done; " in capsys.readouterr().out
    # a machine joining late: nothing left to take, the whole table all the same
    late = tmp_path / "late"
    assert (
        main(
            [
                "sweep",
                "--resume-sweep",
                "j8",
                "--storage",
                str(journal),
                "--workers",
                "1",
                "--runs-dir",
                str(late),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "\ntrial " not in out and out.count(" 2    0.") == 4  # 4 variants, 2 seeds each
    assert (late / "sweeps" / "j8.json").is_file() and not list(late.glob("*/config.json"))


def test_a_worker_started_again_after_a_kill_continues_its_run(tiny_dir, tmp_path):
    """On a journal file: the killed worker's trial, found stale, is taken by the worker started
    again on the same machine, which continues the stopped run from its checkpoint."""
    journal, runs = tmp_path / "k.log", tmp_path / "runs"
    command = [
        "sweep",
        *data_flags(tiny_dir),
        "--epochs",
        "30",
        "--layers",
        "784-64-10",
        "--lr",
        "0.001,0.002",
        "--name",
        "again",
        "--storage",
        journal,
        "--heartbeat",
        str(LONG_BEAT),
        "--workers",
        "1",
        "--threads",
        "1",
        "--runs-dir",
        runs,
    ]
    first = quicknets(*command)
    wait_until(lambda: list(runs.glob("*/checkpoint.pt")), first, "epoch")  # mid-trial
    first.kill()
    first.wait()
    (stopped,) = [p.parent.name for p in runs.glob("*/checkpoint.pt")]
    # its last beat made a day old: the worker started again finds it stale at once
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    study_id = storage.get_study_id_from_name("again")
    for t in storage.get_all_trials(study_id, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_system_attr(t._trial_id, BEAT_ATTR, time.time() - 86400)
    out = finish(
        quicknets(
            "sweep",
            "--resume-sweep",
            "again",
            "--storage",
            journal,
            "--workers",
            "1",
            "--runs-dir",
            runs,
        )
    )
    assert "again)" in out and stopped in out
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    trials = optuna.load_study(study_name="again", storage=storage).trials
    assert sorted(t.state.name for t in trials) == ["COMPLETE", "COMPLETE", "FAIL"]
    (copy,) = [t for t in trials if t.system_attrs.get("retry_history")]
    assert copy.user_attrs["runs"] == [stopped] and run_state(runs / stopped)["status"] == "done"
    assert len(json.loads((runs / stopped / "history.json").read_text())) == 30
    assert len(done_runs([runs])) == 2  # the stopped run finished in place, nothing twice


def test_a_journal_trial_whose_beats_stop_is_failed_and_queued_again(tmp_path):
    from quicknets.base.errors import QuicknetsError
    from quicknets.sweeps.space import Search
    from quicknets.sweeps.study import GRACE_BEATS, create_study, storage_of, storage_url
    from quicknets.sweeps.worker import BEAT_ATTR, beat, fail_stale, next_trial, replaced

    url = storage_url(str(tmp_path / "s.log"))
    assert url == f"journal://{tmp_path / 's.log'}"
    search = Search.build({"epochs": 1}, {"lr": [0.1, 0.2]})
    assert create_study(url, "s", search, heartbeat=1)  # made, with its 2 trials queued
    assert not create_study(url, "s", search, heartbeat=1)  # the same plan: joined
    with pytest.raises(QuicknetsError, match="exists at .* with another plan"):
        create_study(url, "s", Search.build({"epochs": 2}, {"lr": [0.1, 0.2]}), heartbeat=1)
    storage = storage_of(url, 1)
    study = optuna.load_study(study_name="s", storage=storage)
    study_id = storage.get_study_id_from_name("s")
    trial, trial_id, retry_of = next_trial(study, storage, study_id, search)
    assert retry_of is None and trial.params in ({"lr": 0.1, "seed": 0}, {"lr": 0.2, "seed": 0})
    beat(storage, trial_id)
    fail_stale(study, storage, study_id, 1)
    states = {t.number: t.state.name for t in study.trials}
    assert states[trial.number] == "RUNNING" and len(states) == 2  # beating: alive
    storage.set_trial_system_attr(trial_id, BEAT_ATTR, time.time() - GRACE_BEATS - 1)
    fail_stale(study, storage, study_id, 1)  # its beats stopped: failed, and queued again
    trials = study.trials
    assert trials[trial.number].state.name == "FAIL" and len(trials) == 3
    assert trials[2].state.name == "WAITING" and trials[2].params == trial.params
    assert trials[2].system_attrs["retry_history"] == [trial.number]
    assert replaced(trials) == {trial.number}


def test_ctrl_c_while_a_study_is_made_waits_for_its_plan(tmp_path, monkeypatch):
    """Ctrl-C while the trials were queued left a study without its plan: `--resume-sweep`
    waited a minute and refused it, and its name could not be used again."""
    import signal

    from quicknets.base.interrupts import watch_ctrl_c
    from quicknets.sweeps.space import Search
    from quicknets.sweeps.study import create_study, load_search, storage_url

    enqueue = optuna.Study.enqueue_trial

    def pressed_while_queuing(study, params, *args, **kwargs):
        if params == {"lr": 0.1, "seed": 0}:
            os.kill(os.getpid(), signal.SIGINT)
        return enqueue(study, params, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "enqueue_trial", pressed_while_queuing)
    url = storage_url(None, tmp_path / "runs")
    search = Search.build({"epochs": 1}, {"lr": [0.1, 0.2, 0.3]})
    with watch_ctrl_c(), pytest.raises(KeyboardInterrupt):
        create_study(url, "s", search)
    assert load_search(url, "s") == (search, 10)  # whole: its plan and its heartbeat
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert [t.state.name for t in trials] == ["WAITING"] * 3
