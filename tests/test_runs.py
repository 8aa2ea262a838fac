"""Run records and their SQLite index: save, load, list, filter, sort, remove, parallel writers."""
import json
import multiprocessing
import shutil
import sqlite3

import pytest

from quicknets import index
from quicknets.cli import main
from quicknets.errors import QuicknetsError
from quicknets.models import network
from quicknets.runs import (find_run, finish_run, list_runs, load_model, load_run, remove_run,
                            run_name, save_run, start_run)


def config(lr=0.003, optimizer="adam", seed=0, spec="784-256-128-64-10", epochs=2):
    return {"data": {"dataset": "fashion-mnist", "val_split": 0.0},
            "model": {"model": spec, "spec": spec, "dropout": 0.0},
            "train": {"optimizer": optimizer, "lr": lr, "seed": seed, "epochs": epochs}}


def results(acc):
    return {"accuracy": acc, "loss": 1 - acc, "split": "test"}


def history(n=2):
    return [{"epoch": e, "epochs": n, "train_loss": 1.0 / e, "seconds": 0.1}
            for e in range(1, n + 1)]


def test_run_name_from_settings():
    assert run_name(config()) == "mlp-256-128-64_adam_lr0.003_s0"
    assert run_name(config(spec="784-10", optimizer="sgd", lr=0.01, seed=3)) == \
        "linear_sgd_lr0.01_s3"


def test_save_load_and_index(runs_dir):
    model = network("784-32-10")
    path = save_run(model, config(), history(), results(0.8), {"train": 60000}, runs_dir)
    assert path.name.startswith("mlp-256-128-64_adam_lr0.003_s0-") and len(path.name) == 37
    run = load_run(path.name[:36], runs_dir)  # a unique prefix
    assert run.history == history() and run.results["accuracy"] == 0.8
    assert {"python", "torch", "quicknets", "code_version", "seed"} <= set(run.meta)
    assert load_model(run).config["spec"] == "784-32-10"
    (row,) = index.query(runs_dir)
    assert row["name"] == path.name and row["status"] == "done"
    assert row["test_accuracy"] == 0.8 and row["epochs_done"] == 2
    assert row["settings"]["lr"] == 0.003 and row["settings"]["optimizer"] == "adam"


def test_unfinished_run_is_visible_but_never_read_as_a_result(runs_dir):
    path = start_run(config(), {}, runs_dir)
    assert (path / "config.json").is_file() and not (path / "results.json").exists()
    assert list_runs(runs_dir) == []
    with pytest.raises(QuicknetsError, match="not finished.*--resume"):
        load_run(path.name, runs_dir)
    (row,) = index.query(runs_dir, status="all")
    assert row["status"] == "running"  # this very process is alive
    index.record(runs_dir, path.name, pid=2 ** 22 + 12345)  # a process that is gone
    assert index.query(runs_dir, status="all")[0]["status"] == "stopped"
    finish_run(path, network("784-10"), history(), results(0.5))
    assert [r.name for r in list_runs(runs_dir)] == [path.name]


def test_runs_dir_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(QuicknetsError, match="cannot create the run folder .*afile/"):
        start_run(config(), {}, tmp_path / "afile")  # was a NotADirectoryError traceback


def test_a_run_still_training_is_not_removed_without_force(runs_dir):
    path = start_run(config(), {}, runs_dir)  # "running", and this process is alive
    with pytest.raises(QuicknetsError, match="still training.*--force"):
        remove_run(path.name, runs_dir)
    assert path.exists()
    assert remove_run(path.name, runs_dir, force=True) == path.name and not path.exists()


def test_filters_and_sorting(runs_dir):
    model = network("784-10")
    for lr, opt, acc in [(0.001, "adam", 0.81), (0.003, "adam", 0.86), (0.01, "sgd", 0.84)]:
        save_run(model, config(lr=lr, optimizer=opt), history(), results(acc), {}, runs_dir)
    names = lambda rows: [r["settings"]["lr"] for r in rows]  # noqa: E731
    assert names(index.query(runs_dir, ["optimizer=adam"], "-test_accuracy")) == [0.003, 0.001]
    assert names(index.query(runs_dir, ["lr<0.005"])) == [0.001, 0.003]
    assert names(index.query(runs_dir, ["test_accuracy>=0.84"], "lr")) == [0.003, 0.01]
    assert [r.results["accuracy"] for r in list_runs(runs_dir, sort="-test_accuracy")] == \
        [0.86, 0.84, 0.81]
    with pytest.raises(QuicknetsError, match="unknown key 'lrr'"):
        index.query(runs_dir, ["lrr=1"])
    with pytest.raises(QuicknetsError, match="bad filter"):
        index.query(runs_dir, ["lr"])
    with pytest.raises(QuicknetsError, match="unknown key"):
        index.query(runs_dir, sort="lr; DROP TABLE runs")


def test_index_follows_the_folders(runs_dir, tmp_path):
    model = network("784-10")
    a = save_run(model, config(seed=0), history(), results(0.7), {}, runs_dir)
    b = save_run(model, config(seed=1), history(), results(0.8), {}, runs_dir)
    (runs_dir / "index.sqlite").unlink()  # lost index: rebuilt from the folders
    for suffix in ("-wal", "-shm"):
        (runs_dir / f"index.sqlite{suffix}").unlink(missing_ok=True)
    assert sorted(r["name"] for r in index.query(runs_dir)) == sorted([a.name, b.name])
    shutil.rmtree(b)  # deleted by hand: dropped from the index
    assert [r["name"] for r in index.query(runs_dir)] == [a.name]
    assert remove_run(a.name[:20], runs_dir) == a.name
    assert index.query(runs_dir, status="all") == [] and not a.exists()


def test_corrupt_files_are_clear_errors(runs_dir):
    path = save_run(network("784-10"), config(), history(), results(0.7), {}, runs_dir)
    (path / "history.json").write_text('[{"epoch": 1,')
    with pytest.raises(QuicknetsError, match="history.json is corrupt"):
        load_run(path.name, runs_dir)
    (path / "history.json").write_text(json.dumps(history()))
    data = (path / "model.pt").read_bytes()
    (path / "model.pt").write_bytes(data[:100])
    with pytest.raises(QuicknetsError, match="cannot load"):
        load_model(load_run(path.name, runs_dir))
    (path / "model.pt").write_text('{"not a model"')  # garbage, not a refused pickle
    with pytest.raises(QuicknetsError, match="corrupt or not a weights-only model file"):
        load_model(load_run(path.name, runs_dir))
    (runs_dir / "index.sqlite").write_bytes(b"not a database at all" * 100)
    for suffix in ("-wal", "-shm"):
        (runs_dir / f"index.sqlite{suffix}").unlink(missing_ok=True)
    with pytest.raises(QuicknetsError, match="index.*unusable"):
        index.query(runs_dir)


def _write_rows(args):
    root, worker, n = args
    for i in range(n):
        index.record(root, f"run-{worker}-{i}", status="done", settings={"seed": i},
                     test_accuracy=i / n)
    return n


def test_parallel_writers_lose_nothing(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    workers, per_worker = 4, 60
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        assert sum(pool.map(_write_rows, [(root, w, per_worker) for w in range(workers)])) == \
            workers * per_worker
    conn = sqlite3.connect(root / "index.sqlite")
    count = conn.execute("SELECT COUNT(*), COUNT(DISTINCT name) FROM runs").fetchone()
    conn.close()
    assert count == (workers * per_worker, workers * per_worker)


def test_runs_command_lists_filters_and_removes(runs_dir, capsys):
    model = network("784-10")
    keep = save_run(model, config(lr=0.001), history(), results(0.81), {}, runs_dir)
    drop = save_run(model, config(lr=0.01), history(), results(0.84), {}, runs_dir)
    assert main(["runs", "--runs-dir", str(runs_dir), "--sort=-test_accuracy"]) == 0
    out = capsys.readouterr().out
    assert out.index(drop.name) < out.index(keep.name) and "2 run(s)" in out
    assert main(["runs", "--runs-dir", str(runs_dir), "--where", "lr<0.005"]) == 0
    out = capsys.readouterr().out
    assert keep.name in out and drop.name not in out
    assert main(["runs", "rm", drop.name, "--runs-dir", str(runs_dir)]) == 0
    assert f"removed: {drop.name}" in capsys.readouterr().out
    assert not drop.exists()
    assert main(["runs", "rm", "nope", "--runs-dir", str(runs_dir)]) == 1
    assert capsys.readouterr().err.startswith("error: no run 'nope'")
    assert main(["runs", "--runs-dir", str(runs_dir), "--where", "bogus~1"]) == 1
    assert "error: " in capsys.readouterr().err
    with pytest.raises(QuicknetsError):
        find_run("nope", runs_dir)


def test_code_version_ignores_a_repository_that_is_not_quicknets(tmp_path):
    """Installed inside some other git repository, quicknets records its version, not that
    repository's commit."""
    import subprocess
    import sys
    from pathlib import Path

    import quicknets
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copytree(Path(quicknets.__file__).parent, tmp_path / "lib" / "quicknets")
    out = subprocess.run([sys.executable, "-c", "from quicknets.runs import code_version; "
                          "print(code_version())"], capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path / "lib"), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == quicknets.__version__, out.stderr


def test_processes_creating_a_new_index_at_once_all_get_in(tmp_path):
    """Sweep workers start together: the first writes of a fresh index race to switch it to WAL,
    which SQLite answers with "locked" at once. Each must still be recorded."""
    import subprocess
    import sys
    import time
    code = ("import sys, time; from pathlib import Path; from quicknets import index\n"
            "while time.time() < float(sys.argv[3]): time.sleep(0.001)  # start together\n"
            "index.record(Path(sys.argv[1]), sys.argv[2], status='done')")
    for round_ in range(6):
        root = tmp_path / f"runs{round_}"
        start_at = str(time.time() + 1.0)
        procs = [subprocess.Popen([sys.executable, "-c", code, str(root), f"run{i}", start_at],
                                  stderr=subprocess.PIPE, text=True) for i in range(4)]
        errors = [p.communicate()[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, errors
        with sqlite3.connect(root / "index.sqlite") as conn:  # rows only: no run folders here
            names = sorted(n for (n,) in conn.execute("SELECT name FROM runs"))
        assert names == [f"run{i}" for i in range(4)]
