"""Rabenseifner allreduce: recursive-halving reduce-scatter, then recursive-doubling allgather.

Thakur-Rabenseifner-Gropp 2005, as in MPICH's ``MPIR_Allreduce_intra_reduce_scatter_allgather``.
On q = 2^k ranks, reduce-scatter step j (j = 0..k-1) pairs rank i with
i ^ 2^j: both hold the same range of the message, the lower rank keeps the
lower half and the other the upper half; each sends the half it gives up and
reduces the half it keeps. The allgather retraces the steps in reverse, each
rank sending the range it holds. Step 0 moves the largest half, between
neighbouring ranks (usually on one node), as MPICH orders it. Costs: ``2 lg p a + 2 (p-1)/p n b + (p-1)/p n g``.

For p not a power of two it runs on the q = 2^floor(lg p) core ranks of
MPICH's fold (see :mod:`collectives.recursive_doubling`), which adds one
``a + n b + n g`` before and one ``a + n b`` after:
``(2 floor(lg p) + 2) a + (2 (q-1)/q + 2) n b + (1 + (q-1)/q) n g``.

>>> from collectives.schedule import Layout
>>> s = rabenseifner_allreduce(Layout(nodes=1, gpus_per_node=4))
>>> s.num_ops, s.describe(0), s.describe(4)
(24, 'xfer n0/gpu0:data -> n0/gpu1:recv [2/4, 4/4)', 'reduce n0/gpu0:data,recv -> data [0/4, 2/4)')
"""

import numpy as np

from collectives.recursive_doubling import fold, fold_in, fold_out
from collectives.schedule import ScheduleBuilder


def rabenseifner_allreduce(layout):
    """Allreduce of buffer ``data`` on every rank of ``layout`` by reduce-scatter + allgather."""
    p = layout.ranks
    b = ScheduleBuilder(layout, "allreduce", "rabenseifner", buffers=("data", "recv"))
    core = fold(p)
    q = len(core)
    sent, reduced = fold_in(b, p)  # reduced: last reduce per rank (wrote data, read recv)
    i = np.arange(q)
    lo, hi = np.zeros(q, np.int64), np.full(q, q)  # each core rank's range, in q-ths of the message
    gave = []  # per step: op id of each core rank's reduce-scatter send, indexed by core rank
    steps = range(q.bit_length() - 1)
    for j in steps:
        mid = (lo + hi) // 2
        upper = (i >> j) & 1 == 1  # the rank with bit j set keeps the upper half
        keep_lo, keep_hi = np.where(upper, mid, lo), np.where(upper, hi, mid)
        partner = core[i ^ (1 << j)]
        x = b.xfer(core, partner, (np.where(upper, lo, mid), np.where(upper, mid, hi), q), "data", "recv",
                   deps=[reduced[core], reduced[partner]])
        # The send and the reduce at a rank touch disjoint halves of data, so the reduce waits only for x.
        reduced[core] = b.reduce(core, ("data", "recv"), "data", (keep_lo, keep_hi, q), deps=[x[i ^ (1 << j)]])
        gave.append(x)
        lo, hi = keep_lo, keep_hi
    wrote, last_sent = reduced[core], np.full(q, -1)  # per core rank: last write into / send from data
    for j in reversed(steps):
        other = i ^ (1 << j)
        # Partner i ^ 2^j gave away exactly this range in step j, so overwriting it waits for that send.
        x = b.xfer(core, core[other], (lo, hi, q), "data", "data", deps=[wrote, last_sent, gave[j][other]])
        wrote, last_sent = x[other], x
        lo, hi = np.minimum(lo, lo[other]), np.maximum(hi, hi[other])
    fold_out(b, p, sent, [wrote, last_sent])
    for r in range(p):
        b.expect(r, "data", (0, 1, 1))
    return b.build()
