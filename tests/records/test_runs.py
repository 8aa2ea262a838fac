"""Run records: save, load, find, state after a kill at any moment, the run lock, removal."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import READY_THEN_GO, finish, read_line, start_together
from quicknets.base.errors import QuicknetsError
from quicknets.base.storage import atomic_write_json
from quicknets.cli import main
from quicknets.networks.models import network, save_model
from quicknets.records import index
from quicknets.records.runs import (
    check_resumable,
    find_run,
    finish_run,
    hold_run,
    list_runs,
    load_model,
    load_run,
    load_trained,
    mark,
    remove_run,
    run_name,
    run_state,
    save_run,
    start_run,
    unfinished_message,
)


def config(lr=0.003, optimizer="adam", seed=0, spec="784-256-128-64-10", epochs=2):
    return {
        "data": {"dataset": "fashion-mnist", "val_split": 0.0},
        "model": {"model": spec, "spec": spec, "dropout": 0.0},
        "train": {"optimizer": optimizer, "lr": lr, "seed": seed, "epochs": epochs},
    }


def results(acc):
    return {"accuracy": acc, "loss": 1 - acc, "split": "test"}


def history(n=2):
    return [
        {"epoch": e, "epochs": n, "train_loss": 1.0 / e, "seconds": 0.1} for e in range(1, n + 1)
    ]


def trained_epochs(path, n):
    """What the trainer leaves after epoch n: a checkpoint, the history, status running."""
    (path / "checkpoint.pt").write_bytes(b"a checkpoint")
    atomic_write_json(path / "history.json", history(n))
    mark(path, "running", n)


def hold_in_child(path, *, then="sleep"):
    """A process that holds the run's lock (as a trainer does) and prints 'holding'; then it
    sleeps, or keeps marking the run after each 'epoch' until a write fails."""
    step = "mark(path, 'running', 1)" if then == "mark" else "pass"
    code = (
        "import sys, time; from pathlib import Path\n"
        "from quicknets.base.errors import QuicknetsError\n"
        "from quicknets.records.runs import hold_run, mark\n"
        "path = Path(sys.argv[1])\n"
        "with hold_run(path):\n"
        "    mark(path, 'running', 1); print('holding', flush=True)\n"
        "    try:\n"
        "        while True:\n"
        "            time.sleep(0.05)\n"
        f"            {step}\n"
        "    except QuicknetsError as e:\n"
        "        print('stopped:', e, flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert read_line(proc, "holding line") == "holding\n", finish(proc)
    return proc


def statuses(runs_dir):
    return {r["name"]: r["status"] for r in index.query(runs_dir, status="all")}


def test_run_name_from_settings():
    assert run_name(config()) == "mlp-256-128-64_adam_lr0.003_s0"
    assert (
        run_name(config(spec="784-10", optimizer="sgd", lr=0.01, seed=3)) == "linear_sgd_lr0.01_s3"
    )


def row_settings_are_current(runs_dir) -> bool:
    """The index flattens a format-1 config ({"model": {"model": ...}}) into today's names."""
    (row,) = index.query(runs_dir)
    return row["settings"]["network"] == "784-256-128-64-10" and "model" not in row["settings"]


def test_save_load_and_index(runs_dir):
    model = network("784-256-128-64-10")
    path = save_run(model, config(), history(), results(0.8), {"train": 60000}, runs_dir)
    assert path.name.startswith("mlp-256-128-64_adam_lr0.003_s0-") and len(path.name) == 37
    run = load_run(path.name[:36], runs_dir)  # a unique prefix
    assert run.history == history() and run.results["accuracy"] == 0.8
    assert {"python", "torch", "quicknets", "code_version", "seed"} <= set(run.meta)
    assert load_model(run).config["network"] == "784-256-128-64-10"
    assert row_settings_are_current(runs_dir)
    (row,) = index.query(runs_dir)
    assert row["name"] == path.name and row["status"] == "done"
    assert row["test_accuracy"] == 0.8 and row["epochs_done"] == 2
    assert row["settings"]["lr"] == 0.003 and row["settings"]["optimizer"] == "adam"
    assert sorted(p.name for p in path.iterdir()) == [
        ".lock",
        "config.json",
        "history.json",
        "meta.json",
        "model.pt",
        "results.json",
    ]


def test_every_command_reads_the_same_state_after_a_kill_at_any_moment(runs_dir):
    """The folder's files say the state; listing, compare (list_runs), load_run and --resume
    (check_resumable) agree at each moment a trainer could be killed; using the model
    (load_trained: evaluate, classify, export) needs only model.pt, written just before
    results.json."""
    path = start_run(config(), {}, runs_dir)

    def agree(status, *, listed, load, resume):
        assert statuses(runs_dir) == {path.name: status} and run_state(path)["status"] == status
        assert [r.name for r in list_runs(runs_dir)] == ([path.name] if listed else [])
        if load is None:
            assert load_run(path.name, runs_dir).name == path.name
        else:
            with pytest.raises(QuicknetsError, match=load):
                load_run(path.name, runs_dir)
        with hold_run(path):  # as --resume does
            if resume is None:
                check_resumable(path)
            else:
                with pytest.raises(QuicknetsError, match=resume):
                    check_resumable(path)

    no_checkpoint = "before its first epoch ended, so there is no checkpoint to resume"
    agree("stopped", listed=False, load=no_checkpoint, resume=no_checkpoint)  # before epoch 1
    trained_epochs(path, 1)  # killed in epoch 2: the status file still says running
    agree(
        "stopped",
        listed=False,
        load=r"stopped after epoch 1 of 2\): continue it with "
        r"`quicknets train --resume",
        resume=None,
    )
    mark(path, "interrupted")  # Ctrl-C
    agree("interrupted", listed=False, load="interrupted after epoch 1 of 2", resume=None)
    trained_epochs(path, 2)
    with pytest.raises(QuicknetsError, match="stopped after epoch 2 of 2"):
        load_trained(path)  # no model yet
    save_model(network("784-256-128-64-10"), path / "model.pt")  # killed right after model.pt
    agree("stopped", listed=False, load="stopped after epoch 2 of 2", resume=None)
    with pytest.raises(QuicknetsError, match="stopped after epoch 2 of 2"):
        load_trained(path)  # model.pt without results.json: unfinished, as `runs` says
    atomic_write_json(path / "results.json", results(0.7))  # killed right after results.json
    assert (path / "checkpoint.pt").exists() and (path / "status.json").exists()
    agree("done", listed=True, load=None, resume="is finished")
    assert index.query(runs_dir, ["test_accuracy>0.6"])[0]["name"] == path.name


def test_a_live_lock_means_running_and_a_killed_holder_stopped(runs_dir):
    path = start_run(config(), {}, runs_dir)
    trained_epochs(path, 1)
    proc = hold_in_child(path)
    try:
        assert (run_state(path)["status"], run_state(path)["pid"]) == ("running", proc.pid)
        assert statuses(runs_dir) == {path.name: "running"}
        with pytest.raises(
            QuicknetsError,
            match=f"still training \\(process {proc.pid}, "
            r"1 epoch\(s\) done\); wait",
        ):
            load_run(path.name, runs_dir)
        with (
            pytest.raises(QuicknetsError, match=f"is being trained by process {proc.pid}$"),
            hold_run(path),  # a second --resume
        ):
            pass
        with pytest.raises(
            QuicknetsError,
            match=f"being trained by process {proc.pid}; stop it first, or pass --force",
        ):
            remove_run(path.name, runs_dir)
        assert (path / "config.json").exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert statuses(runs_dir) == {path.name: "stopped"}  # the kernel dropped the lock
    with hold_run(path):  # and anyone may take it now
        assert run_state(path)["status"] == "running"


def test_two_resumes_started_together_one_wins(runs_dir):
    path = start_run(config(), {}, runs_dir)
    code = (
        "from pathlib import Path\n"
        "from quicknets.base.errors import QuicknetsError\n"
        "from quicknets.records.runs import hold_run\n" + READY_THEN_GO + "try:\n"
        "    with hold_run(Path(sys.argv[1])):\n"
        "        print('won', flush=True); sys.stdin.readline()  # held till both tried\n"
        "except QuicknetsError as e:\n"
        "    print('lost:', e, flush=True)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    start_together(procs)
    firsts = [read_line(p, "won or lost line") for p in procs]  # both tried: release the lock
    outs = [(first + finish(p)[0]).strip() for first, p in zip(firsts, procs)]
    winner = procs[outs.index("won")].pid
    assert sorted(outs) == sorted(
        ["won", f"lost: run {path.name} is being trained by process {winner}"]
    )


def test_messages_offer_only_what_works(runs_dir, capsys):
    """--resume is offered only where a checkpoint exists, and then it works."""
    path = start_run(config(epochs=3), {}, runs_dir)
    mark(path, "interrupted")  # Ctrl-C during epoch 1: nothing to resume
    with pytest.raises(QuicknetsError) as e:
        load_run(path.name, runs_dir)
    assert "--resume" not in str(e.value) and "train it again" in str(e.value)
    assert main(["evaluate", path.name, "--runs-dir", str(runs_dir)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted before its first epoch ended" in err
    trained_epochs(path, 2)
    mark(path, "failed")
    with pytest.raises(
        QuicknetsError,
        match=r"\(failed after epoch 2 of 3\): continue it with "
        f"`quicknets train --resume {path.name}`$",
    ):
        load_run(path.name, runs_dir)
    with hold_run(path):
        check_resumable(path)  # what the message offers is possible
        mark(path, "interrupted")  # and what the trainer tells when it stops (holding the lock)
        assert (
            unfinished_message(path) == f"run {path.name} is not finished (interrupted after "
            f"epoch 2 of 3): continue it with `quicknets train --resume {path.name}`"
        )


def test_runs_dir_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "afile").write_text("")
    with pytest.raises(QuicknetsError, match="cannot create the run folder .*afile/"):
        start_run(config(), {}, tmp_path / "afile")  # was a NotADirectoryError traceback


def test_only_run_records_are_removed(runs_dir, tmp_path, monkeypatch, capsys):
    runs_dir.mkdir()
    project = tmp_path / "project"  # someone's folder that happens to hold a config.json
    project.mkdir()
    (project / "config.json").write_text("{}")
    (project / "thesis.tex").write_text("years of work")
    record = save_run(network("784-10"), config(), history(), results(0.7), {}, runs_dir)
    shutil.copytree(record, runs_dir / "copy")  # a copy under another name: still a record
    (record / "notes.txt").write_text("mine")  # a record holding a user's file
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for ref, why in [
        (str(project), "is not a run record"),
        (
            record.name,
            r"holds files that are not part of the run record "
            r"\(notes.txt\); nothing was removed",
        ),
    ]:
        with pytest.raises(QuicknetsError, match=why):
            remove_run(ref, runs_dir)
    monkeypatch.chdir(project)
    assert main(["runs", "rm", ".", "--runs-dir", str(runs_dir)]) == 1  # was a traceback
    assert (
        capsys.readouterr().err == f"error: {project} is not a run record (it has no meta.json "
        "naming a run); nothing was removed\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["runs", "rm", ".", "--runs-dir", str(runs_dir)]) == 1
    assert "error: no run '.'" in capsys.readouterr().err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing touched, no index
    (record / "notes.txt").unlink()
    (record / "figures").mkdir()
    (record / "figures" / "curves.png").write_bytes(b"png")
    (record / ".history.json.x1y2.tmp").write_text("")  # left by a write cut short
    monkeypatch.chdir(record)
    assert main(["runs", "rm", "."]) == 0  # from inside the run folder
    assert not record.exists() and (runs_dir / "copy").exists()
    monkeypatch.chdir(tmp_path)
    remove_run("copy", runs_dir)  # a cp -r copy (meta.json names the original) is a record too
    assert not (runs_dir / "copy").exists() and project.exists()


def test_removed_while_training_the_trainer_stops_and_the_folder_stays_gone(runs_dir):
    path = start_run(config(), {}, runs_dir)
    proc = hold_in_child(path, then="mark")
    assert remove_run(path.name, runs_dir, force=True) == path.name
    out, err = finish(proc)
    assert proc.returncode == 0, err
    assert (
        out == f"stopped: cannot write {path}/status.json: its folder {path} no longer "
        "exists (removed?)\n"
    )
    assert not path.exists() and list(runs_dir.iterdir()) == []
    for write in (
        lambda: mark(path, "running", 2),
        lambda: finish_run(path, network("784-10"), history(), results(0.5)),
    ):
        with pytest.raises(QuicknetsError, match=f"its folder {path} no longer exists"):
            write()
        assert not path.exists()
    with pytest.raises(QuicknetsError, match="no longer exists"), hold_run(path):
        pass
    mark(path, "failed")  # how a trainer ends: nothing left to mark, and no error over the first
    assert not path.exists()


@pytest.mark.parametrize("name", ["a[1]", "a?b", "a*"])
def test_names_are_matched_literally(runs_dir, name):
    save_run(network("784-10"), config(), history(), results(0.7), {}, runs_dir, name="ab")
    path = save_run(network("784-10"), config(), history(), results(0.7), {}, runs_dir, name=name)
    assert find_run(name, runs_dir) == path
    assert find_run(name[:2], runs_dir) == path  # "a[", "a?", "a*" are prefixes, not patterns
    with pytest.raises(QuicknetsError, match=r"'a' matches 2 runs"):
        find_run("a", runs_dir)
    for ref in ("[", "*", "?", "mlp*"):
        with pytest.raises(QuicknetsError, match="no run"):
            find_run(ref, runs_dir)


def test_corrupt_files_are_clear_errors(runs_dir):
    path = save_run(network("784-10"), config(), history(), results(0.7), {}, runs_dir)
    for file, text, why in [
        ("history.json", '[{"epoch": 1,', "history.json is corrupt"),
        (
            "results.json",
            "[]",
            r"results.json is corrupt \(a JSON array, "
            "not the object it should hold",
        ),
        ("results.json", "null", r"results.json is corrupt \(a JSON null, not the object"),
        ("results.json", "{}", r"results.json is corrupt \(it has no accuracy\)"),
        ("results.json", '{"accuracy": 0.7}', r"results.json is corrupt \(it has no loss\)"),
        ("results.json", '{"accuracy": "x", "loss": 1}', r"\(accuracy is 'x', not a number\)"),
        ("history.json", "[1]", r"history.json is corrupt \(epoch row 1 is a JSON number"),
        ("config.json", "[1, 2]", "config.json is corrupt"),
        ("meta.json", "\xff", "meta.json is corrupt"),
    ]:
        good = (path / file).read_text()
        (path / file).write_text(text)
        with pytest.raises(QuicknetsError, match=why):
            load_run(path.name, runs_dir)
        (path / file).write_text(good)
    data = (path / "model.pt").read_bytes()
    (path / "model.pt").write_bytes(data[:100])
    with pytest.raises(QuicknetsError, match="cannot load"):
        load_model(load_run(path.name, runs_dir))
    (path / "model.pt").write_text('{"not a model"')  # garbage, not a refused pickle
    with pytest.raises(QuicknetsError, match="corrupt or not a file of plain tensors"):
        load_model(load_run(path.name, runs_dir))


def test_using_a_model_needs_no_readable_results(runs_dir):
    """evaluate, classify, export and demo read a run through load_trained: a results.json (or
    history.json) that is corrupt is a note, not an error; config.json, meta.json and model.pt
    are still needed, a missing results.json is an unfinished run, and `runs` still calls a
    damaged run unreadable, with its reason."""
    model = network("784-10")
    path = save_run(model, config(spec="784-10"), history(), results(0.7), {}, runs_dir)
    intact = (path / "results.json").read_bytes()
    run, note = load_trained(path.name, runs_dir)
    assert note is None and run.results == load_run(path).results and len(run.history) == 2
    damage = {
        "garbage": b"\x00\xff\x13garbage",
        "truncated": intact[: len(intact) // 2],
        "a JSON list": b"[0.7, 0.2]",
    }
    for kind, content in damage.items():
        (path / "results.json").write_bytes(content)
        run, note = load_trained(path.name, runs_dir)
        assert run.results == {} and run.config == load_trained(path)[0].config, kind
        assert note.startswith(f"note: {path / 'results.json'} is ") and "\n" not in note, kind
        assert note.endswith("not needed here: the model is used from model.pt and config.json")
        assert "cannot be read" not in note and "missing" not in note, note
        weights = load_model(path.name, runs_dir).state_dict()  # the library's way too
        assert all(weights[k].equal(v) for k, v in model.state_dict().items())
        row = index.query(runs_dir, status="all")[0]
        assert row["status"] == "unreadable" and "results.json is corrupt" in row["problem"]
    (path / "results.json").unlink()  # missing: an unfinished run, as before
    with pytest.raises(QuicknetsError, match="not finished|stopped"):
        load_trained(path)
    assert index.query(runs_dir, status="all")[0]["status"] == "stopped"
    (path / "results.json").write_bytes(intact)
    (path / "history.json").write_text("[{")
    assert "history.json is corrupt" in load_trained(path)[1]
    for file, text in (("config.json", "[1, 2]"), ("meta.json", "\xff")):  # needed: errors
        good = (path / file).read_text()
        (path / file).write_text(text)
        with pytest.raises(QuicknetsError, match=f"{file} is corrupt"):
            load_trained(path)
        (path / file).write_text(good)


def test_a_run_without_results_and_model_is_not_used(runs_dir):
    """No model.pt (stopped while training), or a trainer holding the run: load_run's error."""
    path = start_run(config(), {}, runs_dir)
    trained_epochs(path, 1)
    with pytest.raises(QuicknetsError, match=re.escape(unfinished_message(path))):
        load_trained(path)
    (path / "model.pt").write_bytes(b"a model from an earlier finish")  # then resumed
    proc = hold_in_child(path)
    try:
        with pytest.raises(QuicknetsError, match="still training"):
            load_trained(path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


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
    assert main(["runs", "--runs-dir", str(runs_dir), "--where", "lr<abc"]) == 1
    assert (
        capsys.readouterr().err == "error: bad filter 'lr<abc': lr is a number, and 'abc' is not\n"
    )
    with pytest.raises(QuicknetsError):
        find_run("nope", runs_dir)
    assert main(["runs", "--runs-dir", str(runs_dir), "--limit", "-1"]) == 1  # was: every run
    assert capsys.readouterr().err == "error: --limit must be at least 0 (0: all), got -1\n"
    (runs_dir.parent / "afile").write_text("")  # was listed as a folder holding 0 runs
    assert main(["runs", "--runs-dir", str(runs_dir.parent / "afile")]) == 1
    assert (
        capsys.readouterr().err == f"error: {runs_dir.parent / 'afile'} is a file, not a "
        "folder of runs\n"
    )


def test_code_version_ignores_a_repository_that_is_not_quicknets(tmp_path):
    """Installed inside some other git repository, quicknets records its version, not that
    repository's commit."""
    from pathlib import Path

    import quicknets

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copytree(Path(quicknets.__file__).parent, tmp_path / "lib" / "quicknets")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from quicknets.records.runs import code_version; print(code_version())",
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path / "lib"), "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == quicknets.__version__, out.stderr


def test_marks_are_files_in_the_run_folder(runs_dir):
    path = start_run(config(), {}, runs_dir)
    mark(path, "pruned", 1)
    told = json.loads((path / "status.json").read_text())
    assert (told["status"], told["epochs_done"], told["pid"]) == ("pruned", 1, os.getpid())
    assert run_state(path)["status"] == "pruned"
    with pytest.raises(ValueError, match="status must be one of"):
        mark(path, "done")
    finish_run(path, network("784-10"), history(), results(0.5))
    assert not (path / "status.json").exists() and run_state(path)["status"] == "done"


def test_code_version_takes_no_git_lock(tmp_path):
    """Every run ran `git status` in the quicknets checkout, which refreshes .git/index under
    .git/index.lock: a user's `git commit` at that moment failed. A checkout whose index is
    stale (a file touched) makes plain `git status` rewrite the index (the control below); the
    version is read without writing it, and is still right."""
    from pathlib import Path

    import quicknets

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    def version():
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "from quicknets.records.runs import code_version; print(code_version())",
            ],
            capture_output=True,
            text=True,
            env={
                "PYTHONPATH": str(tmp_path / "src"),
                "PATH": "/usr/bin:/bin",
                "HOME": str(tmp_path),
            },
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def index():  # a rewrite goes through index.lock and a rename: a new inode
        s = (tmp_path / ".git" / "index").stat()
        return s.st_ino, s.st_mtime_ns

    def make_stale():
        for file in (tmp_path / "src" / "quicknets").rglob("*.py"):
            os.utime(file, ns=(file.stat().st_atime_ns, file.stat().st_mtime_ns + 10**9))

    shutil.copytree(
        Path(quicknets.__file__).parent,
        tmp_path / "src" / "quicknets",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (tmp_path / ".gitignore").write_text("__pycache__/\n")
    git("init", "-q")
    git("add", "src", ".gitignore")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    head = git("rev-parse", "--short", "HEAD")
    make_stale()
    before = index()
    assert version() == head  # touched, not changed: clean
    assert index() == before and not (tmp_path / ".git" / "index.lock").exists()
    git("status", "--porcelain")  # the control: plain git status rewrites a stale index
    assert index() != before
    make_stale()
    (tmp_path / "src" / "quicknets" / "records" / "runs.py").write_text(
        (tmp_path / "src" / "quicknets" / "records" / "runs.py").read_text() + "\n# changed\n"
    )
    before = index()
    assert version() == f"{head}-dirty" and index() == before


@pytest.fixture
def trained_run(runs_dir, tiny_dir, capsys):
    """A finished CLI run (sgd, its momentum not given) on the tiny data: (path, printed)."""
    args = ["--dataset", "mnist", "--data-dir", str(tiny_dir), "--no-verify", "--runs-dir"]
    args += [str(runs_dir), "--network", "784-16-10", "--optimizer", "sgd", "--lr", "0.01"]
    assert main(["train", *args, "--epochs", "1", "--threads", "1"]) == 0
    (path,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return path, capsys.readouterr().out


def test_the_record_says_the_momentum_the_run_used(trained_run):
    path, out = trained_run
    assert "  momentum=0.9  " in out and "  warmup=None  " in out  # the config: line
    train = json.loads((path / "config.json").read_text())["train"]
    assert (train["momentum"], train["warmup"]) == (0.9, None)
    assert load_run(path).config.train.momentum == 0.9


@pytest.mark.parametrize(
    "section, key, value, shown",
    [
        ("train", "lr", 0.1, "lr 0.1 in config.json, 0.01 in meta.json"),
        (
            "network",
            "network",
            "784-32-10",
            "network '784-32-10' in config.json, '784-16-10' in meta.json",
        ),
        ("train", "seed", 7, "seed 7 in config.json, 0 in meta.json"),
    ],
)
def test_a_config_edited_after_training_is_refused_by_every_command(
    trained_run, runs_dir, tmp_path, capsys, section, key, value, shown
):
    """meta.json keeps the settings the run was trained with: a config.json edited by hand
    afterwards no longer passes for the record, in every command that reads the run."""
    path, _ = trained_run
    config = json.loads((path / "config.json").read_text())
    config[section][key] = value
    (path / "config.json").write_text(json.dumps(config))
    said = "config.json and meta.json disagree on the settings it was trained with"
    line = f"run {path.name}'s {said}: {shown}"
    with pytest.raises(QuicknetsError, match=re.escape(line)):
        load_run(path)
    where = ["--runs-dir", str(runs_dir)]
    for args in (
        ["evaluate", path.name],
        ["compare", path.name],
        ["show", path.name, "--out", str(tmp_path / "figures")],
        ["report", path.name, "--out", str(tmp_path / "report.html")],
        ["export", path.name, "--format", "torchscript", "--out", str(tmp_path / "m.torchscript")],
    ):
        assert main([*args, *where]) == 1, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and line in err and err.count("\n") == 1, (args, err)
    assert main(["runs", *where]) == 0
    out = capsys.readouterr().out
    assert "unreadable" in out and "config.json and meta.json disagree" in out
    assert not (tmp_path / "m.torchscript").exists() and not (tmp_path / "report.html").exists()


def test_where_a_run_trained_may_change_and_old_records_are_not_checked(
    trained_run, runs_dir, tiny_dir, tmp_path, capsys
):
    """data_dir (the data moved), threads and device are not what the run trained; a record
    from before meta.json kept the settings loads as it is."""
    path, _ = trained_run
    moved = shutil.copytree(tiny_dir, tmp_path / "moved")
    config = json.loads((path / "config.json").read_text())
    config["data"]["data_dir"] = str(moved)
    config["train"].update(threads=2, device="cpu")
    (path / "config.json").write_text(json.dumps(config))
    assert load_run(path).config.data.data_dir == str(moved)
    assert main(["evaluate", path.name, "--runs-dir", str(runs_dir)]) == 0
    assert "accuracy" in capsys.readouterr().out
    meta = json.loads((path / "meta.json").read_text())
    assert meta["trained_with"]["train"]["lr"] == 0.01 and "threads" not in meta["trained_with"]
    del meta["trained_with"]  # as made before
    config["train"]["lr"] = 0.5
    (path / "meta.json").write_text(json.dumps(meta))
    (path / "config.json").write_text(json.dumps(config))
    assert load_run(path).config.train.lr == 0.5  # nothing to tell it by


def test_update_results_adds_to_a_finished_record_under_its_lock(runs_dir):
    from quicknets.records.runs import update_results

    path = save_run(network("784-10"), config(spec="784-10"), history(), results(0.8), {}, runs_dir)
    assert update_results(path, {"mean_corruption_accuracy": 0.6, "robustness": {"n": 3}}) == (
        path / "results.json"
    )
    assert load_run(path).results == {
        **results(0.8),
        "mean_corruption_accuracy": 0.6,
        "robustness": {"n": 3},
    }
    update_results(load_run(path), {"mean_corruption_accuracy": 0.7})  # a Run; a key replaced
    assert load_run(path).results == {
        **results(0.8),
        "mean_corruption_accuracy": 0.7,
        "robustness": {"n": 3},
    }
    assert not list(path.glob(".*.tmp"))

    written = (path / "results.json").read_bytes()
    proc = hold_in_child(path)  # another process holds the run
    try:
        with pytest.raises(QuicknetsError, match=f"is being trained by process {proc.pid}$"):
            update_results(path, {"ece": 0.1})
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (path / "results.json").read_bytes() == written

    unfinished = start_run(config(spec="784-10"), {}, runs_dir)
    with pytest.raises(QuicknetsError, match=re.escape(unfinished_message(unfinished))):
        update_results(unfinished, {"ece": 0.1})
    assert not (unfinished / "results.json").exists()  # never made finished by it
    shutil.rmtree(path)
    with pytest.raises(QuicknetsError, match="no longer exists"):
        update_results(path, {"ece": 0.1})
    assert not path.exists()  # and not made again
