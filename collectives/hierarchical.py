"""Hierarchical allreduce: reduce-scatter inside each node, allreduce across nodes, allgather inside.

With g GPUs per node, local GPU j of every node owns piece j of g after the
intra-node reduce-scatter; the g groups of same-index GPUs (one per j, each
spanning all nodes) then allreduce their piece across nodes at once, and an
intra-node allgather spreads the pieces. Built from :mod:`collectives.compose`.

Parameters (:data:`PARAMS`): ``inner``, the intra-node algorithm (``"ring"``);
``outer``, the inter-node one, ``"dbtree"`` (NCCL's double binary tree,
pipelined in ``chunks`` chunks per tree; the default) or ``"ring"`` (takes no
chunks).

>>> from flyersim.collectives.schedule import Layout
>>> from flyersim.collectives.verify import verify
>>> s = hier_allreduce(Layout(nodes=3, gpus_per_node=2), outer="dbtree", chunks=2)
>>> verify(s); s.algo
'hier-ring-dbtree'
>>> hier_allreduce(Layout(2, 2), outer="halving")
Traceback (most recent call last):
ValueError: hier: unknown outer algorithm 'halving' (choose from ring, dbtree)
"""

import numpy as np

from flyersim.collectives import compose
from flyersim.collectives.params import Param, Params
from flyersim.collectives.schedule import ScheduleBuilder

INNER = ("ring",)
OUTER = ("ring", "dbtree")
PARAMS = Params(
    "hier",
    Param("inner", str, "ring", f"intra-node algorithm ({', '.join(INNER)})"),
    # dbtree across nodes by default: builds in 0.3 s at 1,250 nodes x 8 GPUs, where a ring outer phase has 37M ops
    Param("outer", str, "dbtree", f"inter-node algorithm ({', '.join(OUTER)})"),
    Param("chunks", int, 1, "pipeline chunks per tree of a dbtree outer phase"),
)


def hier_allreduce(layout, **params):
    """Allreduce of ``data`` on every GPU: intra-node ``inner`` reduce-scatter, inter-node ``outer``, allgather.

    ``params``: :data:`PARAMS`.
    """
    return _hier(layout, **PARAMS.bind(params))


def _hier(layout, inner, outer, chunks):
    if inner not in INNER:
        raise ValueError(f"hier: unknown inner algorithm {inner!r} (choose from {', '.join(INNER)})")
    if outer not in OUTER:
        raise ValueError(f"hier: unknown outer algorithm {outer!r} (choose from {', '.join(OUTER)})")
    if isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks < 1:
        raise ValueError(f"hier: chunks must be a positive integer, got {chunks!r}")
    if outer == "ring" and chunks != 1:
        raise ValueError(f"hier: chunks pipelines the dbtree outer phase only, got chunks={chunks} with outer='ring'")
    g = layout.gpus_per_node
    b = ScheduleBuilder(layout, "allreduce", f"hier-{inner}-{outer}", buffers=("data", "recv", "recv0", "recv1"))
    by_node = np.arange(layout.ranks).reshape(layout.nodes, g)
    owned = compose.ring_reduce_scatter(b, by_node)
    j = np.arange(g)
    piece = (j, j + 1, np.full(g, g))  # local GPU j's piece, one group per j
    if outer == "ring":
        across = compose.ring_allreduce(b, by_node.T, piece, owned.transpose(1, 0, 2))
    else:
        across = compose.dbtree_allreduce(b, by_node.T, piece, owned.transpose(1, 0, 2), chunks=chunks)
    compose.ring_allgather(b, by_node, ready=across.transpose(1, 0, 2))
    for r in range(layout.ranks):
        b.expect(r, "data", (0, 1, 1))
    return b.build()
