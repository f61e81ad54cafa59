"""Run a schedule on a topology in simulated time.

simpy owns the clock: one process sleeps until the fluid network's next event
(a flow finishing, or an op's latency elapsing) and lets :class:`sim.fluid.Network`
handle it, every event due at one time as one batch. A collective of 10^6 ops
has millions of event times, so each wake-up hands the numba core up to
``EVENTS_PER_WAKEUP`` consecutive event times at once: results are identical
for any value, only the Python overhead per event shrinks. Nothing here knows
which algorithm produced the schedule.

An op's ``release`` time (a schedule may carry one, see
:mod:`collectives.schedule`) becomes a dependency on a *gate*: an empty op
whose route crosses nothing and takes that many seconds, one gate per
distinct time, so the op is ready no earlier.
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
    """Outcome of one simulated collective: its time and every op's timeline."""

    schedule: object
    routes: Routes
    model: str
    count: int          # elements per rank
    itemsize: int
    time: float         # seconds from start to the last op's end
    op_bytes: np.ndarray
    ready_at: np.ndarray
    start_at: np.ndarray
    end_at: np.ndarray
    op_route: np.ndarray  # each op's route as run (the candidate it took where routes had alternatives)

    @property
    def nbytes(self):
        return self.count * self.itemsize

    def carried(self):
        """Bytes each resource carried (weights applied)."""
        return self.routes.carried(self.op_bytes, self.op_route)


def simulate(schedule, topology, nbytes, itemsize=4, model="flow", share=None, alternatives=None):
    """Simulate ``schedule`` moving ``nbytes`` per rank on ``topology`` (a graph, or prebuilt :class:`Routes`).

    ``model`` is ``flow`` (max-min fair sharing) or ``analytic`` (no contention).
    ``share`` is each op's sharing weight under max-min (a traffic class's;
    default 1 for every op); ``alternatives`` a pair ``(alt_ptr, alt_idx)``,
    the CSR of candidate routes of each route (adaptive routing: an op takes
    the least loaded when it starts). See :class:`sim.fluid.Network`.
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
                  sharing=SHARING[model], share=share, alt_ptr=alt_ptr, alt_idx=alt_idx)
    env = simpy.Environment()
    env.process(_drive(env, net))
    env.run()
    m = schedule.num_ops
    stuck = net.unfinished()
    if stuck.size:
        raise RuntimeError(f"{stuck.size} ops never ran, first: {schedule.describe(stuck[0])}")
    time = float(net.end_at[:m].max(initial=0.0))
    return Run(schedule, routes, model, count, itemsize, time, op_bytes,
               net.ready_at[:m], net.start_at[:m], net.end_at[:m], net.route[:m])


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
