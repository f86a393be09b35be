"""Compare two installed builds of the core on the guard workloads, in one run.

    python benchmarks/compare_builds.py OLD_PYTHON NEW_PYTHON [--rounds 5]

OLD_PYTHON and NEW_PYTHON are interpreters of two environments with the
package installed (say, the last release and a change).  Each workload runs
in a fresh subprocess of each interpreter, alternating old, new, old, new,
from a temporary directory (so the installed package is measured, never the
source tree).  Prints the median of each and the new/old ratio; on a shared
machine only ratios from one run mean anything.

Workloads: `a*b` (create and free one node), a replayed backward over a
10^6-node chain, one step of micrograd's demo code (MLP(2, [16, 16, 1]),
100 moons) and the same model's forward on plain Python floats (the
interpreter's floor), whose ratio shows what the engine adds.
"""
import argparse
import statistics
import subprocess
import sys
import tempfile

HERE = __import__("os").path.dirname(__import__("os").path.abspath(__file__))

SETUP = f"""
import sys, time, random, gc
sys.path.insert(0, {HERE!r})
import autograd.core as core
assert core.__file__, "the compiled core"
"""

WORKLOADS = {
    "a*b (ns/op)": SETUP + """
a, b = core.Value(2.0), core.Value(3.0)
best = []
for _ in range(7):
    t = time.perf_counter()
    for _ in range(100_000):
        a * b
    best.append((time.perf_counter() - t) / 100_000 * 1e9)
print(sorted(best)[3])
""",
    "10^6 chain backward, replayed (ns/node)": SETUP + """
x = core.Value(0.5)
y = x
for _ in range(10 ** 6):
    y = y.relu()
y.backward()
times = []
for _ in range(9):
    t = time.perf_counter()
    y.backward()
    times.append((time.perf_counter() - t) / 10 ** 6 * 1e9)
print(sorted(times)[4])
""",
    "micrograd demo code step (ms)": SETUP + """
from bench_training import micrograd_model, demo_step
model = micrograd_model(core.Value)
demo_step("cython", core.Value, model)
times = []
for _ in range(15):
    t = time.perf_counter()
    demo_step("cython", core.Value, model)
    times.append((time.perf_counter() - t) * 1e3)
print(sorted(times)[7])
""",
    "same model on plain floats, forward (ms)": SETUP + """
from bench_training import X, Y
random.seed(1337)
sizes = [2, 16, 16, 1]
layers = [[([random.uniform(-1, 1) for _ in range(sizes[i])], 0.0) for _ in range(sizes[i + 1])]
          for i in range(3)]

def step():
    losses = []
    for xrow, yi in zip(X, Y):
        x = list(xrow)
        for k, layer in enumerate(layers):
            out = []
            for w, b in layer:
                act = sum((wi * xi for wi, xi in zip(w, x)), b)
                out.append(max(act, 0.0) if k < 2 else act)
            x = out
        losses.append(max(1 + -yi * x[0], 0.0))
    return sum(losses) / len(losses)

step()
times = []
for _ in range(15):
    t = time.perf_counter()
    step()
    times.append((time.perf_counter() - t) * 1e3)
print(sorted(times)[7])
""",
}


def measure(python, code):
    with tempfile.TemporaryDirectory() as where:
        out = subprocess.run([python, "-c", code], cwd=where, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=5, help="subprocesses per build and workload")
    args = parser.parse_args(argv)
    results = {}
    for name, code in WORKLOADS.items():
        old, new = [], []
        for _ in range(args.rounds):
            old.append(measure(args.old, code))
            new.append(measure(args.new, code))
        results[name] = (statistics.median(old), statistics.median(new))
    print(f"| workload | old | new | new/old |\n|---|---|---|---|")
    for name, (old, new) in results.items():
        print(f"| {name} | {old:.3g} | {new:.3g} | {new / old:.2f} |")
    demo, floor = results["micrograd demo code step (ms)"], results["same model on plain floats, forward (ms)"]
    print(f"\ndemo step / plain-float floor: old {demo[0] / floor[0]:.2f}x, new {demo[1] / floor[1]:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
