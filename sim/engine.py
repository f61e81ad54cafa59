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
"""

from dataclasses import dataclass

import numpy as np
import simpy

from flyersim.sim.fluid import Network
from flyersim.sim.routes import Routes, build_routes, flow_bytes

MODELS = ("flow", "analytic")
SHARING = {"flow": "maxmin", "analytic": "isolated"}  # the fluid network's sharing policy of each model
EVENTS_PER_WAKEUP = 4096


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
        return Run(schedule, routes, model, count, itemsize, net.time, carried)
    return Run(schedule, routes, model, count, itemsize, net.time, carried, op_bytes,
               net.ready_at, net.start_at, net.end_at)


def _flow_deps(schedule):
    """The schedule's dependencies, plus: a multicast's further copies end when its first copy (their flow) ends."""
    s = schedule
    if s.group is None or not np.any((s.group >= 0) & (s.group != np.arange(s.num_ops))):
        return s.dep_ptr, s.dep_idx
    follower = (s.group >= 0) & (s.group != np.arange(s.num_ops))
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
