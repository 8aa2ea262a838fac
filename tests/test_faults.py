"""Fault runs (issue 9): `kill -9` at ten moments of a train, a sweep and a resume; after each,
`runs --status all`, `compare`, `evaluate` and `train --resume` agree about every run folder.

    PYTHONPATH=src pytest tests/test_faults.py -s      # -s prints the moment each kill hit

Each thing runs as a `quicknets` process, killed (SIGKILL, with every process it started) when
its run folders reach a chosen stage: they are polled every 0.5 ms, the process group is frozen
(SIGSTOP) as soon as the stage is reached, listed (a live run shows as running), described (the
moment the kill hit, printed), then killed. Which stage a kill hits is timing; what the tests
assert holds after a kill at any moment. Every command runs as `quicknets.cli.main(argv)` in a
process forked from one that imported torch once (a fresh interpreter costs ~3 s of imports).

After each kill: `runs` lists every run folder, none running; `compare` shows exactly the done
ones; `evaluate` works exactly for those; `--resume` is offered exactly where it works, and then
finishes the run with the numbers of an uninterrupted one (history and test metrics, to the
bit), or says why not (finished; no checkpoint: train again, `runs rm` removes it); every
record file, checkpoint and the index read whole.
"""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import quicknets
from conftest import HANG_S, make_idx_dataset
from quicknets.config.configs import RunConfig
from quicknets.networks.models import network
from quicknets.records.runfolder import TEMP, lock_holder
from quicknets.records.runs import finish_run, hold_run, start_run
from quicknets.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork, /proc, process groups")

EPOCHS = 5  # of the train (and so of the run the resume continues)
NET = [
    "--dataset",
    "mnist",
    "--no-verify",
    "--layers",
    "784-64-10",
    "--batch-size",
    "16",
    "--dropout",
    "0.2",
]  # dropout: a resume must restore the RNG too; ~25 ms an epoch
SWEEP_LRS = ("0.001", "0.003", "0.01")
SWEEP_EPOCHS = 3

# Forks `quicknets.cli.main(argv)` on request: "start" answers the child's pid (a process group
# leader, so its sweep workers die with it), "wait" its exit code (-9 when killed).
SERVER = r"""
import json, os, sys
import torch  # noqa: F401  (once, here)
import quicknets.cli, quicknets.records.experiment, quicknets.sweeps
import quicknets.records.comparison, quicknets.networks.models
quicknets.networks.models.check_memory("784-10")  # its meta-device forward imports for 2 s, once
for line in sys.stdin:
    op, *args = json.loads(line)
    if op == "start":
        argv, out, err = args
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setpgid(0, 0)
                for fd, name in ((1, out), (2, err)):
                    f = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(f, fd)
                    os.close(f)
                sys.argv = ["quicknets", *argv]
                code = quicknets.cli.main(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                import traceback
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass  # the child did it first
        print(pid, flush=True)
    elif op == "wait":
        print(os.waitstatus_to_exitcode(os.waitpid(args[0], 0)[1]), flush=True)
"""


class Launcher:
    """Runs `quicknets` commands in processes forked from SERVER."""

    def __init__(self, folder: Path):
        src = str(Path(quicknets.__file__).resolve().parents[1])
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.folder, self.count = folder, 0

    def ask(self, *message) -> int:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        assert answer, "the fork server died"
        return int(answer)

    def start(self, *argv) -> dict:
        self.count += 1
        out, err = (self.folder / f"{self.count}.{kind}" for kind in ("out", "err"))
        argv = [str(a) for a in argv]
        out.touch(), err.touch()  # there even when the child is killed before it opens them
        return {
            "pid": self.ask("start", argv, str(out), str(err)),
            "out": out,
            "err": err,
            "argv": argv,
        }

    def wait(self, child) -> tuple:
        """(exit code, stdout, stderr) of a started command, once it ended."""
        code = self.ask("wait", child["pid"])
        return code, child["out"].read_text(), child["err"].read_text()

    def run(self, *argv) -> tuple:
        return self.wait(self.start(*argv))

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=HANG_S)


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet waited for, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --- what the run folders hold: a number that grows with every write, and words for a report --

CLOSED = 902  # a finished run whose checkpoint and status file are gone


def json_or(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def run_folders(runs: Path) -> list:
    """The run folders, oldest first (not runs/sweeps/, where sweeps keep their plans)."""
    if not runs.is_dir():
        return []
    found = [
        p
        for p in runs.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "config.json").is_file()
    ]
    return sorted(found, key=lambda p: (p / "config.json").stat().st_mtime_ns)


def stage(folder: Path) -> int:
    """2 once the folder exists, 10*k + 1, 2, 3 as epoch k's checkpoint, history and status are
    written, 900 with model.pt, 901 with results.json, CLOSED without checkpoint and status."""
    if (folder / "results.json").exists():
        open_files = (folder / "checkpoint.pt").exists() or (folder / "status.json").exists()
        return 901 if open_files else CLOSED
    if (folder / "model.pt").exists():
        return 900
    history = len(json_or(folder / "history.json", []))
    status = json_or(folder / "status.json", {}).get("epochs_done") or 0
    value = 2 if not history else 10 * history + (3 if status >= history else 2)
    try:
        newer = (folder / "checkpoint.pt").stat().st_mtime_ns > (
            folder / "history.json"
        ).stat().st_mtime_ns
    except FileNotFoundError:
        newer = (folder / "checkpoint.pt").exists() and not history
    return 10 * (history + 1) + 1 if newer else value


def progress(runs: Path) -> int:
    partial = runs.is_dir() and any(p.name.endswith(".partial") for p in runs.iterdir())
    return sum(stage(f) for f in run_folders(runs)) + partial


def in_group(pid, group: int) -> bool:
    try:
        return os.getpgid(pid) == group
    except (ProcessLookupError, TypeError):
        return False


def describe_moment(runs: Path, group: int) -> str:
    """The run folders' files, as the kill of process group `group` left them."""
    if not runs.is_dir():
        return "no runs folder yet"
    words = [f"partial folder {p.name}" for p in runs.iterdir() if p.name.endswith(".partial")]
    for i, folder in enumerate(run_folders(runs), 1):
        if stage(folder) == CLOSED:
            words.append(f"run {i} closed")
            continue
        parts = []
        if (folder / "checkpoint.pt").exists():
            parts.append(f"checkpoint {load_checkpoint(folder / 'checkpoint.pt')['epoch']}")
        parts.append(f"history {len(json_or(folder / 'history.json', []))}")
        told = json_or(folder / "status.json", None)
        parts.append(
            "no status"
            if told is None
            else f"status {told.get('status')} {told.get('epochs_done')}"
            + ("" if in_group(told.get("pid"), group) else " (by an earlier process)")
        )
        parts += [name for name in ("model.pt", "results.json") if (folder / name).exists()]
        parts += [f"temp {p.name}" for p in folder.iterdir() if p.name.endswith(".tmp")]
        words.append(f"run {i}: " + ", ".join(parts))
    return "; ".join(words) or "no run folder yet"


def kill_at(launcher, child, runs: Path, reached, delay: float = 0.0) -> str:
    """SIGKILL the child's process group once `reached(runs)` holds (plus `delay` seconds);
    the moment it hit, in words."""
    deadline = time.monotonic() + HANG_S  # waits on the stage; the limit only names a hang
    while not reached(runs):
        if not alive(child["pid"]):
            code, out, err = launcher.wait(child)
            assert code == 0, err
            return "missed: it had finished"
        assert time.monotonic() < deadline, "the target stage never came"
        time.sleep(0.0005)
    time.sleep(delay)
    os.killpg(child["pid"], signal.SIGSTOP)  # frozen: the folders stay as the kill finds them
    hit = describe_moment(runs, child["pid"])
    holders = {
        f.name
        for f in run_folders(runs)
        if lock_holder(f) is not None and not (f / "results.json").exists()
    }
    if holders:  # listed running while frozen; the index caches it, and must drop it below
        code, out, err = launcher.run("runs", "--status", "all", "--runs-dir", runs)
        assert (
            code == 0 and {n for n, (s, _) in listed(out).items() if s == "running"} == holders
        ), out
    os.killpg(child["pid"], signal.SIGKILL)
    code, out, err = launcher.wait(child)
    assert code in (0, -signal.SIGKILL), err
    deadline = time.monotonic() + HANG_S
    while True:  # its sweep workers too are gone (reaped by init)
        try:
            os.killpg(child["pid"], 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the killed group's processes never went"
        time.sleep(0.002)
    return hit if code else f"missed: it had finished ({hit})"


def at_least(n: int):
    return lambda runs: progress(runs) >= n


def now(runs) -> bool:
    return True


# --- the agreement check, after every kill ------------------------------------------------------


def listed(output: str) -> dict:
    """`quicknets runs` table → {name: (status, epochs done)}."""
    rows = {}
    for line in output.splitlines()[1:]:
        if " run(s) in " in line:
            break
        name, status, epochs = line.split()[:3]
        rows[name] = (status, int(epochs.split("/")[0]))
    return rows


def compared(output: str, names) -> set:
    """`quicknets compare` output → which of `names` (the run folders) its table lists: the
    first word of each line before the blank line (the lines under the table name no run)."""
    lines = output.split("\n\n")[0].splitlines()[2:]
    return {line.split()[0] for line in lines if line.split()} & set(names)


def records(folder: Path) -> tuple:
    """(history without timings, test results): what an exact resume must reproduce."""
    history = [
        {k: v for k, v in row.items() if k != "seconds"}
        for row in json.loads((folder / "history.json").read_text())
    ]
    results = json.loads((folder / "results.json").read_text())
    return history, results


def check_files(runs: Path) -> None:
    """No record or index file half-written: every one reads whole."""
    for folder in run_folders(runs):
        for name in ("config.json", "meta.json", "history.json", "results.json", "status.json"):
            if (folder / name).exists():
                json.loads((folder / name).read_text())
        if (folder / "checkpoint.pt").exists():
            load_checkpoint(folder / "checkpoint.pt")
        if (folder / "model.pt").exists():
            import torch

            torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    if (runs / "index.sqlite").exists():
        conn = sqlite3.connect(runs / "index.sqlite")
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()


def check_agreement(q, runs: Path, reference, select=("--where", "epochs>=1")) -> str:
    """Every command says the same of every run folder the kill left; each resumable run resumes
    to the numbers of an uninterrupted run (`reference(folder)`). `select`: the compare flags
    that pick every finished run. What happened, in words."""
    check_files(runs)
    where = ["--runs-dir", runs]
    folders = {f.name: f for f in run_folders(runs)}
    code, out, err = q.run("runs", *where)
    assert code == 0, err
    code, out, err = q.run("runs", "--status", "all", *where)
    assert code == 0, err
    rows = listed(out)
    assert set(rows) == set(folders), out  # every folder, nothing else
    assert all(s not in ("running", "unreadable") for s, _ in rows.values()), out
    done = {name for name, (s, _) in rows.items() if s == "done"}
    code, out, err = q.run("compare", *select, *where)
    if done:
        assert code == 0 and compared(out, folders) == done, (out, err)
    else:
        assert code == 1 and "no finished run matches" in err, err

    outcome = []
    for name, folder in folders.items():
        status, epochs = rows[name]
        code, out, err = q.run("evaluate", name, *where)
        assert (code == 0) == (name in done), (name, status, err)
        offered = "--resume" in err  # what the refusal offers
        code, out, err = q.run("train", "--resume", name, *where)
        if name in done:
            assert code == 1 and "is finished" in err, (name, err)
            continue
        if not offered:
            assert code == 1 and "no checkpoint to resume" in err and "train it again" in err, (
                name,
                status,
                err,
            )
            assert f"`quicknets runs rm {name}` removes it" in err
            code, out, err = q.run("runs", "rm", name, *where)  # as offered
            assert code == 0 and not folder.exists(), err
            outcome.append(f"{status}, no checkpoint: train again; removed")
            continue
        assert code == 0, (name, status, err)
        after = int(out.split(" after epoch ")[1].split()[0])  # "resuming NAME after epoch 3 of 5"
        # The checkpoint is written before the history: it is never behind what `runs` shows.
        assert after in (epochs, epochs + 1), (epochs, out)
        history, results = records(folder)
        assert len(history) == json.loads((folder / "config.json").read_text())["train"]["epochs"]
        assert (history, results) == reference(folder)  # exact resume
        assert not [p.name for p in folder.iterdir() if TEMP.fullmatch(p.name)]  # closed clean
        shown = "" if after == epochs else f" (runs showed {epochs} epochs)"
        outcome.append(f"{status} -> resumed after epoch {after}{shown}: exact")
        code, out, err = q.run("evaluate", name, *where)
        assert code == 0, err
        done.add(name)
    if outcome:  # the messages' advice followed: every run is done, or gone
        code, out, err = q.run("runs", "--status", "all", *where)
        assert code == 0 and set(listed(out)) == done, out
        assert all(s == "done" for s, _ in listed(out).values()), out
        if done:
            code, out, err = q.run("compare", *select, *where)
            assert code == 0 and compared(out, folders) == done, (out, err)
    check_files(runs)
    return "; ".join(outcome) or f"{len(done)} done, nothing to resume"


# --- the three things ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def q(tmp_path_factory):
    launcher = Launcher(tmp_path_factory.mktemp("outputs"))
    yield launcher
    launcher.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_idx_dataset(tmp_path_factory.mktemp("data"), n_train=1200, n_test=200)


def train_argv(data, runs):
    return [
        "train",
        *NET,
        "--data-dir",
        data,
        "--epochs",
        EPOCHS,
        "--threads",
        1,
        "--runs-dir",
        runs,
        "--quiet",
    ]


def sweep_argv(data, runs, workers=1):
    return [
        "sweep",
        *NET,
        "--data-dir",
        data,
        "--lr",
        ",".join(SWEEP_LRS),
        "--epochs",
        SWEEP_EPOCHS,
        "--workers",
        workers,
        "--threads",
        1,
        "--runs-dir",
        runs,
        "--name",
        "faults",
        "--quiet",
    ]


@pytest.fixture(scope="module")
def train_reference(q, data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("reference")
    code, out, err = q.run(*train_argv(data, runs))
    assert code == 0, err
    (folder,) = run_folders(runs)
    return records(folder)


def fault_run(
    q, thing: str, moments: list, start, reference, folder: Path, select=("--where", "epochs>=1")
) -> None:
    """For each (what, reached, delay) of `moments`: `start(runs)` the thing in a new runs
    folder, kill it there (kill_at), print the moment it hit, and check the agreement."""
    print(f"\n{thing}: the moments the kills hit")
    for i, (what, reached, delay) in enumerate(moments, 1):
        runs = folder / f"kill{i}"
        hit = kill_at(q, start(runs), runs, reached, delay)
        print(f"{i:>3}. {what:<46} hit: {hit}")
        print(f"     then: {check_agreement(q, runs, reference, select)}")


TRAIN_MOMENTS = [
    ("right after the start", now, 0.0),
    ("the run folder being made (.partial)", at_least(1), 0.0),
    ("the run folder appeared (config, meta)", at_least(2), 0.0),
    ("epoch 1's checkpoint, before its history", at_least(11), 0.0),
    ("epoch 1 recorded (checkpoint, history, status)", at_least(13), 0.0),
    ("inside epoch 3", at_least(23), 0.015),
    ("epoch 4's checkpoint, before its history", at_least(41), 0.0),
    ("the last epoch recorded (testing)", at_least(10 * EPOCHS + 3), 0.0),
    ("model.pt written, before results.json", at_least(900), 0.0),
    ("results.json written, checkpoint not yet gone", at_least(901), 0.0),
]


def test_a_train_killed_at_ten_moments(q, data, tmp_path, train_reference):
    fault_run(
        q,
        "train",
        TRAIN_MOMENTS,
        lambda runs: q.start(*train_argv(data, runs)),
        lambda folder: train_reference,
        tmp_path,
    )


SWEEP_MOMENTS = [
    ("right after the start (planning)", now, 0.0),
    ("trial 1's folder appeared", at_least(2), 0.0),
    ("trial 1 after epoch 1", at_least(13), 0.0),
    ("trial 1's results.json written", at_least(901), 0.0),
    ("between trials 1 and 2", at_least(CLOSED), 0.0),
    ("trial 2's folder appeared", at_least(CLOSED + 2), 0.0),
    ("inside trial 2's epoch 2", at_least(CLOSED + 13), 0.015),
    ("trial 2's model.pt written", at_least(CLOSED + 900), 0.0),
    ("trial 3 after epoch 2", at_least(2 * CLOSED + 23), 0.0),
    ("every trial closed (ranking)", at_least(3 * CLOSED), 0.0),
]


@pytest.fixture(scope="module")
def sweep_reference(q, data, tmp_path_factory):
    """folder -> the records of the same trial in an uninterrupted sweep (found by its lr)."""
    runs = tmp_path_factory.mktemp("sweep-reference")
    code, out, err = q.run(*sweep_argv(data, runs))
    assert code == 0, err

    def lr(folder):
        return json.loads((folder / "config.json").read_text())["train"]["lr"]

    trials = {lr(f): records(f) for f in run_folders(runs)}
    return lambda folder: trials[lr(folder)]


def test_a_sweep_killed_at_ten_moments(q, data, tmp_path, sweep_reference):
    fault_run(
        q,
        "sweep, 1 worker",
        SWEEP_MOMENTS,
        lambda runs: q.start(*sweep_argv(data, runs)),
        sweep_reference,
        tmp_path,
        ("--sweep", "faults"),
    )


@pytest.fixture(scope="module")
def stopped_run(q, data, tmp_path_factory) -> Path:
    """A run killed after its second epoch: what each resume below continues."""
    runs = tmp_path_factory.mktemp("stopped")
    kill_at(q, q.start(*train_argv(data, runs)), runs, at_least(23))
    (folder,) = run_folders(runs)
    assert 1 <= load_checkpoint(folder / "checkpoint.pt")["epoch"] < EPOCHS
    return folder


def resume_began(runs: Path) -> bool:  # it holds the run's lock
    return any(lock_holder(f) is not None for f in run_folders(runs))


RESUME_MOMENTS = [
    ("right after the start (before the lock)", now, 0.0),
    ("the lock taken (the resume began)", resume_began, 0.0),
    ("epoch 3's checkpoint, before its history", at_least(31), 0.0),
    ("epoch 3 recorded", at_least(33), 0.0),
    ("inside epoch 4", at_least(33), 0.015),
    ("epoch 4 recorded", at_least(43), 0.0),
    ("epoch 5's checkpoint, before its history", at_least(51), 0.0),
    ("the last epoch recorded (testing)", at_least(53), 0.0),
    ("model.pt written, before results.json", at_least(900), 0.0),
    ("results.json written, checkpoint not yet gone", at_least(901), 0.0),
]


def test_a_resume_killed_at_ten_moments(q, tmp_path, stopped_run, train_reference):
    def start(runs):
        shutil.copytree(stopped_run, runs / stopped_run.name)
        return q.start(
            "train", "--resume", stopped_run.name, "--threads", 1, "--runs-dir", runs, "--quiet"
        )

    fault_run(
        q,
        "resume of a run killed after epoch 2",
        RESUME_MOMENTS,
        start,
        lambda folder: train_reference,
        tmp_path,
    )


def closed_at_least(n: int):
    return lambda runs: sum(stage(f) == CLOSED for f in run_folders(runs)) >= n


TWO_WORKER_MOMENTS = [  # three: each start costs the two workers' imports (~4 s here)
    ("the workers starting", now, 1.0),
    ("a trial after epoch 1", at_least(13), 0.0),
    ("the first trial closed", closed_at_least(1), 0.0),
]


def test_a_sweep_with_two_workers_killed_with_its_workers(q, data, tmp_path, sweep_reference):
    """The whole process group is killed, as `kill -9 -PGID` does; the trials, trained in two
    worker processes, end with the numbers the one-worker sweep gave (same thread count)."""
    fault_run(
        q,
        "sweep, 2 workers",
        TWO_WORKER_MOMENTS,
        lambda runs: q.start(*sweep_argv(data, runs, workers=2)),
        sweep_reference,
        tmp_path,
        ("--sweep", "faults"),
    )


def test_a_finished_record_keeps_no_half_written_file(tmp_path):
    """A kill inside an atomic write leaves its temporary file; the run's next trainer (a
    resume) closes the record without it."""
    path = start_run(RunConfig.build(network="784-10"), {}, tmp_path)
    (path / ".history.json.k1ll3d.tmp").write_text('[{"epoch": 1, "tra')
    (path / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"PK")
    with hold_run(path):
        finish_run(path, network("784-10"), [{"epoch": 1}], {"accuracy": 0.5, "loss": 1.0})
    assert sorted(p.name for p in path.iterdir()) == [
        ".lock",
        "config.json",
        "history.json",
        "meta.json",
        "model.pt",
        "results.json",
    ]
