"""What a run folder holds and what state it is in, read from its files alone.

    with hold_run(path):        # the run's lock, held for the whole training (or a removal)
        ...
    run_state(path)             # {"status": "stopped", "pid": 4711, "host": "box"}
    describe(path)              # everything the folder says, as one index row

A run is done once results.json exists; running while a process holds its lock (an OS file lock
on .lock, which the kernel drops when the process ends, however it ends); otherwise in the state
its trainer last wrote to status.json (interrupted, pruned, failed); otherwise stopped (killed).
Every command reads the state from here, so they agree after a kill at any moment; the index
(index.py) only caches it. A folder is a run record when its meta.json names it, and it holds
only the files listed in FILES (plus quicknets' own temporary files): only such a folder is
ever removed.
"""

import fcntl
import json
import os
import re
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from quicknets.base.errors import QuicknetsError
from quicknets.evaluation.metric_names import OLD_NAMES

LOCK_FILE = ".lock"
STATUS_FILE = "status.json"
CHECKPOINT_FILE = "checkpoint.pt"
FILES = (
    "config.json",
    "meta.json",
    "history.json",
    "results.json",
    STATUS_FILE,
    "model.pt",
    CHECKPOINT_FILE,
    "report.html",
    LOCK_FILE,
)
FOLDERS = ("figures", "tensorboard")  # `quicknets show` and --log-to tensorboard write these
TEMP = re.compile(rf"\.({'|'.join(re.escape(f) for f in FILES)})\..+\.tmp")  # atomic_write's
TRAINER_STATES = ("interrupted", "pruned", "failed")  # what status.json may say besides running
PROBE_WAIT_S = 1.0  # a listing takes the lock for an instant to test it: retry that long
# what a record file's problem (read_json, CHECKS) ends with: cut where the run is read anyway
INCOMPLETE, CANNOT_READ = ": the run is incomplete", "; the run cannot be read"


class RunInUse(QuicknetsError):
    """Another process holds the run's lock."""


def read_json(path: Path, kind: type):
    """A record file's content, which must be a JSON `kind` (dict or list), else a clear error."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise QuicknetsError(f"{path} is missing{INCOMPLETE}") from None
    except (OSError, ValueError) as e:  # ValueError: bad JSON or bad UTF-8
        raise QuicknetsError(f"{path} is corrupt ({e}){CANNOT_READ}") from None
    if not isinstance(value, kind):
        raise QuicknetsError(
            f"{path} is corrupt (a JSON {json_type(value)}, not the "
            f"{'object' if kind is dict else 'array'} it should hold){CANNOT_READ}"
        )
    return value


def json_type(value) -> str:
    """JSON's own name for the type of a parsed value (null, not NoneType)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    names = {dict: "object", list: "array", str: "string", int: "number", float: "number"}
    return names.get(type(value), type(value).__name__)


RECORD_FILES = {
    "config.json": dict,
    "history.json": list,
    "results.json": dict,
    "meta.json": dict,
}  # in Run's field order, with the JSON type each holds


def _checked_config(file: Path, config: dict):
    from quicknets.config.configs import RunConfig

    try:
        return RunConfig.from_dict(config)
    except QuicknetsError as e:
        raise QuicknetsError(f"{file} is unreadable: {e}") from None


def _checked_history(file: Path, history: list) -> list:
    for i, row in enumerate(history, 1):
        if not isinstance(row, dict):
            raise QuicknetsError(
                f"{file} is corrupt (epoch row {i} is a JSON "
                f"{json_type(row)}, not an object){CANNOT_READ}"
            )
    return history


def _checked_results(file: Path, results: dict) -> dict:
    # NaN is a number: a diverged run shows as one (written as null). The metrics the index
    # sorts by, too; accuracy and loss every record has (the figures and pages draw them).
    for key in ("accuracy", "loss"):
        if key not in results:
            raise QuicknetsError(f"{file} is corrupt (it has no {key}){CANNOT_READ}")
    for key in ("accuracy", "loss", "ece", "mean_corruption_accuracy"):
        value = results.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise QuicknetsError(
                f"{file} is corrupt ({key} is {value!r}, not a number){CANNOT_READ}"
            )
    return results


CHECKS = {
    "config.json": _checked_config,
    "history.json": _checked_history,
    "results.json": _checked_results,
}


def read_record(path, files=tuple(RECORD_FILES)) -> tuple:
    """(parts, problems) of the run folder `path`: each record file in `files` (default: all)
    read as every command reads it (config.json as a RunConfig, history.json a list of epoch
    objects, results.json an object whose accuracy and loss are numbers, meta.json an object),
    and one line per file that cannot be. history.json may be missing only before results.json
    exists (a run before its first epoch ended). A config.json that differs from the settings
    meta.json says the run was trained with (configs.changed_since; threads, device and
    data_dir may differ) is a problem too; records from before meta.json kept them are not
    checked. runs.load_run and describe both read through here, so `quicknets runs` calls
    broken exactly the runs that load_run refuses; runs.load_trained, for commands that use
    only a run's model, reads config.json and meta.json strictly and the rest as a note."""
    path = Path(path)
    parts, problems = {}, []
    finished = (path / "results.json").exists()
    for file, kind in RECORD_FILES.items():
        if file not in files:
            continue
        if not (path / file).exists() and (
            file == "results.json" or file == "history.json" and not finished
        ):
            continue  # written by the first epoch, and at the end
        try:
            value = read_json(path / file, kind)
            parts[file] = CHECKS[file](path / file, value) if file in CHECKS else value
        except QuicknetsError as e:
            problems.append(str(e))
    trained = parts.get("meta.json", {}).get("trained_with")
    if "config.json" in parts and isinstance(trained, dict):  # none before records kept it
        changed = _changed_since(trained, parts["config.json"], f"run {path.name}")
        if changed:
            problems.append(
                f"{changed}; put back the one edited (a record must hold the settings it "
                "was trained with)"
            )
    return parts, problems


def _changed_since(trained: dict, config, run: str) -> str | None:
    from quicknets.config.configs import changed_since

    try:
        return changed_since(trained, config, run)
    except QuicknetsError as e:  # meta.json's own copy edited into nonsense
        return f"{run}'s meta.json is corrupt (trained_with: {e})"


def _holder(fd: int) -> dict:
    """What the lock's holder wrote into the lock file: {pid, host, doing}, or {} (not yet)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def describe_holder(holder: dict) -> str:
    where = (
        f" on {holder['host']}" if holder.get("host") not in (None, socket.gethostname()) else ""
    )
    return f"process {holder.get('pid', '?')}{where}"


@contextmanager
def hold_run(path, doing: str = "trained"):
    """Hold the lock of the run folder `path` for the block: only one process trains (or removes)
    a run at a time. Raises RunInUse (a QuicknetsError) when another process holds it, and a
    QuicknetsError when the folder is gone. `doing` ("trained", "removed") is told to others."""
    path = Path(path)
    try:  # never O_CREAT a missing folder's lock: a removed run stays removed
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except FileNotFoundError:
        raise QuicknetsError(f"run {path.name} no longer exists ({path} was removed)") from None
    except OSError as e:
        raise QuicknetsError(
            f"cannot lock run {path.name} ({path / LOCK_FILE}): {e.strerror}"
        ) from None
    try:
        deadline = time.monotonic() + PROBE_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = _holder(fd)
                    raise RunInUse(
                        f"run {path.name} is being {holder.get('doing', 'used')} "
                        f"by {describe_holder(holder)}"
                    ) from None
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "doing": doing}).encode(),
            0,
        )
    except BaseException:
        os.close(fd)
        raise
    try:
        yield path
    finally:
        os.ftruncate(fd, 0)  # no stale holder for the next reader
        os.close(fd)  # releases the lock


def lock_holder(path) -> dict | None:
    """{pid, host, doing} of the process holding the run's lock, or None when it is free.
    Reads only (a read-only runs folder is fine)."""
    try:
        fd = os.open(Path(path) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # never locked (a holder creates the file before locking it)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def run_state(path) -> dict:
    """{status, pid, host} of the run at `path`: done, running, interrupted, pruned, failed or
    stopped (see the module docstring)."""
    path = Path(path)
    if (path / "results.json").exists():
        return {"status": "done", "pid": None, "host": None}
    holder = lock_holder(path)
    if holder is not None:
        return {"status": "running", "pid": holder.get("pid"), "host": holder.get("host")}
    return last_told(path)


def last_told(path) -> dict:
    """{status, pid, host} as the last trainer left them in status.json: interrupted, pruned,
    failed, or else stopped (killed while running, or before its first epoch ended)."""
    try:
        told = read_json(Path(path) / STATUS_FILE, dict)
    except QuicknetsError:  # none yet, or unreadable
        told = {}
    status = told.get("status") if told.get("status") in TRAINER_STATES else "stopped"
    return {"status": status, "pid": told.get("pid"), "host": told.get("host")}


def describe(path) -> dict:
    """The run folder as an index row: settings, creation time, sweep, epochs done, the final
    metrics (final_metrics: validation of the kept epoch) and state. A folder whose files
    cannot be read (read_record) is "unreadable", with the first reason in `problem`: load_run
    gives the same error."""
    path = Path(path)
    parts, problems = read_record(path)
    meta, results = parts.get("meta.json", {}), parts.get("results.json", {})
    history = parts.get("history.json", [])
    final = final_metrics(history, results)
    config = parts.get("config.json")
    row = {
        "created": meta.get("created"),
        "sweep": meta.get("sweep"),
        "epochs_done": len(history),
        "settings": config.flat() if config else {},
        **{k: final[k] for k in INDEXED_METRICS},
        "problem": problems[0] if problems else None,
        **run_state(path),
    }
    if problems:
        row["status"] = "unreadable"
    return row


INDEXED_METRICS = (
    "test_accuracy",
    "test_loss",
    "val_accuracy",
    "val_loss",
    "test_ece",
    "mean_corruption_accuracy",
)


def kept_epoch(history: list) -> dict:
    """The history row of the epoch whose weights the run kept: under early stopping the best
    epoch (its `best_epoch`; training restores it before testing), else the last; {} for none."""
    if not history:
        return {}
    best = history[-1].get("best_epoch")
    return next((row for row in history if row.get("epoch") == best), history[-1])


def final_metrics(history: list, results: dict) -> dict:
    """A run's final numbers (metric_names.METRICS' names), the one definition that every ranking,
    comparison, sweep, the index and Optuna read: the test metrics (test_ece: of the
    probabilities the model reports, after its temperature), the validation and training
    metrics of the kept epoch (kept_epoch: not the discarded last one under early stopping),
    the total time in seconds, the epochs trained and the epoch kept."""
    row = kept_epoch(history)
    kept = {**{OLD_NAMES[k]: v for k, v in row.items() if k in OLD_NAMES}, **row}  # format 1
    return {
        "test_accuracy": results.get("accuracy"),
        "test_loss": results.get("loss"),
        "test_balanced_accuracy": results.get("balanced_accuracy"),  # None: an earlier record
        "test_ece": results.get("ece"),  # None in records before calibration was measured
        "mean_corruption_accuracy": results.get("mean_corruption_accuracy"),
        "val_accuracy": kept.get("val_accuracy"),
        "val_loss": kept.get("val_loss"),
        "train_accuracy": kept.get("train_accuracy"),
        "train_loss": kept.get("train_loss"),
        "train_loss_sum": kept.get("train_loss_sum"),
        "seconds": sum(row.get("seconds", 0.0) for row in history),
        "epochs": len(history),
        "kept_epoch": kept.get("epoch"),
    }


STAMPED = ("config.json", "meta.json", "history.json", "results.json", STATUS_FILE)


def stamp(path) -> str:
    """A fingerprint of the files `describe` reads; atomic writes make a new inode, so it
    changes whenever one of them is written."""
    marks = []
    for name in STAMPED:
        try:
            s = os.stat(Path(path) / name)
            marks.append(f"{s.st_ino}:{s.st_mtime_ns}:{s.st_size}")
        except OSError:
            marks.append("-")
    return " ".join(marks)


def check_record(path) -> None:
    """Raise unless `path` is a run record quicknets made: its meta.json names a run (this
    folder's, or the run it is a copy of or was renamed from: still a record), and it holds
    only the record's files, so removing it loses nothing else."""
    path = Path(path)
    try:
        name = read_json(path / "meta.json", dict).get("name")
    except QuicknetsError:
        name = None
    if not isinstance(name, str) or not name:
        raise QuicknetsError(
            f"{path} is not a run record (it has no meta.json naming a run); nothing was removed"
        )
    others = sorted(
        p.name
        for p in path.iterdir()
        if not (
            p.name in FILES
            and p.is_file()
            or p.name in FOLDERS
            and p.is_dir()
            or TEMP.fullmatch(p.name)
        )
    )
    if others:
        raise QuicknetsError(
            f"{path} holds files that are not part of the run record "
            f"({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}); "
            "nothing was removed: move them out first"
        )
