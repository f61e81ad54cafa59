"""What NCCL does on a node: ring and tree allreduce over the node's real transports.

The generators are pure: every topology-dependent decision arrives as an
argument (``sim.nccl_topo.nccl_params`` derives them from a hardware graph the
way NCCL's ``src/graph/paths.cc`` and ``search.cc`` do). Each hop between two
GPU ranks is one of NCCL's transports (NCCL 2.7-2.18, ``src/transport/``):

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
phase of the algorithm, at host locations.

Ring (``nccl_ring``): NCCL orders the ranks of a server one after the other
and servers one after another (its ring search on PCIe servers enters and
leaves a server through GPUs close to the NIC; ``local_order`` gives the
order, by default NIC-socket GPU first, other sockets' GPUs, then the
remaining NIC-socket GPUs, so the ring crosses sockets twice and talks to
the network from the NIC's socket). The message is split over ``channels``
rings (NCCL runs each channel on its own SMs over its own connections; the
duplicated channels follow the same ring), and each channel's part into
``chunks`` rounds (NCCL's ring loop handles ``nranks * chunkSize`` per
round, ``chunkSize`` = ``ALLREDUCE_CHUNKSTEPS`` steps = 2 MiB for Simple,
``src/enqueue.cc`` and ``src/include/collectives.h``; so by default
``ceil(nbytes / (channels * nranks * chunk_bytes))`` rounds), each a ring
reduce-scatter + allgather; round c of a connection waits for round c-1 on
it (FIFO). [Not modelled: inside a round NCCL moves each step's data in
slices of 2 steps through a staged (SHM/NET) hop, overlapping its stages;
here a hop's stages run one after another per round.]

Tree (``nccl_tree``, NCCL >= 2.4 ``trees.cc`` / ``connect.cc``): inside each
server a chain over ``local_order`` whose head (``local_order[0]``) joins
the inter-server double binary tree (:func:`collectives.trees.double_binary_tree`
over servers); channel c uses tree ``c % 2``. Each channel's part is cut into
``chunks`` chunks of NCCL's tree ``chunkSize`` (one Simple step, 512 KiB,
halved while a channel has fewer than 8x / 4x / 1x the tree depth
``g - 1 + log2(servers)`` chunks, down to 128 / 64 / 32 KiB, as
``src/enqueue.cc`` and ``connectTrees`` do; at most ``max_chunks``; 8 when
built without a size), pipelined: reduce up the chain, up the tree, broadcast down
the tree and down the chain, each connection carrying chunks in order.

>>> from flyersim.collectives.schedule import Layout
>>> from flyersim.collectives.verify import verify
>>> s = nccl_ring(Layout(2, 2, sockets=2, gpu_sockets=(0, 1), nic_sockets=(1,)), channels=1, p2p=False)
>>> verify(s); s.describe(0)
'xfer n0/gpu1:data -> n0/host0:rs.shm [3/4, 4/4)'
>>> verify(nccl_tree(Layout(3, 2), gdr=False, chunks=2))
"""

import numpy as np

from flyersim.collectives.chunking import ALLREDUCE_CHUNKSTEPS, DEFAULT_MAX_CHUNKS, NCCL_STEP_BYTES, choose_chunks
from flyersim.collectives.compose import split
from flyersim.collectives.schedule import ScheduleBuilder
from flyersim.collectives.trees import double_binary_tree, tree_depths, tree_heights

DIRECT, SHM, NET_STAGED = 0, 1, 2
RING_TAGS = ("rs", "ag")
TREE_TAGS = ("cu", "cd", "tu0", "tu1", "td0", "td1")


def default_local_order(layout, gpu_sockets=None, nic_socket=None):
    """Local GPU order inside a server: a NIC-socket GPU first, other sockets' GPUs, the rest of the NIC socket's."""
    g = layout.gpus_per_node
    nic = layout.nic_socket if nic_socket is None else nic_socket
    sock = [layout.gpu_socket(j) for j in range(g)] if gpu_sockets is None else list(gpu_sockets)
    near = [j for j in range(g) if sock[j] == nic]
    far = [j for j in range(g) if sock[j] != nic]
    return near[:1] + far + near[1:] if near else list(range(g))


def _stage_buffers(tags):
    return tuple(f"{t}.{suffix}" for t in tags for suffix in ("shm", "s", "r"))


class _Transports:
    """Which transport each (src, dst) GPU pair uses, and the xfers of a hop."""

    def __init__(self, layout, p2p, gdr, gpu_sockets=None, nic_socket=None):
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
        sockets = [layout.gpu_socket(j) for j in range(g)] if gpu_sockets is None else list(gpu_sockets)
        self.nic_socket = layout.nic_socket if nic_socket is None else int(nic_socket)
        if len(sockets) != g or not all(0 <= s < layout.sockets for s in sockets) \
                or not 0 <= self.nic_socket < layout.sockets:
            raise ValueError(f"nccl: gpu_sockets {sockets} / nic_socket {self.nic_socket} do not fit "
                             f"{g} GPUs on {layout.sockets} sockets")
        self.gpu_socket = np.array(sockets, np.int64)

    def kind(self, src, dst):
        lay = self.layout
        same = lay.node_of(src) == lay.node_of(dst)
        g = lay.gpus_per_node
        direct_local = self.allowed[src % g, dst % g]
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
        g = lay.gpus_per_node
        for k in np.unique(kind):
            i = np.flatnonzero(kind == k)
            s, d = src[i], dst[i]
            if k == DIRECT:
                locs, bufs = [s, d], ["data", dst_buf]
            elif k == SHM:
                locs = [s, lay.host(lay.node_of(d), self.gpu_socket[d % g]), d]
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


def _check(name, value):
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"nccl {name} must be a positive integer, got {value!r}")


def _parts(channels, chunks, c):
    """Span of chunk ``c`` of every channel: piece ``ch * chunks + c`` of ``channels * chunks``, shape (channels, 1)."""
    ch = np.arange(channels)
    return tuple(np.broadcast_to(x, (channels,))[:, None] for x in split((0, 1, 1), ch * chunks + c, channels * chunks))


def _order(layout, local_order, gpu_sockets, nic_socket):
    g = layout.gpus_per_node
    local = (default_local_order(layout, gpu_sockets, nic_socket) if local_order is None
             else [int(j) for j in local_order])
    if sorted(local) != list(range(g)):
        raise ValueError(f"nccl local_order {local} is not a permutation of 0..{g - 1}")
    return np.asarray(local, np.int64)


def nccl_ring(layout, channels=2, p2p=True, gdr=False, chunks=None, local_order=None, gpu_sockets=None,
              nic_socket=None, nbytes=None, chunk_bytes=ALLREDUCE_CHUNKSTEPS * NCCL_STEP_BYTES,
              max_chunks=DEFAULT_MAX_CHUNKS):
    """NCCL ring allreduce over ``channels`` rings, each on its own part, in ``chunks`` rounds.

    ``chunks`` defaults to NCCL's loop count ``ceil(nbytes / (channels * ranks * chunk_bytes))`` (1 without a size).
    """
    _check("channels", channels)
    chunks = choose_chunks(chunks, nbytes, chunk_bytes, max_chunks, 1, "nccl", per=channels * layout.ranks)
    local = _order(layout, local_order, gpu_sockets, nic_socket)
    g, p = layout.gpus_per_node, layout.ranks
    order = (np.arange(layout.nodes)[:, None] * g + local[None, :]).ravel()  # ring position -> rank
    t = _Transports(layout, p2p, gdr, gpu_sockets, nic_socket)
    b = ScheduleBuilder(layout, "allreduce", "nccl-ring", buffers=("data", "recv") + _stage_buffers(RING_TAGS))
    pos = np.arange(p)
    nxt = (pos + 1) % p
    src, dst = order[pos], order[nxt]
    fifo_rs = np.full((channels, p), -1)  # per connection (sender position): first xfer of its previous send
    fifo_ag = np.full((channels, p), -1)
    for c in range(chunks):
        # channel ch, round c: piece ch * chunks + c of channels * chunks
        span = _parts(channels, chunks, c)
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


def tree_chunk_bytes(nbytes, channels, depth, chunk_bytes=NCCL_STEP_BYTES):
    """NCCL's tree ``chunkSize`` for ``nbytes`` (``src/enqueue.cc``, Simple protocol, NCCL 2.7-2.18).

    >>> tree_chunk_bytes(186 << 20, 2, 14) >> 10, tree_chunk_bytes(1 << 20, 2, 14) >> 10
    (512, 32)
    """
    c = int(chunk_bytes)
    for mult, floor in ((8, 131072), (4, 65536), (1, 32768)):
        while nbytes // (channels * c) < depth * mult and c > floor:
            c //= 2
    return c


def nccl_tree(layout, channels=2, p2p=True, gdr=False, chunks=None, local_order=None, gpu_sockets=None,
              nic_socket=None, nbytes=None, chunk_bytes=NCCL_STEP_BYTES, max_chunks=DEFAULT_MAX_CHUNKS):
    """NCCL tree allreduce: intra-server chain + inter-server double binary tree, pipelined in ``chunks``.

    ``chunks`` per channel defaults to ``ceil(nbytes / channels / chunkSize)`` with NCCL's chunkSize
    (:func:`tree_chunk_bytes` from ``chunk_bytes``), at most ``max_chunks``; 8 without a size.
    """
    _check("channels", channels)
    if chunks is None and nbytes is not None:
        depth = layout.gpus_per_node - 1 + max(int(layout.nodes), 1).bit_length() - 1  # connectTrees' depth
        chunk_bytes = tree_chunk_bytes(int(nbytes), channels, depth, chunk_bytes)
    chunks = choose_chunks(chunks, nbytes, chunk_bytes, max_chunks, 8, "nccl", per=channels)
    local = _order(layout, local_order, gpu_sockets, nic_socket)
    g, nodes = layout.gpus_per_node, layout.nodes
    chain = np.arange(nodes)[:, None] * g + local[None, :]  # (nodes, g): chain position -> rank; head at 0
    heads = chain[:, 0]
    t = _Transports(layout, p2p, gdr, gpu_sockets, nic_socket)
    b = ScheduleBuilder(layout, "allreduce", "nccl-tree", buffers=("data", "recv", "recv0", "recv1")
                        + _stage_buffers(TREE_TAGS))
    parents, children = double_binary_tree(nodes)
    tree_of = np.arange(channels) % 2
    # per connection FIFO: first xfer of the previous chunk's hop on it (-1: none)
    fifo = {}

    for c in range(chunks):
        piece = _parts(channels, chunks, c)  # (channels, 1) against (channels, nodes)
        # 1. reduce up each server's chain, last position first
        up = np.full((channels, nodes), -1)
        for i in range(g - 1, 0, -1):
            key = ("cu", i)
            fifo[key], sent = t.hop(b, chain[:, i], chain[:, i - 1], piece, "recv", [up, fifo.get(key, -1)], "cu")
            up = b.reduce(at=np.broadcast_to(chain[:, i - 1], sent.shape), inputs=("data", "recv"), out="data",
                          span=piece, deps=[sent]).reshape(sent.shape)
        # 2. up the inter-server trees, by height, each channel on its tree
        node_up = up  # op completing each server head's partial sum (-1: its own data)
        down = np.full((channels, nodes), -1)
        for tree in (0, 1):
            rows = np.flatnonzero(tree_of == tree)
            if rows.size == 0 or nodes == 1:
                continue
            par, kids = parents[tree], children[tree]
            sub = tuple(x[rows] for x in piece)
            done = node_up[rows].copy()
            heights = tree_heights(par)
            for h in range(1, heights.max() + 1):
                level = np.flatnonzero(heights == h)
                got = np.full((2, rows.size, level.size), -1)
                for slot in (0, 1):
                    has = kids[level, slot] >= 0
                    at, kid = level[has], kids[level[has], slot]
                    key = ("tu", tree, slot, h)
                    fifo[key], x = t.hop(b, heads[kid], heads[at], sub, f"recv{slot}",
                                         [done[:, kid], fifo.get(key, -1)], f"tu{slot}")
                    got[slot][:, has] = x
                nk = (kids[level] >= 0).sum(axis=1)
                for k in (1, 2):
                    sel = nk == k
                    at = level[sel]
                    r = b.reduce(at=np.broadcast_to(heads[at], (rows.size, at.size)),
                                 inputs=("data", "recv0", "recv1")[:k + 1], out="data", span=sub,
                                 deps=[got[0][:, sel], got[1][:, sel], done[:, at]])
                    done[:, at] = r.reshape(rows.size, at.size)
            # 3. broadcast down the tree, by depth
            depths = tree_depths(par)
            bcast = done.copy()
            for d in range(1, depths.max() + 1):
                at = np.flatnonzero(depths == d)
                slot = (kids[par[at], 1] == at).astype(np.int64)
                for s in (0, 1):
                    a = at[slot == s]
                    key = ("td", tree, s, d)
                    fifo[key], x = t.hop(b, heads[par[a]], heads[a], sub, "data",
                                         [bcast[:, par[a]], fifo.get(key, -1)], f"td{s}")
                    bcast[:, a] = x
            down[rows] = bcast
        if nodes == 1:
            down = node_up
        # 4. broadcast down each chain
        for i in range(1, g):
            key = ("cd", i)
            fifo[key], down = t.hop(b, chain[:, i - 1], chain[:, i], piece, "data", [down, fifo.get(key, -1)], "cd")
    for r in range(layout.ranks):
        b.expect(r, "data", (0, 1, 1))
    return b.build()
