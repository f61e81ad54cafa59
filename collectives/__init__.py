"""Collective algorithms as schedules, with a verifier, a reference executor and closed-form costs.

``ALGORITHMS`` maps ``(collective, name)`` to a function ``layout -> Schedule``;
add an algorithm with one line. A function that cannot serve a rank count
raises ValueError naming the algorithm and the count.

>>> from flyersim.collectives.schedule import Layout
>>> build("ring", Layout(nodes=2, gpus_per_node=2)).num_ops
36
>>> sorted(names("allgather"))
['rd', 'ring']
>>> build("nosuch", Layout(1, 2))  # doctest: +ELLIPSIS
Traceback (most recent call last):
ValueError: unknown allreduce algorithm 'nosuch' (choose from ring, ...)
>>> resolve("nccl", Layout(16, 8), 1 << 20), resolve("ring", Layout(16, 8), 1 << 20)
('nccl-tree', 'ring')
"""

import functools
import inspect

from flyersim.collectives.dbtree import dbtree_allreduce
from flyersim.collectives.hfreduce import hfreduce_allreduce
from flyersim.collectives.hfreduce_nvlink import hfreduce_nvlink_allreduce
from flyersim.collectives.hierarchical import hier_allreduce
from flyersim.collectives.nccl import nccl_ring, nccl_tree
from flyersim.collectives.nccl_tuning import choose as nccl_choose, nccl_allreduce
from flyersim.collectives.rabenseifner import rabenseifner_allreduce, rd_allgather, rh_reduce_scatter
from flyersim.collectives.recursive_doubling import rd_allreduce
from flyersim.collectives.ring import ring_allgather, ring_allreduce, ring_reduce_scatter
from flyersim.collectives.tree import tree_allreduce, tree_broadcast, tree_reduce

ALGORITHMS = {
    ("allreduce", "ring"): ring_allreduce,
    ("allreduce", "tree"): tree_allreduce,
    ("allreduce", "dbtree"): dbtree_allreduce,
    ("allreduce", "rd"): rd_allreduce,
    ("allreduce", "rabenseifner"): rabenseifner_allreduce,
    # dbtree across nodes: builds in 0.3 s at 1,250 nodes x 8 GPUs, where a ring outer phase has 37M ops
    ("allreduce", "hier"): functools.partial(hier_allreduce, outer="dbtree"),
    ("allreduce", "hfreduce"): hfreduce_allreduce,
    ("allreduce", "hfreduce-nvlink"): hfreduce_nvlink_allreduce,
    ("reduce_scatter", "ring"): ring_reduce_scatter,
    ("reduce_scatter", "rh"): rh_reduce_scatter,
    ("allgather", "ring"): ring_allgather,
    ("allgather", "rd"): rd_allgather,
    ("broadcast", "tree"): tree_broadcast,
    ("reduce", "tree"): tree_reduce,
    ("allreduce", "nccl-ring"): nccl_ring,
    ("allreduce", "nccl-tree"): nccl_tree,
    ("allreduce", "nccl"): nccl_allreduce,  # size-dependent: runners resolve() it per size (RESOLVERS)
}

# Algorithms that pick a concrete one by message size: (collective, name) -> function
# (layout, nbytes, **topology facts) -> registered name. Build them through resolve().
RESOLVERS = {
    ("allreduce", "nccl"): nccl_choose,  # NCCL's tuning model picks nccl-ring or nccl-tree
}


def names(collective="allreduce"):
    """Algorithm names registered for ``collective``."""
    return [name for coll, name in ALGORITHMS if coll == collective]


def accepted(fn, params):
    """The items of ``params`` that ``fn`` declares as keyword parameters (all of them if it takes ``**kwargs``)."""
    sig = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in sig):
        return dict(params)
    names_ = {p.name for p in sig if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in params.items() if k in names_}


def size_dependent(algo, collective="allreduce"):
    """True when ``algo``'s schedule depends on the message size: its generator declares ``nbytes``.

    Runners build such an algorithm once per (algorithm, size), passing ``nbytes`` as a fact, and every
    other algorithm once for all sizes (see :mod:`collectives.chunking`).

    >>> size_dependent("hfreduce"), size_dependent("ring"), size_dependent("nosuch")
    (True, False, False)
    """
    make = ALGORITHMS.get((collective, algo))
    if make is None:
        return False
    return any(p.name == "nbytes" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               for p in inspect.signature(make).parameters.values())


def takes(algo, param, collective="allreduce"):
    """True when ``algo``'s generator declares keyword ``param`` (or takes any keyword).

    >>> takes("hfreduce", "max_chunks"), takes("ring", "max_chunks")
    (True, False)
    """
    make = ALGORITHMS.get((collective, algo))
    return make is not None and param in accepted(make, {param: None})


def schedule_key(algo, nbytes, collective="allreduce"):
    """The cache key of the schedule ``algo`` runs at ``nbytes``: ``(algo, nbytes)`` if size-dependent, else ``(algo, None)``."""
    return (algo, int(nbytes) if size_dependent(algo, collective) else None)


def resolve(algo, layout, nbytes, collective="allreduce", **params):
    """The registered algorithm that ``algo`` runs as for a message of ``nbytes`` (``algo`` itself unless size-dependent).

    ``params`` are topology facts (e.g. ``sim.nccl_topo.nccl_params``); a resolver gets those it declares.
    """
    pick = RESOLVERS.get((collective, algo))
    return algo if pick is None else pick(layout, nbytes, **accepted(pick, params))


def build(algo, layout, collective="allreduce", **params):
    """The schedule of algorithm ``algo`` for ``collective`` on ``layout``.

    ``params`` are topology facts; the generator receives those its signature declares, so a runner can
    offer every fact it knows to every algorithm.
    """
    try:
        make = ALGORITHMS[collective, algo]
    except KeyError:
        known = ", ".join(names(collective)) or "none registered"
        raise ValueError(f"unknown {collective} algorithm {algo!r} (choose from {known})") from None
    return make(layout, **accepted(make, params))
