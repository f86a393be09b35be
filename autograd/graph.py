"""Pictures of expressions with Graphviz, as micrograd's notebooks draw them.

    from autograd.graph import draw_dot, Graph
    dot = draw_dot(loss)                 # a graphviz.Digraph, as micrograd's
    Graph(loss).render("loss.svg")       # or .source, or display it in Jupyter

Each Value is a record `{ label | data 1.0000 | grad 0.5000 }`; each computed
Value has an op node (its `_op`) that its inputs feed.  A fused node (`sum`,
`dot`) is one op node with all of its inputs.  The walk is iterative, so any
depth is fine; graphs above `max_nodes` are refused before Graphviz sees them.
"""
from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import graphviz

    from autograd.engine import Value

DEFAULT_MAX_NODES = 500
"""The largest graph draw_dot() and Graph draw unless given a larger max_nodes."""


def _escape_record(text):
    """Escape the characters a Graphviz record label treats specially."""
    out = []
    for ch in text:
        if ch in '\\{}|<>"':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        else:
            out.append(ch)
    return "".join(out)


def _collect(root, max_nodes):
    """(nodes, edges) reachable from root, without recursion.

    Edges are (child, parent) pairs, one per distinct child of each node.
    Raises ValueError as soon as more than max_nodes Values are found, before
    walking the rest of a large graph.
    """
    nodes, edges, seen = [], [], {id(root)}
    stack = [root]
    while stack:
        node = stack.pop()
        nodes.append(node)
        distinct = set()
        for child in node._children:
            if id(child) in distinct:
                continue
            distinct.add(id(child))
            edges.append((child, node))
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
        if len(seen) > max_nodes:
            raise ValueError(
                f"this graph has more than max_nodes={max_nodes} Values; Graphviz would be slow "
                f"to lay it out. Pass a larger max_nodes to draw it anyway.")
    return nodes, edges


def _value_label(v):
    parts = [] if not v.label else [_escape_record(v.label)]
    parts += ["data %.4f" % v.data, "grad %.4f" % v.grad]
    return "{ " + " | ".join(parts) + " }"


def draw_dot(root: Value, format: str = "svg", rankdir: str = "LR",
             max_nodes: int = DEFAULT_MAX_NODES) -> graphviz.Digraph:
    """The graph of `root` as a graphviz.Digraph, as micrograd's draw_dot.

    Needs the graphviz Python package; rendering the Digraph needs
    Graphviz's `dot` program.

    Args:
        root: The Value whose graph is drawn (it and every Value below it).
        format: The Digraph's output format: "svg", "png", "pdf", ...
        rankdir: The direction of the edges: "LR", "TB", "RL" or "BT".
        max_nodes: The most Values drawn.

    Returns:
        A new graphviz.Digraph.

    Raises:
        ValueError: `rankdir` is not one of the four, or the graph has more
            than `max_nodes` Values (found before the whole graph is walked).
        ImportError: The graphviz package is not installed.
    """
    import graphviz

    if rankdir not in ("LR", "TB", "RL", "BT"):
        raise ValueError(f"rankdir must be one of LR, TB, RL, BT, not {rankdir!r}")
    nodes, edges = _collect(root, max_nodes)
    # ids are positions in the walk, so the DOT text is the same from run to run
    name = {id(v): f"v{i}" for i, v in enumerate(nodes)}
    dot = graphviz.Digraph(format=format, graph_attr={"rankdir": rankdir})
    for v in reversed(nodes):
        uid = name[id(v)]
        dot.node(uid, label=_value_label(v), shape="record")
        if v._children:
            dot.node(uid + "_op", label=_escape_record(v._op))
            dot.edge(uid + "_op", uid)
    for child, parent in reversed(edges):
        dot.edge(name[id(child)], name[id(parent)] + "_op")
    return dot


class Graph:
    """A picture of the expression behind `root`.

    `source` is the DOT text; `render(path)` writes svg, png or pdf (by the
    path's extension, or `format`); in Jupyter the object displays itself.

    Args:
        root: The Value whose graph is drawn.
        rankdir: The direction of the edges: "LR", "TB", "RL" or "BT".
        format: The default format of render() and pipe().
        max_nodes: The most Values drawn.

    Attributes:
        root: As given.
        format: As given.
        digraph: The graphviz.Digraph, as draw_dot() makes it.

    Raises:
        ValueError: As draw_dot() raises.
        ImportError: The graphviz package is not installed.
    """

    def __init__(self, root: Value, rankdir: str = "LR", format: str = "svg",
                 max_nodes: int = DEFAULT_MAX_NODES) -> None:
        self.root = root
        self.format = format
        self.digraph = draw_dot(root, format=format, rankdir=rankdir, max_nodes=max_nodes)

    @property
    def source(self) -> str:
        """The DOT text of the picture (needs no Graphviz program)."""
        return self.digraph.source

    def render(self, path: str, format: str | None = None) -> str:
        """Write the picture to a file.

        Args:
            path: The file to write; without an extension, "." and the
                format are added.
            format: "svg", "png" or "pdf"; None for the path's extension,
                else the Graph's `format`.

        Returns:
            The path written.

        Raises:
            ValueError: The format is not svg, png or pdf.
            RuntimeError: Graphviz's `dot` program is not found.
        """
        stem, ext = os.path.splitext(path)
        fmt = format or ext.lstrip(".") or self.format
        if fmt not in ("svg", "png", "pdf"):
            raise ValueError(f"format must be svg, png or pdf, not {fmt!r}")
        data = _pipe(self.digraph, fmt)
        with open(path if ext else f"{path}.{fmt}", "wb") as f:
            f.write(data)
        return path if ext else f"{path}.{fmt}"

    def pipe(self, format: str | None = None) -> bytes:
        """The picture as bytes.

        Args:
            format: A Graphviz output format; None for the Graph's `format`.

        Returns:
            The rendered picture.

        Raises:
            RuntimeError: Graphviz's `dot` program is not found.
        """
        return _pipe(self.digraph, format or self.format)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, Any]:
        return self.digraph._repr_mimebundle_(include, exclude, **kwargs)

    def _repr_svg_(self) -> str:
        return _pipe(self.digraph, "svg").decode("utf-8")

    def __repr__(self) -> str:
        return f"Graph({self.root!r})"


def _pipe(digraph, fmt):
    import graphviz

    try:
        return digraph.pipe(format=fmt)
    except graphviz.ExecutableNotFound as exc:
        raise RuntimeError(
            "rendering needs Graphviz's `dot` program, which was not found on PATH: install "
            "Graphviz (apt-get install graphviz, brew install graphviz, conda install graphviz "
            "or https://graphviz.org/download). The DOT text is available without it, as "
            "Graph(...).source.") from exc


def single_neuron_example(engine_module: ModuleType | None = None) -> Value:
    """The lecture's single neuron with two inputs, with a ReLU, back-propagated.

    Args:
        engine_module: The engine to build it with (autograd.core or
            autograd.pure); None for the engine in use.

    Returns:
        The output Value `o`, labelled, after o.backward().
    """

    if engine_module is None:
        from autograd import engine as default_engine
        engine_module = default_engine
    V = engine_module.Value
    x1, x2 = V(2.0, label="x1"), V(0.0, label="x2")
    w1, w2 = V(-3.0, label="w1"), V(1.0, label="w2")
    b = V(6.8813735870195432, label="b")
    x1w1 = x1 * w1
    x1w1.label = "x1*w1"
    x2w2 = x2 * w2
    x2w2.label = "x2*w2"
    x1w1x2w2 = x1w1 + x2w2
    x1w1x2w2.label = "x1*w1 + x2*w2"
    n = x1w1x2w2 + b
    n.label = "n"
    o = n.relu()
    o.label = "o"
    o.backward()
    return o
