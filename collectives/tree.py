"""Binomial trees rooted at rank 0: reduce, broadcast, and allreduce as reduce + broadcast.

Round k pairs rank r = m*2^(k+1) + 2^k with parent r - 2^k. The reduce runs
rounds k = 0, 1, .. (every rank sends once, at its lowest set bit, after all
its children); the broadcast runs them in reverse, a parent's sends one after
another as in MPICH's loop of blocking sends. Each phase takes ceil(lg p)
rounds of whole-message xfers for any p, so with no contention (Thakur,
Rabenseifner, Gropp 2005; :mod:`collectives.costs`):

- reduce: ``ceil(lg p) (a + n b + n g)``
- broadcast: ``ceil(lg p) (a + n b)``
- allreduce: ``2 ceil(lg p) (a + n b) + ceil(lg p) n g``

>>> from flyersim.collectives.schedule import Layout
>>> s = tree_allreduce(Layout(nodes=1, gpus_per_node=5))
>>> s.algo, s.num_ops, [s.describe(i) for i in (0, 2)]
('tree', 12, ['xfer n0/gpu1:data -> n0/gpu0:recv [0/1, 1/1)', 'reduce n0/gpu0:data,recv -> data [0/1, 1/1)'])
>>> tree_broadcast(Layout(1, 5)).num_ops, tree_reduce(Layout(1, 5)).expect
(4, (Expect(loc=0, buf='data', span=(0, 1, 1), contributors=None),))
"""

import numpy as np

from flyersim.collectives.schedule import ScheduleBuilder

WHOLE = (0, 1, 1)


def _rounds(p):
    """(k, children, parents) of every round k of a binomial tree over p ranks."""
    for k in range((p - 1).bit_length()):
        child = np.arange(1 << k, p, 2 << k)
        yield k, child, child - (1 << k)


def _reduce_steps(b, p):
    """Append the binomial reduce into rank 0's ``data``.

    Returns ``(wrote, sent)`` indexed by rank: the last op writing its ``data``
    (a reduce, which also read ``recv``) and its single upward send, which read ``data`` (-1: none).
    """
    wrote, sent = np.full(p, -1), np.full(p, -1)
    for _, child, parent in _rounds(p):
        sent[child] = b.xfer(child, parent, WHOLE, "data", "recv", deps=[wrote[child], wrote[parent]])
        wrote[parent] = b.reduce(parent, ("data", "recv"), "data", WHOLE, deps=[sent[child]])
    return wrote, sent


def _broadcast_steps(b, p, wrote, sent):
    """Append the binomial broadcast of rank 0's ``data``; ``wrote``/``sent`` as from :func:`_reduce_steps`."""
    wrote = wrote.copy()
    last_send = np.full(p, -1)
    for _, child, parent in reversed(list(_rounds(p))):
        x = b.xfer(parent, child, WHOLE, "data", "data", deps=[wrote[parent], sent[child], last_send[parent]])
        wrote[child] = last_send[parent] = x


def tree_allreduce(layout):
    """Allreduce of buffer ``data`` on every rank of ``layout`` by binomial reduce + broadcast."""
    p = layout.ranks
    b = ScheduleBuilder(layout, "allreduce", "tree", buffers=("data", "recv"))
    _broadcast_steps(b, p, *_reduce_steps(b, p))
    for r in range(p):
        b.expect(r, "data", WHOLE)
    return b.build()


def tree_reduce(layout):
    """Reduce of every rank's ``data`` into rank 0's ``data`` by a binomial tree."""
    b = ScheduleBuilder(layout, "reduce", "tree", buffers=("data", "recv"))
    _reduce_steps(b, layout.ranks)
    b.expect(0, "data", WHOLE)
    return b.build()


def tree_broadcast(layout):
    """Broadcast of rank 0's ``data`` to every rank's ``data`` by a binomial tree."""
    p = layout.ranks
    b = ScheduleBuilder(layout, "broadcast", "tree")
    _broadcast_steps(b, p, np.full(p, -1), np.full(p, -1))
    for r in range(p):
        b.expect(r, "data", WHOLE, contributors=(0,))
    return b.build()
