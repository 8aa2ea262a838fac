"""examples/quick_pass.ipynb runs from top to bottom in a fresh kernel, so it cannot rot; its
training shows tqdm's notebook bar and the live plot.

The notebook's `EPOCHS = 7` cell is tagged "parameters"; as papermill does, the test adds a cell
after it that sets 2 epochs (twice 7 epochs of the full MLP would take half a minute of this
suite), and everything else runs as a learner would run it, in a temporary folder.
"""

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import quicknets
from conftest import HANG_S

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quick_pass.ipynb"


def outputs_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert [c.source for c in code if "parameters" in c.metadata.get("tags", [])] == [
        "EPOCHS = 7  # passes over the 60,000 training images, as in the original notebook"
    ]


def test_quick_pass_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell("EPOCHS = 2  # injected by the test"))
    nb.cells.append(nbformat.v4.new_code_cell("import quicknets\nprint(quicknets.__file__)"))
    # the kernel imports the quicknets these tests import, whatever is installed
    src = str(Path(quicknets.__file__).resolve().parents[1])
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)
    )
    client = NotebookClient(
        nb, kernel_name="python3", timeout=HANG_S, resources={"metadata": {"path": str(tmp_path)}}
    )
    try:
        client.execute()
    except CellExecutionError as e:
        pytest.fail(f"the notebook failed:\n{str(e)[-3000:]}")
    assert outputs_of(nb.cells[-1]).strip() == str(Path(src) / "quicknets" / "__init__.py")
    text = "\n".join(outputs_of(c) for c in nb.cells if c.cell_type == "code")
    assert text.count("epoch: 2/2") == 2 and "epoch: 3/" not in text  # both runs, 2 epochs
    accuracy = float(re.search(r"test accuracy: (\d\.\d+)", text).group(1))
    assert accuracy > 0.82  # the MLP after 2 epochs gets about 0.85
    assert text.count("#" * 40) == 6  # three banners
    assert "dropout 0.2  train accuracy" in text
    # the training cell: tqdm's notebook bar (a widget: tqdm.auto saw Jupyter), one for the
    # run, and the live plot as one picture redrawn in place, above the epoch lines
    (training,) = [c for c in nb.cells if c.cell_type == "code" and "live_plot=True" in c.source]
    # On a busy machine a "note: the cores are busy" line may come first: only the load's doing
    shown = [
        o
        for o in training.outputs
        if not (o.output_type == "stream" and o.text.startswith("note:"))
    ]
    kinds = [
        o.output_type if o.output_type == "stream" else next(iter(sorted(o.data))) for o in shown
    ]
    assert kinds[:2] == ["application/vnd.jupyter.widget-view+json", "image/png"]
    assert set(kinds[2:]) == {"stream"}  # the epoch lines; nothing more was drawn
    assert shown[0].data["text/plain"].startswith("training:")
    assert "epoch: 2/2" in outputs_of(training)
    pictures = [
        o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})
    ]
    # show_batch, imshow, curves, confusion, 3 x view_classify, predictions, top losses, compare
    assert len(pictures) == 10
    reports = list(tmp_path.glob("runs/*/report.html"))
    assert len(reports) == 1 and reports[0].stat().st_size > 50_000
