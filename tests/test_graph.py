"""Graphviz pictures of expressions (both engines)."""
import math
import os
import random
import re
import subprocess
import time

import pytest

from autograd.graph import DEFAULT_TIMEOUT, Graph, _collect, draw_dot, layout_size, single_neuron_example

graphviz = pytest.importorskip("graphviz", reason="graphviz is a dependency of mini-autograd")


def _dot_installed():
    from shutil import which
    return which("dot") is not None


needs_dot = pytest.mark.skipif(not _dot_installed() and not os.environ.get("CI"),
                               reason="Graphviz's `dot` is not installed (CI installs it)")


def _records(source):
    return re.findall(r'label="(\{[^"]*\})" shape=record', source)


def test_source_of_a_small_expression(engine):
    a, b, c = engine.Value(2.0, label="a"), engine.Value(-3.0, label="b"), engine.Value(10.0, label="c")
    e = a * b
    e.label = "e"
    d = e + c
    d.label = "d"
    d.backward()
    source = draw_dot(d).source
    records = _records(source)
    assert sorted(records) == sorted([
        "{ a | data 2.0000 | grad -3.0000 }", "{ b | data -3.0000 | grad 2.0000 }",
        "{ c | data 10.0000 | grad 1.0000 }", "{ e | data -6.0000 | grad 1.0000 }",
        "{ d | data 4.0000 | grad 1.0000 }"])
    ops = re.findall(r'(v\d+_op) \[label="?([^"\]]*?)"?\]', source)
    assert sorted(label for _, label in ops) == ["*", "+"]
    assert "rankdir=LR" in source
    # edges: inputs -> op node -> result
    name = {rec: n for n, rec in re.findall(r'(v\d+) \[label="(\{[^"]*\})"', source)}
    mul_op = name["{ e | data -6.0000 | grad 1.0000 }"] + "_op"
    assert f'{name["{ a | data 2.0000 | grad -3.0000 }"]} -> {mul_op}' in source
    assert f'{name["{ b | data -3.0000 | grad 2.0000 }"]} -> {mul_op}' in source
    assert f'{mul_op} -> {name["{ e | data -6.0000 | grad 1.0000 }"]}' in source
    assert len(re.findall(r" -> ", source)) == 2 + 2 + 2


def test_unlabeled_values_and_constants(engine):
    x = engine.Value(1.5)
    y = x * 2
    records = _records(draw_dot(y).source)
    assert sorted(records) == ["{ data 1.5000 | grad 0.0000 }", "{ data 2.0000 | grad 0.0000 }",
                               "{ data 3.0000 | grad 0.0000 }"]


def test_fused_nodes_are_one_op_node_with_every_input(engine):
    ws = [engine.Value(float(i), label=f"w{i}") for i in range(3)]
    xs = [engine.Value(1.0, label=f"x{i}") for i in range(3)]
    out = engine.dot(ws, xs, engine.Value(0.5, label="b"))
    source = draw_dot(out, rankdir="TB").source
    ops = re.findall(r'(v\d+_op) \[label="?([^"\]]*?)"?\]', source)
    assert [label for _, label in ops] == ["dot"]
    assert len(re.findall(rf"-> {ops[0][0]}\b", source)) == 7
    assert "rankdir=TB" in source


def test_reused_input_draws_one_edge(engine):
    a = engine.Value(3.0, label="a")
    source = draw_dot(a * a).source
    assert len(re.findall(r" -> ", source)) == 2


def test_special_characters_are_escaped(engine):
    v = engine.Value(1.0, label='a|b{c}<d>"e\\f')
    source = draw_dot(v * 2).source
    assert r'a\|b\{c\}\<d\>\"e\\f' in source


def test_too_many_nodes_is_a_clear_error(engine):
    x = engine.Value(1.0)
    y = x
    for _ in range(700):
        y = y.relu()
    with pytest.raises(ValueError, match=r"this graph has more than max_nodes=500 Values.*larger max_nodes "
                                         r"\(or max_nodes=None\) to draw it anyway"):
        draw_dot(y)
    with pytest.raises(ValueError, match=r"max_nodes=700 "):
        draw_dot(y, max_nodes=700)
    assert "ReLU" in draw_dot(y, max_nodes=701).source
    assert "ReLU" in draw_dot(y, max_nodes=None).source


class _CountingNode:
    """A stand-in node that counts how often its children are asked for."""
    asked = 0

    def __init__(self, children=()):
        self.children = children

    @property
    def _children(self):
        _CountingNode.asked += 1
        return self.children


def test_a_wide_graph_is_refused_without_walking_it():
    # regression: the whole graph was walked (and duplicate children removed
    # with a list, quadratically: 12 s for 40,000 leaves) before max_nodes was
    # checked; now the walk stops at the first node past the limit
    leaves = [_CountingNode() for _ in range(40_000)]
    root = _CountingNode(tuple(leaves + leaves))
    _CountingNode.asked = 0
    with pytest.raises(ValueError, match="more than max_nodes=500"):
        _collect(root, max_nodes=500)
    assert _CountingNode.asked == 1              # only the root's children were read


def test_repeated_children_give_one_edge_each(engine):
    a, b = engine.Value(1.0), engine.Value(2.0)
    nodes, edges = _collect(engine.vsum([a, b, a, a]), max_nodes=10)
    assert len(nodes) == 3 and len(edges) == 2
    assert "sum" in draw_dot(engine.vsum([a, b, a])).source


def test_deep_graph_walk_needs_no_recursion(engine):
    x = engine.Value(1.0)
    y = x
    for _ in range(50_000):
        y = y + 1
    nodes, edges = _collect(y, max_nodes=10 ** 6)
    assert len(nodes) == 100_001 and len(edges) == 100_000
    with pytest.raises(ValueError, match="more than max_nodes=500 Values"):
        Graph(y)


def test_bad_arguments(engine):
    v = engine.Value(1.0)
    with pytest.raises(ValueError, match="rankdir"):
        draw_dot(v, rankdir="XY")
    with pytest.raises(ValueError, match=r"render writes svg, png or pdf, not 'gif' \(the extension of "
                                         r"'out.gif'\): end the path with .svg, .png or .pdf, or pass format="):
        Graph(v).render("out.gif")
    with pytest.raises(ValueError, match="format must be svg, png or pdf, not 'gif'"):
        Graph(v).render("out", format="gif")
    assert not os.path.exists("out.gif") and not os.path.exists("out")


@pytest.mark.parametrize("root", [3.0, 2, "x", None, [1.0]])
def test_only_a_value_can_be_drawn(root):
    name = type(root).__name__
    for draw in (Graph, draw_dot, layout_size):
        with pytest.raises(TypeError, match=rf"^Graph needs a Value, not {name}$"):
            draw(root)


def test_values_of_either_engine_and_subclasses_are_drawn(engine):
    class Tagged(engine.Value):
        pass

    t = Tagged(2.0, label="t")
    assert "{ t | data 2.0000 | grad 0.0000 }" in Graph(t).source
    assert "{ t | data 2.0000 | grad 0.0000 }" in draw_dot(t * 3).source


def _shared_weight_chain(engine, steps):
    """x = x * w + w, `steps` times: every step uses the one weight w."""
    w, x = engine.Value(0.5, label="w"), engine.Value(1.0, label="x")
    for _ in range(steps):
        x = x * w + w
    return x


def test_layout_size_counts_edges_and_the_ranks_long_edges_cross(engine):
    a, b = engine.Value(1.0), engine.Value(2.0)
    # y = a*b + a: 4 edges into op nodes, 2 from op nodes; the edge a -> y's
    # op node spans from rank 4 to rank 1, crossing ranks 3 and 2
    assert layout_size(a * b + a) == 4 + 2 + 3 * 2
    x = a
    for _ in range(100):
        x = x + 1                       # a chain: no edge crosses a rank
    assert layout_size(x) == 3 * 100
    for steps in (1, 2, 20):
        assert layout_size(_shared_weight_chain(engine, steps)) == 12 * steps * steps
    # the lecture's neuron, drawn by the docs, is far below the limit
    assert layout_size(single_neuron_example(engine)) == 9 + 5        # no edge crosses a rank
    # the lecture's 4-sample MLP loss, with its own Neuron code (the figure docs/pictures.md gives)
    rng = random.Random(1337)
    layers = [[([engine.Value(rng.uniform(-1, 1)) for _ in range(nin)], engine.Value(rng.uniform(-1, 1)))
               for _ in range(nout)] for nin, nout in ((3, 4), (4, 4), (4, 1))]
    def mlp(x):
        for layer in layers:
            x = [sum((wi * xi for wi, xi in zip(w, x)), b).tanh() for w, b in layer]
        return x[0]
    xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, -1.0, 1.0]]
    loss = sum((mlp(x) - y) ** 2 for x, y in zip(xs, [1.0, -1.0, -1.0, 1.0]))
    assert layout_size(loss) == 2924
    assert len(_collect(loss, None)[0]) == 398


def test_a_shared_weight_chain_is_refused_quickly(engine):
    # regression: 150 steps (302 Values, under max_nodes=500) kept `dot` busy
    # for more than 400 s; the layout size (270,000) is refused at once
    y = _shared_weight_chain(engine, 150)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"^this graph of 302 Values has a layout size of 270000 \(its edges, and "
                                         r"3 for each rank an edge crosses\), above max_layout=5000: Graphviz could "
                                         r"take minutes to lay it out\. .* Pass a larger max_layout \(or "
                                         r"max_layout=None\) to draw it anyway; Graph stops rendering after its "
                                         r"timeout\.$"):
        Graph(y)
    with pytest.raises(ValueError, match="above max_layout=5000"):
        draw_dot(y)
    assert time.perf_counter() - start < 5
    with pytest.raises(ValueError, match="layout size of 270000 .* above max_layout=269999"):
        draw_dot(y, max_layout=269999)
    assert draw_dot(y, max_layout=270000).source.count(" -> ") == 6 * 150
    assert "digraph" in Graph(y, max_layout=None).source


@needs_dot
def test_rendering_stops_dot_after_the_timeout(engine, tmp_path):
    g = Graph(_shared_weight_chain(engine, 150), max_layout=None, timeout=0.5)
    assert Graph(engine.Value(1.0)).timeout == DEFAULT_TIMEOUT == 30.0
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"^Graphviz's `dot` did not finish laying out this graph within "
                                           r"timeout=0.5 seconds and was stopped\. Draw a smaller part of the "
                                           r"expression, or pass a larger timeout \(or timeout=None\) to Graph"):
        g.render(str(tmp_path / "chain.svg"))
    assert time.perf_counter() - start < 10
    assert not (tmp_path / "chain.svg").exists()
    with pytest.raises(RuntimeError, match="within timeout=0.5 seconds"):
        g._repr_mimebundle_()


@pytest.mark.parametrize("timeout, error, message", [
    (0, ValueError, "timeout must be None or a positive number of seconds, not 0"),
    (-1.0, ValueError, "timeout must be None or a positive number of seconds, not -1.0"),
    (math.nan, ValueError, "timeout must be None or a positive number of seconds, not nan"),
    ("30", TypeError, "timeout must be None or a number of seconds, not str"),
    (True, TypeError, "timeout must be None or a number of seconds, not bool"),
])
def test_a_bad_timeout_is_refused_before_dot_runs(engine, monkeypatch, timeout, error, message):
    def no_dot(*args, **kwargs):
        raise AssertionError("dot ran")
    monkeypatch.setattr(subprocess, "run", no_dot)
    root = engine.Value(1.0) * 2
    with pytest.raises(error, match=message):
        Graph(root, timeout=timeout)
    g = Graph(root)
    g.timeout = timeout                         # changed after: refused when rendering
    with pytest.raises(error, match=message):
        g.pipe()
    assert Graph(root, timeout=math.inf).timeout is None
    assert Graph(root, timeout=10 ** 400).timeout is None


@needs_dot
def test_render_takes_a_format_in_either_case(engine, tmp_path):
    g = Graph(single_neuron_example(engine))
    assert g.render(str(tmp_path / "a.svg"), format="SVG") == str(tmp_path / "a.svg")
    assert (tmp_path / "a.svg").read_bytes().lstrip().startswith((b"<?xml", b"<svg"))
    g.render(str(tmp_path / "b"), format="PNG")
    assert (tmp_path / "b").read_bytes().startswith(b"\x89PNG")


@needs_dot
@pytest.mark.parametrize("ext, magic", [("png", b"\x89PNG\r\n\x1a\n"), ("svg", b"<svg"), ("pdf", b"%PDF")])
def test_render_writes_valid_files(engine, tmp_path, ext, magic):
    out = single_neuron_example(engine)
    path = Graph(out).render(str(tmp_path / f"neuron.{ext}"))
    data = open(path, "rb").read()
    assert magic in data[:400]
    if ext == "svg":
        assert "x1*w1 + x2*w2" in data.decode()
        assert Graph(out)._repr_svg_().startswith("<?xml")
        assert Graph(out)._repr_mimebundle_()["image/svg+xml"].startswith("<?xml")


@needs_dot
def test_render_writes_exactly_the_path(engine, tmp_path):
    # without an extension: the Graph's format, and no extension added
    path = Graph(engine.Value(1.0), format="png").render(str(tmp_path / "leaf"))
    assert path == str(tmp_path / "leaf") and open(path, "rb").read(4) == b"\x89PNG"
    assert os.listdir(tmp_path) == ["leaf"]
    g = Graph(engine.Value(1.0))                                    # format="svg"
    assert open(g.render(str(tmp_path / "a.PNG")), "rb").read(4) == b"\x89PNG"
    assert open(g.render(str(tmp_path / "b.png"), format="png"), "rb").read(4) == b"\x89PNG"
    # an extension that names no format: the format given is written
    assert open(g.render(str(tmp_path / "c.picture"), format="pdf"), "rb").read(4) == b"%PDF"
    assert sorted(os.listdir(tmp_path)) == ["a.PNG", "b.png", "c.picture", "leaf"]


def test_render_refuses_a_format_its_path_contradicts(engine, tmp_path):
    g = Graph(engine.Value(1.0), format="png")
    path = str(tmp_path / "x.png")
    with pytest.raises(ValueError, match=rf"^format='svg' and the extension of '{re.escape(path)}' disagree: give "
                                         r"one or the other, or the same format$"):
        g.render(path, format="svg")
    with pytest.raises(ValueError, match=r"format='png' and the extension of '.*x\.pdf' disagree"):
        g.render(str(tmp_path / "x.pdf"), format="png")
    assert os.listdir(tmp_path) == []


def test_without_dot_source_works_and_rendering_explains(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))          # no `dot` anywhere
    g = Graph(engine.Value(2.0) * 3)
    assert "digraph" in g.source
    with pytest.raises(RuntimeError, match="install Graphviz"):
        g.render(str(tmp_path / "x.png"))


def test_single_neuron_example_gradients(engine):
    o = single_neuron_example(engine)
    assert o.data == pytest.approx(0.8813735870195432)
    grads = {v.label: v.grad for v in _walk(o)}
    assert grads == {"o": 1.0, "n": 1.0, "b": 1.0, "x1*w1 + x2*w2": 1.0, "x1*w1": 1.0,
                     "x2*w2": 1.0, "x1": -3.0, "w1": 2.0, "x2": 1.0, "w2": 0.0}


def _walk(root):
    seen, stack, out = set(), [root], []
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        out.append(v)
        stack.extend(v._children)
    return out


@pytest.mark.parametrize("limit", ["max_nodes", "max_layout"])
@pytest.mark.parametrize("bad, error, message", [
    ("5", TypeError, "must be a positive int or None, not str"),
    (2.5, TypeError, "must be a positive int or None, not float"),
    (True, TypeError, "must be a positive int or None, not bool"),
    (0, ValueError, "must be a positive int or None, not 0"),
    (-3, ValueError, "must be a positive int or None, not -3"),
])
def test_limits_that_are_not_positive_ints_are_refused(engine, limit, bad, error, message):
    from autograd.graph import Graph, draw_dot
    root = engine.Value(1.0) * 2.0
    with pytest.raises(error, match=f"^{limit} {message}$"):
        draw_dot(root, **{limit: bad})
    with pytest.raises(error, match=f"^{limit} {message}$"):
        Graph(root, **{limit: bad})
