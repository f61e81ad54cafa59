"""NCCL's ring allreduce (``src/device/all_reduce.h`` ring loop, ``src/enqueue.cc`` chunking), over its transports.

NCCL orders the ranks of a server one after the other and servers one after
another (``local_order``: by default NCCL's, :func:`.paths.local_order`, so
the ring crosses sockets twice and talks to the network from the NIC's
socket). The message is split over ``channels`` rings (NCCL runs each channel
on its own SMs over its own connections; the duplicated channels follow the
same ring), and each channel's part into ``chunks`` rounds (NCCL's ring loop
handles ``nranks * chunkSize`` per round, ``chunkSize`` =
``ALLREDUCE_CHUNKSTEPS`` steps = 2 MiB for Simple, ``src/enqueue.cc`` and
``src/include/collectives.h``; so by default ``ceil(nbytes / (channels *
nranks * chunk_bytes))`` rounds), each a ring reduce-scatter + allgather;
round c of a connection waits for round c-1 on it (FIFO). Every hop is one of
NCCL's transports (:mod:`.transports`). [Not modelled: inside a round NCCL
moves each step's data in slices of 2 steps through a staged (SHM/NET) hop,
overlapping its stages; here a hop's stages run one after another per round.]

>>> from flyersim.collectives.schedule import Layout
>>> from flyersim.collectives.verify import verify
>>> s = nccl_ring(Layout(2, 2, sockets=2, gpu_sockets=(0, 1), nic_sockets=(1,)), channels=1, p2p=False)
>>> verify(s); s.describe(0)
'xfer n0/gpu1:data -> n0/host0:rs.shm [3/4, 4/4)'
"""

import numpy as np

from flyersim.collectives.chunking import ALLREDUCE_CHUNKSTEPS, NCCL_STEP_BYTES, choose_chunks
from flyersim.collectives.compose import split
from flyersim.collectives.nccl.transports import SHARED, Transports, from_search, order, parts, positive, \
    stage_buffers
from flyersim.collectives.params import Param, Params
from flyersim.collectives.schedule import ScheduleBuilder

RING_TAGS = ("rs", "ag")
PARAMS = Params(
    "nccl-ring", *SHARED,
    Param("chunks", int, None, "rounds per channel (default: NCCL's ceil(nbytes / (channels x ranks x chunk_bytes)), "
                               "at most max_chunks; 1 without a size)"),
    Param("chunk_bytes", int, ALLREDUCE_CHUNKSTEPS * NCCL_STEP_BYTES, "NCCL's ring chunkSize (Simple: 4 steps, 2 MiB)"),
)


def nccl_ring(layout, nbytes=None, search=None, **params):
    """NCCL ring allreduce of ``data`` on every GPU (see the module docstring).

    ``nbytes``: message size per GPU (``None``: built without a size); ``search``: NCCL's
    :class:`.search.Search` on the topology (``None``: on the layout alone); ``params``: :data:`PARAMS`.
    """
    return _ring(layout, nbytes, **from_search(layout, search, PARAMS.bind(params)))


def _ring(layout, nbytes, channels, p2p, gdr, local_order, max_chunks, chunks, chunk_bytes):
    positive("channels", channels)
    chunks = choose_chunks(chunks, nbytes, chunk_bytes, max_chunks, 1, "nccl", per=channels * layout.ranks)
    local = order(layout, local_order)
    p = layout.ranks
    ring = layout.rank(np.arange(layout.nodes)[:, None], local[None, :]).ravel()  # ring position -> rank
    t = Transports(layout, p2p, gdr)
    b = ScheduleBuilder(layout, "allreduce", "nccl-ring", buffers=("data", "recv") + stage_buffers(RING_TAGS))
    pos = np.arange(p)
    nxt = (pos + 1) % p
    src, dst = ring[pos], ring[nxt]
    fifo_rs = np.full((channels, p), -1)  # per connection (sender position): first xfer of its previous send
    fifo_ag = np.full((channels, p), -1)
    for c in range(chunks):
        # channel ch, round c: piece ch * chunks + c of channels * chunks
        span = parts(channels, chunks, c)
        last = np.full((channels, p), -1)  # by sender position: op that made the piece it sends next
        for s in range(p - 1):
            piece = split(span, (pos - s - 1) % p, p)
            fifo_rs, sent = t.hop(b, src, dst, piece, "recv", [last, fifo_rs], "rs")
            summed = b.reduce(at=dst[None, :].repeat(channels, 0), inputs=("data", "recv"), out="data",
                              span=piece, deps=[sent])
            last = summed.reshape(channels, p)[:, (pos - 1) % p]
        for s in range(p - 1):
            fifo_ag, sent = t.hop(b, src, dst, split(span, (pos - s) % p, p), "data", [last, fifo_ag], "ag")
            last = sent[:, (pos - 1) % p]
    for r in range(p):
        b.expect(r, "data", (0, 1, 1))
    return b.build()
