"""HFReduce (Fire-Flyer 2, SC24 section IV): host-staged allreduce; no GPU kernel runs.

Per chunk, pipelined (chunk c depends only on its own data):

1. D2H: every GPU j copies its chunk into host buffer ``g<j>`` on socket
   ``staging[j]`` (default ``j % sockets``: interleaved over the NUMA nodes).
   The GPUs' and the NIC's sockets are the layout's (``Layout.gpu_sockets``,
   ``Layout.nic_socket``: the topology's, or the layout's defaults).
2. (no step: buffers stay where they were staged.)
3. The NIC socket's CPU adds the g chunks into ``sum`` (one g-way reduce),
   reading each ``g<j>`` where it is: those on the other socket remotely,
   over the inter-socket link, as the paper's CPU does. With one
   contributing GPU there is nothing to add: it copies straight into ``sum``.
4. Across nodes: allreduce of ``sum`` between the NIC sockets' memories over
   NCCL's double binary tree (reduce up into ``recv0``/``recv1``, broadcast
   down), :func:`collectives.compose.dbtree_allreduce`. None with one node.
5. H2D of the final chunk into every GPU's ``data``. ``h2d="memcpy"``: each
   GPU's copy reads ``sum`` on the NIC socket. ``h2d="gdrcopy"``: the paper's
   CPU reads the chunk once per NUMA node and stores it into that node's GPUs:
   one multicast of ``sum`` per socket to the GPUs attached to it, so host
   memory is read once per socket and the inter-socket link carries the
   chunk once for the far socket's GPUs. GDRCopy copies are CPU stores
   (``engine="cpu"``: the simulator charges the socket's store threads once
   per GPU written); ``memcpy`` copies run on the GPUs' copy engines.

Staging buffers are finite: each of ``g<j>`` and ``sum`` holds ``buffers``
chunks, so the D2H of chunk c waits until the reduce of chunk c - buffers
has read its slot, and the reduce of chunk c until chunk c - buffers has
left ``sum`` (tree sends and H2D done). The per-chunk software cost of the
host stages (thread hand-off, ibverbs post/poll) is the CPU's
``reduce_latency`` per reduce and the copy and NIC latencies per transfer
(topology parameters).

Not published, so exposed as parameters (:data:`PARAMS`): the pipeline
chunk size ``chunk_bytes``, the staging slots ``buffers`` and the staging
placement; each [?] one declares its plausible range (``Param.range``),
which ``flyersim sensitivity`` sweeps.

Chunking: the paper pipelines "chunk by chunk" but does not publish the
chunk size. A message of ``nbytes`` per GPU is cut into
``ceil(nbytes / chunk_bytes)`` chunks (at most ``max_chunks``;
:mod:`collectives.chunking`). ``DEFAULT_CHUNK_BYTES`` = 512 KiB is an
analogy, not a measurement: it is NCCL's Simple-protocol step
(``NCCL_BUFFSIZE / NCCL_STEPS`` = 4 MiB / 8), the chunk NCCL's double binary
tree pipelines in, and HFReduce's inter-node stage is that tree (NCCL 2.4,
[P IV]). An explicit ``chunks`` overrides the size; without a size
(``nbytes=None``) ``DEFAULT_CHUNKS`` = 4 chunks are used.

>>> from flyersim.collectives.schedule import Layout
>>> from flyersim.collectives.verify import verify
>>> s = hfreduce_allreduce(Layout(nodes=2, gpus_per_node=4, sockets=2), chunks=2)
>>> verify(s); s.describe(0)
'xfer n0/gpu0:data -> n0/host0:g0 [0/2, 1/2)'
>>> hfreduce_allreduce(Layout(1, 8, 2), staging=[2] * 8)
Traceback (most recent call last):
ValueError: hfreduce: staging must give a socket 0..1 for each of the 8 GPUs, got [2, 2, 2, 2, 2, 2, 2, 2]
"""

import numpy as np

from flyersim.collectives import compose
from flyersim.collectives.chunking import DEFAULT_MAX_CHUNKS, NCCL_STEP_BYTES, choose_chunks
from flyersim.collectives.params import Param, Params
from flyersim.collectives.schedule import ScheduleBuilder

DEFAULT_CHUNKS = 4  # only when built without a message size
DEFAULT_CHUNK_BYTES = NCCL_STEP_BYTES  # [I] by analogy to NCCL's tree chunk (see the module docstring)
DEFAULT_BUFFERS = 8  # [?] staging slots per buffer, by analogy to NCCL_STEPS = 8 slots per connection
H2D = ("gdrcopy", "memcpy")
# [?] unpublished [P IV]: plausible ranges. chunk_bytes: NCCL's smallest tree chunk (128 KiB) to 4 MiB (NCCL's
# whole buffer); buffers: double buffering to 64 (every chunk of a 64-chunk pipeline has its own slot)
CHUNK_BYTES_RANGE, BUFFERS_RANGE = (128 << 10, 4 << 20), (2, 64)
PARAMS = Params(
    "hfreduce",
    Param("chunks", int, None, f"pipeline chunks (default: ceil(nbytes / chunk_bytes), at most max_chunks; "
                               f"{DEFAULT_CHUNKS} without a size)"),
    Param("staging", list, None, "socket of each GPU's D2H buffer (default: j % sockets, interleaved)"),
    Param("h2d", str, "gdrcopy", "H2D by gdrcopy (CPU stores, one host read per socket multicast to its GPUs) or "
                                 "memcpy (each GPU's copy engine)"),
    Param("buffers", int, DEFAULT_BUFFERS, "chunks each staging buffer holds ([?] by analogy to NCCL_STEPS, 2-64)",
          range=BUFFERS_RANGE),
    Param("chunk_bytes", int, DEFAULT_CHUNK_BYTES, "pipeline chunk size in bytes ([I] NCCL's Simple step, 512 KiB; "
                                                   "128 KiB-4 MiB)", range=CHUNK_BYTES_RANGE),
    Param("max_chunks", int, DEFAULT_MAX_CHUNKS, "cap on pipeline chunks (bounds the schedule's size)"),
)


def staging_sockets(layout, staging, algo):
    """Socket of each GPU's D2H buffer: ``staging`` checked, or ``j % sockets`` (interleaved) when None."""
    g, sockets = layout.gpus_per_node, layout.sockets
    if staging is None:
        return np.arange(g) % sockets
    arr = np.asarray(staging)
    if arr.shape != (g,) or arr.dtype.kind not in "iu" or np.any((arr < 0) | (arr >= sockets)):
        raise ValueError(f"{algo}: staging must give a socket 0..{sockets - 1} for each of the {g} GPUs, "
                         f"got {staging!r}")
    return arr


def check_h2d(h2d, buffers, algo):
    """Validate the H2D method and the staging slot count."""
    if h2d not in H2D:
        raise ValueError(f"{algo}: h2d must be one of {', '.join(H2D)}, got {h2d!r}")
    if isinstance(buffers, bool) or not isinstance(buffers, (int, np.integer)) or buffers < 1:
        raise ValueError(f"{algo}: buffers must be a positive integer, got {buffers!r}")


def host_allreduce(b, layout, span, owners, ready, staging, h2d, buffers):
    """Append steps 1-5 for one part of every chunk; returns the H2D op ids ``(nodes, chunks, len(owners))``.

    ``span`` is ``(lo, hi, den)``, arrays over chunks; ``owners`` are the local
    GPUs whose ``data`` holds the part (each a partial sum; together, the
    node's); ``ready`` op ids broadcast to ``(nodes, chunks, len(owners))``.
    Chunks go through every stage in order: a GPU's copies run in order on
    its copy stream, the CPU's reduce thread takes chunks in order, and each
    tree connection carries them in order (``fifo``), so chunk c of a stage
    waits for chunk c-1 of the same stage. Without that order every chunk
    would share every stage at once and the pipeline would not pipeline.
    """
    nodes, g, nic = layout.nodes, layout.gpus_per_node, layout.nic_socket
    gpu_sockets = np.asarray(layout.gpu_sockets)
    n = np.arange(nodes)
    chunks = len(span[0])
    ready = np.broadcast_to(ready, (nodes, chunks, len(owners)))
    nic_mem = layout.host(n, nic)
    hosts = layout.host(n, nic)[None, :]  # one tree over the NIC sockets' memories
    prev = {}  # stage -> op ids of the previous chunk in that stage (its FIFO predecessor)
    tree_fifo = {}
    out = np.full((nodes, chunks, len(owners)), -1, np.int64)
    reduced = []  # per chunk: the op that read the staging slots (the reduce, or the single D2H)

    def op(stage, make, deps):
        x = make(deps + [prev.get(stage, -1)])
        prev[stage] = x
        return x

    for c in range(chunks):
        sp = tuple(np.asarray(x)[c] for x in span)
        slot_free = reduced[c - buffers] if c >= buffers else -1  # staging slot of chunk c - buffers read
        sum_free = [out[:, c - buffers, i] for i in range(len(owners))] if c >= buffers else []
        staged = []
        for i, j in enumerate(owners):
            if len(owners) == 1:
                x = op(("d2h", j), lambda d: b.xfer(n * g + j, nic_mem, sp, "data", "sum", deps=d),
                       [ready[:, c, i]] + sum_free)
            else:
                src = layout.host(n, staging[j])
                x = op(("d2h", j), lambda d: b.xfer(n * g + j, src, sp, "data", f"g{j}", deps=d),
                       [ready[:, c, i], slot_free])
            staged.append(x)
        summed = staged[0]
        if len(owners) > 1:
            inputs = tuple((f"g{j}", layout.host(n, staging[j])) for j in owners)  # each read where it was staged
            summed = op("sum", lambda d: b.reduce(nic_mem, inputs, "sum", sp, deps=d), staged + sum_free)
        reduced.append(summed)
        final = compose.dbtree_allreduce(b, hosts, sp, summed[None, :], buf="sum", fifo=tree_fifo)[0]
        waits = [final[:, k] for k in range(final.shape[1])]
        if h2d == "gdrcopy":  # one read of "sum" per socket, multicast to the GPUs attached to it
            for s in sorted(set(gpu_sockets[owners].tolist())):
                mine = [i for i, j in enumerate(owners) if gpu_sockets[j] == s]
                prev_s = prev.get(("h2d", s), -1)
                x = b.multicast(nic_mem, [n * g + owners[i] for i in mine], sp, "sum", "data",
                                deps=list(waits) + [prev_s], engine="cpu")
                prev[("h2d", s)] = x[0]
                for row, i in enumerate(mine):
                    out[:, c, i] = x[row]
        else:
            for i, j in enumerate(owners):
                x = op(("h2d", j), lambda d: b.xfer(nic_mem, n * g + j, sp, "sum", "data", deps=d), list(waits))
                out[:, c, i] = x
    return out


def host_buffers(layout):
    """Buffers HFReduce schedules use besides ``data``."""
    return tuple(f"g{j}" for j in range(layout.gpus_per_node)) + ("sum", "recv0", "recv1")


def hfreduce_allreduce(layout, nbytes=None, **params):
    """HFReduce allreduce of ``data`` on every GPU (steps in the module docstring).

    ``nbytes``: message size per GPU (``None``: built without a size); ``params``: :data:`PARAMS`. The
    sockets of the GPUs and of the NIC are the layout's.
    """
    return _hfreduce(layout, nbytes, **PARAMS.bind(params))


def _hfreduce(layout, nbytes, chunks, staging, h2d, buffers, chunk_bytes, max_chunks):
    check_h2d(h2d, buffers, "hfreduce")
    chunks = choose_chunks(chunks, nbytes, chunk_bytes, max_chunks, DEFAULT_CHUNKS, "hfreduce")
    staging = staging_sockets(layout, staging, "hfreduce")
    b = ScheduleBuilder(layout, "allreduce", "hfreduce", buffers=("data",) + host_buffers(layout))
    c = np.arange(chunks)
    host_allreduce(b, layout, (c, c + 1, np.full(chunks, chunks)), np.arange(layout.gpus_per_node), -1,
                   staging, h2d, int(buffers))
    for r in range(layout.ranks):
        b.expect(r, "data", (0, 1, 1))
    return b.build()
