"""Run a schedule on a topology in simulated time.

simpy owns the clock: one process sleeps until the fluid network's next event
(a flow finishing, or an op's latency elapsing) and lets :class:`sim.fluid.Network`
handle it, every event due at one time as one batch. A collective of 10^6 ops
has millions of event times, so each wake-up hands the numba core up to
``EVENTS_PER_WAKEUP`` consecutive event times at once: results are identical
for any value, only the Python overhead per event shrinks. Nothing here knows
which algorithm produced the schedule.

A run keeps every op's timeline (ready, start and end times, and bytes:
32 B per op) only when asked (``timeline=True``, the default here; ``flyersim
run`` asks for it with ``--trace``); otherwise it keeps the aggregates every
report needs: the run's time and the bytes each resource carried.

:func:`simulate_stream` runs a schedule that arrives batch by batch
(:mod:`collectives.stream`): batches enter the fluid network's window
``lookahead`` ops ahead of the ops that are ready, and leave when their ops
have ended, so a ring's memory is linear in its ranks. Results are the same
bits as :func:`simulate` of the whole schedule: an op that would enter the
window after it should have become ready stops the run, which starts again
with a longer look-ahead (in the end, the whole schedule).

An op's ``release`` time (a schedule may carry one, see
:mod:`collectives.schedule`) becomes a dependency on a *gate*: an empty op
whose route crosses nothing and takes that many seconds, one gate per
distinct time, so the op is ready no earlier.
"""

from dataclasses import dataclass

import numpy as np
import simpy

from flyersim.sim.budget import check_window, machine_memory
from flyersim.sim.fluid import Late, Network
from flyersim.sim.routes import RouteTable, Routes, build_routes, flow_bytes

MODELS = ("flow", "analytic")
SHARING = {"flow": "maxmin", "analytic": "isolated"}  # the fluid network's sharing policy of each model
EVENTS_PER_WAKEUP = 4096
LOOKAHEAD = 1 << 16  # ops the window holds beyond the highest op made ready while a stream has more (x16 on a late op)


@dataclass(frozen=True)
class Run:
    """Outcome of one simulated collective: its time, the bytes each resource carried, and (if kept) every op's
    timeline (``None`` when not kept)."""

    schedule: object
    routes: Routes
    model: str
    count: int          # elements per rank
    itemsize: int
    time: float         # seconds from start to the last op's end
    op_bytes: np.ndarray = None
    ready_at: np.ndarray = None
    start_at: np.ndarray = None
    end_at: np.ndarray = None
    op_route: np.ndarray = None  # each op's route as run (the candidate it took where routes had alternatives)
    carried_bytes: np.ndarray = None  # per resource, weights applied (None: from the timeline)
    ops: int = None                   # op count (None: the schedule's)

    @property
    def nbytes(self):
        return self.count * self.itemsize

    @property
    def timeline(self):
        """Whether every op's times were kept."""
        return self.end_at is not None

    def carried(self):
        """Bytes each resource carried (weights applied)."""
        if self.carried_bytes is not None:
            return self.carried_bytes
        return self.routes.carried(self.op_bytes, self.op_route)

    @property
    def num_ops(self):
        return self.schedule.num_ops if self.ops is None else self.ops


def simulate(schedule, topology, nbytes, itemsize=4, model="flow", share=None, alternatives=None, timeline=True):
    """Simulate ``schedule`` moving ``nbytes`` per rank on ``topology`` (a graph, or prebuilt :class:`Routes`).

    ``model`` is ``flow`` (max-min fair sharing) or ``analytic`` (no contention).
    ``share`` is each op's sharing weight under max-min (a traffic class's;
    default 1 for every op); ``alternatives`` a pair ``(alt_ptr, alt_idx)``,
    the CSR of candidate routes of each route (adaptive routing: an op takes
    the least loaded when it starts). See :class:`sim.fluid.Network`.
    ``timeline`` keeps every op's bytes, times and route in the run (else
    only its time and per-resource bytes).
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} (choose from {', '.join(MODELS)})")
    routes = topology if isinstance(topology, Routes) else build_routes(topology, schedule)
    count = int(nbytes) // itemsize
    op_bytes = schedule.span_elements(count).astype(np.float64) * itemsize
    dep_ptr, dep_idx = _flow_deps(schedule)
    flows, route, rptr, rlat = flow_bytes(schedule, op_bytes), routes.op_route, routes.rptr, routes.rlat
    alt_ptr, alt_idx = (None, None) if alternatives is None else alternatives
    if schedule.release is not None and np.any(schedule.release > 0):
        flows, route, rptr, rlat, dep_ptr, dep_idx = _gates(schedule.release, flows, route, rptr, rlat,
                                                            dep_ptr, dep_idx)
        share = None if share is None else np.concatenate([share, np.ones(flows.size - share.size)])
        alt_ptr = None if alt_ptr is None else np.concatenate([alt_ptr, np.full(rlat.size + 1 - alt_ptr.size,
                                                                               alt_ptr[-1])])
    net = Network(flows, route, rptr, routes.rres, routes.rw, rlat, routes.capacity, dep_ptr, dep_idx,
                  sharing=SHARING[model], share=share, alt_ptr=alt_ptr, alt_idx=alt_idx,
                  timeline=timeline or alternatives is not None)
    del dep_ptr, dep_idx
    env = simpy.Environment()
    env.process(_drive(env, net))
    env.run()
    m = schedule.num_ops
    stuck = net.unfinished()
    if stuck.size:
        raise RuntimeError(f"{stuck.size} ops never ran, first: {schedule.describe(stuck[0])}")
    taken = routes.op_route if alternatives is None else net.route[:m]
    carried = routes.carried(op_bytes, taken)
    if not timeline:
        return Run(schedule, routes, model, count, itemsize, net.time, carried_bytes=carried, ops=m)
    return Run(schedule, routes, model, count, itemsize, net.time, op_bytes,
               net.ready_at[:m], net.start_at[:m], net.end_at[:m], taken, carried, m)


def _gates(release, flows, route, rptr, rlat, dep_ptr, dep_idx):
    """The flow arrays with one gate op per distinct positive ``release`` time, after the ops, and every
    released op depending on its gate."""
    m = flows.size
    times, gate_of = np.unique(release, return_inverse=True)
    gate_of = gate_of.ravel() - (times[0] == 0.0)  # -1: released at 0, no gate
    times = times[times > 0]
    gate_route = rlat.size + np.arange(times.size)
    flows = np.concatenate([flows, np.zeros(times.size)])
    route = np.concatenate([route, gate_route])
    rptr = np.concatenate([rptr, np.full(times.size, rptr[-1])])
    rlat = np.concatenate([rlat, times])
    extra = (gate_of >= 0).astype(np.int64)
    new_ptr = np.zeros(m + times.size + 1, np.int64)
    np.cumsum(np.concatenate([np.diff(dep_ptr) + extra, np.zeros(times.size, np.int64)]), out=new_ptr[1:])
    new_idx = np.empty(new_ptr[-1], np.int64)
    owner = np.repeat(np.arange(m), np.diff(dep_ptr))
    new_idx[new_ptr[owner] + (np.arange(owner.size) - dep_ptr[owner])] = dep_idx
    gated = np.flatnonzero(extra)
    new_idx[new_ptr[gated + 1] - 1] = m + gate_of[gated]
    return flows, route, rptr, rlat, new_ptr, new_idx


def simulate_stream(make_stream, graph, nbytes, itemsize=4, model="flow", timeline=False, router=None,
                    lookahead=LOOKAHEAD, max_memory=None):
    """:func:`simulate` of the schedule ``make_stream()`` streams (a :class:`collectives.stream.Stream`).

    The run's ``schedule`` is the built schedule with no ops (its layout, algorithm and collective) and its
    routes have no per-op routes; ``timeline`` still keeps every op's times and bytes. A window that
    outgrows ``max_memory`` bytes (default: this machine's available memory) stops the run with one line
    (:func:`sim.budget.check_window`).
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} (choose from {', '.join(MODELS)})")
    while True:
        stream = make_stream()
        try:
            return _run_stream(stream, graph, nbytes, itemsize, model, timeline, router, lookahead,
                               machine_memory() if max_memory is None else max_memory)
        except Late:
            lookahead *= 16
        finally:
            stream.close()


def _run_stream(stream, graph, nbytes, itemsize, model, timeline, router, lookahead, limit):
    count = int(nbytes) // itemsize
    try:
        first, batch = next(stream)
    except StopIteration:
        first, batch = 0, None
    header = batch if batch is not None else stream.schedule
    table = RouteTable(graph, header.layout, header.algo, router)
    net = Network(None, None, *table.elements(), sharing=SHARING[model], timeline=timeline)
    per_route, sizes = np.zeros(0), []
    pending = [(first, batch)] if batch is not None else []
    elements, held = graph.number_of_nodes() + graph.number_of_edges(), [0, None]  # bytes checked, array sizes
    what = f"{header.algo} on {header.layout.ranks} GPUs"

    def feed():
        """Append batches until ``lookahead`` ops follow the highest op made ready; False once none are left."""
        nonlocal per_route
        while net.num_ops - 1 - net.top_ready < lookahead:
            if pending:
                first, batch = pending.pop()
            else:
                try:
                    first, batch = next(stream)
                except StopIteration:
                    return False
            known = table.size
            op_route = table.add(batch, first)
            if table.size != known:
                net.set_routes(*table.elements())
                per_route = np.concatenate([per_route, np.zeros(table.size - per_route.size)])
            op_bytes = batch.span_elements(count).astype(np.float64) * itemsize
            np.add.at(per_route, op_route, op_bytes)  # in op order, as np.bincount over every op
            if timeline:
                sizes.append(op_bytes)
            dep_ptr, dep_idx = _flow_deps(batch, first)
            net.append(first, op_route, flow_bytes(batch, op_bytes, first), dep_ptr, dep_idx)
            grown = (net.window, net.dag.edge_op.size, net.dag.end_at.size, net.var.op.size, table.size)
            if grown != held[1] and net.held() > 2 * held[0]:  # check as the window grows (doubling)
                held[0] = net.held()
                check_window(what, held[0], elements, limit)
            held[1] = grown
        return True

    net.feed = feed
    net.low = lookahead // 2
    if not feed():
        net.low = 0
    env = simpy.Environment()
    env.process(_drive(env, net))
    env.run()
    stuck = net.unfinished()
    if stuck.size or net.num_ended != stream.num_ops:
        raise RuntimeError(f"{max(stuck.size, stream.num_ops - net.num_ended)} ops never ran, first: op "
                           f"{stuck[0] if stuck.size else net.num_ended}")
    fields, renumber = table.routes()
    routes = Routes(*fields)
    ordered = np.zeros(routes.rlat.size)
    ordered[renumber[:per_route.size]] = per_route
    carried = routes.carried_by_route(ordered)
    schedule = stream.schedule
    if not timeline:
        return Run(schedule, routes, model, count, itemsize, net.time, carried_bytes=carried, ops=stream.num_ops)
    op_bytes = np.concatenate(sizes) if sizes else np.zeros(0)
    return Run(schedule, routes, model, count, itemsize, net.time, op_bytes, net.ready_at, net.start_at, net.end_at,
               None, carried, stream.num_ops)


def _flow_deps(schedule, first=0):
    """The schedule's dependencies, plus: a multicast's further copies end when its first copy (their flow) ends.

    ``first``: the op id of the schedule's first op (a batch of a stream).
    """
    s = schedule
    ids = first + np.arange(s.num_ops)
    if s.group is None or not np.any((s.group >= 0) & (s.group != ids)):
        return s.dep_ptr, s.dep_idx
    follower = (s.group >= 0) & (s.group != ids)
    counts = np.diff(s.dep_ptr) + follower
    dep_ptr = np.zeros(s.num_ops + 1, np.int64)
    np.cumsum(counts, out=dep_ptr[1:])
    dep_idx = np.empty(dep_ptr[-1], np.int64)
    owner = np.repeat(np.arange(s.num_ops), np.diff(s.dep_ptr))
    dep_idx[dep_ptr[owner] + (np.arange(owner.size) - s.dep_ptr[owner])] = s.dep_idx
    rows = np.flatnonzero(follower)
    dep_idx[dep_ptr[rows + 1] - 1] = s.group[rows]
    return dep_ptr, dep_idx


def _drive(env, net):
    """simpy process: sleep until the next event of ``net``, let it handle that and the following ones."""
    t = net.next_time
    while t < np.inf:
        yield env.timeout(max(t - env.now, 0.0))
        t = net.advance(t, EVENTS_PER_WAKEUP)
