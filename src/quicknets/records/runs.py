"""Run records: one self-describing folder per training run.

    path = save_run(model, config, history, results, data_info)
    # path: runs/mlp-256-128-64_adam_lr0.003_s0-1a2b3c
    run = load_run("mlp-256-128-64_adam_lr0.003_s0-1a2b3c")        # or a unique prefix, or a path
    model = load_model(run)

    runs = list_runs(where=["optimizer=adam"], sort="-test_accuracy")

    with hold_run(path):     # the trainer holds the run's lock while it trains (runfolder.py)
        ...

A run folder holds config.json (data, model and train settings), history.json (one dict per
epoch), results.json (test metrics), model.pt (weights and the network's config),
familiarity.pt (the statistics that say whether an image is like the training images,
familiarity.py; fitted after training, or at first use for an older run) and meta.json
(seed, versions of Python, torch and quicknets, the code version, when and how it was made,
and the settings it is trained with, so that a config.json edited later is refused, not
believed).
`quicknets train` creates the folder (config.json, meta.json) before the first epoch and keeps
checkpoint.pt in it while training; results.json is written last and marks the run finished, so
a killed run is visible as unfinished, resumable, and never read as a result. The folder is the
truth: its state (done, running, interrupted, ..., stopped) is read from its files and lock
(runfolder.py), and runs/index.sqlite (index.py) only caches it for listing and queries. Every
file is written atomically, and never into a folder that was removed. Runs live in --runs-dir,
$QUICKNETS_RUNS, or ./runs.
"""

import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from quicknets.base.errors import QuicknetsError
from quicknets.base.interrupts import ctrl_c_deferred
from quicknets.base.storage import atomic_write_json
from quicknets.config.configs import RunConfig, trained_settings
from quicknets.evaluation.metric_names import upgrade_history
from quicknets.records import index
from quicknets.records.runfolder import (
    CHECKPOINT_FILE,
    RECORD_FILES,
    STATUS_FILE,
    TEMP,
    RunInUse,
    check_record,
    describe,
    describe_holder,
    hold_run,
    last_told,
    lock_holder,
    read_record,
    run_state,  # noqa: F401  (offered here with hold_run)
)

MARKS = ("running", "interrupted", "pruned", "failed")


def runs_root(runs_dir=None) -> Path:
    return Path(runs_dir or os.environ.get("QUICKNETS_RUNS") or "runs")


def as_run_config(config) -> RunConfig:
    """A RunConfig from itself or a config dict (any recorded layout)."""
    return config if isinstance(config, RunConfig) else RunConfig.from_dict(config)


def run_name(config) -> str:
    """A folder name from the settings that matter, e.g. mlp-256-128-64_adam_lr0.003_s0."""
    config = as_run_config(config)
    spec, t = config.network.network, config.train
    sizes = spec.split("-")
    if all(s.isdigit() for s in sizes):
        spec = "mlp-" + "-".join(sizes[1:-1]) if len(sizes) > 2 else "linear"
    name = f"{spec}_{t.optimizer}_lr{t.lr:g}_s{t.seed}"
    if config.data.dataset != "fashion-mnist":  # your own data: its file or folder name
        dataset = re.sub(r"\.(csv|csv\.gz|npz)$", "", Path(config.data.dataset).name, flags=re.I)
        name = f"{dataset}_{name}"
    # never a leading "-" or ".": the name is given on command lines and must not hide
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).lstrip("-.")


def code_version() -> str:
    """The git commit of the quicknets source (with -dirty), or the package version when the
    source is not a quicknets checkout (an install inside some other repository, say)."""
    import quicknets
    from quicknets import __version__

    here = Path(quicknets.__file__).resolve().parent  # the package, not this module's group

    def git(*args) -> str:
        # GIT_OPTIONAL_LOCKS=0 (git --no-optional-locks, which a git before 2.15 would refuse):
        # `git status` would otherwise refresh the index under .git/index.lock, and a user's
        # `git commit` at that moment would fail
        p = subprocess.run(
            ["git", "-C", str(here), *args],
            capture_output=True,
            text=True,
            timeout=5,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
        return p.stdout.strip() if p.returncode == 0 else ""

    try:
        top = git("rev-parse", "--show-toplevel")
        if top and (Path(top) / "src" / "quicknets").resolve() == here:
            dirty = git("status", "--porcelain", ".")
            return git("rev-parse", "--short", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__


def environment() -> dict:
    """What made the run: versions, machine and math mode (machine.math_mode: with the thread
    count, what its last bits depend on)."""
    import torch

    from quicknets import __version__
    from quicknets.base.machine import math_mode

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "quicknets": __version__,
        "code_version": code_version(),
        "platform": platform.platform(),
        "cuda": torch.version.cuda,
        "math_mode": math_mode(),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
    }


def start_run(
    config,
    data_info: dict | None = None,
    runs_dir=None,
    name: str | None = None,
    sweep: str | None = None,
    class_weights: dict | None = None,
    stacked: dict | None = None,
) -> Path:
    """Create the run folder (config.json, meta.json) before training, so it can hold
    checkpoints. It counts as finished only once finish_run wrote results.json; until then
    load_run refuses it and `quicknets train --resume` continues it. The caller trains it
    inside `with hold_run(path):`. `class_weights`: {class: weight} the loss uses
    (--class-weights resolved), kept in meta.json. `stacked`: how it trained with others in one
    step (training/stacked.py: the group's id and size), kept in meta.json."""
    config = as_run_config(config)
    root = runs_root(runs_dir)
    name = name or f"{run_name(config)}-{secrets.token_hex(3)}"
    final = root / name
    if final.exists():
        raise QuicknetsError(f"run {final} already exists")
    tmp = root / f".{name}.partial"
    meta = {
        "name": name,
        "run_id": secrets.token_hex(8),  # survives a copy or a rename
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": config.train.seed,
        "trained_with": trained_settings(config),  # tells a config.json edited later
        "data": data_info or {},
        **environment(),
    }
    if sweep:
        meta["sweep"] = sweep
    if class_weights is not None:
        meta["class_weights"] = class_weights
    if stacked:
        meta["stacked"] = stacked
    try:
        with ctrl_c_deferred():  # a Ctrl-C meanwhile would leave the .partial folder
            tmp.mkdir(parents=True)
            atomic_write_json(tmp / "config.json", config.to_dict(), parents=False)
            atomic_write_json(tmp / "meta.json", meta, parents=False)
            os.replace(tmp, final)  # the folder appears with its config, never without
    except OSError as e:  # --runs-dir names a file, a read-only folder, a full disk
        shutil.rmtree(tmp, ignore_errors=True)
        raise QuicknetsError(f"cannot create the run folder {final}: {e.strerror}") from None
    return final


def finish_run(path: Path, model, history: list, results: dict) -> Path:
    """Write the weights, history and results (last: its presence marks the run finished).
    A folder removed meanwhile is a QuicknetsError, never recreated. A Ctrl-C waits for the
    record to close (a finished run with its checkpoint and status left, else)."""
    from quicknets.networks.models import save_model

    path = Path(path)
    with ctrl_c_deferred():
        atomic_write_json(path / "history.json", history, parents=False)
        save_model(model, path / "model.pt")
        atomic_write_json(path / "results.json", results, parents=False)
        for leftover in (CHECKPOINT_FILE, STATUS_FILE):  # the record is closed: no resume
            (path / leftover).unlink(missing_ok=True)
        for temp in path.iterdir():  # half-written by a trainer killed before (we hold the lock)
            if TEMP.fullmatch(temp.name):
                temp.unlink(missing_ok=True)
    return path


def fit_run_familiarity(path: Path, model, data) -> dict:
    """Fit the familiarity statistics of a run's trained model on its data, write them to the
    run folder's familiarity.pt (atomically, never into a removed folder) and attach them to
    the model (`model.familiarity`). Returns what results.json records of them: the fit's
    description (method, threshold, the split that set it, ...); no wall time, so the same
    command gives the same results.json. The test set is not scored here: that would cost as
    much again (`quicknets evaluate --ood`)."""
    from quicknets.evaluation.familiarity import FILE, fit_familiarity, save_familiarity

    fitted = fit_familiarity(model, data)
    save_familiarity(fitted, Path(path) / FILE, parents=False)
    model.familiarity = fitted
    return {**fitted.describe(), "file": FILE}


def run_familiarity(run, model, data=None, data_dir=None):
    """The familiarity fit of a loaded run's model: the one load_model attached, else fitted
    now on the run's data (`data`, else loaded as recorded) and saved in the run folder for the
    next use (a run trained before runs kept one). A folder that cannot be written keeps the
    fit in memory only."""
    from quicknets.base.storage import WriteError

    if getattr(model, "familiarity", None) is not None:
        return model.familiarity
    if data is None:
        from quicknets.data.loading import load_recorded

        data = load_recorded(run.config, data_dir, recorded=run.meta.get("data"))
    try:
        fit_run_familiarity(run.path, model, data)
    except WriteError:  # a read-only copy of a run: fitted, used, not kept
        pass
    return model.familiarity


def mark(path: Path, status: str, epochs_done: int | None = None) -> None:
    """Write what the trainer is doing to the run's status.json, atomically: running (after each
    epoch), or why it stopped (interrupted, pruned, failed). A run counts as running only while
    its lock is held, so a run marked running and then killed reads as stopped."""
    path = Path(path)
    if status not in MARKS:
        raise ValueError(f"status must be one of {MARKS}, got {status!r}")
    if status != "running" and not path.is_dir():
        return  # removed while training: nothing to mark, and the error that stopped it says so
    told = {
        "status": status,
        "epochs_done": epochs_done,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_json(path / STATUS_FILE, told, parents=False)


def save_run(
    model,
    config,
    history: list,
    results: dict,
    data_info: dict | None = None,
    runs_dir=None,
    name: str | None = None,
) -> Path:
    """Write a complete run folder at once and return its path. `config` = {data, model, train}."""
    path = start_run(config, data_info, runs_dir, name)
    with hold_run(path):
        return finish_run(path, model, history, results)


def update_results(run, values: dict) -> Path:
    """Add `values` (JSON-able, e.g. {"robustness": {...}, "mean_corruption_accuracy": 0.71})
    to a finished run's results.json, atomically, holding the run's lock so two processes
    adding at once keep both; return the file. `run`: a Run or a run folder. Raises
    QuicknetsError for a run that is not finished, removed, held by another process, or
    whose results.json cannot be read or written (the file is then left as it was)."""
    from quicknets.records.runfolder import read_json

    path = Path(run.path if isinstance(run, Run) else run)
    file = path / "results.json"
    with hold_run(path, "evaluated"):
        if not is_finished(path):
            raise QuicknetsError(unfinished_message(path))
        results = {**read_json(file, dict), **values}
        atomic_write_json(file, results, parents=False)  # a WriteError says why, in one line
    return file


def is_finished(path: Path) -> bool:
    return (Path(path) / "results.json").is_file()


def unfinished_message(path: Path) -> str:
    """Why the run at `path` is not a result yet, offering only what works next: --resume where
    a checkpoint exists, training it again where none does. One line."""
    path = Path(path)
    row = describe(path)
    if row["status"] == "running" and (row["pid"], row["host"]) == (
        os.getpid(),
        socket.gethostname(),
    ):
        row.update(last_told(path))  # this process holds the lock: a trainer on its own stop
    status, name = row["status"], path.name
    if status == "running":
        return (
            f"run {name} is still training ({describe_holder(row)}, "
            f"{row['epochs_done']} epoch(s) done); wait for it to finish"
        )
    if status == "unreadable":
        return f"run {name} is not finished, and cannot be read: {row['problem']}"
    if (path / CHECKPOINT_FILE).is_file():
        planned = row["settings"].get("epochs", "?")
        return (
            f"run {name} is not finished ({status} after epoch {row['epochs_done']} of "
            f"{planned}): continue it with `quicknets train --resume {name}`"
        )
    return (
        f"run {name} is not finished ({status} before its first epoch ended, so there is "
        f"no checkpoint to resume): train it again; `quicknets runs rm {name}` removes it"
    )


def check_resumable(path: Path) -> None:
    """Raise the QuicknetsError that says why `quicknets train --resume` cannot continue the run
    at `path`: finished, or stopped before any checkpoint. Call it inside `with hold_run(path):`
    (which refuses a run another process trains), so nothing changes between check and training."""
    path = Path(path)
    if is_finished(path):
        raise QuicknetsError(
            f"run {path.name} is finished; a finished record stays as it is "
            f"(train a new run to train longer)"
        )
    if not (path / CHECKPOINT_FILE).is_file():
        raise QuicknetsError(unfinished_message(path))


@dataclass
class Run:
    """A finished run's record: its folder, RunConfig, history (one dict per epoch), test
    results and meta (seed, versions, command)."""

    path: Path
    config: RunConfig
    history: list
    results: dict
    meta: dict

    @property
    def name(self) -> str:
        return self.path.name


def _run_folders(root: Path, prefix: str) -> list:
    """Names of the run folders in `root` that start with `prefix`, taken literally (a name
    holding * or [ is no pattern)."""
    try:
        return sorted(
            p.name
            for p in root.iterdir()
            if p.name.startswith(prefix)
            and not p.name.startswith(".")
            and (p / "config.json").is_file()
        )
    except OSError as e:
        raise QuicknetsError(f"cannot read the runs folder {root}: {e.strerror}") from None


# What else lives in a runs folder beside the runs: the index (records/index.py, with SQLite's
# side files), a local Optuna study, the sweeps' and audits' records and pages.
NOT_RUNS = ("index.sqlite", "optuna.sqlite3", "sweeps", "audits")


def not_a_run(ref) -> bool:
    """Whether `ref` is a path to one of a runs folder's own files or folders (NOT_RUNS), as a
    shell's `runs/*` gives them beside the runs: to be left out, not taken for a run."""
    path = Path(ref)
    base = path.name.removesuffix("-journal").removesuffix("-wal").removesuffix("-shm")
    return base in NOT_RUNS and path.exists() and not (path / "config.json").is_file()


def find_run(ref, runs_dir=None) -> Path:
    """A run folder from a path, a name, or a unique prefix of a name in the runs folder."""
    path = Path(ref)
    if (path / "config.json").is_file():
        return Path(os.path.abspath(path)) if path.name in ("", "..") else path  # ".", ".."
    root, ref = runs_root(runs_dir), str(ref)
    names = _run_folders(root, ref) if ref and root.is_dir() and os.sep not in ref else []
    if ref in names:
        return root / ref
    if len(names) == 1:
        return root / names[0]
    if len(names) > 1:
        raise QuicknetsError(
            f"{ref!r} matches {len(names)} runs in {root}: " + ", ".join(names[:5])
        )
    raise QuicknetsError(f"no run {ref!r}: not a run folder, and no run of that name in {root}")


def load_run(ref, runs_dir=None) -> Run:
    """A finished run's record (an unfinished one is an error that says what can be done)."""
    path = find_run(ref, runs_dir)
    if not is_finished(path):
        raise QuicknetsError(unfinished_message(path))

    parts, problems = read_record(path)  # as `quicknets runs` reads it
    if problems:
        raise QuicknetsError(problems[0])
    config, history, results, meta = (parts[file] for file in RECORD_FILES)
    return Run(path, config, upgrade_history(history), results, meta)


MODEL_NEEDS = ("config.json", "meta.json")  # with model.pt: what using a run's model reads


def load_trained(ref, runs_dir=None) -> tuple:
    """(Run, note) of a run whose model is to be used (evaluate, classify, export, demo), read
    as load_run reads it, except results.json and history.json, which using the model does not
    need: corrupt or of the wrong JSON type (history.json also missing), they leave the Run's
    results {} and history [], and `note` says so in one line ("note: ..."); else note is None.
    A run without results.json is unfinished (killed, perhaps, between model.pt and
    results.json, which closes the record): that, and config.json, meta.json or their
    disagreement, raise load_run's QuicknetsError. `quicknets runs` and compare still list a
    damaged run as unreadable (read_record), with the reason."""
    from quicknets.records.runfolder import CANNOT_READ, INCOMPLETE

    path = find_run(ref, runs_dir)
    if not is_finished(path):  # as `runs` says: one record, one state
        raise QuicknetsError(unfinished_message(path))
    parts, problems = read_record(path, MODEL_NEEDS)
    if problems:
        raise QuicknetsError(problems[0])
    rest, skipped = read_record(path, ("history.json", "results.json"))
    note = None
    if skipped:
        why = "; ".join(p.removesuffix(CANNOT_READ).removesuffix(INCOMPLETE) for p in skipped)
        note = f"note: {why}; not needed here: the model is used from model.pt and config.json"
    history = upgrade_history(rest.get("history.json", []))
    run = Run(path, parts["config.json"], history, rest.get("results.json", {}), parts["meta.json"])
    return run, note


def load_model(run, runs_dir=None):
    """A finished run's network with its saved weights and preprocessing, in eval mode. `run` is
    a run's name, a unique prefix of one, its folder (read by load_trained: a corrupt or missing
    results.json is no error), or a load_run result. The file is loaded weights-only (no code
    runs), and a network that is not the one the run's config describes is an error."""
    from quicknets.data.builtin import dataset_info
    from quicknets.data.preprocessing import Preprocessing, dataset_layout
    from quicknets.networks.models import load_saved

    if not isinstance(run, Run):
        run, _ = load_trained(run, runs_dir)
    d, n = run.config.data, run.config.network
    file = run.path / "model.pt"
    if not file.is_file():
        raise QuicknetsError(f"run {run.name} has no saved model ({file} is missing)")
    recorded = None  # for files before format 2 (grey, one mean and std; no "auto" yet)
    if all(isinstance(v, (int, float)) for v in (d.mean, d.std)):
        classes = tuple(  # results.json may be unreadable (load_trained): meta.json has them
            run.results.get("classes")
            or (run.meta.get("data") or {}).get("classes")
            or dataset_info(d.dataset).classes
        )
        recorded = Preprocessing(
            mean=(d.mean,),
            std=(d.std,),
            classes=classes,
            dataset=d.dataset,
            layout=dataset_layout(d.dataset),
        )
    model = load_saved(file, recorded)
    built = {
        k: model.config.get(k)
        for k in ("network", "activation", "dropout", "batchnorm", "flip_tta")
    }
    wanted = {k: getattr(n, k) for k in built}
    if built != wanted:
        diff = ", ".join(
            f"{k} {built[k]!r} (config: {wanted[k]!r})" for k in built if built[k] != wanted[k]
        )
        raise QuicknetsError(
            f"{file} holds another network than run {run.name}'s config describes: {diff}"
        )
    model.familiarity = None  # run_familiarity fits it for a run trained before it was kept
    if (run.path / "familiarity.pt").is_file():
        from quicknets.evaluation.familiarity import load_familiarity

        model.familiarity = load_familiarity(run.path / "familiarity.pt")
    return model


def list_runs(
    runs_dir=None,
    where=(),
    sort: str | None = None,
    sweep: str | None = None,
    skipped: list | None = None,
) -> list:
    """Finished runs in the runs folder (oldest first, or by `sort`), as Run records.

    `where` filters on settings and metrics through the index: ["optimizer=adam", "lr<0.01",
    "test_accuracy>=0.85", "val_accuracy>0.8"]; `sort` is a key, descending with a leading minus
    ("-test_accuracy"). A run that may match but cannot be read (a filtered value it cannot tell
    matches) is left out and never silently: one line `NAME: why` is appended to `skipped`, or
    without that list, given as a warning.
    """
    root = runs_root(runs_dir)
    rows = index.query(root, where, sort, status="done", sweep=sweep)
    broken = [
        f"{r['name']}: {r['problem']}"
        for r in index.query(root, where, status="unreadable", sweep=sweep, unknown_matches=True)
    ]
    runs = []
    for row in rows:
        try:
            runs.append(load_run(root / row["name"]))
        except QuicknetsError as e:  # changed since the index read it
            broken.append(f"{row['name']}: {e}")
    for line in broken:
        if skipped is None:
            import warnings

            warnings.warn(f"skipped run {line}", stacklevel=2)
        else:
            skipped.append(line)
    return runs


def training_pid(path: Path) -> int | None:
    """The process training the run at `path` (holding its lock), or None."""
    holder = lock_holder(path)
    return None if holder is None else holder.get("pid")


def remove_run(ref, runs_dir=None, force: bool = False) -> str:
    """Delete a run record (finished or not) and return its name. Only a folder quicknets made
    and holding only the record's files is removed; a run being trained is refused unless
    `force` (its trainer then stops with an error at its next write)."""
    path = find_run(ref, runs_dir)
    check_record(path)
    trash = path.parent / f".{path.name}.deleting"
    try:
        if force:
            os.replace(path, trash)  # gone from listings at once, even if the delete is cut short
        else:
            with hold_run(path, "removed"):  # the trainer's lock: no training starts meanwhile
                os.replace(path, trash)
        shutil.rmtree(trash)
    except RunInUse as e:
        raise QuicknetsError(f"{e}; stop it first, or pass --force") from None
    except OSError as e:
        raise QuicknetsError(f"cannot remove {path}: {e.strerror}") from None
    return path.name
