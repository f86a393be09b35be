"""Run the benchmark suite once and report it: a markdown table of medians
and ratios, and a bar chart (log scale) in images/benchmarks.png.

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
ORDER = ["cython", "python", "micrograd", "torch", "numpy", "jax", "fused_c"]
NAMES = {"cython": "compiled core", "python": "pure reference", "micrograd": "micrograd 0.1.0",
         "torch": "PyTorch", "numpy": "numpy, by hand", "jax": "JAX jit", "fused_c": "C, fused by hand"}


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


def chart(groups, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no chart: matplotlib is not installed (pip install '.[plot]')")
        return
    timed = {g: row for g, row in groups.items() if all(u != "bytes" for _, u in row.values())}
    colors = {w: f"C{k}" for k, w in enumerate(ORDER)}
    # each workload gets only the bars it has, one under another, then a gap
    rows, y = [], 0.0
    for g, row in timed.items():
        bars = [w for w in ORDER if w in row]
        rows.append((g, y, bars))
        y += len(bars) + 1.0
    fig, ax = plt.subplots(figsize=(10, 0.22 * y + 1.2))
    labelled = set()
    for g, top, bars in rows:
        for k, w in enumerate(bars):
            ax.barh(top + k, timed[g][w][0], height=0.85, color=colors[w],
                    label=None if w in labelled else NAMES[w])
            labelled.add(w)
    ax.set_yticks([top + (len(bars) - 1) / 2 for _, top, bars in rows])
    ax.set_yticklabels([textwrap.fill(g, 46) + f"\n(per {next(iter(timed[g].values()))[1]})"
                        for g, _, _ in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("seconds per unit (log scale; shorter is faster)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Mini Autograd benchmarks (medians, one run)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"chart written to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="report this pytest-benchmark JSON instead of running the suite")
    parser.add_argument("--chart", default=os.path.join(ROOT, "images", "benchmarks.png"),
                        help="where to write the bar chart (default images/benchmarks.png)")
    parser.add_argument("--require-core", action="store_true",
                        help="fail if a workload has no compiled-core row (the core was not importable)")
    args = parser.parse_args(argv)
    path = args.json
    if path is None:
        path = os.path.join(tempfile.mkdtemp(), "benchmarks.json")
        run_suite(path)
    with open(path) as f:
        groups = collect(json.load(f))
    print(f"\nMachine: {machine()}\n")
    print(markdown(groups))
    chart(groups, args.chart)
    missing = missing_core_rows(groups)
    if args.require_core and (missing or not groups):
        sys.exit("no compiled-core row for: " + ("; ".join(missing) or "any workload")
                 + " (is the compiled core installed?)")


if __name__ == "__main__":
    main()
