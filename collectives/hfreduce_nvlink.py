"""HFReduce with NVLink bridges (Fire-Flyer 2, SC24 section IV-C).

Every chunk is cut in two halves; in each bridged pair ``(a, b)`` of
``layout.nvlink_pairs`` GPU a owns half 0 and GPU b half 1 (the paper does not
publish the split; this one is even). Per chunk:

1. NVLink reduce-scatter: each GPU sends the half it does not own to its
   partner's ``nv`` buffer; the partner adds it into ``data``.
2. Each GPU sends only its reduced half through the HFReduce host pipeline
   (:func:`collectives.hfreduce.host_allreduce`): half the D2H bytes per GPU,
   a g/2-way CPU reduce per half, the tree allreduce between nodes, and H2D
   of the final half back to its owner.
3. NVLink allgather: each GPU copies its final half into its partner's ``data``.

>>> from flyersim.collectives.schedule import Layout
>>> from flyersim.collectives.verify import verify
>>> layout = Layout(nodes=2, gpus_per_node=4, sockets=2, nvlink_pairs=((0, 1), (2, 3)))
>>> verify(hfreduce_nvlink_allreduce(layout, chunks=2))
>>> hfreduce_nvlink_allreduce(Layout(1, 4, nvlink_pairs=((0, 1),)))
Traceback (most recent call last):
ValueError: hfreduce-nvlink: nvlink_pairs must cover each of the 4 GPUs exactly once, got ((0, 1),)
"""

import numpy as np

from flyersim.collectives.chunking import choose_chunks
from flyersim.collectives.hfreduce import DEFAULT_CHUNKS, PARAMS as HFREDUCE_PARAMS, check_h2d, host_allreduce, \
    host_buffers, staging_sockets
from flyersim.collectives.params import Params
from flyersim.collectives.schedule import ScheduleBuilder

ALGO = "hfreduce-nvlink"
PARAMS = Params(ALGO, *HFREDUCE_PARAMS.items)  # HFReduce's; a chunk is cut in halves, one per pair member


def nvlink_pairs(layout):
    """The layout's bridged pairs as a ``(g/2, 2)`` array, checked to cover every local GPU once."""
    g = layout.gpus_per_node
    if not layout.nvlink_pairs:
        raise ValueError(f"{ALGO}: the layout has no nvlink_pairs (NVLink bridges) to reduce over")
    try:
        pairs = np.asarray(layout.nvlink_pairs, dtype=np.int64)
    except (TypeError, ValueError):
        pairs = np.empty((0, 0), np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or sorted(pairs.ravel().tolist()) != list(range(g)):
        raise ValueError(f"{ALGO}: nvlink_pairs must cover each of the {g} GPUs exactly once, "
                         f"got {layout.nvlink_pairs!r}")
    return pairs


def hfreduce_nvlink_allreduce(layout, nbytes=None, **params):
    """HFReduce with an NVLink reduce-scatter/allgather inside each bridged pair; ``params``: :data:`PARAMS`.

    Chunks are ``chunk_bytes`` of the message, so each GPU's host pipeline moves half a chunk per step.
    """
    return _hfreduce_nvlink(layout, nbytes, **PARAMS.bind(params))


def _hfreduce_nvlink(layout, nbytes, chunks, staging, h2d, buffers, chunk_bytes, max_chunks):
    check_h2d(h2d, buffers, ALGO)
    pairs = nvlink_pairs(layout)
    chunks = choose_chunks(chunks, nbytes, chunk_bytes, max_chunks, DEFAULT_CHUNKS, ALGO)
    staging = staging_sockets(layout, staging, ALGO)
    g = layout.gpus_per_node
    b = ScheduleBuilder(layout, "allreduce", ALGO, buffers=("data", "nv") + host_buffers(layout))
    n = np.arange(layout.nodes)[:, None, None]
    c = np.arange(chunks)
    shape = (layout.nodes, chunks, len(pairs))
    for half in (0, 1):
        owner, partner = n * g + pairs[:, half], n * g + pairs[:, 1 - half]  # (nodes, 1, pairs)
        host_span = (2 * c + half, 2 * c + half + 1, np.full(chunks, 2 * chunks))  # this half of every chunk
        span = tuple(x[:, None] for x in host_span)  # (chunks, 1): broadcasts against (nodes, 1, pairs)
        sent = b.xfer(partner, owner, span, "data", "nv").reshape(shape)
        summed = b.reduce(owner, ("data", "nv"), "data", span, deps=[sent]).reshape(shape)
        back = host_allreduce(b, layout, host_span, pairs[:, half], summed, staging, h2d, int(buffers))
        b.xfer(owner, partner, span, "data", "data", deps=[back])
    for r in range(layout.ranks):
        b.expect(r, "data", (0, 1, 1))
    return b.build()
