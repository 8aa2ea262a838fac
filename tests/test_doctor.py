"""quicknets doctor: passes here, names a missing optional part, fails clearly on a broken one."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from quicknets import doctor
from quicknets.doctor import FAIL, NOTE, OK, WARN

ROOT = Path(__file__).resolve().parents[1]


def run_doctor(*args, prelude: str = "", cwd=None) -> subprocess.CompletedProcess:
    """`quicknets doctor ARGS` in a fresh process; `prelude` runs first (to hide a package)."""
    argv = ["doctor", *args]
    code = f"import sys\n{prelude}\nfrom quicknets.cli import main\nsys.exit(main({argv!r}))"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def lines(out: str) -> dict:
    """The report's lines by their first word after the status: {"torch": ("ok", line)}."""
    found = {}
    for line in out.splitlines():
        status, _, text = line.partition("  ")
        if status in (OK, NOTE, WARN, FAIL):
            found[text.split()[0].rstrip(":,")] = (status, text)
    return found


def test_doctor_passes_here_and_names_a_hidden_part_missing(tmp_path):
    """The whole report on this setup, with Gradio and onnxruntime made unimportable: exit 0,
    every required check ok, the two parts named with the extra that installs them."""
    hide = "sys.modules['gradio'] = None; sys.modules['onnxruntime'] = None"
    p = run_doctor("--runs-dir", str(tmp_path / "runs"), prelude=hide, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    report = lines(p.stdout)
    for name in (
        "python",
        "torch",
        "torchvision",
        "numpy",
        "quicknets",
        "threads",
        "cpu",
        "mkl",
        "device",
        "training",
        "run",
        "fashion-mnist",
    ):
        assert report[name][0] == OK, report[name]
    assert report["demo"] == (
        WARN,
        "demo extra: gradio missing; for quicknets demo (a Gradio "
        "page): pip install 'quicknets[demo]'",
    )
    assert report["export"][0] == WARN
    assert "onnxruntime missing" in report["export"][1]
    assert "pip install 'quicknets[export]'" in report["export"][1]
    assert not any(s == FAIL for s, _ in report.values())
    assert p.stdout.splitlines()[-1].startswith("doctor: every required check passed")
    assert not (tmp_path / "runs").exists()  # made for the check, removed after
    assert p.stderr == ""


def test_doctor_fails_on_a_runs_folder_it_cannot_write(tmp_path):
    """A runs folder under a file: exit 1, one fail line that names it and says what to do."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    p = run_doctor("--runs-dir", str(blocker / "runs"))
    assert p.returncode == 1
    fails = [line for line in p.stdout.splitlines() if line.startswith(FAIL)]
    assert fails == [
        f"fail  runs folder {blocker / 'runs'}: cannot write there (Not a directory);"
        " use --runs-dir or $QUICKNETS_RUNS for a folder you can write"
    ]
    assert "1 required check(s) failed" in p.stdout.splitlines()[-1]
    assert blocker.read_text() == "not a folder"


def test_doctor_without_torch_fails_once_per_cause():
    """torch unimportable: its own fail line, one line for the checks that need it, exit 1."""
    p = run_doctor(prelude="sys.modules['torch'] = None")
    assert p.returncode == 1, p.stdout + p.stderr
    fails = [line for line in p.stdout.splitlines() if line.startswith(FAIL)]
    assert fails[0].startswith("fail  torch: not installed, and quicknets needs it: pip install")
    assert fails[1] == (
        "fail  not checked without torch: data, datasets, threads, cpu, mkl, "
        "device, training, run record"
    )
    assert len(fails) == 2
    assert "Traceback" not in p.stdout + p.stderr


@pytest.mark.parametrize("kind", ["a file", "under a file", "read-only"])
def test_record_check_fails_on_each_unwritable_runs_folder(tmp_path, kind):
    """Every way the runs folder cannot take a record is one fail line naming the folder."""
    if kind == "read-only" and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    target = {
        "a file": tmp_path / "runs",
        "under a file": tmp_path / "runs" / "inner",
        "read-only": tmp_path / "ro" / "runs",
    }[kind]
    if kind == "read-only":
        target.parent.mkdir()
        target.parent.chmod(0o500)
    else:
        (tmp_path / "runs").write_text("x")
    try:
        check = doctor.check_record(target)
    finally:
        target.parent.chmod(0o700)
    assert check.status == FAIL
    assert check.line.startswith(f"runs folder {target}: cannot write there (")
    assert check.line.endswith("use --runs-dir or $QUICKNETS_RUNS for a folder you can write")


def test_record_check_round_trips_into_an_existing_runs_folder(tmp_path):
    """The scratch record goes into a hidden folder inside the runs folder and leaves nothing:
    a run already there is untouched."""
    runs = tmp_path / "runs"
    (runs / "old-run").mkdir(parents=True)
    (runs / "old-run" / "config.json").write_text("{}")
    check = doctor.check_record(runs)
    assert check.status == OK, check.line
    assert sorted(p.name for p in runs.iterdir()) == ["old-run"]
    assert (runs / "old-run" / "config.json").read_text() == "{}"


def test_missing_optional_parts_are_warnings_that_name_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    assert doctor.check_extra("mlflow") == doctor.Check(
        WARN,
        "mlflow extra: mlflow missing; for quicknets train --log-to mlflow: "
        "pip install 'quicknets[mlflow]'",
    )
    postgres = doctor.check_extra("postgres")
    assert postgres.status == WARN
    assert postgres.line.startswith("postgres extra: psycopg missing;")
    monkeypatch.setenv("PATH", "")
    assert doctor.check_program(
        "chromium", "viewing reports", "apt-get install chromium"
    ) == doctor.Check(WARN, "chromium: not found; for viewing reports: apt-get install chromium")


def test_installed_finds_without_importing():
    assert doctor.installed("pytest") == __import__("importlib.metadata").metadata.version("pytest")
    assert doctor.installed("no_such_module_here") is None
    assert doctor.installed("no_such_parent.child") is None


def test_a_package_outside_its_tested_range_warns():
    from packaging.specifiers import SpecifierSet

    check = doctor.check_package("numpy", {"numpy": SpecifierSet("<1.0")})
    assert check.status == WARN
    assert "quicknets is tested with numpy<1.0" in check.line


def test_extras_agree_with_pyproject():
    """EXTRAS names every extra a user installs, with the modules pyproject.toml gives it."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for name in set(extras) - {"test", "lint", "peers"}:  # for developers, not for users
        packages = {r.split("[")[0].split(">")[0].split("=")[0].strip() for r in extras[name]}
        assert set(doctor.EXTRAS[name][1]) == packages, name
    assert set(doctor.EXTRAS) == set(extras) - {"test", "lint", "peers"}


def test_generated_data_is_learnable_and_the_training_check_sees_it():
    data = doctor.generated_data()
    assert data.train_images.shape == (600, 28, 28) and data.test_images.shape == (200, 28, 28)
    assert sorted(data.train_labels.bincount().tolist()) == [60] * 10
    check, run = doctor.check_training()
    assert check.status == OK, check.line
    assert run.results["accuracy"] >= doctor.FLOOR
    assert len(run.history) == 1 and run.history[0]["epoch"] == 1


def test_datasets_are_found_where_load_dataset_looks(tmp_path):
    """The data lines follow data.locate: a --data-dir holding part of a set says what is
    missing; the Debian copy of Fashion-MNIST is found without one."""
    from conftest import FASHION_DIR, make_idx_dataset

    checks = doctor.check_datasets()
    assert checks[0] == doctor.Check(OK, f"fashion-mnist: {FASHION_DIR}")
    folder = make_idx_dataset(tmp_path / "part")
    (folder / "t10k-labels-idx1-ubyte").unlink()
    partial = doctor.check_datasets(folder)[0]
    assert partial.status == WARN  # the default dataset; the others are notes
    assert partial.line.startswith(f"fashion-mnist: {folder} holds ")
    assert "t10k-labels-idx1-ubyte" in partial.line.split("but not")[1]
    assert doctor.check_datasets(folder)[1] == doctor.Check(
        NOTE, partial.line.replace("fashion-mnist:", "mnist, kmnist:")
    )
    full = doctor.check_datasets(make_idx_dataset(tmp_path / "full"))[0]
    assert full == doctor.Check(OK, f"fashion-mnist, mnist, kmnist: {tmp_path / 'full'}")
