"""The package's layer order: a module imports its own group and the groups below it, never one
above, and no modules import each other in a loop. Imports inside functions count: they are
dependencies all the same, only later."""

import ast
from pathlib import Path

import quicknets

# bottom first; docs/architecture.md's "Layout" shows the same order (checked below)
LAYERS = [
    "base",
    "data",
    "config",
    "networks",
    "evaluation",
    "plots",
    "training",
    "records",
    "sweeps",
    "outputs",
    "audit",
    "commands",
]
# modules at the root of the package and the group each is in
ROOT = {
    "quicknets": "base",  # __init__: __version__ and the lazy exports; imports nothing
    "quicknets.cli": "commands",
    "quicknets.__main__": "commands",
    "quicknets.doctor": "commands",
}
PACKAGE = Path(quicknets.__file__).parent


def module_names() -> dict:
    """dotted module name -> its file, for every module of the package."""
    names = {}
    for file in sorted(PACKAGE.rglob("*.py")):
        parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return names


def imports(name: str, file: Path, modules) -> dict:
    """quicknets modules that `name` imports -> the first line that does, anywhere in the file."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found = {}
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from ..x import y
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # a name in a module -> the module
                target = target.rpartition(".")[0]
            if target.startswith("quicknets") and target != name:
                found.setdefault(target, node.lineno)
    return found


def group(name: str) -> str:
    if name in ROOT:
        return ROOT[name]
    parts = name.split(".")
    assert len(parts) > 1 and parts[1] in LAYERS, (
        f"{name} is in no group: put it in a group's folder, or name it in ROOT"
    )
    return parts[1]


def graph() -> dict:
    modules = module_names()
    return {name: imports(name, file, modules) for name, file in modules.items()}


def upward(edges: dict) -> list:
    """'a imports b (line n)' for each import from a group to one above it."""
    found = []
    for name, deps in sorted(edges.items()):
        for dep, line in sorted(deps.items()):
            if LAYERS.index(group(dep)) > LAYERS.index(group(name)):
                found.append(f"{name} ({group(name)}) imports {dep} ({group(dep)}), line {line}")
    return found


def find_cycle(edges: dict) -> list | None:
    """A cycle as a list of modules (first = last), or None: depth-first search."""
    state, path = {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == "open":
                return path[path.index(dep) :] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_every_module_is_in_a_group_and_every_group_has_a_folder_or_module():
    groups = {group(name) for name in module_names()}
    assert groups == set(LAYERS), f"groups without a module: {set(LAYERS) - groups}"


def test_no_group_imports_a_group_above_it():
    edges = graph()
    assert "quicknets.evaluation.metrics" in edges["quicknets.training.loop"]  # sees imports
    assert "quicknets.networks.models" in edges["quicknets.records.runs"]  # inside functions too
    found = upward(edges)
    assert not found, "imports that go up the layer order:\n" + "\n".join(found)


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checks_find_what_they_look_for():
    assert upward({"quicknets.data.idx": {"quicknets.training.loop": 3}}) == [
        "quicknets.data.idx (data) imports quicknets.training.loop (training), line 3"
    ]
    assert upward({"quicknets.training.loop": {"quicknets.data.idx": 3}}) == []
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_each_group_says_what_it_may_import():
    for name in LAYERS:
        init = PACKAGE / name / "__init__.py"
        if init.exists():
            doc = ast.get_docstring(ast.parse(init.read_text())) or ""
            assert "May import" in doc, f"{init} does not say which groups it may import"


def test_the_architecture_page_shows_the_same_order():
    page = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    order = " -> ".join(f"**{name}**" for name in LAYERS)
    assert order in " ".join(page.split()), f"docs/architecture.md does not show {order}"


def test_test_files_have_unique_names():
    """pytest's default import mode puts each test folder on sys.path: two test files of one
    name in two folders would collide."""
    names = [p.name for p in Path(__file__).parent.rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
