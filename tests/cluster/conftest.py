"""``emulated_cluster``: a factory fixture building :class:`~.emulate.Cluster` objects, torn down afterwards.

Skips with the reason where namespaces cannot be built (not root, no ``tc``,
a container without the permission, no hydra ``mpiexec``). Teardown asserts
that nothing the clusters started is still running; a SIGTERM (a CI timeout)
becomes a KeyboardInterrupt so that teardown still runs, and namespaces that a
killed run left behind are removed first.
"""

import signal

import pytest

from .emulate import Cluster, reap_stale, why_not


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture
def emulated_cluster():
    reason = why_not()
    if reason:
        pytest.skip(f"no emulated cluster on this machine: {reason}")
    reap_stale()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    built = []

    def make(nodes=2, rate="1gbit", spine=None):
        cluster = Cluster(nodes, rate, spine)
        built.append(cluster)
        return cluster.up()

    try:
        yield make
    finally:
        for cluster in built:
            cluster.down()
        signal.signal(signal.SIGTERM, previous)
    for cluster in built:
        assert cluster.alive() == [], "processes left behind"
