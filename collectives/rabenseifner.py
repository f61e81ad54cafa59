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

The two halves are also collectives of their own, for p = 2^k (MPICH's
``MPIR_Reduce_scatter_intra_recursive_halving`` and
``MPIR_Allgather_intra_recursive_doubling``):

- :func:`rh_reduce_scatter` pairs ranks at distance p/2 first, so rank r
  ends with piece r of p: ``lg p a + (p-1)/p n (b + g)``;
- :func:`rd_allgather` pairs ranks at distance 1 first, each step doubling
  the contiguous range a rank holds: ``lg p a + (p-1)/p n b``.

>>> from flyersim.collectives.schedule import Layout
>>> s = rabenseifner_allreduce(Layout(nodes=1, gpus_per_node=4))
>>> s.num_ops, s.describe(0), s.describe(4)
(24, 'xfer n0/gpu0:data -> n0/gpu1:recv [2/4, 4/4)', 'reduce n0/gpu0:data,recv -> data [0/4, 2/4)')
>>> rh_reduce_scatter(Layout(1, 4)).describe(0), rd_allgather(Layout(1, 4)).num_ops
('xfer n0/gpu0:data -> n0/gpu2:recv [2/4, 4/4)', 8)
>>> rd_allgather(Layout(1, 6))
Traceback (most recent call last):
ValueError: rd allgather needs a power-of-two rank count, got 6
"""

import numpy as np

from flyersim.collectives.recursive_doubling import folded
from flyersim.collectives.schedule import ScheduleBuilder


def halving(b, core, bits, ready):
    """Recursive-halving reduce-scatter in ``data`` (receiving into ``recv``) among ranks ``core`` (q = 2^k).

    Step j pairs core ranks i and i ^ 2^bits[j]; ``ready`` (op ids by core
    rank, -1: none) orders each rank's first touch of ``data``. Returns
    ``(lo, hi, reduced, gave)``: each core rank's final range in q-ths, the op
    that completed it, and per step the op id of each core rank's send.
    """
    q = len(core)
    i = np.arange(q)
    lo, hi = np.zeros(q, np.int64), np.full(q, q)
    reduced, gave = ready, []
    for bit in bits:
        mid = (lo + hi) // 2
        upper = (i >> bit) & 1 == 1  # the rank with this bit set keeps the upper half
        keep_lo, keep_hi = np.where(upper, mid, lo), np.where(upper, hi, mid)
        other = i ^ (1 << bit)
        x = b.xfer(core, core[other], (np.where(upper, lo, mid), np.where(upper, mid, hi), q), "data", "recv",
                   deps=[reduced, reduced[other]])
        # The send and the reduce at a rank touch disjoint halves of data, so the reduce waits only for x.
        reduced = b.reduce(core, ("data", "recv"), "data", (keep_lo, keep_hi, q), deps=[x[other]])
        gave.append(x)
        lo, hi = keep_lo, keep_hi
    return lo, hi, reduced, gave


def doubling(b, core, bits, lo, hi, wrote, gave=None):
    """Recursive-doubling allgather in ``data`` among ranks ``core``: core rank i starts with range [lo, hi) in q-ths.

    Step j swaps ranges with core rank i ^ 2^bits[j]. ``wrote`` (by core rank)
    completed each rank's range; ``gave[j]`` (from :func:`halving`) are sends
    that read the range a rank overwrites in step j. Returns ``(wrote, last_sent)`` by core rank.
    """
    i = np.arange(len(core))
    last_sent = np.full(len(core), -1)
    for j, bit in enumerate(bits):
        other = i ^ (1 << bit)
        x = b.xfer(core, core[other], (lo, hi, len(core)), "data", "data",
                   deps=[wrote, last_sent, -1 if gave is None else gave[j][other]])
        wrote, last_sent = x[other], x
        lo, hi = np.minimum(lo, lo[other]), np.maximum(hi, hi[other])
    return wrote, last_sent


def _steps(q):
    return list(range(q.bit_length() - 1))


def rabenseifner_allreduce(layout):
    """Allreduce of buffer ``data`` on every rank of ``layout`` by reduce-scatter + allgather."""
    p = layout.ranks
    b = ScheduleBuilder(layout, "allreduce", "rabenseifner", buffers=("data", "recv"))
    allreduce_among(b, np.arange(p))
    for r in range(p):
        b.expect(r, "data", (0, 1, 1))
    return b.build()


def allreduce_among(b, ranks, ready=-1):
    """Append Rabenseifner's allreduce of ``data`` among ``ranks`` (real rank ids, any count) to ``b``;
    ``ready`` and the result as for :func:`collectives.recursive_doubling.folded`."""
    def halving_doubling(b, core, first):
        steps = _steps(len(core))
        lo, hi, done, gave = halving(b, core, steps, first)
        # Partner i ^ 2^j gave away exactly the range received in step j, so overwriting it waits for that send.
        # A core rank's data then holds the result after its last receive and its own writes before its last send.
        return doubling(b, core, steps[::-1], lo, hi, done, gave[::-1])
    return folded(b, ranks, ready, halving_doubling)


def _power_of_two(p, what):
    if p & (p - 1):
        raise ValueError(f"{what} needs a power-of-two rank count, got {p}")
    return np.arange(p)


def rh_reduce_scatter(layout):
    """Recursive-halving reduce-scatter (p = 2^k); rank r ends with piece r of p of the reduction in ``data``."""
    p = layout.ranks
    core = _power_of_two(p, "rh reduce_scatter")
    b = ScheduleBuilder(layout, "reduce_scatter", "rh", buffers=("data", "recv"))
    halving(b, core, _steps(p)[::-1], np.full(p, -1))
    for r in range(p):
        b.expect(r, "data", (r, r + 1, p))
    return b.build()


def rd_allgather(layout):
    """Recursive-doubling allgather (p = 2^k); piece c of every rank's ``data`` ends as piece c of rank c's."""
    p = layout.ranks
    core = _power_of_two(p, "rd allgather")
    b = ScheduleBuilder(layout, "allgather", "rd")
    doubling(b, core, _steps(p), core, core + 1, np.full(p, -1))
    for r in range(p):
        for c in range(p):
            b.expect(r, "data", (c, c + 1, p), contributors=(c,))
    return b.build()
