"""Recursive-doubling allreduce, with MPICH's fold for rank counts that are not powers of two.

For p = 2^k there are lg p rounds; in round j every rank swaps its whole
message with rank ``r ^ 2^j`` and reduces: ``lg p (a + n b + n g)``.

Otherwise let q = 2^floor(lg p) and rem = p - q. The *fold* (MPICH
``MPIR_Allreduce_intra_recursive_doubling``) first has the extra ranks
0, 2, .., 2 rem - 2 send their input to their odd neighbour, which reduces
(one extra ``a + n b + n g``); the q *core* ranks (the odd neighbours and
ranks >= 2 rem) then run the power-of-two algorithm; finally each odd
neighbour sends the result back (one extra ``a + n b``). In total
``(floor(lg p) + 2)(a + n b) + (floor(lg p) + 1) n g``.

>>> from flyersim.collectives.schedule import Layout
>>> s = rd_allreduce(Layout(nodes=2, gpus_per_node=3))
>>> fold(6).tolist(), s.num_ops  # fold 2 + core 2 rounds x 4 xfers + 4 reduces + unfold 2
([1, 3, 4, 5], 22)
"""

import numpy as np

from flyersim.collectives.schedule import ScheduleBuilder

WHOLE = (0, 1, 1)


def fold(p):
    """Real rank of each core rank 0..q-1 of the fold (q = 2^floor(lg p)).

    Core rank i < rem is the odd rank 2i + 1 (it absorbs extra rank 2i); the
    rest are ranks 2 rem .. p-1 in order.

    >>> fold(8).tolist(), fold(7).tolist()
    ([0, 1, 2, 3, 4, 5, 6, 7], [1, 3, 5, 6])
    """
    q = 1 << (p.bit_length() - 1)
    i = np.arange(q)
    return np.where(i < p - q, 2 * i + 1, i + p - q)


def _extras(p):
    return np.arange(0, 2 * (p - (1 << (p.bit_length() - 1))), 2)


def fold_in(b, p):
    """Extra ranks send ``data`` to their odd neighbour's ``recv``, which reduces it into ``data``.

    Returns ``(sent, reduced)``: op ids indexed by rank (-1 where a rank has none).
    """
    extra = _extras(p)
    sent, reduced = np.full(p, -1), np.full(p, -1)
    sent[extra] = b.xfer(extra, extra + 1, WHOLE, "data", "recv")
    reduced[extra + 1] = b.reduce(extra + 1, ("data", "recv"), "data", WHOLE, deps=[sent[extra]])
    return sent, reduced


def fold_out(b, p, sent, deps):
    """Odd neighbours send the final ``data`` back to the extra ranks.

    ``sent`` is from :func:`fold_in` (the extras' data may be overwritten only
    after it was read); ``deps`` are op-id arrays indexed by *core* rank whose
    ops complete each core rank's result (the neighbours are core ranks 0..rem-1).
    """
    extra = _extras(p)
    return b.xfer(extra + 1, extra, WHOLE, "data", "data", deps=[sent[extra]] + [d[:len(extra)] for d in deps])


def rd_allreduce(layout):
    """Allreduce of buffer ``data`` on every rank of ``layout`` by recursive doubling."""
    p = layout.ranks
    b = ScheduleBuilder(layout, "allreduce", "rd", buffers=("data", "recv"))
    core = fold(p)
    sent, reduced = fold_in(b, p)  # reduced: last reduce per rank (wrote data, read recv)
    i = np.arange(len(core))
    for j in range(len(core).bit_length() - 1):
        partner = core[i ^ (1 << j)]
        x = b.xfer(core, partner, WHOLE, "data", "recv", deps=[reduced[core], reduced[partner]])
        # Core rank i receives x[i ^ 2^j] and must not overwrite data before its own send x[i] read it.
        reduced[core] = b.reduce(core, ("data", "recv"), "data", WHOLE, deps=[x[i ^ (1 << j)], x])
    fold_out(b, p, sent, [reduced[core]])
    for r in range(p):
        b.expect(r, "data", WHOLE)
    return b.build()
