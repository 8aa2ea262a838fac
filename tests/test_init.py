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


def import_graph() -> dict:
    """quicknets module -> the quicknets modules it imports, anywhere in its file (imports inside
    functions count: they are dependencies all the same)."""
    import ast
    from pathlib import Path

    root = Path(quicknets.__file__).parent
    graph = {}
    for file in root.rglob("*.py"):
        parts = file.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x / from .x import y
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                deps.add(base)
                deps |= {f"{base}.{a.name}" for a in node.names}
        graph[name] = set()
        for dep in deps:  # keep the module itself; "from quicknets.x import y" names module x
            while dep and dep not in _modules(root):
                dep = dep.rpartition(".")[0]
            if dep.startswith("quicknets") and dep not in (name, "quicknets"):
                graph[name].add(dep)
    return graph


def _modules(root) -> set:
    names = set()
    for file in root.rglob("*.py"):
        parts = file.relative_to(root.parent).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def find_cycle(graph: dict) -> list | None:
    """A cycle in the graph as a list of nodes (first = last), or None: depth-first search."""
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                return path[path.index(dep) :] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert (
        "quicknets.evaluation.metrics" in graph["quicknets.training.loop"]
    )  # the graph sees real imports
    assert "quicknets.networks.models" in graph["quicknets.records.runs"]  # inside functions too
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
