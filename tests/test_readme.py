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
