"""Double binary tree allreduce (NCCL 2.4; Sanders, Speck and Traeff's two-tree algorithm).

Two binary trees span the ranks and each reduces then broadcasts half the
message. Tree 0 is NCCL's ``ncclGetBtree`` (root 0 with one child, the
largest power of two below p; odd ranks are leaves); tree 1 mirrors it
(rank r -> p-1-r) when p is even and shifts it by one (r -> r+1 mod p) when
p is odd, as ``ncclGetDtree`` in NCCL's src/graph/trees.cc (shapes from
:mod:`collectives.trees`). For even p no rank is an inner node of both
trees; for odd p rank 0 is the exception (the one-child root of tree 0 and
an inner node of tree 1), exactly as in NCCL.

Each half is cut into chunks of ``chunk_bytes`` (default 512 KiB, NCCL's
Simple step ``NCCL_BUFFSIZE / NCCL_STEPS``, the chunk NCCL's tree pipelines
in; :mod:`collectives.chunking`): ``ceil(nbytes / 2 / chunk_bytes)`` per
tree, at most ``max_chunks``; 8 when built without a size, or an explicit
``chunks``. A node reduces chunk c of
its own data with what its children sent (into ``recv0``/``recv1``) and
sends it up; the root's result is broadcast down into ``data``. Besides the
data dependencies, a connection carries its chunks in order and a node
reduces them in order, as NCCL does; without that a no-contention model would
let all chunks cross one link at once. Chunk c then needs only chunk c-1 to
clear each link, so with depth d the critical path is about 2d + k - 1 chunk
steps of ``a + n/(2k) b`` (cost-models.md quotes the cruder 2(d + k - 1)).
Each tree and chunk is :func:`collectives.compose.binary_tree_allreduce`, the
one tree builder NCCL's tree and HFReduce's inter-node stage use too.

>>> from flyersim.collectives.schedule import Layout
>>> s = dbtree_allreduce(Layout(nodes=1, gpus_per_node=2), chunks=2)
>>> s.num_ops, s.describe(0)
(12, 'xfer n0/gpu1:data -> n0/gpu0:recv0 [0/4, 1/4)')
"""

import numpy as np

from flyersim.collectives.chunking import DEFAULT_MAX_CHUNKS, NCCL_STEP_BYTES, choose_chunks
from flyersim.collectives.compose import binary_tree_allreduce
from flyersim.collectives.params import Param, Params
from flyersim.collectives.schedule import ScheduleBuilder
from flyersim.collectives.trees import double_binary_tree

DEFAULT_CHUNKS = 8  # per tree, only when built without a message size
PARAMS = Params(
    "dbtree",
    Param("chunks", int, None, f"pipeline chunks per tree (default: half the message in chunk_bytes chunks, at most "
                               f"max_chunks; {DEFAULT_CHUNKS} without a size)"),
    Param("chunk_bytes", int, NCCL_STEP_BYTES, "pipeline chunk size in bytes (NCCL's Simple step, 512 KiB)"),
    Param("max_chunks", int, DEFAULT_MAX_CHUNKS, "cap on pipeline chunks per tree (bounds the schedule's size)"),
)


def dbtree_allreduce(layout, nbytes=None, **params):
    """Allreduce of buffer ``data`` on every rank of ``layout`` over NCCL's double binary tree.

    ``nbytes``: message size per rank (``None``: built without a size); ``params``: :data:`PARAMS`.
    """
    return _dbtree(layout, nbytes, **PARAMS.bind(params))


def _dbtree(layout, nbytes, chunks, chunk_bytes, max_chunks):
    chunks = choose_chunks(chunks, nbytes, chunk_bytes, max_chunks, DEFAULT_CHUNKS, "dbtree", per=2)
    p = layout.ranks
    b = ScheduleBuilder(layout, "allreduce", "dbtree", buffers=("data", "recv0", "recv1"))
    ranks = np.arange(p)[None, :]
    for half, (parent, child) in enumerate(zip(*double_binary_tree(p))):
        fifo = {}  # chunk c waits for chunk c-1 on the same link / engine
        for c in range(chunks):
            binary_tree_allreduce(b, ranks, parent, child, (half * chunks + c, half * chunks + c + 1, 2 * chunks),
                                  fifo=fifo)
    for r in range(p):
        b.expect(r, "data", (0, 1, 1))
    return b.build()
