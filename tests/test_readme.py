"""The README's Python snippets run as written (with 1 epoch instead of 7, to stay quick)."""
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_story_and_the_plots_snippet_run(fashion, tmp_path):
    blocks = python_blocks()
    story = next(b for b in blocks if b.startswith("from quicknets import load_dataset"))
    plots = next(b for b in blocks if "from quicknets.plots import" in b)
    code = (story + plots).replace("epochs=7", "epochs=1")
    assert code.count("epochs=1") == 2  # the two trainings: nothing else was changed
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, env=_env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert "#" * 40 in done.stdout  # the banner
    assert (tmp_path / "fig.png").stat().st_size > 5000


def _env() -> dict:
    import os
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_the_sweep_snippet_runs_as_a_script(fashion, tmp_path):
    snippet = next(b for b in python_blocks() if "groups = sweep(" in b)
    code = snippet.replace('{"epochs": 2}', '{"epochs": 1}').replace("seeds=2", "seeds=1")
    code = code.replace('"784-512-256-10"', '"784-32-10"')  # a smaller second network
    assert code.count('"epochs": 1') == 1 and "seeds=1" in code
    code += '\n    print("best:", groups[0]["settings"], len(groups))\n'
    (tmp_path / "sweep_script.py").write_text(code)
    done = subprocess.run([sys.executable, "sweep_script.py"], cwd=tmp_path, capture_output=True,
                          text=True, env=_env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("trial ") == 4  # 2 networks x 2 lr x 1 seed, each trained once
    assert "best:" in done.stdout and done.stdout.rstrip().endswith(" 4")
