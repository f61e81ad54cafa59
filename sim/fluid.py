"""Numba core of the fluid flow model: rate solving and event stepping.

Every op of a schedule is a *flow* over a *route*: a set of resources with
weights (bytes of the resource per byte of flow) and a fixed latency. An op
becomes ready when its dependencies are done, starts moving bytes ``latency``
seconds later, and ends when its bytes have drained at the rate the model
gives it:

- max-min sharing (``shared=True``, the flow model): weighted max-min fair
  sharing of every resource among the active flows that cross it;
- isolation (``shared=False``, the analytic model): each flow gets its route's
  bottleneck ``min(capacity / weight)`` as if it were alone.

Max-min rates are kept exact *incrementally*. The max-min fair allocation is
the unique feasible one in which every flow has a *bottleneck*: a saturated
resource on which no flow gets more. When flows start or end, only the flows
on the resources they touch are re-solved (progressive filling over what the
others leave free); then any flow next to them that lost its bottleneck, or
that outruns a re-solved flow on that flow's bottleneck, joins the set and the
set is re-solved, until every flow has a bottleneck again. In a large
collective most events touch a handful of flows, so an event costs little
however many flows are active.

All state lives in arrays held by :class:`Network`; :meth:`Network.step`
handles every event due at one time as one batch. The driver
(:mod:`sim.engine`) owns the clock.
"""

import numpy as np
from numba import njit

# Times closer than this (relative) are one event.
TIME_RTOL = 1e-12
# A resource within this (relative) of capacity is saturated; rates this close are equal.
RATE_RTOL = 1e-9
# _step results besides a next event time.
NEED_SLOTS = -1.0

_jit = njit(cache=True, error_model="numpy")


# ---------------------------------------------------------------- binary min-heaps of ops, indexed by op
# Two are used: ops waiting out their latency (keyed by start time) and active
# flows (keyed by finish time, moved whenever a rate changes).

@_jit
def _heap_place(keys, ops, pos, i, key, op):
    keys[i], ops[i] = key, op
    pos[op] = i


@_jit
def _heap_sift(keys, ops, pos, size, i):
    """Restore heap order around slot ``i`` (up, then down)."""
    key, op = keys[i], ops[i]
    while i > 0:
        parent = (i - 1) >> 1
        if keys[parent] <= key:
            break
        _heap_place(keys, ops, pos, i, keys[parent], ops[parent])
        i = parent
    n = size[0]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and keys[child + 1] < keys[child]:
            child += 1
        if keys[child] >= key:
            break
        _heap_place(keys, ops, pos, i, keys[child], ops[child])
        i = child
    _heap_place(keys, ops, pos, i, key, op)


@_jit
def _heap_set(keys, ops, pos, size, op, key):
    """Insert ``op`` with ``key`` or move it to ``key``."""
    i = pos[op]
    if i < 0:
        i = size[0]
        size[0] += 1
    _heap_place(keys, ops, pos, i, key, op)
    _heap_sift(keys, ops, pos, size, i)


@_jit
def _heap_remove(keys, ops, pos, size, op):
    i = pos[op]
    pos[op] = -1
    size[0] -= 1
    last = size[0]
    if i != last:
        _heap_place(keys, ops, pos, i, keys[last], ops[last])
        _heap_sift(keys, ops, pos, size, i)


# ---------------------------------------------------------------- resource membership lists

@_jit
def _link(slot, r, rptr, rres, width, m_next, m_prev, head, count):
    for jl in range(rptr[r + 1] - rptr[r]):
        k = rres[rptr[r] + jl]
        m = slot * width + jl
        m_prev[m] = -1
        m_next[m] = head[k]
        if head[k] >= 0:
            m_prev[head[k]] = m
        head[k] = m
        count[k] += 1


@_jit
def _unlink(slot, r, rptr, rres, width, m_next, m_prev, head, count):
    for jl in range(rptr[r + 1] - rptr[r]):
        k = rres[rptr[r] + jl]
        m = slot * width + jl
        if m_prev[m] >= 0:
            m_next[m_prev[m]] = m_next[m]
        else:
            head[k] = m_next[m]
        if m_next[m] >= 0:
            m_prev[m_next[m]] = m_prev[m]
        count[k] -= 1


@_jit
def _route_bottleneck(r, rptr, rres, rw, capacity):
    best = np.inf
    for j in range(rptr[r], rptr[r + 1]):
        best = min(best, capacity[rres[j]] / rw[j])
    return best


# ---------------------------------------------------------------- the event step

@_jit
def _step(now, shared, rkey, rop, rpos, rsize, fkey, fop, fpos, fsize,
          remaining, t_upd, rate, ndeps, dn_ptr, dn_idx, route, rlat, rptr, rres, rw, capacity,
          ready_at, start_at, end_at, width, m_next, m_prev, head, count, used,
          slot_of, flow_of_slot, free_slots, n_free, in_set, members, n_members,
          touched_mark, touched, left, sumw, nflows, bott, dirty_mark, dirty, seen):
    """Handle every event due at ``now``; return the next event time, inf when done.

    Returns ``NEED_SLOTS`` (before changing anything it cannot finish) when
    the membership arrays are full; the caller grows them and calls again.
    """
    horizon = now * (1.0 + TIME_RTOL) + 1e-300
    # flows that drained: retire them, free their resources, release dependents
    while fsize[0] > 0 and fkey[0] <= horizon:
        f = fop[0]
        _heap_remove(fkey, fop, fpos, fsize, f)
        end_at[f] = now
        r = route[f]
        for j in range(rptr[r], rptr[r + 1]):
            k = rres[j]
            used[k] -= rw[j] * rate[f]
            _touch(k, touched_mark, touched, n_members)
        _mark_dirty(r, rptr, rres, dirty_mark, dirty, n_members)
        s = slot_of[f]
        _unlink(s, r, rptr, rres, width, m_next, m_prev, head, count)
        for j in range(rptr[r], rptr[r + 1]):
            if count[rres[j]] == 0:
                used[rres[j]] = 0.0  # no rounding drift left behind on an idle resource
        free_slots[n_free[0]] = s
        n_free[0] += 1
        _release(f, now, dn_ptr, dn_idx, ndeps, ready_at, route, rlat, rkey, rop, rpos, rsize)
    # ops whose latency has elapsed start moving bytes; empty ones end at once
    while rsize[0] > 0 and rkey[0] <= horizon:
        if n_free[0] == 0:
            return NEED_SLOTS
        f = rop[0]
        _heap_remove(rkey, rop, rpos, rsize, f)
        start_at[f] = now
        if remaining[f] <= 0.0:
            end_at[f] = now
            _release(f, now, dn_ptr, dn_idx, ndeps, ready_at, route, rlat, rkey, rop, rpos, rsize)
            continue
        n_free[0] -= 1
        s = free_slots[n_free[0]]
        slot_of[f] = s
        flow_of_slot[s] = f
        r = route[f]
        _link(s, r, rptr, rres, width, m_next, m_prev, head, count)
        rate[f] = 0.0
        t_upd[f] = now
        _add_member(f, now, in_set, members, n_members, remaining, t_upd, rate)
        _mark_dirty(r, rptr, rres, dirty_mark, dirty, n_members)
        for j in range(rptr[r], rptr[r + 1]):
            _touch(rres[j], touched_mark, touched, n_members)
    if n_members[0] > 0 or n_members[1] > 0 or n_members[2] > 0:
        if shared:
            _resolve(now, in_set, members, n_members, touched_mark, touched, remaining, t_upd, rate,
                     route, rptr, rres, rw, capacity, width, m_next, head, count, used, flow_of_slot,
                     left, sumw, nflows, bott, dirty_mark, dirty, seen)
        else:
            for i in range(n_members[0]):
                f = members[i]
                rate[f] = _route_bottleneck(route[f], rptr, rres, rw, capacity)
        for i in range(n_members[0]):
            f = members[i]
            in_set[f] = False
            _heap_set(fkey, fop, fpos, fsize, f, now + remaining[f] / rate[f])
        for i in range(n_members[1]):
            touched_mark[touched[i]] = False
        for i in range(n_members[2]):
            dirty_mark[dirty[i]] = False
        n_members[:3] = 0
    nxt = np.inf
    if rsize[0] > 0:
        nxt = rkey[0]
    if fsize[0] > 0:
        nxt = min(nxt, fkey[0])
    return nxt


@_jit
def _advance(now, max_events, shared, rkey, rop, rpos, rsize, fkey, fop, fpos, fsize,
             remaining, t_upd, rate, ndeps, dn_ptr, dn_idx, route, rlat, rptr, rres, rw, capacity,
             ready_at, start_at, end_at, width, m_next, m_prev, head, count, used,
             slot_of, flow_of_slot, free_slots, n_free, in_set, members, n_members,
             touched_mark, touched, left, sumw, nflows, bott, dirty_mark, dirty, seen):
    """Handle the events at ``now`` and the next ones, ``max_events`` event times in all.

    Returns (last time handled, next event time); the next time is
    ``NEED_SLOTS`` when the membership arrays must grow before going on.
    """
    for _ in range(max_events):
        nxt = _step(now, shared, rkey, rop, rpos, rsize, fkey, fop, fpos, fsize,
                    remaining, t_upd, rate, ndeps, dn_ptr, dn_idx, route, rlat, rptr, rres, rw, capacity,
                    ready_at, start_at, end_at, width, m_next, m_prev, head, count, used,
                    slot_of, flow_of_slot, free_slots, n_free, in_set, members, n_members,
                    touched_mark, touched, left, sumw, nflows, bott, dirty_mark, dirty, seen)
        if nxt == NEED_SLOTS or nxt == np.inf:
            return now, nxt
        now = nxt
    return now, now


@_jit
def _mark_dirty(r, rptr, rres, dirty_mark, dirty, counts):
    """Mark the resources of route ``r`` as changed (their flows' neighbours need a check)."""
    for j in range(rptr[r], rptr[r + 1]):
        k = rres[j]
        if not dirty_mark[k]:
            dirty_mark[k] = True
            dirty[counts[2]] = k
            counts[2] += 1


@_jit
def _touch(k, touched_mark, touched, counts):
    if not touched_mark[k]:
        touched_mark[k] = True
        touched[counts[1]] = k
        counts[1] += 1


@_jit
def _add_member(f, now, in_set, members, counts, remaining, t_upd, rate):
    """Put flow ``f`` in the set being re-solved, settling the bytes it moved so far."""
    if not in_set[f]:
        in_set[f] = True
        members[counts[0]] = f
        counts[0] += 1
        remaining[f] -= rate[f] * (now - t_upd[f])
        t_upd[f] = now


@_jit
def _release(f, now, dn_ptr, dn_idx, ndeps, ready_at, route, rlat, rkey, rop, rpos, rsize):
    for j in range(dn_ptr[f], dn_ptr[f + 1]):
        d = dn_idx[j]
        ndeps[d] -= 1
        if ndeps[d] == 0:
            ready_at[d] = now
            _heap_set(rkey, rop, rpos, rsize, d, now + rlat[route[d]])


@_jit
def _resolve(now, in_set, members, counts, touched_mark, touched, remaining, t_upd, rate,
             route, rptr, rres, rw, capacity, width, m_next, head, count, used, flow_of_slot,
             left, sumw, nflows, bott, dirty_mark, dirty, seen):
    """Re-solve max-min rates around the touched resources until every flow has a bottleneck."""
    # start from the new flows alone: the checks below pull in every flow the change affects
    while True:
        _fill(members, counts, touched_mark, touched, rate, route, rptr, rres, rw, capacity, used,
              left, sumw, nflows, bott, dirty_mark, dirty)
        before = counts[0]
        # a re-solved flow must get the most on its bottleneck; faster neighbours there join
        for i in range(before):
            f = members[i]
            k = bott[f]
            if k < 0:
                continue
            m = head[k]
            while m >= 0:
                h = flow_of_slot[m // width]
                if not in_set[h] and rate[h] > rate[f] * (1.0 + RATE_RTOL):
                    _add_member(h, now, in_set, members, counts, remaining, t_upd, rate)
                m = m_next[m]
        # a neighbour left as it was must still have a bottleneck where rates or flows changed
        counts[3] += 1  # a new round: check each neighbour once
        for t in range(counts[2]):
            m = head[dirty[t]]
            while m >= 0:
                g = flow_of_slot[m // width]
                if in_set[g] or seen[g] == counts[3]:
                    m = m_next[m]
                    continue
                seen[g] = counts[3]
                if not _has_bottleneck(g, rate, route, rptr, rres, capacity, used, width, m_next, head,
                                       flow_of_slot):
                    _add_member(g, now, in_set, members, counts, remaining, t_upd, rate)
                m = m_next[m]
        if counts[0] == before:
            return


@_jit
def _has_bottleneck(g, rate, route, rptr, rres, capacity, used, width, m_next, head, flow_of_slot):
    r = route[g]
    if rptr[r] == rptr[r + 1]:
        return True
    for j in range(rptr[r], rptr[r + 1]):
        k = rres[j]
        if used[k] < capacity[k] * (1.0 - RATE_RTOL):
            continue
        top = 0.0
        m = head[k]
        while m >= 0:
            top = max(top, rate[flow_of_slot[m // width]])
            m = m_next[m]
        if rate[g] >= top * (1.0 - RATE_RTOL):
            return True
    return False


@_jit
def _fill(members, counts, touched_mark, touched, rate, route, rptr, rres, rw, capacity, used,
          left, sumw, nflows, bott, dirty_mark, dirty):
    """Progressive filling of the member flows over what the other flows leave free.

    Each round finds the smallest fair share ``left / sumw`` over the
    resources the members cross, freezes every member crossing a resource at
    that share (recording it as the member's bottleneck), and removes their
    usage. Updates ``rate`` and ``used``; marks every resource crossed as
    touched, and those of members whose rate changed as dirty.
    """
    n = counts[0]
    for i in range(n):
        r = route[members[i]]
        for j in range(rptr[r], rptr[r + 1]):
            _touch(rres[j], touched_mark, touched, counts)
    for t in range(counts[1]):
        k = touched[t]
        left[k] = capacity[k] - used[k]
        sumw[k] = 0.0
        nflows[k] = 0
    for i in range(n):
        f = members[i]
        r = route[f]
        for j in range(rptr[r], rptr[r + 1]):
            k = rres[j]
            left[k] += rw[j] * rate[f]
            sumw[k] += rw[j]
            nflows[k] += 1
    unfrozen = members[:n].copy()
    frozen = np.empty(n, np.int64)
    n_unfrozen = n
    while n_unfrozen > 0:
        level = np.inf
        for t in range(counts[1]):
            k = touched[t]
            if nflows[k] > 0:
                level = min(level, max(left[k], 0.0) / sumw[k])
        limit = level * (1.0 + RATE_RTOL)
        keep = 0
        n_frozen = 0
        for i in range(n_unfrozen):
            f = unfrozen[i]
            r = route[f]
            bott[f] = -1
            for j in range(rptr[r], rptr[r + 1]):
                k = rres[j]
                if left[k] <= limit * sumw[k]:
                    bott[f] = k
                    break
            if bott[f] >= 0 or level == np.inf:
                frozen[n_frozen] = f
                n_frozen += 1
            else:
                unfrozen[keep] = f
                keep += 1
        for i in range(n_frozen):
            f = frozen[i]
            r = route[f]
            for j in range(rptr[r], rptr[r + 1]):
                k = rres[j]
                left[k] -= rw[j] * level
                sumw[k] -= rw[j]
                nflows[k] -= 1
                used[k] += rw[j] * (level - rate[f])
            if abs(level - rate[f]) > RATE_RTOL * level:
                _mark_dirty(r, rptr, rres, dirty_mark, dirty, counts)
            rate[f] = level
        n_unfrozen = keep


@_jit
def _initial_heap(ndeps, route, rlat, ready_at, rkey, rop, rpos, rsize):
    for op in range(ndeps.size):
        if ndeps[op] == 0:
            ready_at[op] = 0.0
            _heap_set(rkey, rop, rpos, rsize, op, rlat[route[op]])


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
        self.t_upd = np.zeros(n)
        self.rate = np.zeros(n)
        self.ready_at = np.full(n, np.nan)
        self.start_at = np.full(n, np.nan)
        self.end_at = np.full(n, np.nan)
        self.heap = _new_heap(n)  # ops waiting out their latency, by start time
        self.finish_heap = _new_heap(n)  # active flows, by finish time
        nres = self.capacity.size
        self.width = max(int(np.diff(self.rptr).max(initial=1)), 1)
        self.head = np.full(nres, -1, np.int64)
        self.count = np.zeros(nres, np.int64)
        self.used = np.zeros(nres)
        self.slot_of = np.full(n, -1, np.int64)
        self.in_set = np.zeros(n, np.bool_)
        self.members = np.empty(n, np.int64)
        self.counts = np.zeros(4, np.int64)  # members, touched resources, dirty resources, check round
        self.seen = np.zeros(n, np.int64)  # check round in which a flow was last checked
        self.bott = np.full(n, -1, np.int64)
        self.scratch = (np.zeros(nres, np.bool_), np.empty(nres, np.int64), np.empty(nres), np.empty(nres),
                        np.zeros(nres, np.int64))
        self.dirty = (np.zeros(nres, np.bool_), np.empty(nres, np.int64))
        self.slots = 0
        self._grow(min(n, 1024))
        _initial_heap(self.ndeps, self.route, self.rlat, self.ready_at, *self.heap)
        self.next_time = self.heap[0][0] if self.heap[3][0] else np.inf

    def _grow(self, slots):
        """Room for ``slots`` flows active at once (membership lists are per slot)."""
        old, w = self.slots, self.width
        m_next, m_prev = np.empty(slots * w, np.int64), np.empty(slots * w, np.int64)
        flow_of_slot = np.empty(slots, np.int64)
        if old:
            m_next[:old * w], m_prev[:old * w] = self.m_next, self.m_prev
            flow_of_slot[:old] = self.flow_of_slot
        self.m_next, self.m_prev, self.flow_of_slot = m_next, m_prev, flow_of_slot
        free = np.empty(slots, np.int64)
        n_free = 0 if not old else self.n_free[0]
        if old:
            free[:n_free] = self.free_slots[:n_free]
        new = np.arange(slots - 1, old - 1, -1)
        free[n_free:n_free + new.size] = new
        self.free_slots, self.n_free = free, np.array([n_free + new.size], np.int64)
        self.slots = slots

    def step(self, now):
        """Handle every event due at ``now``; return the next event time (inf when done)."""
        return self.advance(now, 1)

    def advance(self, now, max_events):
        """Handle the events at ``now`` and after, ``max_events`` event times at most; return the next time."""
        while True:
            last, nxt = _advance(
                now, max_events, self.shared, *self.heap, *self.finish_heap, self.remaining, self.t_upd,
                self.rate, self.ndeps, self.dn_ptr, self.dn_idx, self.route, self.rlat, self.rptr,
                self.rres, self.rw, self.capacity, self.ready_at, self.start_at, self.end_at,
                self.width, self.m_next, self.m_prev, self.head, self.count, self.used,
                self.slot_of, self.flow_of_slot, self.free_slots, self.n_free, self.in_set,
                self.members, self.counts, *self.scratch, self.bott, *self.dirty, self.seen)
            if nxt != NEED_SLOTS:
                self.next_time = nxt
                return nxt
            self._grow(min(2 * self.slots, self.remaining.size))
            now = last

    def active(self):
        """Ops moving bytes right now."""
        return np.flatnonzero(self.finish_heap[2] >= 0)

    def unfinished(self):
        """Ops that never ended (non-empty only if a dependency can never be met)."""
        return np.flatnonzero(np.isnan(self.end_at))


def _new_heap(n):
    """Keys, ops, position of each op (-1: absent) and size of an empty indexed heap for ``n`` ops."""
    return np.empty(n), np.empty(n, np.int64), np.full(n, -1, np.int64), np.zeros(1, np.int64)


def _dependents(dep_ptr, dep_idx, n):
    """Reverse a dependency CSR: for each op, the ops that wait for it."""
    owners = np.repeat(np.arange(n, dtype=np.int64), np.diff(dep_ptr))
    order = np.argsort(dep_idx, kind="stable")
    dn_ptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(dep_idx, minlength=n), out=dn_ptr[1:])
    return dn_ptr, owners[order]
