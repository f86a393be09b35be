"""Jupyter: a small notebook run in a real kernel (nbclient and ipykernel).

A Graph displays itself as SVG, and train() shows a notebook progress bar
(tqdm.auto: a widget where ipywidgets is installed) and trains as anywhere.
The kernel starts in a temporary directory, so it imports the installed
package, as a user's notebook would.
"""
import importlib.util
import os
import shutil

import pytest

import autograd

nbformat = pytest.importorskip("nbformat", reason="Jupyter is optional: pip install '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="Jupyter is optional: pip install '.[test]'")
pytest.importorskip("ipykernel", reason="Jupyter is optional: pip install '.[test]'")

needs_dot = pytest.mark.skipif(shutil.which("dot") is None and not os.environ.get("CI"),
                               reason="Graphviz's `dot` is not installed (CI installs it)")

GRAPH_CELL = """\
from autograd import Graph, Value
a, b = Value(2.0, label="a"), Value(-3.0, label="b")
c = a * b + 1.0
c.label = "c"
c.backward()
Graph(c)"""

TRAIN_CELL = """\
import autograd
from autograd.data import make_moons
from autograd.nn import MLP
from autograd.train import train
import random
random.seed(1337)
X, y = make_moons(n_samples=100, noise=0.1, seed=1337)
model = MLP(2, [16, 16, 1])
history = train(model, X, y, steps=100, lr=lambda k: 1.0 - 0.9 * k / 100, loss="hinge", reg=1e-4)
print("backend", autograd.BACKEND, "accuracy", history.accuracy[-1])"""


def run_notebook(tmp_path, *cells):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(cell) for cell in cells]
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return notebook.cells


@needs_dot
def test_a_graph_displays_as_svg_and_train_shows_a_notebook_progress_bar(tmp_path):
    graph, training = run_notebook(tmp_path, GRAPH_CELL, TRAIN_CELL)

    [shown] = [o for o in graph.outputs if o["output_type"] == "execute_result"]
    svg = shown["data"]["image/svg+xml"]
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg
    for text in ("data 2.0000", "grad &#45;3.0000", "data &#45;5.0000", "*", "+"):
        assert text in svg, text

    printed = "".join(o.get("text", "") for o in training.outputs if o["output_type"] == "stream"
                      and o["name"] == "stdout")
    backend, accuracy = printed.split()[1], float(printed.split()[3])
    assert backend == autograd.BACKEND          # the kernel imported the package under test
    assert accuracy >= 0.95
    widgets = [o for o in training.outputs if o["output_type"] == "display_data"
               and "application/vnd.jupyter.widget-view+json" in o["data"]]
    if importlib.util.find_spec("ipywidgets") is None:     # tqdm.auto falls back to text
        assert any(o.get("name") == "stderr" and "100/100" in o.get("text", "")
                   for o in training.outputs)
    else:
        assert widgets, "train() showed no notebook progress bar"
        # the widget as first shown (its updates travel as comm messages)
        assert "0/100" in widgets[-1]["data"]["text/plain"]
        assert not any(o.get("name") == "stderr" for o in training.outputs)
