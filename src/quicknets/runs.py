"""Run records: one self-describing folder per training run.

    path = save_run(model, config, history, results, data_info)   # runs/mlp-256-128-64_adam_lr0.003_s0-1a2b3c
    run = load_run("mlp-256-128-64_adam_lr0.003_s0-1a2b3c")        # or a unique prefix, or a path
    model = load_model(run)

    runs = list_runs(where=["optimizer=adam"], sort="-test_accuracy")

A run folder holds config.json (data, model and train settings), history.json (one dict per
epoch), results.json (test metrics), model.pt (weights and the network's config) and meta.json
(seed, versions of Python, torch and quicknets, the code version, when and how it was made).
`quicknets train` creates the folder (config.json, meta.json) before the first epoch and keeps
checkpoint.pt in it while training; results.json is written last and marks the run finished, so
a killed run is visible as unfinished, resumable, and never read as a result. Every file is
written atomically. The runs are indexed in runs/index.sqlite (see index.py) for listing and
queries. Runs live in --runs-dir, $QUICKNETS_RUNS, or ./runs.
"""
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from quicknets import index
from quicknets.config import RunConfig
from quicknets.errors import QuicknetsError
from quicknets.storage import atomic_write_json

RECORD_FILES = ("config.json", "history.json", "results.json", "meta.json")
CHECKPOINT_FILE = "checkpoint.pt"


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
    if config.data.dataset != "fashion-mnist":
        name = f"{config.data.dataset}_{name}"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


def code_version() -> str:
    """The git commit of the quicknets source (with -dirty), or the package version when the
    source is not a quicknets checkout (an install inside some other repository, say)."""
    from quicknets import __version__
    here = Path(__file__).resolve().parent

    def git(*args) -> str:
        p = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True,
                           timeout=5)
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
    """What made the run: versions and machine."""
    import torch
    from quicknets import __version__
    return {"python": platform.python_version(), "torch": torch.__version__,
            "quicknets": __version__, "code_version": code_version(),
            "platform": platform.platform(), "cuda": torch.version.cuda,
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}


def start_run(config, data_info: dict | None = None, runs_dir=None,
              name: str | None = None, sweep: str | None = None) -> Path:
    """Create the run folder (config.json, meta.json) before training, so it can hold
    checkpoints, and index it as running. It counts as finished only once finish_run wrote
    results.json; until then load_run refuses it and `quicknets train --resume` continues it."""
    config = as_run_config(config)
    root = runs_root(runs_dir)
    name = name or f"{run_name(config)}-{secrets.token_hex(3)}"
    final = root / name
    if final.exists():
        raise QuicknetsError(f"run {final} already exists")
    tmp = root / f".{name}.partial"
    meta = {"name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seed": config.train.seed, "data": data_info or {}, **environment()}
    if sweep:
        meta["sweep"] = sweep
    try:
        atomic_write_json(tmp / "config.json", config.to_dict())
        atomic_write_json(tmp / "meta.json", meta)
        os.replace(tmp, final)  # the folder appears with its config, never without
    except OSError as e:  # --runs-dir names a file, a read-only folder, a full disk
        raise QuicknetsError(f"cannot create the run folder {final}: {e.strerror}") from None
    index.record(root, name, status="running", created=meta["created"], sweep=sweep,
                 host=socket.gethostname(), pid=os.getpid(), epochs_done=0,
                 settings=config.flat())
    return final


def finish_run(path: Path, model, history: list, results: dict) -> Path:
    """Write the weights, history and results (last: its presence marks the run finished)."""
    path = Path(path)
    atomic_write_json(path / "history.json", history)
    from quicknets.models import save_model
    save_model(model, path / "model.pt")
    atomic_write_json(path / "results.json", results)
    (path / CHECKPOINT_FILE).unlink(missing_ok=True)  # the record is closed: no resume
    index.record(path.parent, path.name, status="done", epochs_done=len(history),
                 test_accuracy=results.get("accuracy"), test_loss=results.get("loss"))
    return path


def mark(path: Path, status: str, epochs_done: int | None = None) -> None:
    """Update a run's status in the index (running, interrupted) and its epoch count."""
    values = {"status": status, "pid": os.getpid(), "host": socket.gethostname()}
    if epochs_done is not None:
        values["epochs_done"] = epochs_done
    index.record(Path(path).parent, Path(path).name, **values)


def save_run(model, config, history: list, results: dict, data_info: dict | None = None,
             runs_dir=None, name: str | None = None) -> Path:
    """Write a complete run folder at once and return its path. `config` = {data, model, train}."""
    return finish_run(start_run(config, data_info, runs_dir, name), model, history, results)


def is_finished(path: Path) -> bool:
    return (Path(path) / "results.json").is_file()


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


def find_run(ref, runs_dir=None) -> Path:
    """A run folder from a path, a name, or a unique prefix of a name in the runs folder."""
    path = Path(ref)
    if (path / "config.json").is_file():
        return path
    root = runs_root(runs_dir)
    candidates = sorted(p for p in root.glob(f"{ref}*") if (p / "config.json").is_file()) \
        if root.is_dir() and "/" not in str(ref) else []
    exact = [p for p in candidates if p.name == str(ref)]
    if exact:
        return exact[0]
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        raise QuicknetsError(f"{ref!r} matches {len(candidates)} runs in {root}: "
                             + ", ".join(p.name for p in candidates[:5]))
    raise QuicknetsError(f"no run {ref!r}: not a run folder, and no run of that name in {root}")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise QuicknetsError(f"{path} is missing: the run is incomplete") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise QuicknetsError(f"{path} is corrupt ({e}); the run cannot be read") from None


def load_run(ref, runs_dir=None) -> Run:
    """A finished run's record (an unfinished one is an error that says how to resume it)."""
    path = find_run(ref, runs_dir)
    if not is_finished(path):
        raise QuicknetsError(f"run {path.name} is not finished (it was stopped or is still "
                             f"training): resume it with `quicknets train --resume {path.name}`")
    from quicknets.metrics import upgrade_history
    config, history, results, meta = (_read_json(path / f) for f in RECORD_FILES)
    try:
        config = RunConfig.from_dict(config)
    except QuicknetsError as e:
        raise QuicknetsError(f"{path / 'config.json'} is unreadable: {e}") from None
    return Run(path, config, upgrade_history(history), results, meta)


def load_model(run, runs_dir=None):
    """A finished run's network with its saved weights and preprocessing, in eval mode. `run` is
    a run's name, a unique prefix of one, its folder, or a load_run result. The file is loaded
    weights-only (no code runs), and a network that is not the one the run's config describes is
    an error."""
    from quicknets.data import dataset_info
    from quicknets.models import load_saved
    from quicknets.preprocessing import Preprocessing, dataset_layout
    if not isinstance(run, Run):
        run = load_run(run, runs_dir)
    d, n = run.config.data, run.config.network
    file = run.path / "model.pt"
    if not file.is_file():
        raise QuicknetsError(f"run {run.name} has no saved model ({file} is missing)")
    classes = tuple(run.results.get("classes") or dataset_info(d.dataset).classes)
    recorded = Preprocessing(mean=(d.mean,), std=(d.std,), classes=classes, dataset=d.dataset,
                             layout=dataset_layout(d.dataset))  # for files before format 2
    model = load_saved(file, recorded)
    built = {k: model.config.get(k) for k in ("network", "activation", "dropout", "batchnorm",
                                             "flip_tta")}
    wanted = {k: getattr(n, k) for k in built}
    if built != wanted:
        diff = ", ".join(f"{k} {built[k]!r} (config: {wanted[k]!r})" for k in built
                         if built[k] != wanted[k])
        raise QuicknetsError(f"{file} holds another network than run {run.name}'s config "
                             f"describes: {diff}")
    return model


def list_runs(runs_dir=None, where=(), sort: str | None = None, sweep: str | None = None) -> list:
    """Finished runs in the runs folder (oldest first, or by `sort`), as Run records.

    `where` filters on settings and metrics through the index: ["optimizer=adam", "lr<0.01",
    "test_accuracy>=0.85"]; `sort` is a key, descending with a leading minus ("-test_accuracy").
    """
    rows = index.query(runs_root(runs_dir), where, sort, status="done", sweep=sweep)
    return [load_run(runs_root(runs_dir) / r["name"]) for r in rows]


def training_pid(path: Path) -> int | None:
    """The process still training the run at `path`, or None (finished, stopped, ...)."""
    rows = index.query(path.parent, [f"name={path.name}"])
    return rows[0]["pid"] if rows and rows[0]["status"] == "running" else None


def remove_run(ref, runs_dir=None, force: bool = False) -> str:
    """Delete a run folder (finished or not) and its index row; returns its name. A run whose
    training process is still alive is refused unless `force`."""
    path = find_run(ref, runs_dir)
    pid = training_pid(path)
    if not force and pid is not None:
        raise QuicknetsError(f"run {path.name} is still training (process {pid}); "
                             "stop it first, or pass --force")
    trash = path.parent / f".{path.name}.deleting"
    os.replace(path, trash)  # gone from listings at once, even if the delete is interrupted
    shutil.rmtree(trash)
    index.forget(path.parent, path.name)
    return path.name
