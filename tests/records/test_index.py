"""The runs index: a cache of the run folders, rebuilt from them, queried with filters and sorts,
shared by parallel writers, and optional (read-only runs folders are listed from memory)."""

import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import READY_THEN_GO, finish, start_together
from quicknets.base.errors import QuicknetsError
from quicknets.base.storage import atomic_write_json
from quicknets.cli import main
from quicknets.networks.models import network
from quicknets.records import index
from quicknets.records.runs import (
    hold_run,
    list_runs,
    load_run,
    mark,
    remove_run,
    save_run,
    start_run,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "runs-v1"


def config(lr=0.003, optimizer="adam", seed=0, epochs=2):
    return {
        "data": {"dataset": "fashion-mnist", "val_split": 0.0},
        "model": {"model": "784-10", "spec": "784-10", "dropout": 0.0},
        "train": {"optimizer": optimizer, "lr": lr, "seed": seed, "epochs": epochs},
    }


def results(acc):
    return {"accuracy": acc, "loss": 1 - acc, "split": "test"}


def history(n=2):
    return [{"epoch": e, "epochs": n, "train_loss": 1.0 / e} for e in range(1, n + 1)]


def finished(runs_dir, **settings):
    acc = settings.pop("acc", 0.8)
    return save_run(network("784-10"), config(**settings), history(), results(acc), {}, runs_dir)


def drop_index(runs_dir):
    for suffix in ("", "-wal", "-shm"):
        (runs_dir / f"index.sqlite{suffix}").unlink(missing_ok=True)


def test_filters_and_sorting(runs_dir):
    for lr, opt, acc in [(0.001, "adam", 0.81), (0.003, "adam", 0.86), (0.01, "sgd", 0.84)]:
        finished(runs_dir, lr=lr, optimizer=opt, acc=acc)
    lrs = lambda rows: [r["settings"]["lr"] for r in rows]  # noqa: E731
    assert lrs(index.query(runs_dir, ["optimizer=adam"], "-test_accuracy")) == [0.003, 0.001]
    assert lrs(index.query(runs_dir, ["lr<0.005"])) == [0.001, 0.003]
    assert lrs(index.query(runs_dir, ["test_accuracy>=0.84"], "lr")) == [0.003, 0.01]
    assert lrs(index.query(runs_dir, ["optimizer<b"])) == [0.001, 0.003]  # text compares as text
    assert len(index.query(runs_dir, ["created>2000"])) == 3  # so do ISO times
    assert [r.results["accuracy"] for r in list_runs(runs_dir, sort="-test_accuracy")] == [
        0.86,
        0.84,
        0.81,
    ]
    with pytest.raises(QuicknetsError, match="unknown key 'lrr'"):
        index.query(runs_dir, ["lrr=1"])
    with pytest.raises(QuicknetsError, match="bad filter"):
        index.query(runs_dir, ["lr"])
    with pytest.raises(QuicknetsError, match="unknown key"):
        index.query(runs_dir, sort="lr; DROP TABLE runs")


@pytest.mark.parametrize(
    "text",
    ["lr<abc", "test_accuracy>=high", "epochs<=", "seed=one", "epochs_done!=x", "test_loss>0.1.2"],
)
def test_a_number_compares_only_with_a_number(runs_dir, text):
    finished(runs_dir)
    key, _, value = text.partition(next(op for op in index.OPERATORS if op in text))
    with pytest.raises(
        QuicknetsError, match=f"bad filter '{text}': {key} is a number, and '{value}' is not"
    ):
        index.query(runs_dir, [text])  # was: every run matched (or none)


def test_index_follows_the_folders(runs_dir):
    a = finished(runs_dir, seed=0, acc=0.7)
    b = finished(runs_dir, seed=1)
    assert len(index.query(runs_dir)) == 2
    drop_index(runs_dir)  # lost index: rebuilt from the folders
    assert sorted(r["name"] for r in index.query(runs_dir)) == sorted([a.name, b.name])
    shutil.rmtree(b)  # deleted by hand: dropped from the index
    assert [r["name"] for r in index.query(runs_dir)] == [a.name]
    atomic_write_json(a / "results.json", results(0.9))  # rewritten: read again
    assert index.query(runs_dir)[0]["test_accuracy"] == 0.9
    assert remove_run(a.name[:20], runs_dir) == a.name
    assert index.query(runs_dir, status="all") == [] and not a.exists()


def test_a_row_rebuilt_mid_training_holds_everything_the_folder_holds(runs_dir, capsys):
    path = start_run(config(lr=0.001, epochs=4), {}, runs_dir, sweep="s1")
    created = load_meta(path)["created"]
    with hold_run(path):
        for epoch in (1, 2, 3):
            atomic_write_json(path / "history.json", history(epoch))
            mark(path, "running", epoch)
            if epoch == 1:
                assert index.query(runs_dir, status="all")[0]["epochs_done"] == 1
                drop_index(runs_dir)  # deleted while the run trains
        (row,) = index.query(runs_dir, ["lr<0.01", "epochs=4"], status="all", sweep="s1")
        assert (row["name"], row["status"], row["epochs_done"], row["created"], row["pid"]) == (
            path.name,
            "running",
            3,
            created,
            os.getpid(),
        )
        assert row["settings"]["optimizer"] == "adam"
        assert main(["runs", "--status", "running", "--runs-dir", str(runs_dir)]) == 0
        assert f"{path.name:<52} running        3/4" in capsys.readouterr().out
        drop_index(runs_dir)
        index.record(runs_dir, path.name, status="running", epochs_done=3)  # an old trainer's
        assert index.query(runs_dir, ["epochs=4"], status="all")[0]["created"] == created
    assert index.query(runs_dir, status="all")[0]["status"] == "stopped"


def load_meta(path):
    import json

    return json.loads((path / "meta.json").read_text())


def test_an_index_from_an_older_quicknets_is_upgraded(runs_dir):
    path = finished(runs_dir, acc=0.75)
    with sqlite3.connect(runs_dir / "index.sqlite") as conn:  # the schema before `stamp`
        conn.execute(
            "CREATE TABLE runs (name TEXT PRIMARY KEY, status TEXT NOT NULL, "
            "created TEXT, sweep TEXT, host TEXT, pid INTEGER, epochs_done INTEGER, "
            "test_accuracy REAL, test_loss REAL, settings TEXT)"
        )
        conn.execute("INSERT INTO runs (name, status) VALUES (?, 'running')", (path.name,))
    (row,) = index.query(runs_dir)
    assert (row["name"], row["test_accuracy"], row["settings"]["lr"]) == (path.name, 0.75, 0.003)


def test_an_index_without_validation_columns_reads_every_folder_again(runs_dir):
    """An index of the schema before val_accuracy/val_loss holds rows whose stamps are current:
    they are read again, so a filter or sort on validation numbers misses no run."""
    from quicknets.records.runfolder import stamp

    rows = [
        {"epoch": 1, "epochs": 2, "val_loss": 0.4, "val_accuracy": 0.9, "best_epoch": 1},
        {"epoch": 2, "epochs": 2, "val_loss": 0.5, "val_accuracy": 0.8, "best_epoch": 1},
    ]
    path = save_run(network("784-10"), config(), rows, results(0.75), {}, runs_dir)
    with sqlite3.connect(runs_dir / "index.sqlite") as conn:
        conn.execute(
            "CREATE TABLE runs (name TEXT PRIMARY KEY, status TEXT NOT NULL, "
            "created TEXT, sweep TEXT, host TEXT, pid INTEGER, epochs_done INTEGER, "
            "test_accuracy REAL, test_loss REAL, settings TEXT, problem TEXT, "
            "stamp TEXT)"
        )
        conn.execute(
            "INSERT INTO runs (name, status, stamp, settings) VALUES (?, 'done', ?, '{}')",
            (path.name, stamp(path)),
        )
    (row,) = index.query(runs_dir, ["val_accuracy>0.85"])  # the kept epoch 1, not epoch 2
    assert (row["name"], row["val_loss"], row["val_accuracy"]) == (path.name, 0.4, 0.9)


def test_runs_folders_of_the_previous_format_are_read(tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(FIXTURES, runs)
    assert {
        r["name"]: (r["status"], r["epochs_done"]) for r in index.query(runs, status="all")
    } == {
        "mlp-32_adam_lr0.003_s0-12117d": ("done", 2),
        "mlp-32_adam_lr0.003_s0-cceadb": ("stopped", 1),
    }
    (old,) = index.query(runs, ["val_accuracy>0.85"])  # its history says val_acc
    assert (old["name"], old["val_accuracy"]) == (
        "mlp-32_adam_lr0.003_s0-12117d",
        0.8538333333333333,
    )
    with pytest.raises(
        QuicknetsError,
        match=r"\(stopped after epoch 1 of 2\): continue it with "
        "`quicknets train --resume",
    ):
        load_run("mlp-32_adam_lr0.003_s0-cceadb", runs)


GARBAGE = {
    "results.json": "[]",
    "config.json": "[1, 2]",
    "history.json": '{"epoch": 1}',
    "meta.json": "\x00\x01",
}


def test_one_unreadable_run_hides_nothing_else(runs_dir, capsys):
    good = finished(runs_dir, acc=0.9)
    bad = {}
    for file, text in GARBAGE.items():
        path = finished(runs_dir, seed=len(bad) + 1)
        (path / file).write_text(text)
        bad[path.name] = file
    listing = {r["name"]: r["status"] for r in index.query(runs_dir, status="all")}
    assert listing == {good.name: "done", **{name: "unreadable" for name in bad}}
    skipped = []
    assert [r.name for r in list_runs(runs_dir, skipped=skipped)] == [good.name]  # compare's
    assert len(skipped) == len(bad)
    for line, (name, file) in zip(sorted(skipped), sorted(bad.items())):
        assert line.startswith(f"{name}: {runs_dir / name / file} is corrupt")
    with pytest.warns(UserWarning, match="skipped run .* is corrupt"):  # never silently
        list_runs(runs_dir)
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert good.name in out and "1 run(s)" in out
    for name, file in bad.items():
        assert f"unreadable: {name}: {runs_dir / name / file} is corrupt" in out
        with pytest.raises(QuicknetsError, match=f"{file} is corrupt"):
            load_run(name, runs_dir)
    assert main(["compare", "--where", "lr<1", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert good.name in out
    for name, file in bad.items():  # n dropped from 5 to 1 without a word
        assert f"skipped {name}: {runs_dir / name / file} is corrupt" in out


# JSON of the right type that still does not hold a record: `runs` listed these as done while
# every other command refused them
NOT_A_RECORD = {
    "config.json": '{"train": {"lr": "fast"}}',
    "history.json": '[{"epoch": 1}, 7]',
    "results.json": '{"accuracy": "0.9", "loss": 0.3}',
}


def test_runs_judges_a_run_by_the_reader_every_command_uses(runs_dir, capsys):
    good = finished(runs_dir, acc=0.9)
    bad = {}
    for file, text in NOT_A_RECORD.items():
        path = finished(runs_dir, seed=len(bad) + 1)
        (path / file).write_text(text)
        bad[path.name] = file
    gone = finished(runs_dir, seed=9)  # finished, and its history deleted
    (gone / "history.json").unlink()
    bad[gone.name] = "history.json"
    assert main(["runs", "--runs-dir", str(runs_dir), "--status", "all"]) == 0
    out = capsys.readouterr().out
    for name, file in bad.items():
        with pytest.raises(QuicknetsError) as refused:
            load_run(name, runs_dir)
        assert str(refused.value).startswith(str(runs_dir / name / file))
        assert f"unreadable: {name}: {refused.value}" in out
        assert (
            next(line for line in out.splitlines() if line.startswith(name)).split()[1]
            == "unreadable"
        )
    assert index.query(runs_dir, status="done")[0]["name"] == good.name
    assert main(["compare", "--where", "optimizer=adam", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert all(f"skipped {name}: " in out for name in bad)


@pytest.fixture
def read_only(tmp_path):
    """A folder to fill, then made read-only by the returned function: a tmpfs remounted
    read-only (as root), or write permission taken away (as another user)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted and os.geteuid() == 0:
        pytest.skip("root without the right to mount: no way to make a folder read-only")

    def seal():
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        else:
            for p in [folder, *folder.rglob("*")]:
                p.chmod(p.stat().st_mode & ~0o222)

    yield folder, seal
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], check=True)
    else:
        for p in [folder, *folder.rglob("*")]:
            p.chmod(p.stat().st_mode | 0o200)


@pytest.mark.parametrize("with_index", [False, True])
def test_a_read_only_runs_folder_is_listed(read_only, capsys, with_index):
    runs, seal = read_only
    done = finished(runs, acc=0.8)
    stopped = start_run(config(seed=5), {}, runs)
    if with_index:
        index.query(runs)
    seal()
    assert main(["runs", "--status", "all", "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert f"{done.name:<52} done" in out and f"{stopped.name:<52} stopped" in out
    assert [r.name for r in list_runs(runs, where=["test_accuracy>0.5"])] == [done.name]
    assert (runs / "index.sqlite").exists() == with_index  # nothing written


def _write_rows(args):
    root, worker, n = args
    for i in range(n):
        index.record(
            root, f"run-{worker}-{i}", status="done", settings={"seed": i}, test_accuracy=i / n
        )
    return n


def test_parallel_writers_lose_nothing(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    workers, per_worker = 4, 60
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        assert (
            sum(pool.map(_write_rows, [(root, w, per_worker) for w in range(workers)]))
            == workers * per_worker
        )
    conn = sqlite3.connect(root / "index.sqlite")
    count = conn.execute("SELECT COUNT(*), COUNT(DISTINCT name) FROM runs").fetchone()
    conn.close()
    assert count == (workers * per_worker, workers * per_worker)


def test_processes_creating_a_new_index_at_once_all_get_in(tmp_path):
    """Sweep workers start together: the first writes of a fresh index race to switch it to WAL,
    which SQLite answers with "locked" at once. Each must still be recorded, and listing at once
    (each rebuilding the index from the folders) works too."""
    record = "index.record(Path(sys.argv[1]), sys.argv[2], status='done')"
    listing = "assert len(index.query(Path(sys.argv[1]))) == 3"
    for round_ in range(6):
        root = tmp_path / f"runs{round_}"
        if round_ % 2:
            for seed in range(3):
                finished(root, seed=seed)
        code = (
            "from pathlib import Path; from quicknets.records import index\n"
            + READY_THEN_GO
            + (listing if round_ % 2 else record)
        )
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(root), f"run{i}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(4)
        ]
        start_together(procs)
        errors = [finish(p)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, errors
        with sqlite3.connect(root / "index.sqlite") as conn:
            names = sorted(n for (n,) in conn.execute("SELECT name FROM runs"))
        assert len(names) == (3 if round_ % 2 else 4)


def test_a_corrupt_index_is_a_clear_error(runs_dir):
    finished(runs_dir)
    (runs_dir / "index.sqlite").write_bytes(b"not a database at all" * 100)
    for suffix in ("-wal", "-shm"):
        (runs_dir / f"index.sqlite{suffix}").unlink(missing_ok=True)
    with pytest.raises(QuicknetsError, match="index.*unusable.*delete it"):
        index.query(runs_dir)


def test_rows_read_under_another_config_format_are_read_again(runs_dir):
    """A row's settings are the config as this version reads it (configs.upgrade: format 3's
    unused warmup is dropped): an index filled by an earlier reader is read again, not trusted."""
    from quicknets.config.configs import FORMAT

    finished(runs_dir)
    assert index.query(runs_dir, ["warmup=0.2"]) == []
    conn = sqlite3.connect(runs_dir / "index.sqlite")
    with conn:  # as an earlier version left it: format 3 kept warmup 0.2 with every schedule
        conn.execute("""UPDATE runs SET settings = json_set(settings, '$.warmup', 0.2)""")
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    assert index.query(runs_dir, ["warmup=0.2"]) == []  # read from the folder again
    conn = sqlite3.connect(runs_dir / "index.sqlite")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == FORMAT
    conn.close()


def trust_runs(runs_dir) -> dict:
    """Four finished runs, each with some of the trust metrics in results.json (written as
    `evaluate --robustness` and training's calibration write them)."""
    from quicknets.records.runs import update_results

    measured = {
        "a": {"ece": 0.05, "mean_corruption_accuracy": 0.60},
        "b": {"ece": 0.02},
        "c": {},
        "d": {"mean_corruption_accuracy": 0.70},
    }
    names = {}
    for i, (key, values) in enumerate(measured.items()):
        path = finished(runs_dir, lr=0.001 * (i + 1))
        if values:
            update_results(path, values)
        names[path.name] = key
    return names


def test_sorting_by_the_trust_metrics_puts_runs_without_them_last(runs_dir, capsys):
    names = trust_runs(runs_dir)

    def keys(rows):
        return [names[r["name"]] for r in rows]

    assert keys(index.query(runs_dir, sort="test_ece"))[:2] == ["b", "a"]  # lower is better
    assert sorted(keys(index.query(runs_dir, sort="test_ece"))[2:]) == ["c", "d"]
    assert keys(index.query(runs_dir, sort="-mean_corruption_accuracy"))[:2] == ["d", "a"]
    assert keys(index.query(runs_dir, sort="mean_corruption_accuracy"))[:2] == ["a", "d"]
    assert keys(index.query(runs_dir, ["mean_corruption_accuracy>0.65"])) == ["d"]
    assert keys(index.query(runs_dir, ["test_ece<0.03"])) == ["b"]
    with pytest.raises(QuicknetsError, match="is a number"):
        index.query(runs_dir, ["test_ece<low"])

    assert main(["runs", "--sort=-mean_corruption_accuracy", "--runs-dir", str(runs_dir)]) == 0
    head, *rows, _ = capsys.readouterr().out.splitlines()
    assert head.split() == [
        "run",
        "status",
        "epochs",
        "test_accuracy",
        "test_loss",
        "test_ece",
        "mean_corruption_accuracy",
        "created",
    ]
    cells = {names[r.split()[0]]: r.split()[5:7] for r in rows}
    assert [names[r.split()[0]] for r in rows][:2] == ["d", "a"]
    assert cells == {
        "a": ["0.0500", "0.6000"],
        "b": ["0.0200", "-"],
        "c": ["-", "-"],
        "d": ["-", "0.7000"],
    }
    assert main(["runs", "--format", "csv", "--runs-dir", str(runs_dir)]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    column = header.split(",").index("mean_corruption_accuracy")
    assert sorted(line.split(",")[column] for line in lines) == ["", "", "0.6", "0.7"]


def test_runs_without_trust_metrics_show_no_such_columns(runs_dir, capsys):
    finished(runs_dir)
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert head.split() == ["run", "status", "epochs", "test_accuracy", "test_loss", "created"]
    assert main(["runs", "--sort", "test_ece", "--runs-dir", str(runs_dir)]) == 0
    head, row = capsys.readouterr().out.splitlines()[:2]
    assert "test_ece" in head.split() and row.split()[5] == "-"  # asked for: shown, as unknown


def test_an_index_without_the_trust_columns_reads_every_folder_again(runs_dir):
    from quicknets.records.runfolder import stamp

    names = trust_runs(runs_dir)
    drop_index(runs_dir)
    with sqlite3.connect(runs_dir / "index.sqlite") as conn:  # the schema before them
        conn.execute(
            "CREATE TABLE runs (name TEXT PRIMARY KEY, status TEXT NOT NULL, "
            "created TEXT, sweep TEXT, host TEXT, pid INTEGER, epochs_done INTEGER, "
            "test_accuracy REAL, test_loss REAL, val_accuracy REAL, val_loss REAL, "
            "settings TEXT, problem TEXT, stamp TEXT)"
        )
        for name in names:
            conn.execute(
                "INSERT INTO runs (name, status, stamp, settings) VALUES (?, 'done', ?, '{}')",
                (name, stamp(runs_dir / name)),
            )
    rows = index.query(runs_dir, sort="-mean_corruption_accuracy")
    assert [names[r["name"]] for r in rows][:2] == ["d", "a"]


@pytest.mark.parametrize("key", ["ece", "mean_corruption_accuracy"])
def test_a_trust_metric_that_is_no_number_makes_the_run_unreadable(runs_dir, key):
    path = finished(runs_dir)
    file = path / "results.json"
    atomic_write_json(file, {**results(0.8), key: "high"})
    (row,) = index.query(runs_dir)
    assert row["status"] == "unreadable" and f"{key} is 'high', not a number" in row["problem"]
