"""Simulate algorithms on a topology over a list of message sizes.

One schedule and one set of routes per algorithm serve every size, since
schedules are size-agnostic, except for algorithms whose pipeline depends on
the size (they declare ``nbytes``; :func:`collectives.size_dependent`): those
are built once per (algorithm, size).
"""

import numpy as np

from flyersim import collectives
from flyersim.collectives.schedule import Layout
from flyersim.sim.budget import check_run
from flyersim.sim.engine import simulate
from flyersim.sim.metrics import record
from flyersim.sim.nccl_topo import nccl_params
from flyersim.sim.routes import build_routes
from flyersim.topologies import Router

DTYPES = ("float32", "float64", "float16", "int32")


def layout_of(graph):
    """The collective layout of a topology graph (one rank per GPU)."""
    g = graph.graph
    return Layout(nodes=g["nodes"], gpus_per_node=g["gpus_per_node"], sockets=g["sockets_per_node"],
                  nvlink_pairs=tuple(tuple(p) for p in g.get("nvlink_pairs", ())))


def run_sizes(graph, algos, sizes, dtype="float32", model="flow", collective="allreduce", keep_runs=False,
              params=None, max_memory=None, check_only=False):
    """Simulate every algorithm at every size; return result records (and the runs if ``keep_runs``).

    ``params`` sets algorithm parameters (e.g. ``{"max_chunks": 256}``); each generator gets those it
    declares, and a parameter that no algorithm run takes is an error. Work whose estimated memory
    exceeds ``max_memory`` bytes (default: this machine's) is refused before anything is built;
    ``check_only`` stops after these checks (returns no records).
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    itemsize = np.dtype(dtype).itemsize
    if min(sizes) < itemsize:
        raise ValueError(f"size {min(sizes)} B is smaller than one {dtype} element")
    layout = layout_of(graph)
    router = Router(graph)
    facts = nccl_params(graph)  # topology facts: each algorithm receives those its signature declares
    plan = [(size, collectives.resolve(algo, layout, size, collective, **facts)) for algo in algos for size in sizes]
    params = dict(params or {})
    for key in params:
        if not any(collectives.takes(concrete, key, collective) for _, concrete in plan):
            raise ValueError(f"no algorithm run ({', '.join(sorted({c for _, c in plan}))}) takes parameter {key!r}")
    check_run(graph, layout, plan, collective, {**facts, **params}, max_memory)
    if check_only:
        return ([], []) if keep_runs else []
    records, runs = [], []
    built = {}  # (concrete algorithm, size or None) -> (schedule, routes)
    for size, concrete in plan:
        key = collectives.schedule_key(concrete, size, collective)
        if key not in built:
            sized = {} if key[1] is None else {"nbytes": key[1]}
            schedule = collectives.build(concrete, layout, collective, **{**facts, **sized, **params})
            built[key] = schedule, build_routes(graph, schedule, router)
        schedule, routes = built[key]
        run = simulate(schedule, routes, size, itemsize, model)
        records.append(record(run, dtype, layout.nodes, graph.graph.get("name", "")))
        if keep_runs:
            runs.append(run)
    return (records, runs) if keep_runs else records
