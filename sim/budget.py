"""The up-front size check: refuse, before building anything, work that cannot fit in memory.

Memory is estimated from counts known before the expensive step: the
topology's nodes and links (an upper bound from the description and the
server count, :func:`topologies.build.element_bound`) before the graph is
built, and each schedule's ops (:mod:`collectives.sizing`) before the
schedules are built. The limit is the memory this machine has available
unless the user gives one (``--max-memory``).

A whole (materialised) schedule costs ``BYTES_PER_OP`` per op. A streamed
one (:func:`sim.engine.simulate_stream`, the default of ``flyersim run``
without ``--trace``) holds only the ops of its window
(:func:`collectives.sizing.window_bound`: a ring's is a few steps, other
algorithms' all their ops) plus the look-ahead, at ``BYTES_PER_WINDOW_OP``;
its timeline, when kept, ``BYTES_PER_TIMELINE_OP`` per op. A window that
outgrows the estimate is checked again as it grows (:func:`check_window`).
Adaptive routing keeps, beside each route between servers, its equal-cost
alternatives (:func:`sim.routes.build_routes`), at ``BYTES_PER_ALTERNATIVE``
each; callers count them with :func:`sim.routes.alternative_bound` (at most
``MAX_ALTERNATIVES - 1`` per route), an upper bound of what is built.

>>> check_ops("ring on 4096 GPUs", ops=50_319_360, elements=70_000, limit=8 * 10**9)  # doctest: +ELLIPSIS
Traceback (most recent call last):
ValueError: ring on 4096 GPUs needs about 50.3M ops and 17.8 GB of memory, above the limit of 8 GB (available ...
>>> check_ops("ring on 4096 GPUs", ops=50_319_360, elements=70_000, limit=8 * 10**9, window=262_144)  # streamed
>>> check_ops("ring on 16 GPUs", ops=720, elements=500, limit=8 * 10**9)
>>> check_ops("all-to-all", ops=102_080, elements=70_000, limit=8 * 10**9, alternatives=3_164_480)
Traceback (most recent call last):
ValueError: all-to-all needs about 102k ops and 3.16M alternative routes (adaptive routing) and 9.72 GB of memory, above the limit of 8 GB (available memory, or --max-memory); use fewer GPUs, fewer sizes or algorithms per run, an algorithm with fewer steps (hier, hfreduce, dbtree), or fewer chunks (--param max_chunks), or static routing (ecmp)
"""

import os

from flyersim import collectives
from flyersim.collectives.sizing import OPS, op_bound, window_bound
from flyersim.topologies.units import parse_size

# Measured with resource.getrusage peak RSS on this project's 2-core, 24 GB dev machine (Python 3.11):
BASE_BYTES = 150 * 10**6    # interpreter with numpy, numba kernels, simpy, networkx loaded: 106-160 MB
BYTES_PER_ELEMENT = 600     # fireflyer2 graph + router + NCCL facts at 2,048 and 8,192 GPUs: 520-535 B per node or link
BYTES_PER_OP = 350          # ring allreduce 1 MiB on fireflyer2 (LMM solver): 340 MB peak at 512 GPUs (785k ops),
#                             931 MB at 1,024 GPUs (3.14M ops), 263 B/op above the base with the graph; 350 leaves room
#                             for longer routes (HFReduce at 10,000 GPUs: 356 B/op with its graph, docs/performance.md)
# A streamed run's window (sim/fluid.py Dag): 61 B per entry in power-of-two ring buffers (up to 2x), 16 B per
# dependency edge, about 85 B + members per moving flow; measured peaks above the base and graph, fireflyer2 186 MiB:
# HFReduce 1,024 GPUs window 131,072 ops, 186 MB peak; NCCL 524,288 (all of its 385k ops), 211 MB; dbtree 524,288,
# 238 MB; ring on the 2,048-rank star 254 MB in all (docs/performance.md).
BYTES_PER_WINDOW_OP = 150
LOOKAHEAD_OPS = 1 << 20     # sim.engine.LOOKAHEAD, after up to one 16x restart
BYTES_PER_TIMELINE_OP = 36  # ready, start, end (float64), route taken (int32), bytes (float64)
# One alternative route of adaptive routing, in all its copies (the part's Routes, the composite's, the Python lists
# they are built from): peak RSS over the same scenario with static routing, an all-to-all among 40 and 80
# fireflyer2 servers (15,200 and 91,200 alternatives of 17 resources each): 2.4 and 2.9 KB each (tracemalloc: 1.29
# and 1.35 KB; a 320-GPU rabenseifner job's 6,080: 1.26 KB); among 200 servers on 10 leaves (684,000): 1.47 GB
# against 0.27 GB, 1.76 KB each, where the estimate (31 counted per flow) said 3.88 GB.
BYTES_PER_ALTERNATIVE = 3000


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


def op_bytes(ops, window=None, timeline=False):
    """Estimated bytes of schedules of ``ops`` ops: whole ones, or streamed ones holding ``window`` ops at once."""
    if window is None:
        return BYTES_PER_OP * ops
    return BYTES_PER_WINDOW_OP * min(ops, window + LOOKAHEAD_OPS) + (BYTES_PER_TIMELINE_OP * ops if timeline else 0)


RUN_HINT = ("fewer GPUs, fewer sizes or algorithms per run, an algorithm with fewer steps (hier, hfreduce, dbtree), "
            "or fewer chunks (--param max_chunks)")


def check_ops(what, ops, elements, limit, window=None, timeline=False, alternatives=0, hint=RUN_HINT):
    """Refuse schedules of ``ops`` ops in total on a graph of ``elements`` that would not fit in ``limit`` bytes.

    ``window``: the schedules are streamed, holding that many ops at once (see :func:`op_bytes`), keeping
    every op's timeline if ``timeline``. ``alternatives``: alternative routes adaptive routing keeps.
    ``hint``: what to use fewer of (the error's way forward).
    """
    need = estimate(ops, elements, window, timeline, alternatives)
    if need > limit:
        routes = f" and {_count(alternatives)} alternative routes (adaptive routing)" if alternatives else ""
        raise ValueError(f"{what} needs about {_count(ops)} ops{routes} and {_gb(need)} of memory, above the limit of "
                         f"{_gb(limit)} (available memory, or --max-memory); use {hint}"
                         f"{', or static routing (ecmp)' if alternatives else ''}")


def estimate(ops, elements, window=None, timeline=False, alternatives=0):
    """Bytes of a run of ``ops`` ops on a graph of ``elements`` with ``alternatives`` alternative routes."""
    return BASE_BYTES + BYTES_PER_ELEMENT * elements + op_bytes(ops, window, timeline) + \
        BYTES_PER_ALTERNATIVE * alternatives


def check_run(graph, layout, algos, sizes, collective, search, params, limit=None, streamed=False,
              timeline=False, alternatives=0):
    """Refuse, before building any schedule, a run of ``algos`` x ``sizes`` that would not fit.

    Counts every distinct schedule the runner keeps (one per algorithm, or per size for those built per
    size; :func:`collectives.schedule_key`) with the algorithm's op bound; ``search`` is NCCL's search
    (None when no NCCL algorithm runs), ``params`` ``{algo: its parameters}``; ``limit`` in bytes,
    default :func:`machine_memory`. An algorithm without a bound is not counted. ``streamed``: the
    schedules are streamed one at a time (the largest counts), keeping every op's times if ``timeline``;
    ``alternatives``: the alternative routes of adaptive routing counted so far.
    """
    keys = {}
    for algo in algos:
        for size in sizes:
            key = collectives.schedule_key(algo, layout, size, collective, search)
            if (collective, key[0]) in OPS:
                keys.setdefault(key, algo)
    counts = [op_bound(name, layout, nbytes, collective, search, **params.get(algo, {}))
              for (name, nbytes), algo in keys.items()]
    window = max((window_bound(name, layout, nbytes, collective, search, **params.get(algo, {}))
                  for (name, nbytes), algo in keys.items()), default=0) if streamed else None
    ops = max(counts, default=0) if streamed and not timeline else sum(counts)
    what = f"{', '.join(sorted({name for name, _ in keys}))} on {layout.ranks} GPU{'s' * (layout.ranks != 1)}"
    check_ops(what, ops, graph.number_of_nodes() + graph.number_of_edges(),
              machine_memory() if limit is None else limit, window, timeline, alternatives)


def check_window(what, held, elements, limit):
    """Refuse, while it runs, a streamed run whose window and flows (``held`` bytes) outgrew ``limit``."""
    need = BASE_BYTES + BYTES_PER_ELEMENT * elements + held
    if need > limit:
        raise ValueError(f"{what} holds {_gb(held)} of ops in flight ({_gb(need)} of memory in all), above the "
                         f"limit of {_gb(limit)} (available memory, or --max-memory); use fewer GPUs or fewer "
                         f"chunks (--param max_chunks)")
