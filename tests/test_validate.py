"""flyersim validate: rows, errors and geometric means recomputed independently.

Validation needs two ranks: under plain pytest the row test runs
``mpiexec -n 2 flyersim validate`` as a subprocess; under ``mpiexec -n 2`` (CI)
it runs in this job.
"""

import json
import math
import os
import subprocess
import sys

import pytest
from mpi4py import MPI

from flyersim.sim.app import cli

COMM = MPI.COMM_WORLD
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
ARGS = ["validate", "--algos", "ring,mpi", "--sizes", "64KiB,256KiB", "--iters", "3", "--warmup", "1",
        "--repeats", "3", "--format", "json", "--tolerance", "1e9"]  # any spread passes: the figures are computed


def _validate_json(capsys):
    """validate's JSON output on rank 0 (None on other ranks)."""
    if COMM.size == 1:
        done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "flyersim", *ARGS],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)
    assert cli.main(ARGS) == 0
    out = capsys.readouterr().out
    return json.loads(out) if COMM.rank == 0 else None


def test_rows_errors_and_geomean_follow_from_measured_and_predicted(capsys):
    report = _validate_json(capsys)
    if report is None:
        return
    rows = report["rows"]
    assert [(r["algo"], r["bytes"]) for r in rows] == [("ring", 65536), ("ring", 262144),
                                                        ("mpi", 65536), ("mpi", 262144)]
    for r in rows:
        assert r["measured_us"] > 0 and r["predicted_us"] > 0
        assert r["measured_min_us"] <= r["measured_p25_us"] <= r["measured_us"] <= r["measured_p75_us"] \
            <= r["measured_max_us"]
        assert r["measured_iqr_pct"] == pytest.approx(
            100 * (r["measured_p75_us"] - r["measured_p25_us"]) / r["measured_us"])
        assert r["measured_spread_pct"] == max(r["measured_iqr_pct"], r["measured_blocks_pct"])
        assert r["predicted_fast_us"] <= r["predicted_us"] * (1 + 1e-9) <= r["predicted_slow_us"] * (1 + 2e-9)
        x = math.log(r["predicted_us"] / r["measured_us"])
        assert r["log_error"] == pytest.approx(x)
        assert r["error_pct"] == pytest.approx(math.copysign(100 * (math.exp(abs(x)) - 1), x))
        assert r["calibrated_at"] == r["bytes"] // max(COMM.size, 2)  # calibrated at the ring's chunk
    assert [r["schedule"] for r in rows] == ["ring", "ring", "rabenseifner", "rabenseifner"]  # MPICH's choice
    for algo in ("ring", "mpi"):
        logs = [r["log_error"] for r in rows if r["algo"] == algo]
        assert report["geomean_error"][algo] == pytest.approx(math.exp(sum(map(abs, logs)) / len(logs)) - 1)
        assert report["bias"][algo] == pytest.approx(math.exp(sum(logs) / len(logs)) - 1)
    assert report["too_noisy"] == {}
    assert set(report["calibrations"]) == {"65536", "262144"}
    assert report["calibrations"]["65536"]["link_bandwidth"][0] > 0


def test_too_noisy_rows_replace_the_figure_by_the_reason():
    from flyersim.sim.app.validate import render, summarise

    rows = [{"algo": "ring", "bytes": 1024, "measured_us": 10.0, "measured_spread_pct": 4.0, "predicted_us": 9.0,
             "log_error": math.log(0.9), "error_pct": -11.1, "noisy": False},
            {"algo": "ring", "bytes": 4096, "measured_us": 30.0, "measured_spread_pct": 25.0, "predicted_us": 30.0,
             "log_error": 0.0, "error_pct": 0.0, "noisy": True}]
    report = summarise(rows, ("ring",), 0.10)
    assert report["geomean_error"] == {"ring": None}
    text = render(report, "table", "t")
    assert "geometric-mean error" not in text
    assert "ring: too noisy to validate: spread 25.0 % at 4096 B exceeds the 10 % asked for" in text
    assert summarise(rows, ("ring",), 0.30)["geomean_error"]["ring"] == pytest.approx(math.exp(-math.log(0.9) / 2) - 1)


def _one_line_error(capsys, argv):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert stop.value.code == 2
    return errors


@pytest.mark.skipif(COMM.size > 1, reason="the one-rank refusal")
def test_one_rank_is_refused_in_one_line(capsys):
    assert _one_line_error(capsys, ["validate", "--algos", "ring"]) == [
        "flyersim: error: validate needs at least 2 MPI ranks: one rank's allreduce moves nothing "
        "(start with mpiexec -n N)"]


@pytest.mark.skipif(COMM.size < 2, reason="one rank is refused before the topology is read")
def test_topology_of_another_size_is_one_line_from_rank_zero(capsys):
    errors = _one_line_error(capsys, ["validate", "--topology", "single-switch", "--algos", "ring"])
    assert errors == ([f"flyersim: error: single-switch has 4 x 4 GPUs but the job runs {COMM.size} MPI ranks"]
                      if COMM.rank == 0 else [])
