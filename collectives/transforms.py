"""Schedule transforms for what-ifs: a rank that starts late.

A transform returns a new :class:`~collectives.schedule.Schedule` with the
same ops and dependencies; it never knows which algorithm built it.

>>> from flyersim import collectives
>>> from flyersim.collectives.schedule import Layout
>>> s = collectives.build("ring", Layout(nodes=1, gpus_per_node=4))
>>> late = late_start(s, {2: 1e-3})
>>> sorted(set(late.release.tolist())), int((late.release > 0).sum())  # rank 2's first send and first receive
([0.0, 0.001], 2)
"""

import dataclasses

import numpy as np
from flyersim.jit import njit


def late_start(schedule, late):
    """``schedule`` with ranks starting late: ``late`` maps a rank to the seconds it starts after the others.

    A late rank's first ops, those that read or write its GPU and follow no
    other op that does, are released no earlier than its lateness (see
    ``release`` in :mod:`collectives.schedule`); everything after them waits
    through the dependencies, as on a real cluster.
    """
    ranks = schedule.layout.ranks
    release = np.zeros(schedule.num_ops) if schedule.release is None else schedule.release.copy()
    for rank, seconds in dict(late).items():
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < ranks:
            raise ValueError(f"late rank {rank!r} is not a rank 0..{ranks - 1}")
        if not np.isfinite(seconds) or seconds < 0:
            raise ValueError(f"rank {rank} starts {seconds!r} s late: must be a finite time >= 0")
        first = np.flatnonzero(_first_touching(schedule.src, schedule.dst, schedule.in_ptr, schedule.in_loc,
                                schedule.dep_ptr, schedule.dep_idx, rank))
        release[first] = np.maximum(release[first], seconds)
    return dataclasses.replace(schedule, release=release)


@njit()
def _first_touching(src, dst, in_ptr, in_loc, dep_ptr, dep_idx, loc):
    """Ops that touch location ``loc`` and have no ancestor that does (dependencies point to earlier ops)."""
    m = src.size
    touch = np.zeros(m, np.bool_)
    after = np.zeros(m, np.bool_)  # some ancestor touches loc
    first = np.zeros(m, np.bool_)
    for op in range(m):
        t = src[op] == loc or dst[op] == loc
        for j in range(in_ptr[op], in_ptr[op + 1]):
            t = t or in_loc[j] == loc
        a = False
        for j in range(dep_ptr[op], dep_ptr[op + 1]):
            d = dep_idx[j]
            a = a or touch[d] or after[d]
        touch[op], after[op] = t, a
        first[op] = t and not a
    return first
