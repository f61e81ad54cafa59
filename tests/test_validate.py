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
        "--repeats", "3", "--format", "json"]


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
    ring = [r for r in rows if r["algo"] == "ring"]
    for r in ring:
        assert r["measured_us"] > 0 and r["predicted_us"] > 0 and r["schedule"] == "ring"
        assert r["measured_min_us"] <= r["measured_us"] <= r["measured_max_us"]
        assert r["error_pct"] == pytest.approx((r["predicted_us"] / r["measured_us"] - 1) * 100)
        assert r["calibrated_at"] == r["bytes"] // max(COMM.size, 2)  # calibrated at the ring's chunk
    logs = [abs(math.log(r["predicted_us"] / r["measured_us"])) for r in ring]
    assert report["geomean_error"]["ring"] == pytest.approx(math.exp(sum(logs) / len(logs)) - 1)
    assert [r["predicted_us"] for r in rows if r["algo"] == "mpi"] == [None, None]
    assert set(report["geomean_error"]) == {"ring"}
    assert report["notes"] == ["mpi: the MPI library's own Allreduce has no schedule to simulate (measured only)"]


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
