"""Collective algorithms as schedules, with a verifier, a reference executor and closed-form costs.

``ALGORITHMS`` maps ``(collective, name)`` to a function ``layout -> Schedule``;
add an algorithm with one line. A function that cannot serve a rank count
raises ValueError naming the algorithm and the count.

>>> from collectives.schedule import Layout
>>> build("ring", Layout(nodes=2, gpus_per_node=2)).num_ops
36
>>> sorted(names("allgather"))
['ring']
>>> build("tree", Layout(1, 2))
Traceback (most recent call last):
ValueError: unknown allreduce algorithm 'tree' (choose from ring)
"""

from collectives.ring import ring_allgather, ring_allreduce, ring_reduce_scatter

ALGORITHMS = {
    ("allreduce", "ring"): ring_allreduce,
    ("reduce_scatter", "ring"): ring_reduce_scatter,
    ("allgather", "ring"): ring_allgather,
}


def names(collective="allreduce"):
    """Algorithm names registered for ``collective``."""
    return [name for coll, name in ALGORITHMS if coll == collective]


def build(algo, layout, collective="allreduce"):
    """The schedule of algorithm ``algo`` for ``collective`` on ``layout``."""
    try:
        make = ALGORITHMS[collective, algo]
    except KeyError:
        known = ", ".join(names(collective)) or "none registered"
        raise ValueError(f"unknown {collective} algorithm {algo!r} (choose from {known})") from None
    return make(layout)
