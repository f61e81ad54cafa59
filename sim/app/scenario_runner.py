"""Run a scenario (:mod:`sim.scenario`): its jobs and background flows together, and each job alone.

The steps, each refusing bad input in one line before the expensive ones:
load the cluster (its size checked first), place the jobs
(:mod:`sim.placement`), check each job's algorithm, parameters and size,
estimate the memory of every schedule copy and flow, and of the
alternative routes adaptive routing keeps (:mod:`sim.budget`),
add the storage nodes and build the background flows
(:mod:`sim.background`), build each job's schedule on its own layout (its
late ranks' first ops released late, as ``flyersim run --late``) and
route it on its servers, then simulate everything in one network
(:mod:`sim.composite`) and every job alone on the same servers (exactly
what ``flyersim run`` computes for it).

>>> from flyersim.sim.scenario import loads
>>> s = loads('[topology]\\npreset = "fireflyer2"\\ngpus = 32\\n'
...           '[[jobs]]\\nname = "a"\\ngpus = 16\\nalgo = "ring"\\nsize = "1MiB"\\n'
...           '[[jobs]]\\nname = "b"\\ngpus = 16\\nalgo = "ring"\\nsize = "1MiB"\\n')
>>> out = run_scenario(s)
>>> [j.servers for j in out.jobs], all(j.runs[0].time >= j.alone.time * (1 - 1e-12) for j in out.jobs)
([(0, 1), (2, 3)], True)
"""

import dataclasses
from dataclasses import dataclass

import numpy as np

from flyersim import collectives, topologies
from flyersim.collectives.sizing import op_bound
from flyersim.sim import background as bg
from flyersim.sim.app.runner import layout_of, search_of
from flyersim.sim.budget import check_ops, check_topology, estimate, machine_memory
from flyersim.sim.composite import Part, compose, simulate as simulate_composite
from flyersim.sim.engine import Run, _flow_deps, simulate
from flyersim.sim.placement import place, placed, server_leaves
from flyersim.sim.routes import alternative_bound, build_routes, flow_bytes
from flyersim.sim.scenario import apply_faults
from flyersim.sim.stragglers import Stragglers
from flyersim.topologies import Router
from flyersim.topologies.config import read
from flyersim.topologies.errors import TopologyError
from flyersim.topologies.routing import MAX_ALTERNATIVES


# what a scenario over the memory limit can use fewer of (sim.budget.check_ops)
HINT = ("fewer or smaller jobs, fewer repeats, fewer background servers, an algorithm with fewer steps (hier, "
        "hfreduce, dbtree), or fewer chunks (params = { max_chunks = ... })")


@dataclass(frozen=True)
class JobOutcome:
    """A job's servers, its run alone and its runs in the scenario (one per copy, times from the copy's start)."""

    job: object
    servers: tuple
    alone: Run
    runs: list
    starts: np.ndarray  # when each copy started, seconds from the scenario's start


@dataclass(frozen=True)
class FlowOutcome:
    """A background entry's flows and when each started and ended."""

    entry: object
    flows: object
    start_at: np.ndarray
    end_at: np.ndarray


@dataclass(frozen=True)
class Outcome:
    scenario: object
    graph: object
    composite: object
    carried: np.ndarray  # bytes each part carried on each resource: (parts, resources)
    makespan: float
    start_at: np.ndarray  # every op's start and end (composite numbering)
    end_at: np.ndarray
    jobs: list
    background: list
    budget: dict  # the memory estimate it was checked with: ops, alternative routes (upper bounds) and bytes


def run_scenario(scenario, max_memory=None):
    """Simulate ``scenario``; its :class:`Outcome`. ``max_memory`` in bytes (default: what is available)."""
    limit = machine_memory() if max_memory is None else max_memory
    t = scenario.topology
    try:
        graph = topologies.load(t.ref, gpus=t.gpus, nodes=t.nodes, zones=t.zones, overrides=t.overrides,
                                check_size=lambda what, elements: check_topology(what, elements, limit))
    except ValueError as err:
        raise ValueError(f"topology: {err}") from None
    placements = place(scenario.jobs, graph)
    base = layout_of(graph)
    searches, plans = {}, []
    for job in scenario.jobs:
        plans.append(_plan(job, graph, base, placements[job.name], searches))
    selections = [_servers_of(entry, graph, placements) for entry in scenario.background]
    flows_count = sum(len(s) if e.kind == "storage-read" else len(s) * (len(s) - 1)
                      for e, s in zip(scenario.background, selections))
    # every copy of every job and every flow at once, then one job alone beside them (its run alone)
    counted = sum((p["ops"] + len(p["job"].late)) * p["job"].repeat for p in plans) + flows_count + \
        max(p["ops"] for p in plans)
    copies = sum(p["job"].repeat for p in plans)
    what = (f"scenario {scenario.name} ({len(plans)} job{'s' * (len(plans) != 1)}, {copies} "
            f"collective{'s' * (copies != 1)}, {flows_count} background flow{'s' * (flows_count != 1)})")
    # adaptive routing keeps each route's alternatives: a background flow's up front, a job's once its
    # schedule is built (before its routes are), each at most MAX_ALTERNATIVES - 1 (sim.budget)
    adaptive = scenario.routing.get("policy") == "adaptive"
    alternatives = flows_count * (MAX_ALTERNATIVES - 1) if adaptive else 0
    elements = graph.number_of_nodes() + graph.number_of_edges()
    check_ops(what, counted, elements, limit, alternatives=alternatives, hint=HINT)
    storage, prefixes = {}, {n.split("/", 1)[0] for n in graph}
    reads = [e for e in scenario.background if e.kind == "storage-read"]
    radix = read(t.ref, t.overrides).network.get("radix", 0) if reads else 0
    for entry in scenario.background:
        if entry.kind == "storage-read":
            if entry.name in prefixes:  # its storage nodes {name}/st{k} would join that part of the topology
                raise ValueError(f"background.{entry.name}: the topology already names nodes {entry.name}/...; "
                                 f"give the entry another name")
            try:
                storage[entry.name] = [name for leaf in entry.storage_leaves for name in
                                       bg.add_storage(graph, leaf, entry.storage_nodes, entry.name, radix)]
            except ValueError as err:
                raise ValueError(f"background.{entry.name}.{err}") from None
    groups = [(f"job {name}", servers) for name, servers in placements.items()]
    reached = [(f"background {e.name}", servers) for e, servers in zip(scenario.background, selections)]
    graph, router, routing, stragglers = apply_faults(graph, scenario, Router, groups, reached)
    weight = {name: c.weight for name, c in scenario.classes.items()}
    level = {name: c.sl for name, c in scenario.classes.items()}
    parts, built = [], {}
    for plan in plans:
        job = plan["job"]
        key = (plan["key"], job.collective, tuple(sorted(job.params.items())), len(plan["servers"]))
        if key not in built:
            built[key] = collectives.build(plan["key"][0], plan["layout"], job.collective, nbytes=plan["key"][1],
                                           search=plan["search"], **job.params)
        layout = placed(plan["layout"], plan["servers"])
        schedule = Stragglers(late=job.late).schedule(dataclasses.replace(built[key], layout=layout))
        if adaptive:
            alternatives += alternative_bound(schedule)
            check_ops(what, counted, elements, limit, alternatives=alternatives, hint=HINT)
        routes = stragglers.routes(graph, build_routes(graph, schedule, router, routing))
        plan["schedule"], plan["routes"] = schedule, routes
        count = job.size // plan["itemsize"]
        plan["op_bytes"] = schedule.span_elements(count).astype(np.float64) * plan["itemsize"]
        parts.append(Part(job.name, routes, flow_bytes(schedule, plan["op_bytes"]), *_flow_deps(schedule),
                          repeat=job.repeat, start=job.start, period=job.period, share=weight[job.cls],
                          sl=level[job.cls], release=schedule.release))
    host = _nic_host(base)
    entries = []
    for entry, servers in zip(scenario.background, selections):
        try:
            if entry.kind == "storage-read":
                flows = bg.storage_reads(entry.name, servers, storage[entry.name], host, entry.rate,
                                         entry.duration, router, routing)
            else:
                flows = bg.all_to_all(entry.name, servers, host, entry.rate, entry.duration, router, routing)
        except TopologyError as err:  # its storage nodes cut off from its servers
            failed = ", ".join(graph.graph.get("failed", ()))
            raise ValueError(f"background {entry.name} cannot complete: {err}"
                             f"{f' after the failure of {failed}' if failed else ''}") from None
        n = len(flows.paths)
        entries.append(flows)
        parts.append(Part(entry.name, stragglers.routes(graph, flows.routes(graph)), flows.nbytes,
                          np.zeros(n + 1, np.int64),
                          np.empty(0, np.int64), start=entry.start, share=weight[entry.cls], sl=level[entry.cls]))
    composite = compose(parts)
    try:
        net = simulate_composite(composite)
    except RuntimeError as err:  # the class-fair iteration gave up: a limit of the model, said in one line
        if "class-fair" not in str(err):
            raise
        classes = ", ".join(f"{c.name} (SL{c.sl}, weight {c.weight:g})" for c in scenario.classes.values())
        raise ValueError(f"traffic classes {classes}: {err}; weights closer together (within 8x converged "
                         f"on every case tried) or one service level avoid it") from None
    jobs = [_job_outcome(i, plan, composite, net, graph) for i, plan in enumerate(plans)]
    flows_out = [FlowOutcome(e, f, net.start_at[composite.ops[len(plans) + i][0]],
                             net.end_at[composite.ops[len(plans) + i][0]])
                 for i, (e, f) in enumerate(zip(scenario.background, entries))]
    carried = np.zeros((len(parts), len(composite.names)))
    for i, part in enumerate(parts):
        for ops in composite.ops[i]:  # each copy on the routes it took
            own = part.routes.carried(part.op_bytes, net.route[ops] - composite.route_base[i])
            np.add.at(carried[i], composite.resources[i], own)
    return Outcome(scenario, graph, composite, carried, float(net.end_at.max(initial=0.0)), net.start_at, net.end_at,
                   jobs, flows_out, {"ops": counted, "alternatives": alternatives,
                                     "bytes": estimate(counted, elements, alternatives=alternatives)})


def _plan(job, graph, base, servers, searches):
    """A job's layout, NCCL search, schedule key and op bound; its mistakes named by key."""
    at = f"jobs.{job.name}"
    layout = dataclasses.replace(base, nodes=len(servers))
    try:
        record = collectives.get(job.algo, job.collective)
    except ValueError as err:
        raise ValueError(f"{at}.algo: {err}") from None
    try:
        record.params.bind(job.params)
    except ValueError as err:
        raise ValueError(f"{at}.params: {err}") from None
    bad = next((rank for rank, _ in job.late if rank >= layout.ranks), None)
    if bad is not None:
        raise ValueError(f"{at}.late.{bad}: no rank {bad} (job {job.name} has ranks 0..{layout.ranks - 1})")
    itemsize = np.dtype(job.dtype).itemsize
    if job.size < itemsize:
        raise ValueError(f"{at}.size: {job.size} B is smaller than one {job.dtype} element")
    search = None
    if record.search:
        key = (layout, repr(sorted(job.params.items())))  # all a search depends on: the job's layout and params
        if key not in searches:
            searches[key] = search_of(graph, layout, job.params.get("nccl_version"))
        search = searches[key]
    try:
        key = collectives.schedule_key(job.algo, layout, job.size, job.collective, search)
        ops = op_bound(job.algo, layout, job.size, job.collective, search, **job.params)
    except ValueError as err:
        raise ValueError(f"{at}: {err}") from None
    return {"job": job, "servers": servers, "layout": layout, "search": search, "key": key, "ops": ops,
            "itemsize": itemsize}


def _servers_of(entry, graph, placements):
    """The servers a background entry runs on, in increasing order."""
    at = f"background.{entry.name}"
    nodes = graph.graph["nodes"]
    if entry.servers is not None:
        bad = [s for s in entry.servers if s >= nodes]
        if bad:
            raise ValueError(f"{at}.servers: no server {bad[0]} (the cluster has servers 0..{nodes - 1})")
        return sorted(entry.servers)
    if entry.jobs is not None:
        return sorted({s for name in entry.jobs for s in placements[name]})
    leaves = server_leaves(graph)
    known = list(dict.fromkeys(leaves))
    for leaf in entry.leaves:
        if leaf not in known:
            raise ValueError(f"{at}.leaves: no servers on {leaf!r} (leaves with servers: {', '.join(known)})")
    return [s for s in range(nodes) if leaves[s] in entry.leaves]


def _nic_host(layout):
    """Name of the host memory next to a server's NIC (where a NIC's DMA lands), by server index."""
    return lambda server: f"n{server}/host{layout.nic_socket}"


def _job_outcome(index, plan, composite, net, graph):
    job = plan["job"]
    schedule, routes, op_bytes = plan["schedule"], plan["routes"], plan["op_bytes"]
    count = job.size // plan["itemsize"]
    alternatives = None if routes.alt_ptr is None else (routes.alt_ptr, routes.alt_idx)
    alone = simulate(schedule, routes, job.size, plan["itemsize"], alternatives=alternatives)
    runs, starts = [], []
    for ops, gates in zip(composite.ops[index], composite.gates[index]):
        t0 = float(net.ready_at[np.concatenate([ops, gates])].min())  # late gates: when the copy may start
        end = net.end_at[ops] - t0
        runs.append(Run(schedule, routes, "flow", count, plan["itemsize"], float(end.max()), op_bytes,
                        net.ready_at[ops] - t0, net.start_at[ops] - t0, end,
                        net.route[ops] - composite.route_base[index]))
        starts.append(t0)
    return JobOutcome(job, plan["servers"], alone, runs, np.array(starts))
