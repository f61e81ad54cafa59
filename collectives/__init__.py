"""Collective algorithms as schedules, with a verifier, a reference executor and closed-form costs.

``ALGORITHMS`` declares every algorithm as an :class:`Algorithm` record: its
builder, its collective, its parameters (:mod:`collectives.params`), whether
it is built per message size and whether it needs NCCL's graph search. Add an
algorithm with one record; a builder that cannot serve a rank count raises
ValueError naming the algorithm and the count.

>>> from flyersim.collectives.schedule import Layout
>>> build("ring", Layout(nodes=2, gpus_per_node=2)).num_ops
36
>>> sorted(names("allgather"))
['rd', 'ring']
>>> build("nosuch", Layout(1, 2))  # doctest: +ELLIPSIS
Traceback (most recent call last):
ValueError: unknown allreduce algorithm 'nosuch' (choose from ring, ...)
>>> build("ring", Layout(1, 2), max_chunks=8)
Traceback (most recent call last):
ValueError: ring has no parameter 'max_chunks' (valid: none)
>>> schedule_key("nccl", Layout(16, 8), 1 << 20), schedule_key("ring", Layout(16, 8), 1 << 20)
(('nccl-tree', 1048576), ('ring', None))
"""

from dataclasses import dataclass

from flyersim.collectives import dbtree, hfreduce, hfreduce_nvlink, hierarchical, smp
from flyersim.collectives import nccl
from flyersim.collectives.params import Params
from flyersim.collectives.rabenseifner import rabenseifner_allreduce, rd_allgather, rh_reduce_scatter
from flyersim.collectives.recursive_doubling import rd_allreduce
from flyersim.collectives.ring import ring_allgather, ring_allreduce, ring_reduce_scatter
from flyersim.collectives.tree import tree_allreduce, tree_broadcast, tree_reduce


@dataclass(frozen=True)
class Algorithm:
    """One algorithm: ``builder(layout, [nbytes,] [search,] **params) -> Schedule``.

    ``sized``: built per message size (the builder takes ``nbytes``, bytes per rank, ``None`` without a
    size). ``search``: needs NCCL's graph search (the builder takes ``search``, a
    :class:`collectives.nccl.Search`). ``pick``: for an algorithm that runs another one chosen by size,
    ``pick(layout, nbytes, search) -> name``.
    """

    name: str
    collective: str
    builder: object
    params: Params
    sized: bool = False
    search: bool = False
    pick: object = None


def _none(name):
    return Params(name)


_RECORDS = [
    Algorithm("ring", "allreduce", ring_allreduce, _none("ring")),
    Algorithm("tree", "allreduce", tree_allreduce, _none("tree")),
    Algorithm("dbtree", "allreduce", dbtree.dbtree_allreduce, dbtree.PARAMS, sized=True),
    Algorithm("rd", "allreduce", rd_allreduce, _none("rd")),
    Algorithm("rabenseifner", "allreduce", rabenseifner_allreduce, _none("rabenseifner")),
    Algorithm("hier", "allreduce", hierarchical.hier_allreduce, hierarchical.PARAMS),
    Algorithm("smp", "allreduce", smp.smp_allreduce, smp.PARAMS),
    Algorithm("hfreduce", "allreduce", hfreduce.hfreduce_allreduce, hfreduce.PARAMS, sized=True),
    Algorithm("hfreduce-nvlink", "allreduce", hfreduce_nvlink.hfreduce_nvlink_allreduce, hfreduce_nvlink.PARAMS,
              sized=True),
    Algorithm("nccl-ring", "allreduce", nccl.nccl_ring, nccl.ring.PARAMS, sized=True, search=True),
    Algorithm("nccl-tree", "allreduce", nccl.nccl_tree, nccl.tree.PARAMS, sized=True, search=True),
    Algorithm("nccl", "allreduce", nccl.nccl_allreduce, nccl.tuning.PARAMS, sized=True, search=True,
              pick=nccl.pick),
    Algorithm("ring", "reduce_scatter", ring_reduce_scatter, _none("ring")),
    Algorithm("rh", "reduce_scatter", rh_reduce_scatter, _none("rh")),
    Algorithm("ring", "allgather", ring_allgather, _none("ring")),
    Algorithm("rd", "allgather", rd_allgather, _none("rd")),
    Algorithm("tree", "broadcast", tree_broadcast, _none("tree")),
    Algorithm("tree", "reduce", tree_reduce, _none("tree")),
]
ALGORITHMS = {(a.collective, a.name): a for a in _RECORDS}


def names(collective="allreduce"):
    """Algorithm names registered for ``collective``."""
    return [name for coll, name in ALGORITHMS if coll == collective]


def get(algo, collective="allreduce"):
    """The :class:`Algorithm` record of ``algo``; ValueError listing the known ones if there is none."""
    try:
        return ALGORITHMS[collective, algo]
    except KeyError:
        known = ", ".join(names(collective)) or "none registered"
        raise ValueError(f"unknown {collective} algorithm {algo!r} (choose from {known})") from None


def schedule_key(algo, layout, nbytes, collective="allreduce", search=None):
    """``(name, size)`` of the schedule ``algo`` runs at ``nbytes``: the algorithm it picks (itself unless it
    picks by size) and ``nbytes`` if that one is built per size, else None. Equal keys share a schedule.
    """
    record = get(algo, collective)
    if record.pick is not None:
        record = get(record.pick(layout, nbytes, search), collective)
    return record.name, (int(nbytes) if record.sized else None)


def build(algo, layout, collective="allreduce", nbytes=None, search=None, **params):
    """The schedule of ``algo`` for ``collective`` on ``layout``, at ``nbytes`` per rank if it is built per size.

    ``search`` is NCCL's search on the topology (used by algorithms that declare they need it; ``None``:
    searched on the layout alone); ``params`` are the algorithm's declared parameters.
    """
    record = get(algo, collective)
    record.params.bind(params)  # unknown names and wrong types fail here, naming the valid parameters
    extra = {}
    if record.sized:
        extra["nbytes"] = nbytes
    if record.search:
        extra["search"] = search
    return record.builder(layout, **extra, **params)


def help_params(algo, collective="allreduce", given=None):
    """The parameter table of ``algo`` (name, type, value, meaning), ``given`` values over the defaults."""
    record = get(algo, collective)
    notes = [f"# {collective} {algo}: built {'per message size' if record.sized else 'once for every size'}"
             + ("; NCCL's graph search on the topology fills parameters left None" if record.search else "")]
    return "\n".join(notes + [record.params.help(given)])
