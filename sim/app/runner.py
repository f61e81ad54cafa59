"""Simulate algorithms on a topology over a list of message sizes.

One schedule and one set of routes per algorithm serve every size, since
schedules are size-agnostic, except for algorithms built per message size
(declared ``sized`` in :data:`collectives.ALGORITHMS`): those are built once
per (algorithm, size). NCCL's graph search runs once per topology, and only
when an algorithm that declares it needs it is run.
"""

import numpy as np

from flyersim import collectives
from flyersim.collectives.nccl import paths as nccl_paths, search as nccl_search
from flyersim.collectives.schedule import Layout
from flyersim.collectives.stream import stream as stream_schedule
from flyersim.sim.budget import check_run
from flyersim.sim.engine import simulate, simulate_stream
from flyersim.sim.metrics import record
from flyersim.sim.routes import alternative_bound, build_routes
from flyersim.sim.stragglers import Stragglers
from flyersim.topologies import Router
from flyersim.topologies.facts import server_facts, server_routes

DTYPES = ("float32", "float64", "float16", "int32")


def layout_of(graph):
    """The collective layout of a topology graph (one rank per GPU), with its server's facts.

    The one place a layout is filled from a topology; facts the topology does not state keep the
    layout's defaults.
    """
    g, facts = graph.graph, server_facts(graph)
    stated = {"cpu_vendor": facts.cpu_vendor, "gpu_arch": facts.gpu_arch}
    return Layout(nodes=g["nodes"], gpus_per_node=g["gpus_per_node"], sockets=g["sockets_per_node"],
                  nvlink_pairs=facts.nvlink_pairs, gpu_sockets=facts.gpu_sockets, nic_sockets=facts.nic_sockets,
                  gpu_paths=facts.gpu_paths, nic_paths=facts.nic_paths,
                  **{k: v for k, v in stated.items() if v is not None})


def search_of(graph, layout=None, nccl_version=None):
    """NCCL's search on ``graph`` (for the algorithms that declare they need it), with the NCCL the cluster
    declares in its ``[nccl]`` table (``nccl_version`` overrides the release)."""
    declared = graph.graph.get("nccl") or {}
    return nccl_search(layout or layout_of(graph), server_routes(graph),
                       version=nccl_version or declared.get("version"),
                       gdr_level=declared.get("net_gdr_level", nccl_paths.GDR_LEVEL))


def split_params(algos, params, collective="allreduce"):
    """``{algo: the items of params it declares}``; a parameter no algorithm declares is an error listing the valid ones.

    >>> split_params(["ring", "hfreduce"], {"chunks": 4})
    {'ring': {}, 'hfreduce': {'chunks': 4}}
    >>> split_params(["ring", "dbtree"], {"chunk": 4})
    Traceback (most recent call last):
    ValueError: no algorithm run (ring, dbtree) has parameter 'chunk' (valid: chunks, chunk_bytes, max_chunks)
    """
    records = [collectives.get(a, collective) for a in algos]
    for key in params:
        if not any(key in r.params for r in records):
            valid = list(dict.fromkeys(n for r in records for n in r.params.names()))
            raise ValueError(f"no algorithm run ({', '.join(algos)}) has parameter {key!r} "
                             f"(valid: {', '.join(valid) or 'none'})")
    return {r.name: {k: v for k, v in params.items() if k in r.params} for r in records}


def run_sizes(graph, algos, sizes, dtype="float32", model="flow", collective="allreduce", keep_runs=False,
              params=None, max_memory=None, check_only=False, stragglers=None, routing="ecmp", timeline=None,
              stream=None):
    """Simulate every algorithm at every size; return result records (and the runs if ``keep_runs``).

    ``timeline``: the runs keep every op's times (default: when ``keep_runs``; see :func:`sim.engine.simulate`).
    ``stream``: build each schedule batch by batch as the simulation needs it, holding only the ops in flight
    (:func:`sim.engine.simulate_stream`; the runs' schedules then hold no ops); default: unless ``keep_runs``.
    Runs with stragglers or adaptive routing build whole schedules (their transforms need every op).

    ``params`` sets algorithm parameters (e.g. ``{"max_chunks": 256}``); each algorithm gets those it
    declares, and a parameter that no algorithm run declares is an error. Work whose estimated memory
    exceeds ``max_memory`` bytes (default: what this machine has available) is refused before any
    schedule is built; ``check_only`` stops after these checks (returns no records). ``stragglers``
    (a :class:`sim.stragglers.Stragglers`, or a list of them, e.g. one per noise seed) slows or delays
    parts of the run; every schedule runs once per item, records of a noisy one carrying its ``seed``.
    ``routing`` is ``ecmp`` or ``adaptive`` (:mod:`sim.routes`).
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    itemsize = np.dtype(dtype).itemsize
    if min(sizes) < itemsize:
        raise ValueError(f"size {min(sizes)} B is smaller than one {dtype} element")
    variants = [stragglers or Stragglers()] if not isinstance(stragglers, (list, tuple)) else list(stragglers)
    for variant in variants:
        variant.check(graph)
    layout = layout_of(graph)
    router = Router(graph)
    mine = split_params(algos, dict(params or {}), collective)
    needs_search = any(collectives.get(a, collective).search for a in algos)
    search = search_of(graph, layout, (params or {}).get("nccl_version")) if needs_search else None
    timeline = keep_runs if timeline is None else timeline
    streamed = (not keep_runs if stream is None else stream) and not any(v.active for v in variants) \
        and routing == "ecmp"
    check_run(graph, layout, algos, sizes, collective, search, mine, max_memory, streamed, timeline)
    alternatives = 0  # adaptive routing's, counted as each schedule is built, before its routes (sim.budget)
    if check_only:
        return ([], []) if keep_runs else []
    records, runs = [], []
    built = {}  # schedule key -> (schedule, routes)
    for algo in algos:
        for size in sizes:
            key = collectives.schedule_key(algo, layout, size, collective, search)
            if streamed:
                def make(name=key[0], nbytes=key[1], algo=algo):
                    return stream_schedule(name, layout, collective, nbytes=nbytes, search=search, **mine[algo])
                run = simulate_stream(make, graph, size, itemsize, model, timeline, router, max_memory=max_memory)
                records.append(record(run, dtype, layout.nodes, graph.graph.get("name", "")))
                if keep_runs:
                    runs.append(run)
                continue
            if key not in built:
                schedule = collectives.build(key[0], layout, collective, nbytes=key[1], search=search, **mine[algo])
                if routing == "adaptive":
                    alternatives += alternative_bound(schedule)
                    check_run(graph, layout, algos, sizes, collective, search, mine, max_memory, streamed, timeline,
                              alternatives)
                built[key] = schedule, build_routes(graph, schedule, router, routing)
            schedule, routes = built[key]
            for variant in variants:
                alternatives = None if routes.alt_ptr is None else (routes.alt_ptr, routes.alt_idx)
                run = simulate(variant.schedule(schedule), variant.routes(graph, routes), size, itemsize, model,
                               alternatives=alternatives, timeline=timeline)
                records.append(record(run, dtype, layout.nodes, graph.graph.get("name", "")))
                if variant.noise:
                    records[-1]["seed"] = variant.seed
                if keep_runs:
                    runs.append(run)
    return (records, runs) if keep_runs else records
