"""The emulated cluster itself: distinct hosts, shaped links, bounded jobs, nothing left behind."""

import subprocess
import sys

import pytest

from .emulate import Cluster, reap_stale

PROBE = """
import numpy as np
from mpi4py import MPI
c = MPI.COMM_WORLD
local = c.Split_type(MPI.COMM_TYPE_SHARED)
n = 8 << 20
a, b = np.ones(n, np.uint8), np.empty(n, np.uint8)
peer = (c.rank + c.size // 2) % c.size
best = 0.0
for _ in range(3):
    c.Barrier()
    t = MPI.Wtime()
    if c.rank < peer:
        c.Send(a, dest=peer); c.Recv(b[:1], source=peer)
    else:
        c.Recv(b, source=peer); c.Send(a[:1], dest=peer)
    best = max(best, n / (MPI.Wtime() - t))
names = c.gather((MPI.Get_processor_name(), local.size))
if c.rank == 0:
    print(sorted(set(names)), best)
"""


def test_nodes_are_distinct_hosts_and_traffic_between_them_is_shaped(emulated_cluster):
    cluster = emulated_cluster(2, rate="400mbit")
    code, out, err = cluster.mpiexec([sys.executable, "-c", PROBE], ranks_per_node=2, timeout=60)
    assert code == 0, err
    names, best = out.strip().rsplit("] ", 1)
    assert names + "]" == str([(cluster.hostname(0), 2), (cluster.hostname(1), 2)])
    assert float(best) < 1.3 * 400e6 / 8  # through the 50 MB/s link, not shared memory (GB/s)


FAILING = """
from flyersim.sim.app import cli, mpibench
measure = mpibench._measure
def failing(comm, *args):
    if comm.rank == 1:
        raise RuntimeError("injected failure")
    return measure(comm, *args)
mpibench._measure = failing
cli.main(["mpi", "--algos", "ring", "--sizes", "64KiB", "--iters", "2", "--warmup", "0"])
print("finished normally")
"""


def test_a_rank_dying_on_one_node_ends_the_job_with_one_line_and_leaves_nothing(emulated_cluster):
    cluster = emulated_cluster(2)
    code, out, err = cluster.mpiexec([sys.executable, "-c", FAILING], timeout=60)
    assert code != 0
    assert [line for line in err.splitlines() if line.startswith("flyersim: error")] == \
        ["flyersim: error: rank 1: RuntimeError: injected failure"]
    assert "finished normally" not in out
    assert cluster.alive() == []


def test_a_job_over_its_time_limit_is_killed(emulated_cluster):
    cluster = emulated_cluster(2)
    with pytest.raises(TimeoutError):
        cluster.mpiexec([sys.executable, "-c", "import time; time.sleep(120)"], timeout=3)
    assert cluster.alive() == []


def test_spine_splits_the_nodes_over_two_bridges(emulated_cluster):
    cluster = emulated_cluster(4, spine="500mbit")
    done = subprocess.run(["ip", "-n", f"{cluster.tag}sw", "-o", "link", "show", "master", "br1"],
                          capture_output=True, text=True, timeout=10)
    assert sorted(line.split(":")[1].strip().split("@")[0] for line in done.stdout.splitlines()) == \
        ["sp1", "v2", "v3"]


def test_bad_rate_is_refused_before_anything_is_built():
    with pytest.raises(ValueError, match="rate must read like 1gbit"):
        Cluster(2, rate="fast")


def test_namespaces_of_a_killed_run_are_reaped_and_live_ones_kept(emulated_cluster):
    live = emulated_cluster(1)
    dead = Cluster(1, tag="fs999999").up()  # no process 999999: as if its owner was killed
    try:
        gone = reap_stale()
        assert sorted(gone) == ["fs999999n0", "fs999999sw"]
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
        assert live.ns(0) in listed and "fs999999" not in listed
    finally:
        dead.down()
