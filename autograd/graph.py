"""Pictures of expressions with Graphviz, as micrograd's notebooks draw them.

    from autograd.graph import draw_dot, Graph
    dot = draw_dot(loss)                 # a graphviz.Digraph, as micrograd's
    Graph(loss).render("loss.svg")       # or .source, or display it in Jupyter

Each Value is a record `{ label | data 1.0000 | grad 0.5000 }`; each computed
Value has an op node (its `_op`) that its inputs feed.  A fused node (`sum`,
`dot`) is one op node with all of its inputs.  The walk is iterative, so any
depth is fine.  Graphviz's `dot` can take minutes on a graph of a few hundred
Values, so two budgets refuse a graph before `dot` sees it (`max_nodes`
Values; `max_layout`, the edges weighted by the ranks they cross), and
rendering stops `dot` after `timeout` seconds.
"""
from __future__ import annotations

import math
import numbers
import os
import shutil
import subprocess
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import graphviz

    from autograd.engine import Value

DEFAULT_MAX_NODES = 500
"""The most Values draw_dot() and Graph draw unless given another max_nodes."""

DEFAULT_MAX_LAYOUT = 5000
"""The largest layout size (see layout_size()) drawn unless given another max_layout.

Measured with Graphviz 2.43: sizes up to 5,000 took `dot` at most 0.7 s (a
500-Value chain: 750, 0.1 s; the lecture's 4-sample MLP loss, 398 Values: 2,924, 0.16 s;
20 sums of the same 200 leaves: 4,101, 0.7 s; a chain whose every step uses one
shared weight, `x = x * w + w`, 20 steps: 4,800, 0.35 s), 7,500 took 1.5 s,
11,000 3-12 s, and the shared-weight chain of 45 steps (24,300) more than a
minute: the time grows faster than the square of the size."""

DEFAULT_TIMEOUT = 30.0
"""The seconds Graph gives Graphviz's `dot` to render before stopping it."""

LONG_EDGE_WEIGHT = 3
"""What each rank that an edge crosses adds to the layout size (see layout_size())."""

FORMATS = ("svg", "png", "pdf")
"""The formats Graph.render() writes."""


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


def _check_root(root):
    """Refuse anything but a Value of either engine (or of a subclass)."""
    from autograd import pure
    kinds = (pure.Value,)
    try:
        from autograd import core
        kinds += (core.Value,)
    except ImportError:     # the pure engine alone is installed
        pass
    if not isinstance(root, kinds):
        raise TypeError(f"Graph needs a Value, not {type(root).__name__}")


def _collect(root, max_nodes):
    """(nodes, edges) reachable from root, without recursion; root first.

    Edges are (child, parent) pairs, one per distinct child of each node.
    Raises ValueError as soon as more than max_nodes Values are found, before
    walking the rest of a large graph; max_nodes=None walks any graph.
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
        if max_nodes is not None and len(seen) > max_nodes:
            raise ValueError(
                f"this graph has more than max_nodes={max_nodes} Values; Graphviz would be slow "
                f"to lay it out. Pass a larger max_nodes (or max_nodes=None) to draw it anyway.")
    return nodes, edges


def layout_size(root: Value) -> int:
    """How much work Graphviz's `dot` has laying out the picture of `root`.

    `dot` puts nodes on ranks (columns, with rankdir="LR") and routes an
    edge between ranks far apart through a point on each rank it crosses;
    ordering those points to avoid crossings is where its time goes. A Value
    used by many operations far apart (a weight shared by every step of a
    long chain) makes many long edges. The size is the number of edges plus
    LONG_EDGE_WEIGHT for each rank an edge crosses, with the ranks `dot`
    gives the picture: each node as close to its users as it can be.

    Args:
        root: The Value whose picture is measured.

    Returns:
        The layout size that draw_dot() compares with its max_layout.

    Raises:
        TypeError: `root` is not a Value.
    """
    _check_root(root)
    return _layout_size(*_collect(root, None))


def _layout_size(nodes, edges):
    # A Value's rank is its longest distance from the root: two ranks per
    # operation (its op node, then its input), each Value placed once every
    # user is (Kahn's order from the root, no recursion).
    users_left = {id(v): 0 for v in nodes}
    inputs = {id(v): [] for v in nodes}
    for child, parent in edges:
        users_left[id(child)] += 1
        inputs[id(parent)].append(child)
    rank = {id(nodes[0]): 0}
    ready = [nodes[0]]
    while ready:
        v = ready.pop()
        for child in inputs[id(v)]:
            rank[id(child)] = max(rank.get(id(child), 0), rank[id(v)] + 2)
            users_left[id(child)] -= 1
            if users_left[id(child)] == 0:
                ready.append(child)
    # an input next to its op node spans one rank: it crosses rank - 2 more
    crossed = sum(rank[id(child)] - rank[id(parent)] - 2 for child, parent in edges)
    op_edges = sum(1 for v in nodes if inputs[id(v)])
    return len(edges) + op_edges + LONG_EDGE_WEIGHT * crossed


def _value_label(v):
    parts = [] if not v.label else [_escape_record(v.label)]
    parts += ["data %.4f" % v.data, "grad %.4f" % v.grad]
    return "{ " + " | ".join(parts) + " }"


def _check_limit(limit, name):
    """A limit is None or a positive int (numpy's too), checked before the graph is walked."""
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral):
        raise TypeError(f"{name} must be a positive int or None, not {type(limit).__name__}")
    if limit < 1:
        raise ValueError(f"{name} must be a positive int or None, not {limit!r}")


def draw_dot(root: Value, format: str = "svg", rankdir: str = "LR",
             max_nodes: int | None = DEFAULT_MAX_NODES,
             max_layout: int | None = DEFAULT_MAX_LAYOUT) -> graphviz.Digraph:
    """The graph of `root` as a graphviz.Digraph, as micrograd's draw_dot.

    Needs the graphviz Python package; rendering the Digraph needs
    Graphviz's `dot` program. A graph that `dot` would take long to lay out
    is refused here (the Digraph's own render() has no time limit).

    Args:
        root: The Value whose graph is drawn (it and every Value below it).
        format: The Digraph's output format: "svg", "png", "pdf", ...
        rankdir: The direction of the edges: "LR", "TB", "RL" or "BT".
        max_nodes: The most Values drawn; None for no limit.
        max_layout: The largest layout size drawn (see layout_size()); None
            for no limit.

    Returns:
        A new graphviz.Digraph.

    Raises:
        TypeError: `root` is not a Value, or a limit is not an int or None.
        ValueError: `rankdir` is not one of the four, a limit is not
            positive, the graph has more than `max_nodes` Values (found
            before the whole graph is walked), or its layout size is above
            `max_layout`.
        ImportError: The graphviz package is not installed.
    """
    _check_root(root)
    import graphviz

    if rankdir not in ("LR", "TB", "RL", "BT"):
        raise ValueError(f"rankdir must be one of LR, TB, RL, BT, not {rankdir!r}")
    _check_limit(max_nodes, "max_nodes")
    _check_limit(max_layout, "max_layout")
    nodes, edges = _collect(root, max_nodes)
    if max_layout is not None:
        size = _layout_size(nodes, edges)
        if size > max_layout:
            raise ValueError(
                f"this graph of {len(nodes)} Values has a layout size of {size} (its edges, and "
                f"{LONG_EDGE_WEIGHT} for each rank an edge crosses), above max_layout={max_layout}: "
                "Graphviz could take minutes to lay it out. Values used by many operations far "
                "apart (a weight shared by every step of a chain) make long edges. Pass a larger "
                "max_layout (or max_layout=None) to draw it anyway; Graph stops rendering after "
                "its timeout.")
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
    Rendering runs Graphviz's `dot` for at most `timeout` seconds.

    Args:
        root: The Value whose graph is drawn.
        rankdir: The direction of the edges: "LR", "TB", "RL" or "BT".
        format: The default format of render() and pipe().
        max_nodes: The most Values drawn; None for no limit.
        max_layout: The largest layout size drawn (see layout_size()); None
            for no limit.
        timeout: The seconds `dot` may take to render, a positive number;
            None for no limit.

    Attributes:
        root: As given.
        format: As given.
        timeout: As given; may be changed before rendering.
        digraph: The graphviz.Digraph, as draw_dot() makes it.

    Raises:
        TypeError: `root` is not a Value, `timeout` is not a number, or a
            limit is not an int or None.
        ValueError: As draw_dot() raises, or `timeout` is not positive.
        ImportError: The graphviz package is not installed.
    """

    def __init__(self, root: Value, rankdir: str = "LR", format: str = "svg",
                 max_nodes: int | None = DEFAULT_MAX_NODES,
                 max_layout: int | None = DEFAULT_MAX_LAYOUT,
                 timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.root = root
        self.format = format
        self.timeout = _check_timeout(timeout)
        self.digraph = draw_dot(root, format=format, rankdir=rankdir, max_nodes=max_nodes,
                                max_layout=max_layout)

    @property
    def source(self) -> str:
        """The DOT text of the picture (needs no Graphviz program)."""
        return self.digraph.source

    def render(self, path: str, format: str | None = None) -> str:
        """Write the picture to exactly `path`.

        The format is `format`, else the path's extension (.svg, .png or
        .pdf), else, for a path without an extension, the Graph's `format`.

        Args:
            path: The file to write.
            format: "svg", "png" or "pdf"; None to go by the path.

        Returns:
            `path`.

        Raises:
            ValueError: The format is not svg, png or pdf, or `format` and
                the path's extension name different formats.
            RuntimeError: Graphviz's `dot` program is not found, or it ran
                longer than the Graph's `timeout` and was stopped.
        """
        ext = os.path.splitext(path)[1].lstrip(".").lower()
        if format is None:
            if ext and ext not in FORMATS:
                raise ValueError(f"render writes svg, png or pdf, not {ext!r} (the extension of "
                                 f"{path!r}): end the path with .svg, .png or .pdf, or pass format=")
            fmt = ext or self.format
        else:
            fmt = format.lower() if isinstance(format, str) else format
            if ext in FORMATS and ext != fmt:
                raise ValueError(f"format={format!r} and the extension of {path!r} disagree: "
                                 f"give one or the other, or the same format")
        if fmt not in FORMATS:
            raise ValueError(f"format must be svg, png or pdf, not {fmt!r}")
        data = self.pipe(fmt)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def pipe(self, format: str | None = None) -> bytes:
        """The picture as bytes.

        Args:
            format: A Graphviz output format; None for the Graph's `format`.

        Returns:
            The rendered picture.

        Raises:
            RuntimeError: Graphviz's `dot` program is not found, it failed,
                or it ran longer than the Graph's `timeout` and was stopped.
            TypeError: The Graph's `timeout` was set to what is not a number.
            ValueError: The Graph's `timeout` was set to a number not positive.
        """
        return _pipe(self.digraph, format or self.format, self.timeout)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, Any]:
        # rendered here, not by the Digraph's own method, to keep the timeout
        return {"image/svg+xml": self._repr_svg_()}

    def _repr_svg_(self) -> str:
        return self.pipe("svg").decode("utf-8")

    def __repr__(self) -> str:
        return f"Graph({self.root!r})"


def _check_timeout(timeout):
    """None, or a positive number of seconds (not NaN: subprocess would fail on it)."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"timeout must be None or a number of seconds, not {type(timeout).__name__}")
    try:
        seconds = float(timeout)
    except OverflowError:                       # an int beyond any float: no limit
        seconds = math.inf
    if not seconds > 0:
        raise ValueError(f"timeout must be None or a positive number of seconds, not {timeout!r}")
    return None if seconds == math.inf else timeout


def _pipe(digraph, fmt, timeout):
    """Run `dot` on the Digraph's text; stop it after `timeout` seconds."""
    timeout = _check_timeout(timeout)           # (Graph.timeout may have been changed)
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(
            "rendering needs Graphviz's `dot` program, which was not found on PATH: install "
            "Graphviz (apt-get install graphviz, brew install graphviz, conda install graphviz "
            "or https://graphviz.org/download). The DOT text is available without it, as "
            "Graph(...).source.")
    try:
        # subprocess.run kills `dot` when the time is up, and waits for it
        done = subprocess.run([dot, f"-T{fmt}"], input=digraph.source.encode("utf-8"),
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(
            f"Graphviz's `dot` did not finish laying out this graph within timeout={timeout} "
            "seconds and was stopped. Draw a smaller part of the expression, or pass a larger "
            "timeout (or timeout=None) to Graph to wait longer.") from None
    if done.returncode != 0:
        raise RuntimeError(f"Graphviz's `dot` failed (exit status {done.returncode}): "
                           f"{done.stderr.decode('utf-8', 'replace').strip()}")
    return done.stdout


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
