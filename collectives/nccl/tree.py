"""NCCL's tree allreduce (NCCL >= 2.4 ``src/graph/trees.cc`` / ``connect.cc``), over its transports.

Inside each server a chain over ``local_order`` (NCCL's by default,
:func:`.paths.local_order`) whose head (``local_order[0]``) joins the
inter-server double binary tree (:func:`collectives.trees.double_binary_tree`
over servers, built by :func:`collectives.compose.binary_tree_allreduce` with
NCCL's transports as its hop); channel c uses tree ``c % 2``. Each channel's part is cut into
``chunks`` chunks of NCCL's tree ``chunkSize`` (one Simple step, 512 KiB,
halved while a channel has fewer than 8x / 4x / 1x the tree depth ``g - 1 +
log2(servers)`` chunks, down to 128 / 64 / 32 KiB, as ``src/enqueue.cc`` and
``connectTrees`` do; at most ``max_chunks``; 8 when built without a size),
pipelined: reduce up the chain, up the tree, broadcast down the tree and down
the chain, each connection carrying chunks in order. Every hop is one of
NCCL's transports (:mod:`.transports`).

>>> from flyersim.collectives.schedule import Layout
>>> from flyersim.collectives.verify import verify
>>> verify(nccl_tree(Layout(3, 2), gdr=False, chunks=2))
"""

import numpy as np

from flyersim.collectives.chunking import NCCL_STEP_BYTES, choose_chunks
from flyersim.collectives.compose import binary_tree_allreduce
from flyersim.collectives.nccl.transports import SHARED, Transports, from_search, order, parts, positive, \
    stage_buffers
from flyersim.collectives.params import Param, Params
from flyersim.collectives.schedule import ScheduleBuilder
from flyersim.collectives.trees import double_binary_tree

TREE_TAGS = ("cu", "cd", "tu0", "tu1", "td0", "td1")
PARAMS = Params(
    "nccl-tree", *SHARED,
    Param("chunks", int, None, "chunks per channel (default: NCCL's chunkSize for the size, at most max_chunks; "
                               "8 without a size)"),
    Param("chunk_bytes", int, NCCL_STEP_BYTES, "NCCL's tree chunkSize before halving (Simple: one step, 512 KiB)"),
)


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


def nccl_tree(layout, nbytes=None, search=None, **params):
    """NCCL tree allreduce of ``data`` on every GPU (see the module docstring).

    ``nbytes``, ``search`` and ``params`` (:data:`PARAMS`) as :func:`.ring.nccl_ring`'s.
    """
    return _tree(layout, nbytes, **from_search(layout, search, PARAMS.bind(params)))


def _tree(layout, nbytes, channels, p2p, gdr, local_order, max_chunks, chunks, chunk_bytes):
    positive("channels", channels)
    if chunks is None and nbytes is not None:
        depth = layout.gpus_per_node - 1 + max(int(layout.nodes), 1).bit_length() - 1  # connectTrees' depth
        chunk_bytes = tree_chunk_bytes(int(nbytes), channels, depth, chunk_bytes)
    chunks = choose_chunks(chunks, nbytes, chunk_bytes, max_chunks, 8, "nccl", per=channels)
    local = order(layout, local_order)
    g, nodes = layout.gpus_per_node, layout.nodes
    chain = layout.rank(np.arange(nodes)[:, None], local[None, :])  # (nodes, g): chain position -> rank; head at 0
    heads = chain[:, 0]
    t = Transports(layout, p2p, gdr)

    def hop(b, src, dst, span, src_buf, dst_buf, deps, tag):  # NCCL's tree sends "data" over its transports
        return t.hop(b, src, dst, span, dst_buf, deps, tag)
    b = ScheduleBuilder(layout, "allreduce", "nccl-tree", buffers=("data", "recv", "recv0", "recv1")
                        + stage_buffers(TREE_TAGS))
    parents, children = double_binary_tree(nodes)
    tree_of = np.arange(channels) % 2
    # per connection FIFO: first xfer of the previous chunk's hop on it (-1: none)
    fifo = {}

    for c in range(chunks):
        piece = parts(channels, chunks, c)  # (channels, 1) against (channels, nodes)
        # 1. reduce up each server's chain, last position first
        up = np.full((channels, nodes), -1)
        for i in range(g - 1, 0, -1):
            key = ("cu", i)
            fifo[key], sent = t.hop(b, chain[:, i], chain[:, i - 1], piece, "recv", [up, fifo.get(key, -1)], "cu")
            up = b.reduce(at=np.broadcast_to(chain[:, i - 1], sent.shape), inputs=("data", "recv"), out="data",
                          span=piece, deps=[sent]).reshape(sent.shape)
        # 2-3. up and down the inter-server trees between the heads, each channel on its tree, over the transports
        node_up = up  # op completing each server head's partial sum (-1: its own data)
        down = np.full((channels, nodes), -1)
        for tree in (0, 1):
            rows = np.flatnonzero(tree_of == tree)
            if rows.size == 0 or nodes == 1:
                continue
            final = binary_tree_allreduce(
                b, np.broadcast_to(heads, (rows.size, nodes)), parents[tree], children[tree],
                tuple(x[rows][:, :, None] for x in piece), [node_up[rows][:, None, :]], hop=hop, fifo=fifo,
                key=("tree", tree), receiver_waits=False, engine_order=False)
            down[rows] = final[:, 0, :]
        if nodes == 1:
            down = node_up
        # 4. broadcast down each chain
        for i in range(1, g):
            key = ("cd", i)
            fifo[key], down = t.hop(b, chain[:, i - 1], chain[:, i], piece, "data", [down, fifo.get(key, -1)], "cd")
    for r in range(layout.ranks):
        b.expect(r, "data", (0, 1, 1))
    return b.build()
