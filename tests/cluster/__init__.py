"""An emulated MPI cluster on one machine, for tests and for users without a cluster.

``python -m tests.cluster run --nodes 2 --ppn 2 --rate 1gbit -- flyersim calibrate --out c.toml``
builds the nodes (:mod:`.emulate`), runs one MPI job across them and tears
everything down; ``up`` / ``down`` build and remove nodes by hand (to look at
them with ``ip netns exec``; ``run`` always builds its own).
The pytest fixture ``emulated_cluster`` is in ``conftest.py``.
"""

from .emulate import Cluster, why_not

__all__ = ["Cluster", "why_not"]
