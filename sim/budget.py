"""The up-front size check: refuse, before building anything, work that cannot fit in memory.

Memory is estimated from counts known before the expensive step: the
topology's nodes and links (an upper bound from the description and the
server count, :func:`topologies.build.element_bound`) before the graph is
built, and each schedule's ops (:mod:`collectives.sizing`) before the
schedules are built. The limit is the memory this machine has available
unless the user gives one (``--max-memory``).

>>> check_ops("ring on 4096 GPUs", ops=50_319_360, elements=70_000, limit=8 * 10**9)  # doctest: +ELLIPSIS
Traceback (most recent call last):
ValueError: ring on 4096 GPUs needs about 50.3M ops and 17.8 GB of memory, above the limit of 8 GB (available ...
>>> check_ops("ring on 16 GPUs", ops=720, elements=500, limit=8 * 10**9)
"""

import os

from flyersim import collectives
from flyersim.collectives.sizing import OPS, op_bound
from flyersim.topologies.units import parse_size

# Measured with resource.getrusage peak RSS on this project's 2-core, 24 GB dev machine (Python 3.11):
BASE_BYTES = 150 * 10**6    # interpreter with numpy, numba kernels, simpy, networkx loaded: 106-160 MB
BYTES_PER_ELEMENT = 600     # fireflyer2 graph + router + NCCL facts at 2,048 and 8,192 GPUs: 520-535 B per node or link
BYTES_PER_OP = 350          # ring allreduce 1 MiB on fireflyer2 (LMM solver): 340 MB peak at 512 GPUs (785k ops),
#                             931 MB at 1,024 GPUs (3.14M ops), 263 B/op above the base with the graph; 350 leaves room
#                             for longer routes (HFReduce at 10,000 GPUs: 356 B/op with its graph, docs/performance.md)


def machine_memory():
    """Bytes this machine can give a new process now (``MemAvailable``; physical memory where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_limit(text=None):
    """Bytes allowed: ``text`` (a size such as ``8GB``; ``--max-memory``) or this machine's available memory.

    >>> memory_limit("8GB")
    8000000000
    >>> memory_limit("0")
    Traceback (most recent call last):
    ValueError: --max-memory: must be positive, got '0'
    """
    if text is None:
        return machine_memory()
    try:
        limit = parse_size(text)
    except ValueError as err:
        raise ValueError(f"--max-memory: {err}") from None
    if limit <= 0:
        raise ValueError(f"--max-memory: must be positive, got {text!r}")
    return limit


def _gb(nbytes):
    return f"{nbytes / 1e9:,.0f} GB" if nbytes >= 1e12 else f"{nbytes / 1e9:.3g} GB"


def _count(n):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def check_topology(what, elements, limit):
    """Refuse a topology of about ``elements`` nodes and links that would not fit in ``limit`` bytes."""
    need = BASE_BYTES + BYTES_PER_ELEMENT * elements
    if need > limit:
        raise ValueError(f"{what} has about {_count(elements)} components and links and needs about {_gb(need)} "
                         f"of memory, above the limit of {_gb(limit)} (available memory, or --max-memory); use fewer servers")


def check_ops(what, ops, elements, limit):
    """Refuse schedules of ``ops`` ops in total on a graph of ``elements`` that would not fit in ``limit`` bytes."""
    need = BASE_BYTES + BYTES_PER_ELEMENT * elements + BYTES_PER_OP * ops
    if need > limit:
        raise ValueError(f"{what} needs about {_count(ops)} ops and {_gb(need)} of memory, above the limit of "
                         f"{_gb(limit)} (available memory, or --max-memory); use fewer GPUs, fewer sizes or algorithms per run, an "
                         f"algorithm with fewer steps (hier, hfreduce, dbtree), or fewer chunks (--param max_chunks)")


def check_run(graph, layout, algos, sizes, collective, search, params, limit=None):
    """Refuse, before building any schedule, a run of ``algos`` x ``sizes`` that would not fit.

    Counts every distinct schedule the runner keeps (one per algorithm, or per size for those built per
    size; :func:`collectives.schedule_key`) with the algorithm's op bound; ``search`` is NCCL's search
    (None when no NCCL algorithm runs), ``params`` ``{algo: its parameters}``; ``limit`` in bytes,
    default :func:`machine_memory`. An algorithm without a bound is not counted.
    """
    keys = {}
    for algo in algos:
        for size in sizes:
            key = collectives.schedule_key(algo, layout, size, collective, search)
            if (collective, key[0]) in OPS:
                keys.setdefault(key, algo)
    ops = sum(op_bound(name, layout, nbytes, collective, search, **params.get(algo, {}))
              for (name, nbytes), algo in keys.items())
    what = f"{', '.join(sorted({name for name, _ in keys}))} on {layout.ranks} GPU{'s' * (layout.ranks != 1)}"
    check_ops(what, ops, graph.number_of_nodes() + graph.number_of_edges(),
              machine_memory() if limit is None else limit)
