"""Run records: one self-describing folder per training run.

    path = save_run(model, config, history, results, data_info)   # runs/mlp-256-128-64_adam_lr0.003_s0-1a2b3c
    run = load_run("mlp-256-128-64_adam_lr0.003_s0-1a2b3c")        # or a unique prefix, or a path
    model = load_model(run)

A run folder holds config.json (data, model and train settings), history.json (one dict per
epoch), results.json (test metrics), model.pt (weights and the network's config) and meta.json
(seed, versions of Python, torch and quicknets, the code version, when and how it was made).
The folder is written under a temporary name and renamed when complete, so a crash leaves no
half-written run. Runs live in --runs-dir, $QUICKNETS_RUNS, or ./runs.
"""
import json
import os
import platform
import secrets
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from quicknets.errors import QuicknetsError
from quicknets.storage import atomic_torch_save, atomic_write_json

RECORD_FILES = ("config.json", "history.json", "results.json", "meta.json")


def runs_root(runs_dir=None) -> Path:
    return Path(runs_dir or os.environ.get("QUICKNETS_RUNS") or "runs")


def run_name(config: dict) -> str:
    """A folder name from the settings that matter, e.g. mlp-256-128-64_adam_lr0.003_s0."""
    spec, t = config["model"]["spec"], config["train"]
    sizes = spec.split("-")
    if all(s.isdigit() for s in sizes):
        spec = "mlp-" + "-".join(sizes[1:-1]) if len(sizes) > 2 else "linear"
    name = f"{spec}_{t['optimizer']}_lr{t['lr']:g}_s{t['seed']}"
    if config["data"].get("dataset", "fashion-mnist") != "fashion-mnist":
        name = f"{config['data']['dataset']}_{name}"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


def code_version() -> str:
    """The git commit of the quicknets source (with -dirty), or the package version."""
    from quicknets import __version__
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "."],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return commit.stdout.strip() + ("-dirty" if dirty else "")
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


def save_run(model, config: dict, history: list, results: dict, data_info: dict | None = None,
             runs_dir=None, name: str | None = None) -> Path:
    """Write a complete run folder and return its path. `config` = {data, model, train}."""
    root = runs_root(runs_dir)
    name = name or f"{run_name(config)}-{secrets.token_hex(3)}"
    final = root / name
    if final.exists():
        raise QuicknetsError(f"run {final} already exists")
    tmp = root / f".{name}.partial"
    meta = {"name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seed": config["train"]["seed"], "data": data_info or {}, **environment()}
    atomic_write_json(tmp / "config.json", config)
    atomic_write_json(tmp / "history.json", history)
    atomic_write_json(tmp / "results.json", results)
    atomic_write_json(tmp / "meta.json", meta)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save({"state_dict": state, "config": model.config}, tmp / "model.pt")
    os.replace(tmp, final)
    return final


@dataclass
class Run:
    path: Path
    config: dict
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
    path = find_run(ref, runs_dir)
    return Run(path, *(_read_json(path / f) for f in RECORD_FILES))


def load_model(run: Run):
    """The run's network with its saved weights, in eval mode (weights only: no code runs)."""
    import torch
    from quicknets.models import network
    file = run.path / "model.pt"
    if not file.is_file():
        raise QuicknetsError(f"run {run.name} has no saved model ({file} is missing)")
    try:
        with warnings.catch_warnings():  # torch warns before refusing a pickle; the error says it
            warnings.simplefilter("ignore")
            saved = torch.load(file, map_location="cpu", weights_only=True)
        model = network(**saved["config"])
        model.load_state_dict(saved["state_dict"])
    except QuicknetsError:
        raise
    except Exception as e:  # unpickling refused, truncated file, mismatched weights
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Weights only load failed" in first:
            first = "it holds objects other than weights (refused: loading it could run code)"
        raise QuicknetsError(f"cannot load {file}: {first}") from None
    return model.eval()


def list_runs(runs_dir=None) -> list:
    """Every complete run in the runs folder, oldest first."""
    root = runs_root(runs_dir)
    if not root.is_dir():
        return []
    paths = [p for p in root.iterdir() if (p / "config.json").is_file()]
    runs = [load_run(p) for p in paths]
    return sorted(runs, key=lambda r: (r.meta.get("created", ""), r.name))
