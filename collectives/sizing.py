"""Upper bounds on the ops of a schedule, computed before building it (the size check's input).

A schedule's memory grows with its ops (a 4,096-GPU ring has 50M), so runners
refuse work that cannot fit before building anything. ``OPS`` maps each
registered ``(collective, algorithm)`` to a bound ``f(n, g, nodes, nbytes, p)``
(or, for one that picks another by size, to the names it may pick):
``n`` ranks, ``g`` GPUs per server, ``p`` the algorithm's declared parameters
bound as its builder binds them (defaults, ``--param``, NCCL's search), so
chunk counts follow the builder's own rules. Each bound is within a small
factor above the real count; ``tests/test_sizing.py`` checks that for every
registered algorithm, so an algorithm without a bound fails the tests.

>>> from flyersim.collectives import build
>>> from flyersim.collectives.schedule import Layout
>>> op_bound("ring", Layout(nodes=512, gpus_per_node=8), 1 << 20)
50319360
>>> op_bound("hfreduce", Layout(nodes=2, gpus_per_node=8), 186 << 20) >= build("hfreduce", Layout(2, 8), nbytes=186 << 20).num_ops
True
"""

import math

from flyersim.collectives import get
from flyersim.collectives.chunking import choose_chunks
from flyersim.collectives.nccl.transports import from_search
from flyersim.collectives.nccl.tree import tree_chunk_bytes


def _log2(n):
    return max(1, math.ceil(math.log2(n)))


def _chunks(p, nbytes, fallback, per=1, chunk_bytes=None):
    """The generator's own chunk count (same rule, same defaults, same ``--param``)."""
    return choose_chunks(p.get("chunks"), nbytes, chunk_bytes or p["chunk_bytes"], p["max_chunks"], fallback,
                         p["algo"], per=per)


def _nccl_tree(n, g, nodes, nbytes, p):
    ch = p["channels"]
    chunk = p["chunk_bytes"]
    if p.get("chunks") is None and nbytes is not None:
        chunk = tree_chunk_bytes(int(nbytes), ch, g - 1 + max(nodes, 1).bit_length() - 1, chunk)
    return _chunks(p, nbytes, 8, per=ch, chunk_bytes=chunk) * ch * (7 * n + 6 * nodes)


def _nccl_ring(n, g, nodes, nbytes, p):
    ch = p["channels"]
    return _chunks(p, nbytes, 1, per=ch * n) * ch * 7 * n * (n - 1)


def _hier(n, g, nodes, nbytes, p):
    outer = 3 * g * nodes * (nodes - 1) if p["outer"] == "ring" else 5 * n * p["chunks"]
    return 3 * n * (g - 1) + outer


OPS = {
    ("allreduce", "ring"): lambda n, g, nodes, nbytes, p: 3 * n * (n - 1),
    ("allreduce", "tree"): lambda n, g, nodes, nbytes, p: 3 * n,
    ("allreduce", "dbtree"): lambda n, g, nodes, nbytes, p: 2 * _chunks(p, nbytes, 8, per=2) * 5 * n,
    ("allreduce", "rd"): lambda n, g, nodes, nbytes, p: 2 * n * (_log2(n) + 1),
    ("allreduce", "rabenseifner"): lambda n, g, nodes, nbytes, p: 3 * n * (_log2(n) + 1),
    ("allreduce", "hier"): _hier,
    ("allreduce", "smp"): lambda n, g, nodes, nbytes, p: 3 * n + 3 * nodes * (_log2(nodes) + 1),
    ("allreduce", "hfreduce"): lambda n, g, nodes, nbytes, p: _chunks(p, nbytes, 4) * (3 * n + 8 * nodes),
    ("allreduce", "hfreduce-nvlink"): lambda n, g, nodes, nbytes, p: _chunks(p, nbytes, 4) * (6 * n + 8 * nodes),
    ("allreduce", "nccl-ring"): _nccl_ring,
    ("allreduce", "nccl-tree"): _nccl_tree,
    ("allreduce", "nccl"): ("nccl-ring", "nccl-tree"),  # resolved by size: the larger of the two
    ("reduce_scatter", "ring"): lambda n, g, nodes, nbytes, p: 2 * n * (n - 1),
    ("reduce_scatter", "rh"): lambda n, g, nodes, nbytes, p: 2 * n * (_log2(n) + 1),
    ("allgather", "ring"): lambda n, g, nodes, nbytes, p: n * (n - 1),
    ("allgather", "rd"): lambda n, g, nodes, nbytes, p: n * (_log2(n) + 1),
    ("broadcast", "tree"): lambda n, g, nodes, nbytes, p: n,
    ("reduce", "tree"): lambda n, g, nodes, nbytes, p: 2 * n,
}


# Ops a streamed run holds at once (its window, sim/fluid.py), for algorithms whose window is much smaller than
# their ops; the others are counted whole. A ring's window is a few of its steps (n or 2n ops each, in op order)
# beyond the highest op ready: measured 131,072 entries for the 2,048-rank star ring (with the 65,536-op look-ahead).
WINDOW = {
    ("allreduce", "ring"): lambda n, g, nodes, nbytes, p: 64 * n,
    ("reduce_scatter", "ring"): lambda n, g, nodes, nbytes, p: 64 * n,
    ("allgather", "ring"): lambda n, g, nodes, nbytes, p: 64 * n,
}


def window_bound(algo, layout, nbytes, collective="allreduce", search=None, **params):
    """Ops a streamed run of the schedule holds at once beyond its look-ahead: :data:`WINDOW`'s bound, else all.

    >>> from flyersim.collectives.schedule import Layout
    >>> window_bound("ring", Layout(nodes=512, gpus_per_node=8), 1 << 20), window_bound("tree", Layout(4, 8), 1)
    (262144, 96)
    """
    bound = WINDOW.get((collective, algo))
    if bound is None:
        return op_bound(algo, layout, nbytes, collective, search, **params)
    return min(int(bound(layout.ranks, layout.gpus_per_node, layout.nodes, nbytes, {})),
               op_bound(algo, layout, nbytes, collective, search, **params))


def op_bound(algo, layout, nbytes, collective="allreduce", search=None, **params):
    """An upper bound on the ops of ``build(algo, layout, collective, nbytes, search, **params)``, without building it.

    ``params`` are the algorithm's declared parameters (checked as the builder checks them).
    """
    record = get(algo, collective)
    bound = OPS.get((collective, algo))
    if bound is None:
        raise ValueError(f"{algo}: no op bound declared in collectives/sizing.py")
    if isinstance(bound, tuple):
        return max(op_bound(name, layout, nbytes, collective, search, **params) for name in bound)
    p = record.params.bind(params)
    if record.search:
        p = from_search(layout, search, p)
    p["algo"] = algo  # names the algorithm in a bad parameter's error, as its builder would
    return int(bound(layout.ranks, layout.gpus_per_node, layout.nodes, nbytes, p))
