"""A rank that raises takes the whole ``flyersim mpi`` job down with one clear message, no hang.

Runs ``mpiexec -n 2`` as a subprocess (so under plain pytest only) in which
rank 1 raises inside the benchmark while rank 0 waits at the next collective.
"""

import os
import subprocess
import sys

import pytest
from mpi4py import MPI

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
SCRIPT = """
from mpi4py import MPI
from flyersim.sim.app import cli, mpibench
measure = mpibench._measure
def failing(comm, *args):
    if comm.rank == 1:
        raise RuntimeError("injected failure")
    return measure(comm, *args)
mpibench._measure = failing
cli.main(["mpi", "--algos", "ring", "--sizes", "4KiB", "--iters", "2", "--warmup", "0"])
print("rank", MPI.COMM_WORLD.rank, "finished normally")
"""


@pytest.mark.skipif(MPI.COMM_WORLD.size > 1, reason="starts its own mpiexec job")
def test_a_failing_rank_aborts_every_rank_with_one_message():
    done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", SCRIPT],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("flyersim: error")]
    assert errors == ["flyersim: error: rank 1: RuntimeError: injected failure"]
    assert "finished normally" not in done.stdout
