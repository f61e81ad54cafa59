"""Every experiment script in --quick mode: CSV with the documented columns, plausible values, a figure.

Scripts run in-process through their ``main(argv)`` (one import of numba code for all) into tmp dirs.
"""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flyersim.experiments import (bottlenecks, crossover, fireflyer_allreduce, node_design, scaling, sweep, uncertainty,
                                  validation)

ROOT = Path(__file__).resolve().parents[1]


def run(module, tmp_path, *extra):
    out = tmp_path / module.NAME
    assert module.main(["--quick", "--out", str(out), *extra]) == 0
    path = out / f"{module.NAME}.csv"
    header = path.read_text().splitlines()[0].split(",")
    assert header == module.COLUMNS
    assert (out / f"{module.NAME}.png").stat().st_size > 5000
    return sweep.read_csv(path)


def check_records(rows):
    """busbw positive, algbw x 2(n-1)/n, never above the capacity of the run's bottleneck resource."""
    for r in rows:
        assert r["time_s"] > 0 and r["busbw_GBps"] > 0
        assert r["busbw_GBps"] == pytest.approx(r["algbw_GBps"] * 2 * (r["gpus"] - 1) / r["gpus"], rel=1e-6)
        assert r["algbw_GBps"] == pytest.approx(r["bytes"] / r["time_s"] / 1e9, rel=1e-6)
        assert 0 < r["bottleneck_util"] <= 1 + 1e-9
        assert r["bottleneck"]


def test_fireflyer_allreduce(tmp_path):
    rows = run(fireflyer_allreduce, tmp_path)
    check_records(rows)
    series = {r["series"] for r in rows}
    assert series == {"HFReduce", "NCCL", "HFReduce+NVLink (1 zone)", "HFReduce+NVLink (2 zones)"}
    assert {r["zones"] for r in rows if r["series"].endswith("(2 zones)")} == {2}
    assert {r["requested_algo"] for r in rows} == {"hfreduce", "nccl", "hfreduce-nvlink"}
    assert {r["gpus"] for r in rows} == set(fireflyer_allreduce.QUICK["gpus"])


def test_uncertainty_tornado_and_bands(tmp_path):
    rows = run(uncertainty, tmp_path)
    check_records(rows)
    span = uncertainty.ranges("fireflyer2")
    tuned = {f"hfreduce.{k}" for k in uncertainty.algorithm_ranges("hfreduce")}
    assert {r["parameter"] for r in rows if r["kind"] == "low"} == set(span) | tuned
    assert sum(r["kind"] == "sample" for r in rows) == uncertainty.QUICK["samples"] * 2  # hfreduce and nccl
    summary = uncertainty.summarise(rows)
    assert {k[1] for k in summary} == {"hfreduce", "nccl"}
    for entry in summary.values():
        lo, med, hi = entry["band"]
        assert lo <= med <= hi


def test_crossover_marks_one_best_per_size(tmp_path):
    rows = run(crossover, tmp_path, "--algos", "ring,nccl-tree,hfreduce")
    check_records(rows)
    for size in {r["bytes"] for r in rows}:
        at = [r for r in rows if r["bytes"] == size]
        (best,) = [r for r in at if r["best"]]
        assert best["busbw_GBps"] == max(r["busbw_GBps"] for r in at)
    assert crossover.crossovers(rows)[0][0] == min(r["bytes"] for r in rows)


def test_sweep_docstring_examples():
    import doctest

    for module in (sweep, uncertainty):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_run_points_shows_progress(capsys):
    pts = [sweep.point("ring", 8, ["ring"], [1024], series=k) for k in range(3)]
    rows = sweep.run_points(pts, progress=True, desc="demo")
    assert [r["series"] for r in rows] == [0, 1, 2]
    assert "demo: 100%" in capsys.readouterr().err


def test_crossover_lists_changes_only():
    rows = [{"bytes": b, "requested_algo": a, "best": True} for b, a in ((1, "x"), (2, "x"), (4, "y"), (8, "x"))]
    assert crossover.crossovers(rows) == [(1, "x"), (4, "y"), (8, "x")]


def test_scaling_reports_wall_time(tmp_path):
    rows = run(scaling, tmp_path, "--algos", "ring,hfreduce", "--max-gpus", "ring=16")
    check_records(rows)
    assert [(r["gpus"], r["requested_algo"]) for r in rows] == [(16, "ring"), (16, "hfreduce"), (32, "hfreduce")]
    assert all(r["wall_s"] > 0 for r in rows)


def test_bottlenecks_one_bottleneck_class_per_algorithm(tmp_path):
    rows = run(bottlenecks, tmp_path, "--algos", "ring,hfreduce,nccl")
    for algo in ("ring", "hfreduce", "nccl"):
        mine = [r for r in rows if r["requested_algo"] == algo]
        assert len({r["resource_class"] for r in mine}) == len(mine) > 3
        (neck,) = [r for r in mine if r["is_bottleneck"]]
        assert neck["peak_util"] == max(r["peak_util"] for r in mine) and neck["busiest"] == neck["bottleneck"]
        assert all(0 <= r["mean_util"] <= r["peak_util"] <= 1 + 1e-9 for r in mine)
    assert "ib nic-leaf" in {r["resource_class"] for r in rows}


def test_node_design_every_knob_and_variant(tmp_path):
    rows = run(node_design, tmp_path)
    check_records(rows)
    want = {(k, v) for k, variants in node_design.VARIANTS.items() for v, *_ in variants}
    assert {(r["knob"], r["variant"]) for r in rows} == want
    busbw = {(r["knob"], r["variant"], r["requested_algo"]): r["busbw_GBps"] for r in rows}
    # more DRAM bandwidth never slows HFReduce, whose data all passes through host memory
    assert busbw["DRAM per socket", "66 GB/s", "hfreduce"] < busbw["DRAM per socket", "266 GB/s", "hfreduce"]
    assert ("NVLink bridges", "on", "hfreduce-nvlink") in busbw and ("NVLink bridges", "off*", "hfreduce-nvlink") \
        not in busbw


def test_node_design_variant_files_have_the_nics_they_claim():
    from flyersim import topologies

    for name, nics in (("fireflyer2-2nic", 2), ("fireflyer2-8nic", 8), ("fireflyer2-own-rootports", 1)):
        g = topologies.load(str(ROOT / "experiments" / "variants" / f"{name}.toml"), gpus=8)
        assert sum(1 for _, a in g.nodes(data=True) if a["kind"] == "nic") == nics


def test_jobs_2_gives_the_same_csv(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["--quick", "--no-plot", "--algos", "ring,nccl-ring,hfreduce"]
    assert crossover.main([*args, "--out", str(one)]) == 0
    assert crossover.main([*args, "--out", str(two), "--jobs", "2"]) == 0
    assert (one / "crossover.csv").read_bytes() == (two / "crossover.csv").read_bytes()


VALIDATE_JSON = {"rows": [
    {"algo": "ring", "bytes": 65536, "measured_us": 100.0, "measured_p25_us": 95.0, "measured_p75_us": 105.0,
     "measured_iqr_pct": 10.0, "measured_min_us": 90.0, "measured_max_us": 120.0, "predicted_us": 80.0,
     "log_error": math.log(0.8), "error_pct": -25.0, "schedule": "ring", "model": "flow", "calibrated_at": 32768,
     "host_memory": "shared window"},
    {"algo": "ring", "bytes": 1048576, "measured_us": 400.0, "measured_p25_us": 395.0, "measured_p75_us": 410.0,
     "measured_iqr_pct": 3.75, "measured_min_us": 390.0, "measured_max_us": 450.0, "predicted_us": 500.0,
     "log_error": math.log(1.25), "error_pct": 25.0, "schedule": "ring", "model": "flow", "calibrated_at": 524288,
     "host_memory": "shared window"},
    {"algo": "mpi", "bytes": 65536, "measured_us": 50.0, "measured_p25_us": 48.0, "measured_p75_us": 52.0,
     "measured_iqr_pct": 8.0, "measured_min_us": 45.0, "measured_max_us": 60.0, "predicted_us": 40.0,
     "log_error": math.log(0.8), "error_pct": -25.0, "schedule": "rabenseifner", "model": "flow",
     "calibrated_at": 32768, "host_memory": ""}], "geomean_error": {"ring": 0.25, "mpi": 0.25},
    "bias": {"ring": 0.0, "mpi": -0.2}, "too_noisy": {}, "notes": []}


def test_validation_reads_validate_json(tmp_path):
    src = tmp_path / "v.json"
    src.write_text(json.dumps(VALIDATE_JSON))
    out = tmp_path / "out"
    assert validation.main(["--input", str(src), "--out", str(out)]) == 0
    rows = sweep.read_csv(out / "validation.csv")
    assert [(r["algo"], r["bytes"], r["error_pct"], r["measured_iqr_pct"]) for r in rows] == \
        [("ring", 65536, -25.0, 10.0), ("ring", 1048576, 25.0, 3.75), ("mpi", 65536, -25.0, 8.0)]
    assert (out / "validation.png").stat().st_size > 5000


@pytest.mark.skipif(shutil.which("mpiexec", path=str(Path(sys.executable).parent)) is None, reason="no mpiexec")
def test_validation_quick_runs_validate_under_mpiexec(tmp_path):
    rows = run(validation, tmp_path)
    assert {r["algo"] for r in rows} == {"ring", "hfreduce"}
    for r in rows:
        assert r["measured_min_us"] <= r["measured_us"] <= r["measured_max_us"] and r["predicted_us"] > 0
        x = math.log(r["predicted_us"] / r["measured_us"])
        assert r["error_pct"] == pytest.approx(math.copysign(100 * math.expm1(abs(x)), x), rel=1e-6)
    assert json.loads((tmp_path / "validation" / "validate.json").read_text())["rows"]


@pytest.mark.parametrize("module, args, message", [
    (scaling, ["--gpus", "12"], "gpus=12 is not a multiple of the 8 GPUs"),
    (scaling, ["--algos", "nosuch"], "unknown allreduce algorithm 'nosuch'"),
    (scaling, ["--max-gpus", "ring"], "expected ALGO=GPUS"),
    (crossover, ["--preset", "nosuch"], "unknown preset 'nosuch'"),
    (crossover, ["--factor", "1"], "factor"),
    (fireflyer_allreduce, ["--size", "12Qb"], "argument --size"),
    (fireflyer_allreduce, ["--gpus", "16,x"], "argument --gpus"),
    (node_design, ["--jobs", "0"], "argument --jobs: expected a positive integer"),
    (bottlenecks, ["--set", "parameters.nosuch=1GB/s"], "no such parameter"),
    (validation, ["--input", "/nonexistent.json"], "No such file"),
])
def test_bad_arguments_end_in_one_line(tmp_path, capsys, module, args, message):
    try:
        code = module.main(["--out", str(tmp_path), "--no-plot", *args])
    except SystemExit as stop:  # argparse
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert err.startswith(f"{module.NAME}.py: error: ")


def test_script_runs_from_the_command_line(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "scaling.py"), "--gpus", "12"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == \
        "scaling.py: error: gpus=12 is not a multiple of the 8 GPUs per server of fireflyer2\n"


@pytest.mark.skipif(shutil.which("mpiexec", path=str(Path(sys.executable).parent)) is None, reason="no mpiexec")
def test_mpi4py_futures_gives_the_same_csv(tmp_path):
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    args = ["--quick", "--no-plot", "--algos", "ring,hfreduce"]
    done = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "mpi4py.futures",
                           str(ROOT / "experiments" / "crossover.py"), *args, "--out", str(tmp_path / "mpi")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert crossover.main([*args, "--out", str(tmp_path / "serial")]) == 0
    assert (tmp_path / "mpi" / "crossover.csv").read_bytes() == (tmp_path / "serial" / "crossover.csv").read_bytes()
