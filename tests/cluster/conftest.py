"""``emulated_cluster``: a factory fixture building :class:`~.emulate.Cluster` objects, torn down afterwards.

Skips with the reason where namespaces cannot be built (not root, no ``tc``,
a container without the permission, no hydra ``mpiexec``). Teardown asserts
that nothing the clusters started is still running.
"""

import pytest

from .emulate import Cluster, why_not


@pytest.fixture
def emulated_cluster():
    reason = why_not()
    if reason:
        pytest.skip(f"no emulated cluster on this machine: {reason}")
    built = []

    def make(nodes=2, rate="1gbit", spine=None):
        cluster = Cluster(nodes, rate, spine)
        built.append(cluster)
        return cluster.up()

    yield make
    for cluster in built:
        cluster.down()
        assert cluster.alive() == [], "processes left behind"
