"""A self-check of this setup in about ten seconds, one line per check (`quicknets doctor`).

    for check in run_checks():              # Check(status, line), each as soon as it is done
        print(check.status, check.line)     # ok  torch 2.14.1 (CPU build), wants >=2.5,<=2.14.1

Each check is a plain function returning a Check. Statuses:
  ok    works;
  note  nothing to do unless you want it (a dataset that is not here yet);
  warn  an optional part is missing, or something works worse than it could: the line says
        what to install or set;
  fail  a required part is broken or missing: quicknets will not work until it is fixed.
The required checks are the packages quicknets needs, a tiny training on generated images
through `train`, and a run record written, listed and read back in the runs folder (in a hidden
temporary folder there, removed after). Optional parts are found without being imported (Gradio
alone takes seconds to import), so a package that is present but broken shows only when used.
"""

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported inside the checks: its absence is one of them
    from torch import nn

    from quicknets.config.configs import RunConfig

OK, NOTE, WARN, FAIL = "ok", "note", "warn", "fail"
INSTALL = "pip install -e . (in a checkout; scripts/setup.sh does it)"


@dataclass(frozen=True)
class Check:
    status: str  # ok, note, warn or fail
    line: str  # what was found, and what to do when it is not ok


# Optional programs: (command, what it is for, how to install it on Debian/Ubuntu).
PROGRAMS = (
    (
        "chromium",
        "viewing HTML reports (quicknets report); the report and demo browser tests",
        "apt-get install chromium",
    ),
    (
        "psql",
        "the PostgreSQL client, to reach a sweep study shared through postgresql://",
        "apt-get install postgresql-client (the tests' shared study needs the server: "
        "apt-get install postgresql)",
    ),
)

# pyproject.toml's extras: extra -> (what it adds, the modules it installs). test_doctor checks
# that these agree with pyproject.toml.
EXTRAS = {
    "sweep": (
        "quicknets sweep --search optuna; sweep --show's parameter importance",
        ("optuna", "scikit-learn"),
    ),
    "postgres": (
        "sweep studies shared through --storage postgresql://",
        ("optuna", "psycopg", "sqlalchemy"),
    ),
    "export": (
        "quicknets export (ONNX, checked with onnxruntime; safetensors)",
        ("onnx", "onnxscript", "onnxruntime", "safetensors"),
    ),
    "demo": ("quicknets demo (a Gradio page)", ("gradio",)),
    "tensorboard": ("quicknets train --log-to tensorboard", ("tensorboard",)),
    "mlflow": ("quicknets train --log-to mlflow", ("mlflow",)),
    "notebook": ("tqdm's progress widget in Jupyter", ("ipywidgets",)),
    "audit": ("quicknets audit's label check (Confident Learning)", ("cleanlab",)),
    "trust": ("familiarity scores: ROC curves, the reference sets", ("scikit-learn",)),
    "docs": ("the documentation site: mkdocs build", ("mkdocs", "mkdocs-material", "mkdocstrings")),
    "explain": ("attribution maps (Integrated Gradients, Occlusion, Grad-CAM)", ("captum",)),
}


# the module a package of EXTRAS is imported as, where the names differ
MODULE_OF = {"scikit-learn": "sklearn", "mkdocs-material": "material"}


def installed(module: str) -> str | None:
    """The installed version of `module` ("" if it has no distribution of that name), or None
    when it cannot be imported from here. Finds it without importing it."""
    try:
        if importlib.util.find_spec(module) is None:  # None also for sys.modules[module] = None
            return None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return None
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:
        return ""


def requirements() -> dict:
    """quicknets' required packages as installed: {name: specifier}, e.g. {"torch": ">=2.5,..."};
    empty when quicknets runs from a source folder without being installed."""
    from packaging.requirements import Requirement  # comes with matplotlib, a dependency

    try:
        listed = importlib.metadata.requires("quicknets") or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    out = {}
    for text in listed:
        r = Requirement(text)
        if r.marker is None:  # not an extra's
            out[r.name] = r.specifier
    return out


def check_python() -> Check:
    """This Python against quicknets' Requires-Python."""
    from packaging.specifiers import SpecifierSet

    try:
        wanted = importlib.metadata.metadata("quicknets")["Requires-Python"] or ""
    except importlib.metadata.PackageNotFoundError:
        wanted = ""
    here = platform.python_version()
    line = f"python {here} ({sys.executable})"
    if wanted and here not in SpecifierSet(wanted):
        return Check(FAIL, f"{line}: quicknets needs Python {wanted}")
    return Check(OK, line + (f", wants {wanted}" if wanted else ""))


def check_package(name: str, specs: dict | None = None) -> Check:
    """One required package: installed, and within quicknets' tested range."""
    specs = requirements() if specs is None else specs
    version = installed(name)
    if version is None:
        return Check(FAIL, f"{name}: not installed, and quicknets needs it: {INSTALL}")
    spec = specs.get(name)
    line = f"{name} {version or '(version unknown)'}"
    if name == "torch":
        line += _torch_build()
    if spec is not None and version and version.split("+")[0] not in spec:
        return Check(
            WARN,
            f"{line}: quicknets is tested with {name}{spec}; "
            f"pip install '{name}{spec}' if something misbehaves",
        )
    return Check(OK, line + (f", wants {spec}" if spec else ""))


def _torch_build() -> str:
    import torch

    return f" (CUDA {torch.version.cuda} build)" if torch.version.cuda else " (CPU build)"


def check_other_packages(specs: dict | None = None) -> Check:
    """The rest of the required packages (as distributions: pillow is imported as PIL), on
    one line."""
    specs = requirements() if specs is None else specs
    found: dict[str, str | None] = {}
    for name in specs:
        if name not in ("torch", "torchvision", "numpy"):
            try:
                found[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                found[name] = None
    missing = [n for n, v in found.items() if v is None]
    if missing:
        return Check(FAIL, f"not installed: {', '.join(missing)}; quicknets needs them: {INSTALL}")
    if not found:
        return Check(
            WARN,
            "quicknets is on the path but not installed, so its requirements "
            f"are unknown: {INSTALL}",
        )
    return Check(OK, ", ".join(f"{n} {v}" for n, v in found.items()))


def check_quicknets() -> Check:
    """quicknets' version, code version (git commit) and where it is imported from."""
    from quicknets import __version__
    from quicknets.records.runs import code_version

    here = Path(__file__).resolve().parent
    return Check(OK, f"quicknets {__version__}, code {code_version()}, from {here}")


def check_data_search(data_dir=None) -> Check:
    """Where the built-in datasets are looked for, in order (builtin.search_dirs)."""
    from quicknets.data.builtin import dataset_info, search_dirs

    dirs = ", ".join(str(d) for d in search_dirs(dataset_info("fashion-mnist"), data_dir))
    if data_dir:
        return Check(
            OK,
            f"data: --data-dir alone is looked in ({dirs}); missing files are downloaded into it",
        )
    env = "" if os.environ.get("QUICKNETS_DATA") else "; $QUICKNETS_DATA is unset"
    return Check(
        OK,
        f"data: fashion-mnist is looked for in {dirs}, then downloaded into the "
        f"first cache folder{env}",
    )


def dataset_state(name: str, data_dir=None) -> tuple[str, str]:
    """Where built-in dataset `name` would be found (builtin.locate, downloading nothing):
    (status, where or what to do)."""
    from quicknets.base.errors import QuicknetsError
    from quicknets.base.storage import cache_dir
    from quicknets.data.builtin import dataset_info, find_files, locate, search_dirs

    info = dataset_info(name)
    status = WARN if name == "fashion-mnist" else NOTE  # missing: the default dataset warns
    try:
        return OK, str(locate(name, data_dir, download=False)["train_images"].parent)
    except QuicknetsError as e:
        if data_dir and any(find_files(d, info.files) for d in search_dirs(info, data_dir)):
            return status, str(e)  # part of a set: locate's line says what is there and missing
    if not info.fetch:
        return status, (
            f"not here (quicknets does not download it): torchvision.datasets."
            f"{info.torchvision_name}(ROOT, download=True), then --data-dir ROOT"
        )
    debian = (
        " (or apt-get install dataset-fashion-mnist)" if info.debian_dir and not data_dir else ""
    )
    into = data_dir or cache_dir() / info.name
    return status, f"not here; downloaded into {into} when first used{debian}"


def check_datasets(data_dir=None) -> list:
    """One Check per built-in dataset; datasets in the same state share a line (the EMNIST
    splits)."""
    from quicknets.data.datasets import DATASETS

    states: dict = {}
    for name in DATASETS:
        states.setdefault(dataset_state(name, data_dir), []).append(name)
    return [
        Check(status, f"{', '.join(names)}: {text}") for (status, text), names in states.items()
    ]


def check_threads() -> Check:
    """The cores torch will use, and how busy they are now."""
    import torch

    from quicknets.base.machine import default_threads, runnable_now, usable_cores

    env = [
        f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ
    ]
    busy = runnable_now() - 1
    return Check(
        OK,
        f"threads: {default_threads()} for training (--threads 0), "
        f"{usable_cores()} usable cores, torch now uses {torch.get_num_threads()}"
        + (f" ({', '.join(env)})" if env else "")
        + (f"; {busy} other processes ready to run now" if busy > 0 else ""),
    )


def check_cpu() -> Check:
    """The CPU's kernels and native low-precision arithmetic."""
    import torch

    from quicknets.base.machine import native_bf16, native_fp16

    kernels = torch.backends.cpu.get_cpu_capability()
    bf16 = "native bf16 (--bf16 pays)" if native_bf16("cpu") else "no native bf16"
    fp16 = ", native fp16" if native_fp16("cpu") else ""
    return Check(OK, f"cpu: {platform.machine()}, torch kernels {kernels}, {bf16}{fp16}")


def check_mkl() -> Check:
    """MKL, and its strict mode: the same bits for any thread count (machine.thread_invariant)."""
    import torch

    from quicknets.base.machine import STRICT_MATH, math_mode, thread_invariant

    if not torch.backends.mkl.is_available():
        return Check(OK, "mkl: not in this torch build; numbers depend on the thread count")
    if thread_invariant():
        return Check(
            OK, "mkl: strict mode on (matrix products give the same bits for any thread count)"
        )
    setting = f"MKL_CBWR={STRICT_MATH}"
    told = (
        f" (MKL_CBWR={os.environ['MKL_CBWR']} in the environment)"
        if "MKL_CBWR" in os.environ
        else ""
    )
    return Check(
        WARN,
        f"mkl: strict mode off ({math_mode()}){told}: numbers change with the thread count; "
        f"set {setting} before Python starts (the quicknets command and train() do)",
    )


def check_device() -> Check:
    """The device `--device auto` picks, with its mixed-precision support."""
    import torch

    from quicknets.base.machine import native_bf16, pick_device

    device = pick_device("auto")
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        bf16 = "bf16" if native_bf16("cuda") else "no bf16 (use --fp16)"
        return Check(
            OK,
            f"device: cuda, {name}, CUDA {torch.version.cuda}, {bf16} "
            f"({torch.cuda.device_count()} GPU(s))",
        )
    if device.type == "mps":
        return Check(OK, "device: mps (Apple GPU)")
    why = "a CPU build of torch" if torch.version.cuda is None else "no CUDA GPU visible"
    return Check(OK, f"device: cpu ({why}; no Apple GPU)")


@dataclass
class TinyRun:
    """What the tiny training made, for the run-record check."""

    model: "nn.Module"
    config: "RunConfig"
    history: list
    results: dict


def generated_data(n_train: int = 600, n_test: int = 200, seed: int = 0):
    """A learnable Dataset of uint8 (N, 28, 28) images: class c (of 10) is a bright bar in row
    band c, on noise."""
    import torch

    from quicknets.data.loading import Dataset

    g = torch.Generator().manual_seed(seed)

    def split(n):
        labels = torch.randperm(n, generator=g) % 10
        images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.uint8)
        for c in range(10):
            images[labels == c, 2 + 2 * c : 4 + 2 * c, 4:24] = 220
        return images, labels

    train_images, train_labels = split(n_train)
    test_images, test_labels = split(n_test)
    return Dataset(
        "generated",
        [f"bar {c}" for c in range(10)],
        train_images,
        train_labels,
        test_images,
        test_labels,
        source="quicknets doctor",
    )


CHANCE = 0.1
FLOOR = 0.5  # test accuracy the tiny training must reach: far above chance, far below its ~0.9+


def tiny_run(epochs: int = 1) -> TinyRun:
    """A 784-32-10 MLP trained through quicknets' own `train` on generated images (epochs=0:
    untrained), and its test results."""
    import dataclasses

    from quicknets.base.machine import resolve
    from quicknets.config.configs import RunConfig
    from quicknets.evaluation.metrics import evaluate
    from quicknets.networks.models import network
    from quicknets.training.loop import train

    data = generated_data()
    config = RunConfig.build(
        dataset=data.name,
        network="784-32-10",
        epochs=max(1, epochs),
        batch_size=32,
        lr=0.01,
        seed=0,
    )
    config = dataclasses.replace(config, train=resolve(config.train))  # recorded as trained
    model = network(config.network.network, seed=config.train.seed)
    history = train(model, data, config.train, quiet=True) if epochs else []
    if not epochs:
        model.preprocessing = data.preprocessing
    return TinyRun(model, config, history, evaluate(model, data))


def check_training() -> tuple[Check, TinyRun | None]:
    """A tiny training (600 generated images, 1 epoch) must beat chance by far."""
    import time

    start = time.perf_counter()
    run = tiny_run()
    seconds = time.perf_counter() - start
    acc = run.results["accuracy"]
    line = (
        f"training: {run.config.network.network} for 1 epoch on 600 generated images "
        f"({run.config.train.device}) in {seconds:.1f} s, test accuracy {acc:.2f}"
    )
    if acc < FLOOR:
        return Check(
            FAIL,
            f"{line}, below {FLOOR} (chance {CHANCE}): training does not "
            "learn here; run scripts/test.sh tests/training/test_loop.py",
        ), run
    return Check(OK, f"{line} (chance {CHANCE})"), run


def check_record(runs_dir=None, run: TinyRun | None = None) -> Check:
    """A run record written (save_run), listed (list_runs, through the index) and read back
    (load_run, load_model) in a hidden temporary folder inside the runs folder, removed after:
    the folder `quicknets train` would write to is writable, and a record round-trips."""
    import json

    import torch

    from quicknets.records.runs import list_runs, load_model, load_run, runs_root, save_run

    root = runs_root(runs_dir)
    made_root = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".doctor-", dir=root))
    except OSError as e:
        return Check(
            FAIL,
            f"runs folder {root}: cannot write there ({e.strerror or e}); "
            "use --runs-dir or $QUICKNETS_RUNS for a folder you can write",
        )
    try:
        run = run or tiny_run(epochs=0)
        path = save_run(run.model, run.config, run.history, run.results, runs_dir=scratch)
        listed = [r.name for r in list_runs(scratch)]
        back = load_run(path.name, scratch)
        model = load_model(back)
        problems = [
            what
            for what, same in (
                ("listed", listed == [path.name]),
                ("history", back.history == json.loads(json.dumps(run.history))),
                ("results", back.results == json.loads(json.dumps(run.results))),
                (
                    "weights",
                    all(
                        torch.equal(a, b)
                        for a, b in zip(
                            run.model.state_dict().values(), model.state_dict().values()
                        )
                    ),
                ),
            )
            if not same
        ]
        if problems:
            return Check(
                FAIL,
                f"run record in {root}: read back differs in "
                f"{', '.join(problems)}; run tests/records/test_runs.py",
            )
        return Check(
            OK,
            f"run record: written, listed and read back in {root} "
            f"(a temporary folder there, removed)",
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if made_root and not any(root.iterdir()):
            root.rmdir()


def check_program(command: str, purpose: str, install: str) -> Check:
    """An optional program on the PATH."""
    path = shutil.which(command)
    if path is None:
        return Check(WARN, f"{command}: not found; for {purpose}: {install}")
    return Check(OK, f"{command}: {path}")


def check_extra(extra: str) -> Check:
    """An optional extra of pyproject.toml: each of its packages importable."""
    purpose, packages = EXTRAS[extra]
    found = {}
    for package in packages:
        version = installed(MODULE_OF.get(package, package))
        if version == "" and package in MODULE_OF:  # the module's name is not the package's
            try:
                version = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                version = ""
        found[package] = version
    missing = [m for m, v in found.items() if v is None]
    if missing:
        return Check(
            WARN,
            f"{extra} extra: {', '.join(missing)} missing; for {purpose}: "
            f"pip install 'quicknets[{extra}]'",
        )
    return Check(OK, f"{extra} extra: " + ", ".join(f"{m} {v}".strip() for m, v in found.items()))


def run_checks(runs_dir=None, data_dir=None):
    """Every check in order, each yielded as soon as it is done. A check that raises is a fail
    line with the exception, and the others still run."""
    specs = {}
    try:
        specs = requirements()
    except Exception as e:  # packaging missing, or unreadable metadata
        yield Check(WARN, f"quicknets' requirements unreadable ({e}); versions unchecked")
    trained = []

    def training():
        check, run = check_training()
        trained.append(run)
        return check

    checks = [
        ("python", check_python),
        *[
            (name, lambda name=name: check_package(name, specs))
            for name in ("torch", "torchvision", "numpy")
        ],
        ("packages", lambda: check_other_packages(specs)),
        ("quicknets", check_quicknets),
        ("data", lambda: check_data_search(data_dir)),
        ("datasets", lambda: check_datasets(data_dir)),
        ("threads", check_threads),
        ("cpu", check_cpu),
        ("mkl", check_mkl),
        ("device", check_device),
        ("training", training),
        ("run record", lambda: check_record(runs_dir, trained[0] if trained else None)),
        *[(p[0], lambda p=p: check_program(*p)) for p in PROGRAMS],
        *[(f"{extra} extra", lambda extra=extra: check_extra(extra)) for extra in EXTRAS],
    ]
    need_torch = ("data", "datasets", "threads", "cpu", "mkl", "device", "training", "run record")
    torch_failed, skipped = False, []
    for label, check in checks:
        if torch_failed and label in need_torch:  # one line, not an ImportError each
            skipped.append(label)
            if label == need_torch[-1]:
                yield Check(FAIL, f"not checked without torch: {', '.join(skipped)}")
            continue
        try:
            result = check()
        except Exception as e:  # one broken part must not hide the report on the others
            result = Check(FAIL, f"{label}: {type(e).__name__}: {e}")
        results = result if isinstance(result, list) else [result]
        torch_failed = torch_failed or (label == "torch" and results[0].status == FAIL)
        yield from results
