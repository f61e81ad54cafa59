"""Ring algorithms: ranks 0..p-1 in order around a ring, the message cut into p chunks.

Chunk ``c`` is span ``(c, c+1, p)``. Reduce-scatter takes p-1 steps: in step
``s`` rank ``r`` sends chunk ``(r-s-1) % p`` from ``data`` to rank r+1's
``recv``, which adds it into its ``data``; afterwards rank r holds the fully
reduced chunk r. Allgather takes p-1 steps: in step ``s`` rank r forwards
chunk ``(r-s) % p`` from ``data`` to rank r+1's ``data``. Allreduce is the
two in sequence: 3p(p-1) ops. As with MPI's sendrecv, a rank's send waits for
its previous one. The steps are :mod:`collectives.compose`'s, over one ring.

>>> from flyersim.collectives.schedule import Layout
>>> s = ring_allreduce(Layout(nodes=1, gpus_per_node=3))
>>> s.num_ops, s.describe(0)
(18, 'xfer n0/gpu0:data -> n0/gpu1:recv [2/3, 3/3)')
>>> ring_reduce_scatter(Layout(1, 4)).expect[1]
Expect(loc=1, buf='data', span=(1, 2, 4), contributors=None)
"""

import numpy as np

from flyersim.collectives import compose
from flyersim.collectives.schedule import ScheduleBuilder


def _chunk(c, p):
    return (c, c + 1, p)


def _one_ring(p):
    return np.arange(p)[None, :]


def ring_allreduce(layout):
    """Ring allreduce (reduce-scatter then allgather); every rank ends with the full sum in ``data``."""
    p = layout.ranks
    b = ScheduleBuilder(layout, "allreduce", "ring", buffers=("data", "recv"))
    compose.ring_allreduce(b, _one_ring(p))
    for r in range(p):
        b.expect(r, "data", (0, 1, 1))
    return b.build()


def ring_reduce_scatter(layout):
    """Ring reduce-scatter; rank r ends with chunk r of the reduction in ``data``."""
    p = layout.ranks
    b = ScheduleBuilder(layout, "reduce_scatter", "ring", buffers=("data", "recv"))
    compose.ring_reduce_scatter(b, _one_ring(p))
    for r in range(p):
        b.expect(r, "data", _chunk(r, p))
    return b.build()


def ring_allgather(layout):
    """Ring allgather; chunk c of every rank's ``data`` ends as chunk c of rank c's input."""
    p = layout.ranks
    b = ScheduleBuilder(layout, "allgather", "ring")
    compose.ring_allgather(b, _one_ring(p))
    for r in range(p):
        for c in range(p):
            b.expect(r, "data", _chunk(c, p), contributors=(c,))
    return b.build()
