"""Run the benchmark suite once and report it: a markdown table of medians
and ratios, a chart of the compiled core's speed-up against each peer (log
scale) in docs/images/benchmarks.png, and the MNIST-width steps' GFLOP/s against
model size for each contender in docs/images/scaling.png.

    python benchmarks/report.py               # full run (several minutes)
    python benchmarks/report.py --json FILE   # report an earlier run's JSON

Everything is measured in one pytest process, so the ratios compare runs made
on the same machine at the same time.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ORDER = ["cython", "cython-2-threads", "python", "micrograd", "torch", "torch-2-threads", "numpy",
         "jax", "fused_c"]
NAMES = {"cython": "compiled core", "cython-2-threads": "compiled core, 2 threads",
         "python": "pure reference", "micrograd": "micrograd 0.1.0", "torch": "PyTorch",
         "torch-2-threads": "PyTorch, 2 threads", "numpy": "numpy, by hand", "jax": "JAX jit (its own threads)",
         "fused_c": "C, fused by hand"}
OURS = {"cython", "cython-2-threads"}       # not a peer in the speed-up chart


def run_suite(json_path):
    # From a directory outside the clone: `python -m pytest` puts its working
    # directory first on sys.path, and from the repository root that would
    # import the source tree's autograd/ (no compiled core) instead of the
    # installed package.
    cmd = [sys.executable, "-m", "pytest", HERE, "-q", "-p", "no:cacheprovider", f"--rootdir={ROOT}",
           f"--benchmark-json={json_path}", "--benchmark-columns=median"]
    subprocess.run(cmd, cwd=tempfile.mkdtemp(), check=True)


def missing_core_rows(groups):
    """The workloads that ran on the pure engine but not on the compiled core."""
    return [g for g, row in groups.items() if "python" in row and "cython" not in row]


def who_of(bench):
    params = bench.get("params") or {}
    if "who" in params:
        return params["who"]
    if "engine" in params:   # the `engine` fixture's ids
        return bench["param"]
    for peer in ("torch", "numpy", "jax", "fused_c"):     # the peers' own tests
        if peer in bench["name"]:
            return peer
    return bench.get("param", "")


def per_unit(bench):
    info = bench.get("extra_info", {})
    if "bytes_per_node" in info:
        return info["bytes_per_node"], "bytes"
    return bench["stats"]["median"] / info.get("units", 1), info.get("unit", "round")


def fmt_time(seconds):
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
        if seconds >= scale:
            return f"{seconds / scale:,.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def collect(data):
    groups = {}
    for bench in data["benchmarks"]:
        value, unit = per_unit(bench)
        groups.setdefault(bench["group"], {})[who_of(bench)] = (value, unit)
    return groups


def markdown(groups):
    present = [w for w in ORDER if any(w in row for row in groups.values())]
    head = "| workload | " + " | ".join(NAMES[w] for w in present) + " | core vs pure | core vs micrograd | core vs PyTorch |"
    lines = [head, "|" + "---|" * (len(present) + 4)]
    for group, row in groups.items():
        cells = []
        for w in present:
            if w not in row:
                cells.append("")
                continue
            value, unit = row[w]
            cells.append(f"{value:.1f} B" if unit == "bytes" else f"{fmt_time(value)}/{unit}")
        ratios = []
        for peer in ("python", "micrograd", "torch"):
            if "cython" in row and peer in row and row["cython"][0] > 0:
                ratios.append(f"{row[peer][0] / row['cython'][0]:,.1f}x")
            else:
                ratios.append("")
        lines.append(f"| {group} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def speedups(groups):
    """[(workload, [(peer, how many times faster or smaller the core is)])],
    for every workload with a compiled-core row and at least one peer."""
    out = []
    for group, row in groups.items():
        if "cython" not in row or row["cython"][0] <= 0:
            continue
        ratios = [(w, row[w][0] / row["cython"][0]) for w in ORDER if w not in OURS and w in row]
        if ratios:
            out.append((group, ratios))
    return out


def chart(groups, path):
    """One row of bars per workload: how many times faster (for memory,
    smaller) the compiled core is than each peer, on a log axis; a bar left
    of the 1x line is a peer that is faster."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no chart: matplotlib is not installed (pip install '.[plot]')")
        return
    rows = speedups(groups)
    colors = {w: f"C{k}" for k, w in enumerate(ORDER)}
    # each workload gets only the bars it has, one under another, then a gap
    placed, y = [], 0.0
    for group, ratios in rows:
        placed.append((group, y, ratios))
        y += len(ratios) + 0.9
    fig, ax = plt.subplots(figsize=(9, 0.2 * y + 1.4))
    labelled = set()
    for group, top, ratios in placed:
        for k, (w, ratio) in enumerate(ratios):
            # from the 1x line to the ratio, to the right where the core is faster
            ax.barh(top + k, abs(ratio - 1.0), left=min(ratio, 1.0), height=0.8, color=colors[w],
                    label=None if w in labelled else NAMES[w])
            if ratio >= 1.0:
                ax.text(ratio * 1.08, top + k, f"{ratio:,.3g}x", va="center", fontsize=7)
            else:
                ax.text(ratio / 1.08, top + k, f"{ratio:,.2g}x", va="center", ha="right", fontsize=7)
            labelled.add(w)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks([top + (len(ratios) - 1) / 2 for _, top, ratios in placed])
    ax.set_yticklabels([textwrap.fill(group, 44) for group, _, _ in placed], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    low, high = ax.get_xlim()
    ax.set_xlim(low / 2, high * 4)              # room for the labels
    ax.set_xlabel("how many times faster the compiled core is than each peer "
                  "(memory: how many times smaller); log scale", fontsize=8)
    ax.legend(loc="lower right", fontsize=7, title="peer", title_fontsize=7)
    ax.set_title("Mini Autograd's compiled core against each peer (medians, one run)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"chart written to {path}")


def scaling_points(data):
    """{contender: [(flops per step, GFLOP/s)]} of the runs that recorded
    both (bench_scaling.py), sorted by size; and the GEMM peak's GFLOP/s (or
    None)."""
    points, peak = {}, None
    for bench in data["benchmarks"]:
        info = bench.get("extra_info", {})
        if "gflops" not in info:
            continue
        if bench["name"].startswith("test_gemm_peak"):
            peak = info["gflops"]
        elif "flops" in info:
            points.setdefault(who_of(bench), []).append((info["flops"], info["gflops"]))
    return {w: sorted(p) for w, p in points.items()}, peak


def scaling_chart(data, path):
    """GFLOP/s against the flops of one step (the model's size times the
    batch), a line per contender, with the GEMM peak as a dashed line."""
    points, peak = scaling_points(data)
    if not points:
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no scaling chart: matplotlib is not installed (pip install '.[plot]')")
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k, who in enumerate(w for w in ORDER if w in points):
        xs, ys = zip(*points[who])
        ax.plot(xs, ys, marker="o", color=f"C{k}", label=NAMES[who])
    if peak is not None:
        ax.axhline(peak, color="black", linestyle="--", linewidth=0.8,
                   label=f"float64 GEMM peak, 1 thread ({peak:.0f} GFLOP/s)")
    ax.set_xscale("log")
    ax.set_xlabel("flops per training step (6 x batch x weights)", fontsize=8)
    ax.set_ylabel("GFLOP/s", fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title("One SGD step of an MLP at MNIST widths (float64, one run)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"scaling chart written to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="report this pytest-benchmark JSON instead of running the suite")
    parser.add_argument("--chart", default=os.path.join(ROOT, "docs", "images", "benchmarks.png"),
                        help="where to write the bar chart (default docs/images/benchmarks.png)")
    parser.add_argument("--scaling-chart", default=os.path.join(ROOT, "docs", "images", "scaling.png"),
                        help="where to write the GFLOP/s chart (default docs/images/scaling.png)")
    parser.add_argument("--require-core", action="store_true",
                        help="fail if a workload has no compiled-core row (the core was not importable)")
    args = parser.parse_args(argv)
    path = args.json
    if path is None:
        path = os.path.join(tempfile.mkdtemp(), "benchmarks.json")
        run_suite(path)
    with open(path) as f:
        data = json.load(f)
    groups = collect(data)
    print(f"\nMachine: {machine()}\n")
    print(markdown(groups))
    chart(groups, args.chart)
    scaling_chart(data, args.scaling_chart)
    missing = missing_core_rows(groups)
    if args.require_core and (missing or not groups):
        sys.exit("no compiled-core row for: " + ("; ".join(missing) or "any workload")
                 + " (is the compiled core installed?)")


if __name__ == "__main__":
    main()
