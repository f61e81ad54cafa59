"""Numba core of the fluid flow model: rate solving and event stepping.

Every op of a schedule is a *flow* over a *route*: a set of resources with
weights (bytes of the resource per byte of flow) and a fixed latency. An op
becomes ready when its dependencies are done, starts moving bytes ``latency``
seconds later, and ends when its bytes have drained at the rate the model
gives it:

- max-min sharing (``shared=True``, the flow model): weighted max-min fair
  sharing (progressive filling) of every resource among the active flows that
  cross it, recomputed whenever flows start or end;
- isolation (``shared=False``, the analytic model): each flow gets its route's
  bottleneck ``min(capacity / weight)`` as if it were alone.

All state lives in arrays held by :class:`Network`; :meth:`Network.step`
advances to one event time and handles every event due then as one batch. The
driver (:mod:`sim.engine`) owns the clock.
"""

import numpy as np
from numba import njit

# Times closer than this (relative) are one event; a flow due this close to now is done.
TIME_RTOL = 1e-12
# Resources whose fair shares differ by less than this (relative) saturate together.
SHARE_RTOL = 1e-9


@njit(cache=True)
def _heap_push(times, ops, size, t, op):
    """Push (t, op) onto the binary min-heap held in ``times``/``ops``; ``size[0]`` is its length."""
    i = size[0]
    size[0] += 1
    while i > 0:
        parent = (i - 1) >> 1
        if times[parent] <= t:
            break
        times[i], ops[i] = times[parent], ops[parent]
        i = parent
    times[i], ops[i] = t, op


@njit(cache=True)
def _heap_pop(times, ops, size):
    """Remove and return the op with the smallest time."""
    top = ops[0]
    size[0] -= 1
    n = size[0]
    t, op = times[n], ops[n]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and times[child + 1] < times[child]:
            child += 1
        if times[child] >= t:
            break
        times[i], ops[i] = times[child], ops[child]
        i = child
    times[i], ops[i] = t, op
    return top


@njit(cache=True)
def _route_bottleneck(r, rptr, rres, rw, capacity):
    best = np.inf
    for j in range(rptr[r], rptr[r + 1]):
        best = min(best, capacity[rres[j]] / rw[j])
    return best


@njit(cache=True)
def _solve_maxmin(active, n_active, route, rptr, rres, rw, capacity, rate, left, sumw, nflows, mark):
    """Set ``rate`` of the active flows to their weighted max-min fair share.

    Each round finds the smallest fair share ``left / sumw`` over the
    resources still in use, freezes every flow crossing a resource at that
    share (equal bottlenecks freeze together), and removes their usage.
    """
    touched = np.empty(rptr[-1] if n_active > 0 else 0, np.int64)
    nt = 0
    for i in range(n_active):
        r = route[active[i]]
        for j in range(rptr[r], rptr[r + 1]):
            k = rres[j]
            if not mark[k]:
                mark[k] = True
                touched[nt] = k
                nt += 1
                left[k] = capacity[k]
                sumw[k] = 0.0
                nflows[k] = 0
            sumw[k] += rw[j]
            nflows[k] += 1
    unfrozen = active[:n_active].copy()
    frozen = np.empty(n_active, np.int64)
    n_unfrozen = n_active
    while n_unfrozen > 0:
        level = np.inf
        for t in range(nt):
            k = touched[t]
            if nflows[k] > 0:
                level = min(level, max(left[k], 0.0) / sumw[k])
        limit = level * (1.0 + SHARE_RTOL)
        keep = 0
        n_frozen = 0
        for i in range(n_unfrozen):
            f = unfrozen[i]
            r = route[f]
            hit = level == np.inf
            for j in range(rptr[r], rptr[r + 1]):
                k = rres[j]
                if left[k] <= limit * sumw[k]:
                    hit = True
                    break
            if hit:
                rate[f] = level
                frozen[n_frozen] = f
                n_frozen += 1
            else:
                unfrozen[keep] = f
                keep += 1
        for i in range(n_frozen):
            r = route[frozen[i]]
            for j in range(rptr[r], rptr[r + 1]):
                k = rres[j]
                left[k] -= rw[j] * level
                sumw[k] -= rw[j]
                nflows[k] -= 1
        n_unfrozen = keep
    for t in range(nt):
        mark[touched[t]] = False


@njit(cache=True)
def _step(now, last, heap_t, heap_op, heap_n, active, n_active, remaining, rate, finish, ndeps, dn_ptr, dn_idx,
          route, rlat, rptr, rres, rw, capacity, shared, ready_at, start_at, end_at,
          left, sumw, nflows, mark):
    """Advance from ``last`` to ``now``: drain, finish, release, start, re-solve.

    Returns ``(n_active, next event time)``; the next time is inf when nothing
    is left to do.
    """
    horizon = now * (1.0 + TIME_RTOL) + 1e-300
    dt = now - last
    changed = False
    # drain active flows; finish those due now and release their dependents
    keep = 0
    for i in range(n_active):
        f = active[i]
        if finish[f] <= horizon:
            end_at[f] = now
            changed = True
            for j in range(dn_ptr[f], dn_ptr[f + 1]):
                d = dn_idx[j]
                ndeps[d] -= 1
                if ndeps[d] == 0:
                    ready_at[d] = now
                    _heap_push(heap_t, heap_op, heap_n, now + rlat[route[d]], d)
        else:
            remaining[f] -= rate[f] * dt
            active[keep] = f
            keep += 1
    n_active = keep
    # start every op whose latency has elapsed; empty ones finish at once
    while heap_n[0] > 0 and heap_t[0] <= horizon:
        f = _heap_pop(heap_t, heap_op, heap_n)
        start_at[f] = now
        changed = True
        if remaining[f] <= 0.0:
            end_at[f] = now
            for j in range(dn_ptr[f], dn_ptr[f + 1]):
                d = dn_idx[j]
                ndeps[d] -= 1
                if ndeps[d] == 0:
                    ready_at[d] = now
                    _heap_push(heap_t, heap_op, heap_n, now + rlat[route[d]], d)
        else:
            active[n_active] = f
            n_active += 1
    if changed:
        if shared:
            _solve_maxmin(active, n_active, route, rptr, rres, rw, capacity, rate, left, sumw, nflows, mark)
        else:
            for i in range(n_active):
                f = active[i]
                rate[f] = _route_bottleneck(route[f], rptr, rres, rw, capacity)
        for i in range(n_active):
            f = active[i]
            finish[f] = now + remaining[f] / rate[f]
    nxt = heap_t[0] if heap_n[0] > 0 else np.inf
    for i in range(n_active):
        nxt = min(nxt, finish[active[i]])
    return n_active, nxt


@njit(cache=True)
def _initial_heap(ndeps, route, rlat, ready_at, heap_t, heap_op, heap_n):
    for op in range(ndeps.size):
        if ndeps[op] == 0:
            ready_at[op] = 0.0
            _heap_push(heap_t, heap_op, heap_n, rlat[route[op]], op)


class Network:
    """The fluid state of one simulation: flows of ops over routes of resources.

    ``route[op]`` indexes a route; route ``r`` crosses resources
    ``rres[rptr[r]:rptr[r+1]]`` with weights ``rw[...]`` after latency
    ``rlat[r]``. ``dep_ptr/dep_idx`` is the schedule's dependency CSR.

    >>> import numpy as np
    >>> net = Network(op_bytes=np.array([100.0, 100.0]), route=np.array([0, 0]),
    ...               rptr=np.array([0, 1]), rres=np.array([0]), rw=np.array([1.0]),
    ...               rlat=np.array([0.0]), capacity=np.array([10.0]),
    ...               dep_ptr=np.array([0, 0, 0]), dep_idx=np.array([], np.int64), shared=True)
    >>> t = net.next_time
    >>> while t < np.inf:
    ...     t = net.step(t)
    >>> net.end_at.tolist()  # two equal flows on one link both finish at 2n/B
    [20.0, 20.0]
    """

    def __init__(self, op_bytes, route, rptr, rres, rw, rlat, capacity, dep_ptr, dep_idx, shared):
        n = op_bytes.size
        self.route = np.ascontiguousarray(route, np.int64)
        self.rptr, self.rres = np.asarray(rptr, np.int64), np.asarray(rres, np.int64)
        self.rw, self.rlat = np.asarray(rw, np.float64), np.asarray(rlat, np.float64)
        self.capacity = np.asarray(capacity, np.float64)
        self.shared = bool(shared)
        self.ndeps = np.diff(np.asarray(dep_ptr, np.int64)).astype(np.int64)
        self.dn_ptr, self.dn_idx = _dependents(np.asarray(dep_ptr, np.int64), np.asarray(dep_idx, np.int64), n)
        self.remaining = np.asarray(op_bytes, np.float64).copy()
        self.rate = np.zeros(n)
        self.finish = np.full(n, np.inf)
        self.ready_at = np.full(n, np.nan)
        self.start_at = np.full(n, np.nan)
        self.end_at = np.full(n, np.nan)
        self.active = np.empty(n, np.int64)
        self.n_active = 0
        nres = self.capacity.size
        self._scratch = (np.empty(nres), np.empty(nres), np.zeros(nres, np.int64), np.zeros(nres, np.bool_))
        self.heap = (np.empty(n), np.empty(n, np.int64), np.zeros(1, np.int64))
        _initial_heap(self.ndeps, self.route, self.rlat, self.ready_at, *self.heap)
        self.last = 0.0
        self.next_time = self.heap[0][0] if self.heap[2][0] else np.inf

    def step(self, now):
        """Handle every event due at ``now``; return the next event time (inf when done)."""
        self.n_active, self.next_time = _step(
            now, self.last, *self.heap, self.active, self.n_active, self.remaining, self.rate,
            self.finish, self.ndeps, self.dn_ptr, self.dn_idx, self.route, self.rlat, self.rptr,
            self.rres, self.rw, self.capacity, self.shared, self.ready_at, self.start_at,
            self.end_at, *self._scratch)
        self.last = now
        return self.next_time

    def unfinished(self):
        """Ops that never ended (non-empty only if a dependency can never be met)."""
        return np.flatnonzero(np.isnan(self.end_at))


def _dependents(dep_ptr, dep_idx, n):
    """Reverse a dependency CSR: for each op, the ops that wait for it."""
    owners = np.repeat(np.arange(n, dtype=np.int64), np.diff(dep_ptr))
    order = np.argsort(dep_idx, kind="stable")
    dn_ptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(dep_idx, minlength=n), out=dn_ptr[1:])
    return dn_ptr, owners[order]
