"""The package's lazy exports: each is the function or class it names, in any import order."""

import importlib
import pkgutil
import subprocess
import sys

import quicknets


def test_every_export_is_the_named_object_after_all_modules_are_imported():
    for module in pkgutil.walk_packages(quicknets.__path__, "quicknets."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    for name in quicknets.__all__:
        value = getattr(quicknets, name)
        assert not isinstance(value, type(sys)), f"quicknets.{name} is a module, not the export"
        assert getattr(value, "__name__", name) == name or name in ("NETWORKS", "PRESETS")


def test_from_import_in_a_fresh_interpreter():
    code = (
        "from quicknets import train, classify, sweep, compare, evaluate, network\n"
        "assert all(callable(f) for f in (train, classify, sweep, compare, evaluate, network))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_importing_the_package_does_not_import_torch():
    code = "import sys, quicknets\nassert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
