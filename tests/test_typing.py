"""micrograd-style code type-checks against the package's types (mypy).

The snippets are checked as a user's code is, against the package's
annotations and autograd/core.pyi, with the project's mypy settings (which
only say what to do with graphviz and matplotlib, which have no types).  A second snippet with mistakes
shows the check finds them.
"""
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mypy")

# the repository (tests/..): its pyproject.toml holds the mypy settings, and its autograd/
# folder the package's annotations and core.pyi (the installed copy may be elsewhere)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MICROGRAD_STYLE = '''
import random
from autograd import Value
from autograd.nn import MLP, Layer, Neuron

random.seed(1337)
model = MLP(2, [16, 16, 1])
xs = [[2.0, 3.0], [3.0, -1.0], [0.5, 1.0]]
ys = [1.0, -1.0, -1.0]
for k in range(2):
    scores = [model(x) for x in xs]
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(ys, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    total = data_loss + 1e-4 * sum((p * p for p in model.parameters()))
    model.zero_grad()
    total.backward()
    for p in model.parameters():
        p.data -= 0.05 * p.grad
    print(k, total.data, model([1.0, 2.0]).data, model(xs[0]).item())
    accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(ys, scores)]

wide = MLP(2, [4, 3], seed=0)
print(wide(xs[0])[0].data, [v.data for v in wide(xs[0])])
layer = Layer(2, 3, activation="tanh")
print(layer(xs[0])[1].grad, Layer(2, 1)(xs[0]).data)
neuron = Neuron(2, nonlin=False)
print(neuron([Value(1.0), 2.0]).data)
one: Value = model.output(xs[0])
outs: list[Value] = wide.outputs(xs[0])
best: Value = max(outs)
ordered: list[Value] = sorted(outs)
below: bool = one < 0.5 and 1 < one
print(model.summary(), model.num_parameters(), best.item(), ordered, below)
'''

MISTAKES = '''
from autograd import Value
from autograd.nn import MLP

model = MLP(2, [16, 1])
model.output([1.0, 2.0]).dat
model.outputs([1.0, 2.0]).data
s: str = Value(1.0).item()
'''


def _mypy(tmp_path, code):
    path = tmp_path / "user_code.py"
    path.write_text(textwrap.dedent(code))
    return subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", os.devnull,
                           "--config-file", os.path.join(ROOT, "pyproject.toml"), str(path)],
                          capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "MYPYPATH": ROOT})


def test_micrograd_style_code_type_checks(tmp_path):
    result = _mypy(tmp_path, MICROGRAD_STYLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_the_check_finds_mistakes(tmp_path):
    result = _mypy(tmp_path, MISTAKES)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 3, result.stdout
    assert '"Value" has no attribute "dat"' in errors[0]
    assert '"list[Value]" has no attribute "data"' in errors[1]
    assert 'Incompatible types in assignment (expression has type "float", variable has type "str")' in errors[2]
