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


def fold_in(b, p, ranks=None, ready=-1):
    """Extra ranks send ``data`` to their odd neighbour's ``recv``, which reduces it into ``data``.

    ``ranks``: the real rank of each of the p positions (default 0..p-1); ``ready``: op ids by position
    (-1: none) after which a position's ``data`` may be read and written. Returns ``(sent, reduced)``: op
    ids indexed by position (-1 where a position has none).
    """
    ranks = np.arange(p) if ranks is None else np.asarray(ranks)
    ready = np.broadcast_to(ready, (p,))
    extra = _extras(p)
    sent, reduced = np.full(p, -1), np.full(p, -1)
    sent[extra] = b.xfer(ranks[extra], ranks[extra + 1], WHOLE, "data", "recv", deps=[ready[extra], ready[extra + 1]])
    reduced[extra + 1] = b.reduce(ranks[extra + 1], ("data", "recv"), "data", WHOLE, deps=[sent[extra]])
    return sent, reduced


def fold_out(b, p, sent, deps, ranks=None):
    """Odd neighbours send the final ``data`` back to the extra ranks; returns those sends' op ids.

    ``sent`` is from :func:`fold_in` (the extras' data may be overwritten only
    after it was read); ``deps`` are op-id arrays indexed by *core* rank whose
    ops complete each core rank's result (the neighbours are core ranks 0..rem-1);
    ``ranks`` as for :func:`fold_in`.
    """
    ranks = np.arange(p) if ranks is None else np.asarray(ranks)
    extra = _extras(p)
    return b.xfer(ranks[extra + 1], ranks[extra], WHOLE, "data", "data",
                  deps=[sent[extra]] + [d[:len(extra)] for d in deps])


def rd_allreduce(layout):
    """Allreduce of buffer ``data`` on every rank of ``layout`` by recursive doubling."""
    p = layout.ranks
    b = ScheduleBuilder(layout, "allreduce", "rd", buffers=("data", "recv"))
    allreduce_among(b, np.arange(p))
    for r in range(p):
        b.expect(r, "data", WHOLE)
    return b.build()


def allreduce_among(b, ranks, ready=-1):
    """Append recursive doubling's allreduce of ``data`` among ``ranks`` (real rank ids, any count) to ``b``;
    ``ready`` and the result as for :func:`folded`."""
    def doubling(b, core, first):
        last, i = first, np.arange(len(core))
        for j in range(len(core).bit_length() - 1):
            x = b.xfer(core, core[i ^ (1 << j)], WHOLE, "data", "recv", deps=[last, last[i ^ (1 << j)]])
            # Core rank i receives x[i ^ 2^j] and must not overwrite data before its own send x[i] read it.
            last = b.reduce(core, ("data", "recv"), "data", WHOLE, deps=[x[i ^ (1 << j)], x])
        return last, np.full(len(core), -1)
    return folded(b, ranks, ready, doubling)


def folded(b, ranks, ready, among_core):
    """Append an allreduce of ``data`` among ``ranks`` (real rank ids, any count) to ``b``: the extra ranks
    fold into the core (:func:`fold`), ``among_core(b, core, first) -> (done, read)`` allreduces the core,
    the core sends the result back out.

    ``ready``: op ids by position (-1: none) after which a position's ``data`` may be used; ``first`` the
    same by core rank, including the fold's reduce; ``done``/``read`` by core rank: the ops after which its
    ``data`` holds the result, and its last op reading it (-1: none). Returns a list of op-id arrays by
    position: after all of them a position's ``data`` holds the result.
    """
    p = len(ranks)
    ready = np.broadcast_to(np.asarray(ready, np.int64), (p,))
    at = fold(p)  # positions of the core ranks
    sent, reduced = fold_in(b, p, ranks, ready)  # reduced: last reduce per position (wrote data, read recv)
    done, read = among_core(b, ranks[at], np.where(reduced[at] >= 0, reduced[at], ready[at]))
    final, reads = np.full(p, -1), np.full(p, -1)
    final[at], reads[at] = done, read
    extra = np.setdiff1d(np.arange(p), at)
    if len(extra):
        final[extra] = fold_out(b, p, sent, [done, read], ranks)
    return [final, reads]
