"""NCCL's transports (NCCL 2.7-2.18, ``src/transport/``): how one hop between two GPU ranks moves data.

- **P2P** (``p2p.cc``): GPU -> GPU directly, one xfer. Used inside a server
  when ``p2p`` allows the pair (True: every pair; a collection of local
  ``(i, j)`` pairs: those only) or the pair is NVLink-bridged
  (``layout.nvlink_pairs``; an NVLink path is always within NCCL's P2P level).
- **SHM** (``shm.cc``): inside a server when P2P is not allowed, the sender
  writes into a host shared-memory buffer and the receiver reads it: GPU ->
  host -> GPU. The buffer is the receiver's (``shmRecvSetup`` allocates it),
  so it sits on the receiving GPU's socket [I: first-touch by a process bound
  to the GPU's NUMA node, as NCCL binds ranks].
- **NET** (``net.cc``): between servers. With GPUDirect RDMA (``gdr``) the NIC
  reads and writes GPU memory: one xfer GPU -> remote GPU. Without it, both
  proxies stage through pinned host memory next to the NIC: GPU -> host(NIC
  socket) -> network -> host(NIC socket) -> GPU.

Staging buffers are named ``<tag>.shm``, ``<tag>.s`` and ``<tag>.r`` per
phase of an algorithm, at host locations. The parameters NCCL's ring and tree
share are declared here (:data:`SHARED`); those left ``None`` come from
NCCL's search on the topology (:func:`from_search`).

>>> from flyersim.collectives.schedule import Layout, ScheduleBuilder
>>> lay = Layout(2, 2, sockets=2, gpu_sockets=(0, 1), nic_sockets=(1,))
>>> b = ScheduleBuilder(lay, "allreduce", "demo", buffers=("data", "recv") + stage_buffers(("x",)))
>>> first, last = Transports(lay, p2p=False, gdr=False).hop(b, 1, 2, (0, 1, 1), "recv", [], "x")
>>> [b.build().describe(op) for op in range(first, last + 1)]
['xfer n0/gpu1:data -> n0/host1:x.s [0/1, 1/1)', 'xfer n0/host1:x.s -> n1/host1:x.r [0/1, 1/1)', 'xfer n1/host1:x.r -> n1/gpu0:recv [0/1, 1/1)']
"""

import numpy as np

from flyersim.collectives.chunking import DEFAULT_MAX_CHUNKS
from flyersim.collectives.compose import split
from flyersim.collectives.nccl import paths
from flyersim.collectives.nccl.search import search as nccl_search
from flyersim.collectives.params import Param

DIRECT, SHM, NET_STAGED = 0, 1, 2
SHARED = (
    Param("channels", int, None, "channels, each on its own part of the message (default: NCCL's search on the "
                                 "topology, twice the ring channels it finds; 2 without a topology)"),
    Param("p2p", (bool, list, tuple), None, "GPU pairs that talk P2P: true (all), false (none) or a list of local "
                                            "pairs (default: NCCL's P2P level on the layout's path classes)"),
    Param("gdr", bool, None, "GPUDirect RDMA between servers (default: NCCL's GDR level on the GPU-NIC path classes)"),
    Param("local_order", (list, tuple), None, "order of a server's GPUs in the ring / chain (default: NCCL's, "
                                              "entering and leaving through the NIC's socket)"),
    Param("max_chunks", int, DEFAULT_MAX_CHUNKS, "cap on pipeline chunks (bounds the schedule's size)"),
    Param("nccl_version", str, None, "NCCL release whose P2P rule the search applies, e.g. 2.10.3 (default: the "
                                     "cluster's [nccl] version, else 2.23); runners pass it to the search"),
)


def stage_buffers(tags):
    """Host staging buffers of the phases ``tags``."""
    return tuple(f"{t}.{suffix}" for t in tags for suffix in ("shm", "s", "r"))


def from_search(layout, search, values):
    """``values`` with NCCL's search result filled in where None (``search`` None: searched on ``layout`` alone)."""
    out = dict(values)
    version = out.pop("nccl_version")  # a runner's search already applied it
    found = search or nccl_search(layout, version=version)
    for name in ("channels", "p2p", "gdr"):
        if out[name] is None:
            out[name] = getattr(found, name)
    return out


def positive(name, value):
    """``value`` if a positive integer, else ValueError naming NCCL's parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"nccl {name} must be a positive integer, got {value!r}")
    return value


def parts(channels, chunks, c):
    """Span of chunk ``c`` of every channel: piece ``ch * chunks + c`` of ``channels * chunks``, shape (channels, 1)."""
    ch = np.arange(channels)
    return tuple(np.broadcast_to(x, (channels,))[:, None] for x in split((0, 1, 1), ch * chunks + c, channels * chunks))


def order(layout, local_order):
    """``local_order`` checked (None: NCCL's, :func:`.paths.local_order`), as an array."""
    g = layout.gpus_per_node
    local = paths.local_order(layout) if local_order is None else [int(j) for j in local_order]
    if sorted(local) != list(range(g)):
        raise ValueError(f"nccl local_order {local} is not a permutation of 0..{g - 1}")
    return np.asarray(local, np.int64)


class Transports:
    """Which transport each (src, dst) GPU pair uses, and the xfers of a hop."""

    def __init__(self, layout, p2p, gdr):
        self.layout = layout
        g = layout.gpus_per_node
        allowed = np.zeros((g, g), bool)
        if p2p is True:
            allowed[:] = True
        elif p2p:
            for i, j in p2p:
                allowed[i, j] = allowed[j, i] = True
        for i, j in layout.nvlink_pairs:
            allowed[i, j] = allowed[j, i] = True
        self.allowed = allowed
        self.gdr = bool(gdr)
        self.nic_socket = layout.nic_socket
        self.gpu_socket = np.asarray(layout.gpu_sockets, np.int64)

    def kind(self, src, dst):
        lay = self.layout
        same = lay.node_of(src) == lay.node_of(dst)
        direct_local = self.allowed[lay.local(src), lay.local(dst)]
        return np.where(same, np.where(direct_local, DIRECT, SHM), DIRECT if self.gdr else NET_STAGED)

    def hop(self, b, src, dst, span, dst_buf, deps, tag):
        """Copy ``span`` of ``data`` at GPU ranks ``src`` into ``dst_buf`` at ranks ``dst``.

        All arguments broadcast to the hops' shape; returns the op ids of each
        hop's first xfer (a connection's FIFO order is on it) and of its last
        (after which ``dst`` may read the data), both of that shape.
        """
        lay = self.layout
        arrays = np.broadcast_arrays(np.asarray(src), np.asarray(dst), *(np.asarray(x) for x in span),
                                     *(np.asarray(d) for d in deps))
        shape = arrays[0].shape
        src, dst, lo, hi, den, *deps = (a.ravel() for a in arrays)
        kind = self.kind(src, dst)
        first, out = np.full(src.size, -1, np.int64), np.full(src.size, -1, np.int64)
        for k in np.unique(kind):
            i = np.flatnonzero(kind == k)
            s, d = src[i], dst[i]
            if k == DIRECT:
                locs, bufs = [s, d], ["data", dst_buf]
            elif k == SHM:
                locs = [s, lay.host(lay.node_of(d), self.gpu_socket[lay.local(d)]), d]
                bufs = ["data", f"{tag}.shm", dst_buf]
            else:
                locs = [s, lay.host(lay.node_of(s), self.nic_socket), lay.host(lay.node_of(d), self.nic_socket), d]
                bufs = ["data", f"{tag}.s", f"{tag}.r", dst_buf]
            prev = [x[i] for x in deps]
            for a in range(len(locs) - 1):
                x = b.xfer(src=locs[a], dst=locs[a + 1], span=(lo[i], hi[i], den[i]),
                           src_buf=bufs[a], dst_buf=bufs[a + 1], deps=prev)
                if a == 0:
                    first[i] = x
                prev = [x]
            out[i] = prev[0]
        return first.reshape(shape), out.reshape(shape)
