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
"""

from dataclasses import dataclass

import numpy as np
import simpy

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
    carried_bytes: np.ndarray  # per resource, weights applied
    num_ops: int
    op_bytes: np.ndarray = None
    ready_at: np.ndarray = None
    start_at: np.ndarray = None
    end_at: np.ndarray = None

    @property
    def nbytes(self):
        return self.count * self.itemsize

    @property
    def timeline(self):
        """Whether every op's times were kept."""
        return self.end_at is not None

    def carried(self):
        """Bytes each resource carried (weights applied)."""
        return self.carried_bytes


def simulate(schedule, topology, nbytes, itemsize=4, model="flow", timeline=True):
    """Simulate ``schedule`` moving ``nbytes`` per rank on ``topology`` (a graph, or prebuilt :class:`Routes`).

    ``model`` is ``flow`` (max-min fair sharing) or ``analytic`` (no contention); ``timeline`` keeps every
    op's bytes and times in the run (else only its time and per-resource bytes).
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} (choose from {', '.join(MODELS)})")
    routes = topology if isinstance(topology, Routes) else build_routes(topology, schedule)
    count = int(nbytes) // itemsize
    op_bytes = schedule.span_elements(count).astype(np.float64) * itemsize
    dep_ptr, dep_idx = _flow_deps(schedule)
    carried = routes.carried(op_bytes)
    net = Network(flow_bytes(schedule, op_bytes), routes.op_route, routes.rptr, routes.rres, routes.rw, routes.rlat,
                  routes.capacity, dep_ptr, dep_idx, sharing=SHARING[model], timeline=timeline)
    del dep_ptr, dep_idx
    env = simpy.Environment()
    env.process(_drive(env, net))
    env.run()
    stuck = net.unfinished()
    if stuck.size:
        raise RuntimeError(f"{stuck.size} ops never ran, first: {schedule.describe(stuck[0])}")
    if not timeline:
        return Run(schedule, routes, model, count, itemsize, net.time, carried, schedule.num_ops)
    return Run(schedule, routes, model, count, itemsize, net.time, carried, schedule.num_ops, op_bytes,
               net.ready_at, net.start_at, net.end_at)


def simulate_stream(make_stream, graph, nbytes, itemsize=4, model="flow", timeline=False, router=None,
                    lookahead=LOOKAHEAD):
    """:func:`simulate` of the schedule ``make_stream()`` streams (a :class:`collectives.stream.Stream`).

    The run's ``schedule`` is the built schedule with no ops (its layout, algorithm and collective) and its
    routes have no per-op routes; ``timeline`` still keeps every op's times and bytes.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r} (choose from {', '.join(MODELS)})")
    while True:
        stream = make_stream()
        try:
            return _run_stream(stream, graph, nbytes, itemsize, model, timeline, router, lookahead)
        except Late:
            lookahead *= 16
        finally:
            stream.close()


def _run_stream(stream, graph, nbytes, itemsize, model, timeline, router, lookahead):
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
        return Run(schedule, routes, model, count, itemsize, net.time, carried, stream.num_ops)
    op_bytes = np.concatenate(sizes) if sizes else np.zeros(0)
    return Run(schedule, routes, model, count, itemsize, net.time, carried, stream.num_ops, op_bytes,
               net.ready_at, net.start_at, net.end_at)


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
