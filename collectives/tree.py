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


def one_group(p):
    """Every rank 0..p-1 as one group of the steps below."""
    return np.arange(p)[None, :]


def _rounds(p):
    """(k, children, parents) of every round k of a binomial tree over p ranks."""
    for k in range((p - 1).bit_length()):
        child = np.arange(1 << k, p, 2 << k)
        yield k, child, child - (1 << k)


def reduce_steps(b, local):
    """Append the binomial reduce of each row of ``local`` (ranks, shape ``(groups, p)``, all rows at once)
    into the ``data`` of its first rank.

    Returns ``(wrote, sent)`` indexed by rank: the last op writing its ``data``
    (a reduce, which also read ``recv``) and its single upward send, which read ``data`` (-1: none).
    """
    wrote, sent = np.full(local.max() + 1, -1), np.full(local.max() + 1, -1)
    for _, child, parent in _rounds(local.shape[1]):
        c, up = local[:, child].ravel(), local[:, parent].ravel()
        sent[c] = b.xfer(c, up, WHOLE, "data", "recv", deps=[wrote[c], wrote[up]])
        wrote[up] = b.reduce(up, ("data", "recv"), "data", WHOLE, deps=[sent[c]])
    return wrote, sent


def broadcast_steps(b, local, wrote, sent, read=None):
    """Append the binomial broadcast of each row of ``local``'s first rank's ``data`` to the row; ``wrote``/``sent``
    as from :func:`reduce_steps`, ``read`` (by rank, -1: none) a last op reading a sender's ``data`` first."""
    wrote = wrote.copy()
    last_send = np.full(wrote.size, -1) if read is None else read.copy()
    for _, child, parent in reversed(list(_rounds(local.shape[1]))):
        c, up = local[:, child].ravel(), local[:, parent].ravel()
        x = b.xfer(up, c, WHOLE, "data", "data", deps=[wrote[up], sent[c], last_send[up]])
        wrote[c] = last_send[up] = x


def tree_allreduce(layout):
    """Allreduce of buffer ``data`` on every rank of ``layout`` by binomial reduce + broadcast."""
    p = layout.ranks
    b = ScheduleBuilder(layout, "allreduce", "tree", buffers=("data", "recv"))
    broadcast_steps(b, one_group(p), *reduce_steps(b, one_group(p)))
    for r in range(p):
        b.expect(r, "data", WHOLE)
    return b.build()


def tree_reduce(layout):
    """Reduce of every rank's ``data`` into rank 0's ``data`` by a binomial tree."""
    b = ScheduleBuilder(layout, "reduce", "tree", buffers=("data", "recv"))
    reduce_steps(b, one_group(layout.ranks))
    b.expect(0, "data", WHOLE)
    return b.build()


def tree_broadcast(layout):
    """Broadcast of rank 0's ``data`` to every rank's ``data`` by a binomial tree."""
    p = layout.ranks
    b = ScheduleBuilder(layout, "broadcast", "tree")
    broadcast_steps(b, one_group(p), np.full(p, -1), np.full(p, -1))
    for r in range(p):
        b.expect(r, "data", WHOLE, contributors=(0,))
    return b.build()
