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


def direct_hop(b, src, dst, span, src_buf, dst_buf, deps, tag):
    """The default per-hop transport: one xfer. Returns ``(first, last)`` op ids (the same ops)."""
    x = b.xfer(src=src, dst=dst, span=span, src_buf=src_buf, dst_buf=dst_buf, deps=deps)
    return x, x


def binary_tree_allreduce(b, locs, parent, child, piece, ready=(), buf="data", tmp=("recv0", "recv1"), hop=direct_hop,
                          fifo=None, key=(), receiver_waits=True, engine_order=True):
    """Reduce ``piece`` up one binary tree over positions, then broadcast the result down: the one tree builder.

    ``locs`` ``(G, n)``: G copies at once over n positions; ``parent`` ``(n,)`` and ``child`` ``(n, 2)``
    (left-packed, -1 for none) give the tree (:mod:`collectives.trees`); ``piece`` is a span broadcastable
    to ``(G, C, 1)`` (C chunks moving together); ``ready``: op-id arrays broadcastable to ``(G, C, n)``
    after all of which a position's ``buf`` holds its contribution. A child's partial sum lands in
    ``tmp[slot]`` of its parent, which adds it into ``buf``; the root's result is broadcast down into ``buf``.

    ``hop(b, src, dst, span, src_buf, dst_buf, deps, tag)`` moves one hop and returns the op ids
    ``(first, last)`` (a connection's order is kept on ``first``; ``dst`` may read after ``last``); tags are
    ``tu<slot>`` up and ``td<slot>`` down, for a transport's staging buffers. ``fifo``: a dict shared by
    successive calls (keys prefixed by ``key``): each hop waits for the same hop of the previous call, as a
    connection carries its chunks in order, and with ``engine_order`` each reduce for the previous
    call's reduce at the same place. ``receiver_waits``: a send up also waits for the receiver's
    ``ready`` (its buffers are in use until then); else only its reduce does.
    Returns op ids ``(G, C, n)``: after them each position holds the result.
    """
    groups, n = locs.shape
    chunks = np.broadcast_shapes((groups, 1, 1), *(np.shape(x) for x in piece))[1]
    ready = [np.broadcast_to(r, (groups, chunks, n)) for r in ready]
    where = lambda at: locs[:, None, at]  # noqa: E731 (locations of positions ``at``, shape (G, 1, len))
    up = np.full((groups, chunks, n), -1)  # op completing each position's partial sum
    heights = tree_heights(parent)
    for h in range(1, heights.max(initial=0) + 1):
        level = np.flatnonzero(heights == h)
        sent = np.full((2, groups, chunks, n), -1)
        for slot in (0, 1):
            at = level[child[level, slot] >= 0]
            kid = child[at, slot]
            deps = [up[..., kid]] + [r[..., kid] for r in ready] + [r[..., at] for r in ready if receiver_waits]
            first, last = hop(b, where(kid), where(at), piece, buf, tmp[slot],
                              _ordered(fifo, key + ("up", h, slot), deps), f"tu{slot}")
            sent[slot][..., at] = np.reshape(last, (groups, chunks, len(at)))
            if fifo is not None:
                fifo[key + ("up", h, slot)] = np.reshape(first, (groups, chunks, len(at)))
        num_kids = (child[level] >= 0).sum(axis=1)
        for k in (1, 2):
            at = level[num_kids == k]
            deps = [sent[0][..., at], sent[1][..., at]] + [r[..., at] for r in ready if not receiver_waits]
            r = b.reduce(at=where(at), inputs=(buf, *tmp[:k]), out=buf, span=piece,
                         deps=_ordered(fifo if engine_order else None, key + ("sum", h, k), deps))
            up[..., at] = r.reshape(groups, chunks, len(at))
            if fifo is not None and engine_order:
                fifo[key + ("sum", h, k)] = up[..., at]
    down = up.copy()
    depths = tree_depths(parent)
    for d in range(1, depths.max(initial=0) + 1):
        at = np.flatnonzero(depths == d)
        slot_of = (child[parent[at], 1] == at).astype(np.int64)
        # a transport stages each slot's hops in its own buffers; direct hops go in one batch
        batches = [(0, at)] if hop is direct_hop else [(slot, at[slot_of == slot]) for slot in (0, 1)]
        for slot, a in batches:
            if a.size == 0:
                continue
            deps = [down[..., parent[a]]] + [r[..., a] for r in ready if receiver_waits]
            first, last = hop(b, where(parent[a]), where(a), piece, buf, buf,
                              _ordered(fifo, key + ("down", d, slot), deps), f"td{slot}")
            down[..., a] = np.reshape(last, (groups, chunks, len(a)))
            if fifo is not None:
                fifo[key + ("down", d, slot)] = np.reshape(first, (groups, chunks, len(a)))
    return down


def dbtree_allreduce(b, locs, span=(0, 1, 1), ready=-1, chunks=1, buf="data", tmp=("recv0", "recv1"), fifo=None):
    """Double binary tree allreduce (:func:`collectives.trees.double_binary_tree` over positions).

    Tree t carries half t of the span, cut into ``chunks`` chunks (chunk c is
    piece ``t * chunks + c`` of ``2 * chunks``, as :mod:`collectives.dbtree`),
    by :func:`binary_tree_allreduce`. Chunks of one call depend on nothing but
    their own data, so they pipeline.
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
    waits = [ready[:, None, :, j] for j in range(ready.shape[2])]
    final = np.full((groups, n, 2 * chunks), -1)
    for t in range(2):
        piece = tuple(x[..., None] for x in split(span, t * chunks + np.arange(chunks), 2 * chunks))  # (G, chunks, 1)
        down = binary_tree_allreduce(b, locs, parents[t], children[t], piece, waits, buf, tmp, fifo=fifo, key=(t,))
        final[:, :, t * chunks:(t + 1) * chunks] = down.transpose(0, 2, 1)
    return final
