"""benchmarks/report.py on a small pytest-benchmark JSON: the table's
numbers, the speed-ups the chart draws, and the check for a missing core."""
import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def report():
    path = os.path.join(HERE, "..", "benchmarks", "report.py")
    if not os.path.exists(path):
        pytest.skip("benchmarks/report.py is not in this copy (an installed sdist's tests)")
    spec = importlib.util.spec_from_file_location("report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench(group, name, param, median, **extra):
    return {"group": group, "name": f"test_{name}[{param}]", "param": param,
            "params": {"who": param}, "stats": {"median": median}, "extra_info": extra}


DATA = {"benchmarks": [
    bench("step", "step", "cython", 2e-6),
    bench("step", "step", "python", 2e-4),
    bench("step", "step", "numpy", 1e-6),
    bench("epoch", "epoch", "cython", 0.03, units=10, unit="epoch"),
    bench("epoch", "epoch", "torch", 0.06, units=10, unit="epoch"),
    bench("memory", "memory", "cython", 1.0, bytes_per_node=34.0),
    bench("memory", "memory", "micrograd", 1.0, bytes_per_node=680.0),
    bench("pure only", "other", "python", 1.0),
]}


def test_the_table_gives_times_per_unit_and_the_cores_speed_ups(report):
    groups = report.collect(DATA)
    table = report.markdown(groups)
    assert "| step | 2 us/round | 200 us/round |" in table
    assert "| epoch | 3 ms/epoch |" in table and "6 ms/epoch" in table
    assert "| memory | 34.0 B |" in table and "680.0 B" in table
    assert "100.0x" in table and "2.0x" in table and "20.0x" in table


def test_the_chart_draws_each_peer_against_the_core(report, tmp_path):
    groups = report.collect(DATA)
    expected = [("step", [("python", 2e-4 / 2e-6), ("numpy", 0.5)]),
                ("epoch", [("torch", 2.0)]),
                ("memory", [("micrograd", 20.0)])]
    assert report.speedups(groups) == expected
    pytest.importorskip("matplotlib", reason="the chart needs matplotlib (pip install '.[plot]')")
    path = tmp_path / "chart.png"
    report.chart(groups, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_workload_without_a_core_row_is_named(report):
    assert report.missing_core_rows(report.collect(DATA)) == ["pure only"]


SCALING = {"benchmarks": [
    bench("small", "scaling_step", "cython", 1e-3, flops=2e6, gflops=2.0),
    bench("small", "scaling_step", "numpy", 5e-4, flops=2e6, gflops=4.0),
    bench("large", "scaling_step", "cython", 0.1, flops=1e9, gflops=10.0),
    bench("large", "scaling_step", "cython-2-threads", 0.05, flops=1e9, gflops=20.0),
    bench("peak", "gemm_peak", "", 0.01, gflops=80.0),
    bench("step", "step", "cython", 2e-6),
]}


def test_the_scaling_chart_draws_gflops_against_size_per_contender(report, tmp_path):
    points, peak = report.scaling_points(SCALING)
    assert points == {"cython": [(2e6, 2.0), (1e9, 10.0)], "numpy": [(2e6, 4.0)],
                      "cython-2-threads": [(1e9, 20.0)]}
    assert peak == 80.0
    # our own second thread is a column of the table, not a peer of the speed-up chart
    groups = report.collect(SCALING)
    assert report.speedups(groups) == [("small", [("numpy", 0.5)])]
    assert "compiled core, 2 threads" in report.markdown(groups)
    pytest.importorskip("matplotlib", reason="the chart needs matplotlib (pip install '.[plot]')")
    path = tmp_path / "scaling.png"
    report.scaling_chart(SCALING, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
