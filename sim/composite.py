"""Several jobs and background flows composed into one fluid network, simulated together.

A *part* is one job (a schedule placed on its servers, with its routes) or
one background entry (its flows, :mod:`sim.background`). :func:`compose`
merges the parts into the inputs of one :class:`sim.fluid.Network`:

- resources are shared by name (``n3/nic0->z0/leaf0`` is one resource
  whoever crosses it), numbered in order of first appearance, part 0 first;
- a part's ``repeat`` copies of its ops run one after another: a zero-byte
  *barrier* op waits for the ops of copy k that nothing waits for, and copy
  k+1's first ops wait for it;
- start times are zero-byte *timer* ops with no dependencies whose route is
  nothing but a latency: copy 0 waits for a timer of ``start``, copy k for
  one of ``start + k * period`` when the part has a period;
- an op's ``release`` (a late rank's first ops, :func:`collectives.transforms.late_start`) is a
  dependency on a zero-byte *late gate* of that many seconds after the copy's start (one per distinct
  time and copy, after the copy's ops, waiting for what the copy's first ops wait for), as
  :func:`sim.engine.simulate` gates it;
- every op gets its part's traffic class: its service level ``sl`` and
  that level's weight ``share``. When all ops are on one service level the
  network shares max-min between flows (as :func:`sim.engine.simulate` does); else
  class-then-flow (:mod:`sim.classes`): the InfiniBand links arbitrate
  between service levels by weight, and inside a level, and on every other
  resource (PCIe, memory and engines know no service level), flows share
  max-min;
- a part whose routes list alternatives (adaptive routing) keeps them,
  renumbered: its flows choose among them as they start.

So one part, one copy, no start time gives exactly the network
:func:`sim.engine.simulate` builds for that schedule (tests compare every
op's end time bit for bit), and the simulator learns nothing new: barriers
and timers are ordinary ops.

>>> import numpy as np
>>> from flyersim.sim.routes import Routes
>>> link = Routes(["l"], ["ib"], np.array([10.0]), np.array([0, 1]), np.array([0]), np.array([1.0]),
...               np.array([0.0]), np.array([0]))
>>> deps = (np.zeros(2, np.int64), np.empty(0, np.int64))
>>> a = Part("a", link, np.array([100.0]), *deps, repeat=2)
>>> b = Part("b", link, np.array([50.0]), *deps, start=5.0)
>>> c = compose([a, b])
>>> end = simulate(c).end_at
>>> [[float(end[ops].max()) for ops in copies] for copies in c.ops]  # b joins a's link at 5 s
[[15.0, 25.0], [15.0]]
"""

from dataclasses import dataclass

import numpy as np
import simpy

from flyersim.sim.engine import _drive
from flyersim.sim.fluid import Network


@dataclass(frozen=True)
class Part:
    """One job or background entry: its routes (own resource numbering), its ops' flow bytes and dependencies."""

    name: str
    routes: object
    op_bytes: np.ndarray
    dep_ptr: np.ndarray
    dep_idx: np.ndarray
    repeat: int = 1
    start: float = 0.0
    period: float = None
    share: float = 1.0
    sl: int = 0
    release: np.ndarray = None  # per op, seconds after its copy's start before which it is not ready (None: 0)


@dataclass(frozen=True)
class Composite:
    """The inputs of one :class:`Network` for all parts, and where each part's ops and resources went.

    ``ops[p][k]`` are the global op ids of copy k of part p (in the part's own op order), ``gates[p][k]``
    the ids of its late gates (ready when the copy may start); ``resources[p]`` maps part p's resource ids
    to global ones, and part p's route r is global route ``route_base[p] + r``.
    """

    names: list
    classes: list
    capacity: np.ndarray
    rptr: np.ndarray
    rres: np.ndarray
    rw: np.ndarray
    rlat: np.ndarray
    op_bytes: np.ndarray
    route: np.ndarray
    dep_ptr: np.ndarray
    dep_idx: np.ndarray
    share: np.ndarray
    sl: np.ndarray
    ops: list
    resources: list
    route_base: list
    gates: list
    alt_ptr: np.ndarray = None  # candidate routes of each route (adaptive routing), as sim.fluid.Network takes
    alt_idx: np.ndarray = None  # them; None when no part has any

    @property
    def num_ops(self):
        return self.op_bytes.size


def compose(parts):
    """The :class:`Composite` of ``parts`` (see the module docstring)."""
    index, names, classes, capacity, resources = {}, [], [], [], []
    for p in parts:
        ids = np.empty(len(p.routes.names), np.int64)
        for i, name in enumerate(p.routes.names):
            if name not in index:
                index[name] = len(names)
                names.append(name)
                classes.append(p.routes.classes[i])
                capacity.append(float(p.routes.capacity[i]))
            ids[i] = index[name]
        resources.append(ids)
    routes = _RouteTable()
    route_base = [routes.add_routes(p.routes, ids) for p, ids in zip(parts, resources)]
    ops = _OpTable()
    placed, late_gates = [], []
    for p, base in zip(parts, route_base):
        n = p.op_bytes.size
        sinks = np.setdiff1d(np.arange(n), p.dep_idx) if p.repeat > 1 else None
        times, late = _release_times(p.release, n)
        copies, own_gates, barrier = [], [], None
        for k in range(p.repeat):
            gates = [] if barrier is None else [barrier]
            at = p.start + k * (p.period or 0.0) if (k == 0 or p.period) else 0.0
            if at > 0:
                gates.append(ops.add_gate(routes.latency_route(at)))
            first = ops.add_block(p.op_bytes, p.routes.op_route + base, p.dep_ptr, p.dep_idx, gates, p.share, p.sl, late)
            copies.append(np.arange(first, first + n))
            own_gates.append(np.array([ops.add_gate(routes.latency_route(t), gates) for t in times], np.int64))
            if k + 1 < p.repeat:
                barrier = ops.add_gate(routes.latency_route(0.0), sinks + first)
        placed.append(copies)
        late_gates.append(own_gates)
    return Composite(names, classes, np.array(capacity, np.float64), *routes.arrays(), *ops.arrays(), placed,
                     resources, route_base, late_gates, *routes.alternatives())


def _release_times(release, n):
    """The distinct positive release times, and per op the index of its own among them (-1: none)."""
    if release is None:
        return [], np.full(n, -1, np.int64)
    times, late = np.unique(release, return_inverse=True)
    late = late.ravel() - (times[0] == 0.0)
    return times[times > 0].tolist(), late


def network(composite):
    """The :class:`Network` of a composite (not yet run): class-then-flow sharing when its moving ops use
    several service levels (virtual lanes, each with its arbitration weight), else max-min."""
    c = composite
    moving = c.op_bytes > 0
    sharing = "classes" if np.unique(c.sl[moving]).size > 1 else "maxmin"
    return Network(c.op_bytes, c.route, c.rptr, c.rres, c.rw, c.rlat, c.capacity, c.dep_ptr, c.dep_idx,
                   sharing=sharing, share=c.share, alt_ptr=c.alt_ptr, alt_idx=c.alt_idx, cls=c.sl,
                   arbitrated=np.array([k == "ib" for k in c.classes], np.bool_))


def simulate(composite):
    """Run the composite's network to its end; the network, with every op's ready, start and end times."""
    net = network(composite)
    env = simpy.Environment()
    env.process(_drive(env, net))
    env.run()
    stuck = net.unfinished()
    if stuck.size:
        raise RuntimeError(f"{stuck.size} ops never ran, first: op {stuck[0]}")
    return net


class _RouteTable:
    """Routes of all parts, then the latency-only routes of timers and barriers."""

    def __init__(self):
        self.rptr, self.rres, self.rw, self.rlat = [np.zeros(1, np.int64)], [], [], []
        self.count, self.elements, self.latency = 0, 0, {}
        self.alt_counts, self.alt_idx = [], []  # candidates per route (a part's routes may list some)

    def add_routes(self, routes, ids):
        base = self.count
        if routes.alt_ptr is None:
            self.alt_counts.append(np.zeros(routes.rlat.size, np.int64))
        else:
            self.alt_counts.append(np.diff(routes.alt_ptr))
            self.alt_idx.append(routes.alt_idx + base)
        self.rptr.append(routes.rptr[1:] + self.elements)
        self.rres.append(ids[routes.rres])
        self.rw.append(routes.rw)
        self.rlat.append(routes.rlat)
        self.count += routes.rlat.size
        self.elements += routes.rres.size
        return base

    def latency_route(self, seconds):
        if seconds not in self.latency:
            self.latency[seconds] = self.count
            self.rptr.append(np.array([self.elements], np.int64))
            self.rlat.append(np.array([seconds]))
            self.alt_counts.append(np.zeros(1, np.int64))
            self.count += 1
        return self.latency[seconds]

    def alternatives(self):
        """``(alt_ptr, alt_idx)`` over all routes, or ``(None, None)`` when no route has candidates."""
        if not self.alt_idx:
            return None, None
        alt_ptr = np.concatenate([[0], np.cumsum(np.concatenate(self.alt_counts))]).astype(np.int64)
        return alt_ptr, np.concatenate(self.alt_idx).astype(np.int64)

    def arrays(self):
        cat = np.concatenate
        return (cat(self.rptr).astype(np.int64), cat(self.rres or [np.empty(0, np.int64)]).astype(np.int64),
                cat(self.rw or [np.empty(0)]).astype(np.float64), cat(self.rlat).astype(np.float64))


class _OpTable:
    """Ops in order: bytes, route, sharing weight, service level and dependency counts/ids of each block."""

    def __init__(self):
        self.num_ops = 0
        self.bytes, self.route, self.share, self.sl, self.counts, self.deps = [], [], [], [], [], []

    def add_block(self, op_bytes, route, dep_ptr, dep_idx, gates, share, sl, late):
        """Ops of one copy of a part; its ops without dependencies wait for ``gates``, and op i with
        ``late[i] >= 0`` for the op added ``late[i]`` after the block (its late gate); returns the first id."""
        first, n = self.num_ops, op_bytes.size
        own = np.diff(dep_ptr)
        roots = np.flatnonzero(own == 0)
        gated = np.flatnonzero(late >= 0)
        counts = own.copy()
        counts[roots] += len(gates)
        counts[gated] += 1
        ptr = np.concatenate([[0], np.cumsum(counts)])
        idx = np.empty(ptr[-1], np.int64)
        owner = np.repeat(np.arange(n), own)
        idx[ptr[owner] + np.arange(dep_idx.size) - dep_ptr[owner]] = dep_idx + first
        if gates:
            idx[(ptr[roots][:, None] + np.arange(len(gates))).ravel()] = np.tile(gates, roots.size)
        idx[ptr[gated + 1] - 1] = first + n + late[gated]
        self._append(op_bytes, route, np.full(n, share), np.full(n, sl), counts, idx)
        return first

    def add_gate(self, route, deps=()):
        """A zero-byte op on ``route`` waiting for ``deps``; returns its id."""
        deps = np.asarray(deps, np.int64)
        self._append(np.zeros(1), np.array([route]), np.ones(1), np.zeros(1), np.array([deps.size]), deps)
        return self.num_ops - 1

    def _append(self, op_bytes, route, share, sl, counts, idx):
        self.bytes.append(np.asarray(op_bytes, np.float64))
        self.route.append(np.asarray(route, np.int64))
        self.share.append(share)
        self.sl.append(np.asarray(sl, np.int64))
        self.counts.append(counts)
        self.deps.append(idx)
        self.num_ops += op_bytes.size

    def arrays(self):
        cat = np.concatenate
        dep_ptr = np.concatenate([[0], np.cumsum(cat(self.counts))]).astype(np.int64)
        return (cat(self.bytes), cat(self.route), dep_ptr, cat(self.deps).astype(np.int64), cat(self.share),
                cat(self.sl))
