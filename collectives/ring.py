"""Ring algorithms: ranks 0..p-1 in order around a ring, the message cut into p chunks.

Chunk ``c`` is span ``(c, c+1, p)``. Reduce-scatter takes p-1 steps: in step
``s`` rank ``r`` sends chunk ``(r-s-1) % p`` from ``data`` to rank r+1's
``recv``, which adds it into its ``data``; afterwards rank r holds the fully
reduced chunk r. Allgather takes p-1 steps: in step ``s`` rank r forwards
chunk ``(r-s) % p`` from ``data`` to rank r+1's ``data``. Allreduce is the
two in sequence: 3p(p-1) ops.

>>> from collectives.schedule import Layout
>>> s = ring_allreduce(Layout(nodes=1, gpus_per_node=3))
>>> s.num_ops, s.describe(0)
(18, 'xfer n0/gpu0:data -> n0/gpu1:recv [2/3, 3/3)')
>>> ring_reduce_scatter(Layout(1, 4)).expect[1]
Expect(loc=1, buf='data', span=(1, 2, 4), contributors=None)
"""

import numpy as np

from collectives.schedule import ScheduleBuilder


def _chunk(c, p):
    return (c, c + 1, p)


def _reduce_scatter_steps(b, p):
    """Append the ring reduce-scatter; return, per rank, the op that completes its chunk (-1 if p == 1)."""
    ranks = np.arange(p)
    nxt = (ranks + 1) % p
    prev_reduce = np.full(p, -1)
    for s in range(p - 1):
        sent = b.xfer(src=ranks, dst=nxt, span=_chunk((ranks - s - 1) % p, p),
                      src_buf="data", dst_buf="recv", deps=[prev_reduce])
        summed = b.reduce(at=nxt, inputs=("data", "recv"), out="data",
                          span=_chunk((ranks - s - 1) % p, p), deps=[sent])
        prev_reduce = summed[(ranks - 1) % p]  # index by the reducing rank
    return prev_reduce


def _allgather_steps(b, p, ready):
    """Append the ring allgather; ``ready[r]`` is the op after which rank r's own chunk is final."""
    ranks = np.arange(p)
    nxt = (ranks + 1) % p
    last = ready
    for s in range(p - 1):
        sent = b.xfer(src=ranks, dst=nxt, span=_chunk((ranks - s) % p, p), deps=[last])
        last = sent[(ranks - 1) % p]  # rank r next forwards what it just received from r-1


def ring_allreduce(layout):
    """Ring allreduce (reduce-scatter then allgather); every rank ends with the full sum in ``data``."""
    p = layout.ranks
    b = ScheduleBuilder(layout, "allreduce", "ring", buffers=("data", "recv"))
    _allgather_steps(b, p, _reduce_scatter_steps(b, p))
    for r in range(p):
        b.expect(r, "data", (0, 1, 1))
    return b.build()


def ring_reduce_scatter(layout):
    """Ring reduce-scatter; rank r ends with chunk r of the reduction in ``data``."""
    p = layout.ranks
    b = ScheduleBuilder(layout, "reduce_scatter", "ring", buffers=("data", "recv"))
    _reduce_scatter_steps(b, p)
    for r in range(p):
        b.expect(r, "data", _chunk(r, p))
    return b.build()


def ring_allgather(layout):
    """Ring allgather; chunk c of every rank's ``data`` ends as chunk c of rank c's input."""
    p = layout.ranks
    b = ScheduleBuilder(layout, "allgather", "ring")
    _allgather_steps(b, p, np.full(p, -1))
    for r in range(p):
        for c in range(p):
            b.expect(r, "data", _chunk(c, p), contributors=(c,))
    return b.build()
