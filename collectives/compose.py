"""Sub-collectives appended onto an existing :class:`ScheduleBuilder`, for composing algorithms.

Each helper runs G independent copies at once: copy g works among the
locations ``locs[g]`` (shape ``(G, p)``; GPUs or host memories) on the span
``(lo[g], hi[g], den[g])`` of the message (each broadcast to ``(G,)``).
``ready`` holds op ids broadcastable to ``(G, p, w)`` (-1: none): every op that
touches position k of copy g waits for all of ``ready[g, k]``. Each helper
returns ``final``, op ids of shape ``(G, p, w')``: after all of ``final[g, k]``
position k holds its result, so it may be read; a later *write* to a region
the helper read at position k is safe only if ordered after the helper's
forwarding from k too (true whenever the writer depends on another position's
``final``, as all compositions here do).

Position k's pieces of a copy's span are ``split(span, i, p)``; floor spans nest
exactly, so the pieces tile the span for every message size.

>>> from flyersim.collectives.schedule import Layout, ScheduleBuilder
>>> from flyersim.collectives.verify import verify
>>> b = ScheduleBuilder(Layout(2, 3), "allreduce", "demo", buffers=("data", "recv"))
>>> ranks = np.arange(6).reshape(2, 3)           # two nodes, three GPUs each
>>> done = ring_allreduce(b, ranks)               # one ring per node, both at once
>>> for r in range(6): b.expect(r, "data", (0, 1, 1), contributors=ranks[r // 3])
>>> verify(b.build()); done.shape
(2, 3, 2)
>>> [int(x) for x in split((1, 2, 4), 2, 3)]     # third piece of [1/4, 2/4)
[5, 6, 12]
"""

import numpy as np

from flyersim.collectives.trees import double_binary_tree, tree_depths, tree_heights


def split(span, i, parts):
    """Piece ``i`` of ``span`` cut into ``parts`` equal pieces: ``(lo, hi, den)`` arrays."""
    lo, hi, den = (np.asarray(x, np.int64) for x in span)
    return lo * parts + i * (hi - lo), lo * parts + (i + 1) * (hi - lo), den * parts


def _prepare(locs, span, ready):
    locs = np.atleast_2d(np.asarray(locs, np.int64))
    groups, p = locs.shape
    span = tuple(np.broadcast_to(np.asarray(x, np.int64), (groups,))[:, None] for x in span)
    ready = np.asarray(ready, np.int64)
    ready = ready.reshape(ready.shape + (1,) * (3 - ready.ndim))
    ready = np.broadcast_to(ready, (groups, p, ready.shape[2]))
    return locs, span, ready


def _waits(ready, *positions):
    """Dependency columns: all ready ops of each of the given position index arrays."""
    return [ready[:, k, c] for k in positions for c in range(ready.shape[2])]


def ring_reduce_scatter(b, locs, span=(0, 1, 1), ready=-1, buf="data", tmp="recv"):
    """Ring reduce-scatter in ``buf`` (receiving into ``tmp``); position k ends with piece k of p reduced.

    In step s position k sends piece ``(k-s-1) % p`` to k+1, which adds it in.
    Like MPI's sendrecv, a position's send also waits for its previous send,
    so no link ever carries more than one step at a time. Returns ``final`` of
    shape ``(G, p, 1)``.
    """
    locs, span, ready = _prepare(locs, span, ready)
    groups, p = locs.shape
    pos = np.arange(p)
    nxt = (pos + 1) % p
    last = np.full((groups, p), -1)  # by sender: the op that reduced the piece it sends next
    sent = np.full((groups, p), -1)
    for s in range(p - 1):
        piece = split(span, (pos - s - 1) % p, p)
        sent = b.xfer(src=locs, dst=locs[:, nxt], span=piece, src_buf=buf, dst_buf=tmp,
                      deps=[last, sent.reshape(groups, p), *_waits(ready, pos, nxt)])
        summed = b.reduce(at=locs[:, nxt], inputs=(buf, tmp), out=buf, span=piece, deps=[sent.reshape(groups, p)])
        last = summed.reshape(groups, p)[:, (pos - 1) % p]  # re-index by the reducing position
    return last[..., None] if p > 1 else ready


def ring_allgather(b, locs, span=(0, 1, 1), ready=-1, buf="data"):
    """Ring allgather in ``buf``: position k starts with piece k of p; returns ``final`` ``(G, p, p-1)``.

    Step s forwards piece ``(k-s) % p``; sends on each link stay in order, as in reduce-scatter.
    """
    locs, span, ready = _prepare(locs, span, ready)
    groups, p = locs.shape
    pos = np.arange(p)
    nxt = (pos + 1) % p
    last = np.full((groups, p), -1)
    sent = np.full((groups, p), -1)
    received = []
    for s in range(p - 1):
        sent = b.xfer(src=locs, dst=locs[:, nxt], span=split(span, (pos - s) % p, p), src_buf=buf, dst_buf=buf,
                      deps=[last, sent.reshape(groups, p), *_waits(ready, pos, nxt)])
        last = sent.reshape(groups, p)[:, (pos - 1) % p]  # by receiver: what it forwards next
        received.append(last)
    return np.stack(received, axis=-1) if p > 1 else ready


def ring_allreduce(b, locs, span=(0, 1, 1), ready=-1, buf="data", tmp="recv"):
    """Ring reduce-scatter then allgather; returns ``final`` ``(G, p, p-1)``."""
    return ring_allgather(b, locs, span, ring_reduce_scatter(b, locs, span, ready, buf, tmp), buf)


def _ordered(fifo, key, deps):
    """``deps`` plus the op of ``key`` from the previous call sharing ``fifo`` (a connection's or engine's order)."""
    return deps if fifo is None else deps + [fifo.get(key, -1)]


def dbtree_allreduce(b, locs, span=(0, 1, 1), ready=-1, chunks=1, buf="data", tmp=("recv0", "recv1"), fifo=None):
    """Double binary tree allreduce (:func:`collectives.trees.double_binary_tree` over positions).

    Tree t carries half t of the span, cut into ``chunks`` chunks (chunk c is
    piece ``t * chunks + c`` of ``2 * chunks``, as :mod:`collectives.dbtree`).
    Each tree reduces its half up (children's partial sums land in ``tmp[0]``, ``tmp[1]`` of the
    parent, which adds them into ``buf``) and broadcasts the result down into
    ``buf``. Chunks depend on nothing but their own data (no per-link FIFO
    order, unlike :mod:`collectives.dbtree`), so they pipeline.
    Returns ``final`` ``(G, p, 2 * chunks)``, column ``t * chunks + c`` for chunk c of tree t.

    ``fifo``: a dict shared by successive calls (one per pipeline chunk, same
    ``locs`` shape): each send, reduce and broadcast then also waits for the
    same one of the previous call, as a connection carries its chunks in
    order and an engine handles them in order.
    """
    if isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks < 1:
        raise ValueError(f"dbtree chunks must be a positive integer, got {chunks!r}")
    locs, span, ready = _prepare(locs, span, ready)
    groups, n = locs.shape
    if n == 1:
        return ready
    parents, children = double_binary_tree(n)
    final = np.full((groups, n, 2 * chunks), -1)
    for t in range(2):
        lo, hi, den = (x[..., None] for x in split(span, t * chunks + np.arange(chunks), 2 * chunks))
        piece = (lo, hi, den)  # shape (G, chunks, 1): broadcasts against positions
        up = np.full((groups, chunks, n), -1)  # op completing each position's partial sum
        heights = tree_heights(parents[t])
        for h in range(1, heights.max() + 1):
            level = np.nonzero(heights == h)[0]
            sent = np.full((2, groups, chunks, n), -1)
            for slot in range(2):
                at = level[children[t, level, slot] >= 0]
                kid = children[t, at, slot]
                x = b.xfer(src=locs[:, None, kid], dst=locs[:, None, at], span=piece, src_buf=buf, dst_buf=tmp[slot],
                           deps=_ordered(fifo, ("up", t, h, slot),
                                         [up[:, :, kid], *(w[:, None] for w in _waits(ready, kid, at))]))
                sent[slot][:, :, at] = x.reshape(groups, chunks, len(at))
                if fifo is not None:
                    fifo["up", t, h, slot] = sent[slot][:, :, at]
            num_kids = (children[t, level] >= 0).sum(axis=1)
            for k in (1, 2):
                at = level[num_kids == k]
                r = b.reduce(at=locs[:, None, at], inputs=(buf, *tmp[:k]), out=buf, span=piece,
                             deps=_ordered(fifo, ("sum", t, h, k), [sent[0][:, :, at], sent[1][:, :, at]]))
                up[:, :, at] = r.reshape(groups, chunks, len(at))
                if fifo is not None:
                    fifo["sum", t, h, k] = up[:, :, at]
        down = up
        depths = tree_depths(parents[t])
        for d in range(1, depths.max() + 1):
            at = np.nonzero(depths == d)[0]
            par = parents[t, at]
            x = b.xfer(src=locs[:, None, par], dst=locs[:, None, at], span=piece, src_buf=buf, dst_buf=buf,
                       deps=_ordered(fifo, ("down", t, d), [down[:, :, par], *(w[:, None] for w in _waits(ready, at))]))
            down[:, :, at] = x.reshape(groups, chunks, len(at))
            if fifo is not None:
                fifo["down", t, d] = down[:, :, at]
        final[:, :, t * chunks:(t + 1) * chunks] = down.transpose(0, 2, 1)
    return final
