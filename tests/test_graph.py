"""Graphviz pictures of expressions (both engines)."""
import os
import re

import pytest

from autograd.graph import Graph, _collect, draw_dot, single_neuron_example

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
    with pytest.raises(ValueError, match=r"this graph has more than max_nodes=500 Values.*larger max_nodes"):
        draw_dot(y)
    with pytest.raises(ValueError, match=r"max_nodes=700 "):
        draw_dot(y, max_nodes=700)
    assert "ReLU" in draw_dot(y, max_nodes=701).source


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
    with pytest.raises(ValueError, match="svg, png or pdf"):
        Graph(v).render("out.gif")


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


@needs_dot
def test_render_without_extension_uses_the_format(engine, tmp_path):
    path = Graph(engine.Value(1.0), format="png").render(str(tmp_path / "leaf"))
    assert path.endswith("leaf.png") and open(path, "rb").read(4) == b"\x89PNG"


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
