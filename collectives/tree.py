"""Binomial-tree allreduce: binomial reduce to rank 0, then binomial broadcast from it.

Each phase takes ceil(lg p) rounds of whole-message xfers, so with no
contention the time is ``2 ceil(lg p) (a + n b) + ceil(lg p) n g`` (MPICH's
binomial reduce plus binomial broadcast, Thakur-Rabenseifner-Gropp 2005).

>>> from collectives.schedule import Layout
>>> s = tree_allreduce(Layout(nodes=1, gpus_per_node=5))
>>> s.algo, s.num_ops, [s.describe(i) for i in (0, 2)]
('tree', 12, ['xfer n0/gpu1:data -> n0/gpu0:recv [0/1, 1/1)', 'reduce n0/gpu0:data,recv -> data [0/1, 1/1)'])
"""

import numpy as np

from collectives.schedule import ScheduleBuilder

WHOLE = (0, 1, 1)


def tree_allreduce(layout):
    """Allreduce of buffer ``data`` on every rank of ``layout`` by binomial reduce + broadcast."""
    p = layout.ranks
    b = ScheduleBuilder(layout, "allreduce", "tree", buffers=("data", "recv"))
    wrote = np.full(p, -1)  # last op writing each rank's data; in the reduce it also read recv
    sent = np.full(p, -1)   # each rank's single upward send, which read its data
    rounds = range((p - 1).bit_length())
    # Round k pairs rank r = m*2^(k+1) + 2^k with parent r - 2^k: in the reduce
    # every rank sends once, at its lowest set bit, after all its children.
    for k in rounds:
        child = np.arange(1 << k, p, 2 << k)
        parent = child - (1 << k)
        sent[child] = b.xfer(child, parent, WHOLE, "data", "recv", deps=[wrote[child], wrote[parent]])
        wrote[parent] = b.reduce(parent, ("data", "recv"), "data", WHOLE, deps=[sent[child]])
    # In the broadcast a parent's sends go one after another, as in MPICH's loop of blocking sends,
    # so a no-contention model takes ceil(lg p) rounds for any p, not just powers of two.
    last_send = np.full(p, -1)
    for k in reversed(rounds):
        child = np.arange(1 << k, p, 2 << k)
        parent = child - (1 << k)
        x = b.xfer(parent, child, WHOLE, "data", "data", deps=[wrote[parent], sent[child], last_send[parent]])
        wrote[child] = last_send[parent] = x
    for r in range(p):
        b.expect(r, "data", WHOLE)
    return b.build()
