"""The documentation site (mkdocs.yml, docs/): it builds with --strict, every Python snippet in it
runs, and every `quicknets COMMAND --flag` it shows names a real command and real flags.

The snippets run as written, with small stated substitutions to stay quick (1 epoch instead of
7, 1 seed and a smaller second network in the sweep, 1 thread for the LR finder), in one fresh
interpreter per page: the whole file took 40-60 s of CPU time here (a load of 11 on 2 cores
stretched that to 2.5-3.5 minutes of wall time). A snippet that cannot run is fenced as
`python-norun` and listed in NOT_RUN with the reason; a Python snippet neither run nor listed
fails the test.
"""

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import need

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts)

# (page, first line) of each snippet fenced `python-norun`, with why it cannot run in a test.
NOT_RUN: dict = {}


def fenced_blocks(path: Path) -> list:
    """[(language, code)] of the fenced code blocks of a Markdown file, in order."""
    return re.findall(r"^```([\w-]*)[^\n]*\n(.*?)^```", path.read_text(), re.M | re.S)


def python_snippets() -> dict:
    """(page relative to docs/, first line) -> code, for every `python` block of the docs."""
    return {
        (str(p.relative_to(DOCS)), code.splitlines()[0]): code
        for p in PAGES
        for lang, code in fenced_blocks(p)
        if lang == "python"
    }


def snippet(page: str, first_line: str) -> str:
    return python_snippets()[(page, first_line)]


def _env() -> dict:
    # MKL's strict mode, as the docs advise a Python process (reproducibility.md): the snippets'
    # MLPs are then thread-free and leave busy cores to other work instead of fighting for them.
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_CBWR": "AUTO,STRICT",
        "NO_MKDOCS_2_WARNING": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }


def _run(code: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=_env()
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# --- the snippets: each runner claims the snippets it runs --------------------------------------

STORY = (
    "quick-pass.md",
    "from quicknets import load_dataset, network, train, evaluate, classify, banner",
)
LOAD_MODEL = ("quick-pass.md", "from quicknets import load_model")
PLOTS = ("see-it.md", "import torch")
OWN_DATA = ("data.md", "from quicknets.data import load_dataset")
LR_FIND = ("training.md", "from quicknets import load_dataset, network")
SWEEP = ("sweeps.md", "from quicknets import compare, list_runs, load_run, mark_variants, sweep")
ELSEWHERE = ("use-it-elsewhere.md", "import json")
RUN = {STORY, LOAD_MODEL, PLOTS, OWN_DATA, LR_FIND, SWEEP, ELSEWHERE}


def test_every_python_snippet_is_run_or_marked_not_run():
    assert set(python_snippets()) == RUN, "a snippet nobody runs, or a runner without its snippet"
    norun = {
        (str(p.relative_to(DOCS)), code.splitlines()[0])
        for p in PAGES
        for lang, code in fenced_blocks(p)
        if lang == "python-norun"
    }
    assert norun == set(NOT_RUN)
    other = {lang for p in PAGES for lang, _ in fenced_blocks(p)} - {"python", "python-norun"}
    assert other <= {"", "sh", "toml", "text"}  # anything else would be a snippet left untested


def test_the_story_the_saved_model_and_the_plots_run(fashion, tmp_path):
    """The quick pass (the story, then a saved run's model) and see-it's plots, which go on from
    the story, in one interpreter; the run the docs name is made first, with 1 epoch."""
    story = snippet(*STORY).replace("epochs=7", "epochs=1")
    make_run = (
        "from quicknets.config.configs import RunConfig\n"
        "from quicknets.records.experiment import run as _run\n"
        "_path, _ = _run(RunConfig.build(epochs=1, threads=1), 'runs', data=data,"
        " quiet=True, log=lambda *a: None)\n"
        "assert _path.name.startswith('mlp-256-128-64_adam_lr0.003_s0-')\n"
        "from PIL import Image\n"
        "Image.fromarray(data.test_images[0].numpy()).save('shoe.jpg')\n"
    )
    load = snippet(*LOAD_MODEL).replace('"mlp-256-128-64_adam_lr0.003_s0-f77fb2"', "_path.name")
    assert "_path.name" in load
    load += (
        "assert model.preprocessing.shape == (1, 28, 28)\n"
        "print('saved model:', classify(model, 'shoe.jpg')[0]['class'])\n"
    )
    plots = snippet(*PLOTS).replace("epochs=7", "epochs=1")
    code = story + make_run + load + plots
    assert code.count("epochs=1") == 3  # the two trainings and the run: nothing else was changed
    out = _run(code, tmp_path)
    assert "#" * 40 in out  # the banner
    assert "saved model: " in out
    assert (tmp_path / "fig.png").stat().st_size > 5000


def test_the_own_data_snippet_runs(tmp_path):
    """data.md's Dataset and DataLoader on a small folder of class folders, made here."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for c in ("cat", "dog"):
            (tmp_path / "pets" / split / c).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "pets" / split / c / f"{i}.png")
    code = snippet(*OWN_DATA) + (
        "assert tuple(x.shape) == (3, 32, 32) and y in (0, 1)\n"
        "assert tuple(xb.shape[1:]) == (3, 32, 32)\n"
    )
    _run(code, tmp_path)


def test_the_lr_find_snippet_runs(fashion, tmp_path):
    # 1 thread: the finder takes every core otherwise, even busy ones (it has no core lease)
    code = snippet(*LR_FIND).replace('optimizer="adam")', 'optimizer="adam", threads=1)')
    assert code.count("threads=1") == 1
    code += "assert 1e-7 < found.lr < 10, found.lr\n"
    _run(code, tmp_path)


def test_the_sweep_snippet_runs_as_a_script(fashion, tmp_path):
    code = snippet(*SWEEP).replace('{"epochs": 2}', '{"epochs": 1}').replace("seeds=2", "seeds=1")
    code = code.replace('"784-512-256-10"', '"784-32-10"')  # a smaller second network
    assert code.count('"epochs": 1') == 1 and "seeds=1" in code
    code += '\n    print("best:", groups[0]["settings"], len(groups))\n'
    (tmp_path / "sweep_script.py").write_text(code)
    done = subprocess.run(
        [sys.executable, "sweep_script.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("trial ") == 4  # 2 networks x 2 lr x 1 seed, each trained once
    assert "best:" in done.stdout and done.stdout.rstrip().endswith(" 4")


def test_the_predict_and_export_snippet_runs(fashion, tmp_path):
    need("onnxruntime")
    code = snippet(*ELSEWHERE).replace("epochs=7", "epochs=1")
    assert code.count("epochs=1") == 1
    out = _run(code, tmp_path)
    names = eval(out.strip().splitlines()[-1])  # the three names, read without quicknets
    assert len(names) == 3 and all(isinstance(n, str) for n in names)
    assert (tmp_path / "fashion.onnx").stat().st_size > 900_000


# --- the site ------------------------------------------------------------------------------------


def test_the_site_builds_strict(tmp_path):
    """A broken link, a missing page or anchor, an unresolved API reference fails the build."""
    need("mkdocs")
    site = tmp_path / "site"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--quiet",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(site),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cli = (site / "cli.html").read_text()
    for name, sub in _subcommands(_parser()).items():  # the hook wrote every command's help
        assert f"usage: quicknets {name}" in cli
        shown = [a for a in sub._actions if a.help != argparse.SUPPRESS]  # not --no-bf16, ...
        assert all(option in cli for a in shown for option in a.option_strings)
    api = (site / "api" / "data.html").read_text()
    assert "Train and test tensors, class names" in api  # load_dataset's docstring
    for page in site.rglob("*.html"):  # nothing fetched from the internet: no fonts, no CDN
        html = page.read_text()
        assert not re.search(r'<(script|img|iframe)[^>]+src="https?://', html), page
        assert not re.search(r'<link[^>]+href="https?://', html), page
        assert "fonts.googleapis" not in html, page


def test_every_name_quicknets_exports_is_in_the_api_reference():
    """api/index.md links each export to its reference ([`name`][module.name]; --strict fails on
    a target mkdocstrings did not render), so a new export cannot go undocumented."""
    import quicknets

    index = (DOCS / "api" / "index.md").read_text()
    listed = set(re.findall(r"\[`(\w+)`\]\[([\w.]+)\]", index))
    assert listed == {(name, f"{module}.{name}") for name, module in quicknets._EXPORTS.items()}
    pages = "".join(p.read_text() for p in (DOCS / "api").glob("*.md"))
    for module in set(quicknets._EXPORTS.values()):
        assert f"::: {module}\n" in pages, module


# --- the shell commands ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from quicknets.cli import build_parser

    return build_parser()


def _subcommands(parser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def shell_commands(path: Path) -> list:
    """Every `quicknets ...` command of a Markdown file: the lines of its sh blocks (continued
    lines joined) and its inline code, each cut at a pipe, a redirection or `&&`."""
    text = path.read_text()
    lines = [
        line
        for lang, code in fenced_blocks(path)
        if lang == "sh"
        for line in code.replace("\\\n", " ").splitlines()
    ]
    lines += re.findall(r"`((?:\S*/)?quicknets [^`\n]*)`", text)
    commands = []
    for line in lines:
        for part in re.split(r"&&|\||;|>", line.split("#")[0]):
            words = shlex.split(part.replace("[", " ").replace("]", " "))
            if words and words[0].endswith("quicknets"):
                commands.append(words[1:])
    return commands


MARKDOWN = [ROOT / "README.md", *PAGES]


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_names_real_subcommands_and_flags(path):
    top = _parser()
    for words in shell_commands(path):
        parser, said = top, "quicknets"
        if words and not words[0].startswith("-"):
            assert words[0] in _subcommands(top), f"{path.name}: no command {words[0]!r}"
        for word in words:
            if word in _subcommands(parser):
                parser, said = _subcommands(parser)[word], f"{said} {word}"
            elif word.startswith("-") and word != "-":
                flag = word.split("=")[0]
                assert flag in parser._option_string_actions, f"{path.name}: {said} has no {flag}"


# Flags of other programs that the docs name alone, in inline code: flag -> whose.
FOREIGN_FLAGS = {"--presets": "benchmarks/presets.py"}


def test_every_flag_named_alone_is_a_real_flag():
    """`--flag` in inline code, out of a command, is one of some quicknets command's flags."""
    top = _parser()
    flags = set(top._option_string_actions) | set(FOREIGN_FLAGS)
    for sub in _subcommands(top).values():
        flags |= set(sub._option_string_actions)
        for subsub in _subcommands(sub).values():
            flags |= set(subsub._option_string_actions)
    for path in MARKDOWN:
        for code in re.findall(r"`(--[a-z][\w-]*)[^`\n]*`", path.read_text()):
            assert code in flags, f"{path.name}: `{code}` is not a quicknets flag"
