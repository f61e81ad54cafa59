"""Numba core of the fluid flow model: rate solving and event stepping, in the vocabulary of SimGrid's LMM.

Every op of a schedule is a *flow* (an LMM *variable*) over a *route*: a set
of *elements*, each naming a *resource* (an LMM *constraint*, with a
capacity) and a consumption weight (bytes of the resource per byte of flow),
plus a fixed latency. An op becomes ready when its dependencies are done,
starts moving bytes ``latency`` seconds later, and ends when its bytes have
drained at the rate the sharing policy gives it. A route may list candidate
routes (adaptive routing): an op on it takes, when it starts moving bytes,
the candidate with the largest estimated fair share ``min(capacity / (weight
x (active members + 1)))`` (ties to the first listed; the latency waited out
is the listed route's) and keeps it to the end. The policy is chosen once per
network:

- ``MAXMIN`` (the flow model): weighted max-min fair sharing of every
  resource among the active flows that cross it. A flow may carry a *share*
  (a traffic class's weight, 1 by default): it gets ``share x level``, where
  ``level`` is the fair level of its bottleneck, and a resource is full when
  ``sum(weight x share x level)`` reaches its capacity; an idle class leaves
  its share to the others;
- ``ISOLATED`` (the analytic model): each flow gets its route's bottleneck
  ``min(capacity / weight)`` as if it were alone (shares play no part);
- ``CLASSES`` (several traffic classes, i.e. service levels): each flow also has a
  class id; resources that arbitrate share between classes by weight, then
  between a class's flows max-min (:mod:`sim.classes`). At each event the
  flows connected to the touched resources are re-solved from their rates.

Max-min rates are kept exact *incrementally* (SimGrid's selective update).
The max-min fair allocation is the unique feasible one in which every flow
has a *bottleneck*: a saturated resource on which no flow gets more. When
flows start or end, only the flows on the resources they touch are re-solved
(progressive filling over what the others leave free, scanning only the
resources those flows cross); then, in a check round, any flow next to them
that lost its bottleneck, or that outruns a re-solved flow on that flow's
bottleneck, joins the set and the set is re-solved, until every flow has a
bottleneck again. A neighbour is checked again only if the resource where
it last passed a check has changed since (its usage, members or their
rates: every resource carries the stamp of its last change). In a large collective
most events touch a handful of flows, so an event costs little however many
flows are active. :meth:`Network.solve` with ``full=True`` solves every
active flow from scratch instead: the oracle of the tests, and the
``check=True`` debug mode. The incremental rates agree with it to
``RATE_RTOL``, not bit for bit: both accumulate floating-point sums in an
order that depends on the path taken.

State lives in named groups of arrays (:class:`Dag`: the window of ops in
flight, see there; :class:`Elements` per route, :class:`Constraints` per resource,
:class:`Variables`, :class:`Members` and the finishing :class:`Heap` per
*slot*, the waiting :class:`Heap` of window entries and a :class:`Work`
scratch set), all indices int32. A slot holds one active flow: a few thousand slots serve
millions of ops, so the state the solver's hot loops touch stays in the
caches; the per-resource arrays (of ``Constraints`` and ``Work``) are column
views of row-major tables, so one resource's fields share a cache line. The per-event kernels are inlined into one loop (:func:`_advance`),
and no kernel allocates, so all run without numba's reference counting. The driver (:mod:`sim.engine`) owns the clock.
"""

from collections import namedtuple

import numpy as np

from flyersim.jit import njit
from flyersim.sim import classes

# Times closer than this (relative) are one event.
TIME_RTOL = 1e-12
# A resource within this (relative) of capacity is saturated; rates this close are equal.
RATE_RTOL = 1e-9
# _step result besides a next event time: the member lists are full, grow them and call again.
NEED_SLOTS = -1.0
# _advance result: the window runs low on ops not yet ready; append more and call again
NEED_OPS = -2.0
# Dag.counts: the window ``lo..hi-1``, ops made ready and ended so far, free edges, the first op that entered
# the window after it should have been ready, the highest op made ready so far
LO, HI, N_READY, N_ENDED, N_EDGE_FREE, LATE, TOP_READY = range(7)
# sharing policies
MAXMIN, ISOLATED, CLASSES = 0, 1, 2
POLICIES = {"maxmin": MAXMIN, "isolated": ISOLATED, "classes": CLASSES}
# Work.counts: sizes of the modified and dirty lists, the bottleneck-check round and the change stamp (bumped by
# every filling call and every event time)
N_MODIFIED, N_DIRTY, ROUND, FILL = 0, 1, 2, 3
# check rounds before the per-resource and per-flow round marks start again from 0 (they are int32 in the rows)
ROUND_WRAP = 2**31 - 2

IDX = np.int32  # op, resource, route and slot indices

# The kernels never allocate, so they run without numba's runtime (``_nrt=False``): numba would otherwise
# reference-count an array at every copy of it (each argument of a call, inlined or not; each read out of a
# group), about 900 calls to NRT_incref/NRT_decref in ``_advance``'s code, a quarter of its time; the
# caller's Python objects keep the arrays alive. Same machine code otherwise, same bits. They run without
# the GIL (``nogil``), so a stream's builder thread runs meanwhile.
_jit = njit(error_model="numpy", _nrt=False, nogil=True)
# inlined into their callers (numba IR): no call per event
_inline = njit(error_model="numpy", inline="always", _nrt=False, nogil=True)

Dag = namedtuple("Dag", "mask op_of ndeps route nbytes share done dn_head dn_tail dn_count edge_op edge_next "
                       "edge_free ready_at start_at end_at taken counts last_end cls")
Dag.__doc__ = """The ops in flight.

Ops enter in batches (:func:`_append`, in op order; a dependency names an
earlier op, or one of its own batch) and live in a *window*, a ring buffer
over op ids ``lo..hi-1`` (entry ``op & mask``): its op, unmet dependencies,
route, bytes, sharing weight, whether ended, and its dependents still
waiting (a list of edges, in op order, so they are released in op order).
Ops below ``lo`` have all ended, so memory grows with the ops in flight, not
with all ops. With the timeline kept, the three times and the route taken of
every op (else empty arrays). ``counts``: see ``LO``...; ``last_end[0]`` is
the latest end time; ``cls``: each entry's traffic class (``CLASSES`` policy)."""
Elements = namedtuple("Elements", "ptr cnst weight latency alt_ptr alt_idx")
Elements.__doc__ = """Routes: route ``r`` crosses resources ``cnst[ptr[r]:ptr[r+1]]`` with consumption ``weight``
after ``latency[r]`` seconds; an op on route ``r`` starts on one of ``alt_idx[alt_ptr[r]:alt_ptr[r+1]]`` if any."""
Variables = namedtuple("Variables", "op route remaining t_upd rate share bott in_set seen pass_res pass_at cls")
Variables.__doc__ = """The active flows, one per *slot* (compact: a few thousand slots serve millions of ops): the op
in it (-1: free), its route, bytes left as of ``t_upd``, rate, sharing weight (``rate / share`` is the flow's fair
level), bottleneck resource, whether in the set being re-solved, last check round, the resource where it last
passed a bottleneck check (-1: none since it was filled) with the change stamp (``Work.counts[FILL]``) then, and
its traffic class."""
Constraints = namedtuple("Constraints", "bound usage head count arbitrated loc")
Constraints.__doc__ = """Per-resource: capacity, rate used, first member (linked list), number of active members,
whether it arbitrates between traffic classes and scratch of the class solver (-1)."""
Members = namedtuple("Members", "shift next prev free n_free")
Members.__doc__ = """Element lists of the active flows: the flow in slot ``s`` holds members ``(s << shift) + j``
(its j-th element), linked per resource by ``next``/``prev``; ``free[:n_free[0]]`` are free slots."""
Heap = namedtuple("Heap", "keys ops pos size")
Heap.__doc__ = """A binary min-heap of window entries (waiting) or slots (finishing): ``pos[i]`` is where ``i`` is
(-1: absent)."""
Work = namedtuple("Work", "counts modified dirty dirty_mark left sumw nflows fres fres_mark unfrozen frozen top "
                         "top_round")
Work.__doc__ = """Scratch of one re-solve: the flows (slots) being re-solved (``modified``), the resources whose
flows changed rate or started or ended (``dirty``), the filling's per-resource sums, the resources it fills
(``fres``) and flows it has not frozen yet or freezes this round, and the highest level on a resource (``top``) as
found in check round ``top_round``. ``fres_mark[k]`` is the resource's change stamp: the value of ``counts[FILL]``
when its usage, its members or their rates last changed (a filling marks the resources it fills with it)."""


# ---------------------------------------------------------------- binary min-heaps of ops, indexed by op
# Two are used: ops waiting out their latency (keyed by start time) and active
# flows (keyed by finish time, moved whenever a rate changes). Each kernel
# unpacks the groups it uses once, at its top, so its loops work on locals.

@_jit
def _heap_sift(keys, ops, pos, size, i):
    """Restore heap order around slot ``i`` (up, then down)."""
    key, op = keys[i], ops[i]
    while i > 0:
        parent = (i - 1) >> 1
        if keys[parent] <= key:
            break
        keys[i], ops[i] = keys[parent], ops[parent]
        pos[ops[i]] = i
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
        keys[i], ops[i] = keys[child], ops[child]
        pos[ops[i]] = i
        i = child
    keys[i], ops[i] = key, op
    pos[op] = i


@_jit
def _heap_set(keys, ops, pos, size, op, key):
    """Insert ``op`` with ``key`` or move it to ``key`` (the heap's arrays: see :class:`Heap`)."""
    i = pos[op]
    if i < 0:
        i = size[0]
        size[0] += 1
    keys[i], ops[i] = key, op
    pos[op] = i
    _heap_sift(keys, ops, pos, size, i)


@_jit
def _heap_remove(keys, ops, pos, size, op):
    i = pos[op]
    pos[op] = -1
    size[0] -= 1
    last = size[0]
    if i != last:
        keys[i], ops[i] = keys[last], ops[last]
        pos[ops[i]] = i
        _heap_sift(keys, ops, pos, size, i)


# ---------------------------------------------------------------- the event step

@_inline
def _step(now, policy, dag, elem, var, cnst, mem, waiting, finishing, work, cwork):
    """Handle every event due at ``now``; return the next event time, inf when done.

    Returns ``NEED_SLOTS`` (before starting a flow it has no slot for) when
    the member lists are full; the caller grows them and calls again, which
    resumes where this call stopped.
    """
    horizon = now * (1.0 + TIME_RTOL) + 1e-300
    work.counts[FILL] += 1  # the change stamp of the resources this event time's flows leave or join
    _retire_drained(now, horizon, dag, elem, var, cnst, mem, waiting, finishing, work)
    if not _start_ready(now, horizon, dag, elem, var, cnst, mem, waiting, work):
        return NEED_SLOTS
    c = work.counts
    if c[N_MODIFIED] > 0 or c[N_DIRTY] > 0:  # a flow that starts or ends marks its resources dirty
        if policy == MAXMIN:
            _resolve(now, elem, var, cnst, mem, work)
        elif policy == CLASSES:
            _by_class(now, elem, var, cnst, mem, work, cwork)
        else:
            _isolate(elem, var, cnst, work)
        _reschedule(now, var, finishing, work)
    nxt = np.inf
    if waiting.size[0] > 0:
        nxt = waiting.keys[0]
    if finishing.size[0] > 0:
        nxt = min(nxt, finishing.keys[0])
    return nxt


@_inline
def _retire_drained(now, horizon, dag, elem, var, cnst, mem, waiting, finishing, work):
    """Flows that drained by ``horizon`` end: free their resources and members, release their dependents."""
    ptr, res, weight = elem.ptr, elem.cnst, elem.weight
    usage, head, count = cnst.usage, cnst.head, cnst.count
    rate, vop, vroute = var.rate, var.op, var.route
    fkeys, fops, fpos, fsize = finishing.keys, finishing.ops, finishing.pos, finishing.size
    wkeys, wops, wpos, wsize = waiting.keys, waiting.ops, waiting.pos, waiting.size
    shift, nxt, prev, free, n_free = mem.shift, mem.next, mem.prev, mem.free, mem.n_free
    latency = elem.latency
    dirty_mark, dirty, counts, stamp = work.dirty_mark, work.dirty, work.counts, work.fres_mark
    while fsize[0] > 0 and fkeys[0] <= horizon:
        s = fops[0]
        _heap_remove(fkeys, fops, fpos, fsize, s)
        f = vop[s]
        r = vroute[s]
        for j in range(ptr[r], ptr[r + 1]):
            k = res[j]
            usage[k] -= weight[j] * rate[s]
            stamp[k] = counts[FILL]
        _mark_dirty(r, ptr, res, dirty_mark, dirty, counts)
        _unlink(s, r, ptr, res, shift, nxt, prev, head, count)
        for j in range(ptr[r], ptr[r + 1]):
            if count[res[j]] == 0:
                usage[res[j]] = 0.0  # no rounding drift left behind on an idle resource
        vop[s] = -1
        free[n_free[0]] = s
        n_free[0] += 1
        _end(f, now, dag, latency, wkeys, wops, wpos, wsize)


@_inline
def _start_ready(now, horizon, dag, elem, var, cnst, mem, waiting, work):
    """Ops whose latency has elapsed by ``horizon`` start moving bytes (empty ones end at once).

    False when a flow needs a member slot and none is free.
    """
    ptr, res, alt_ptr, head, count = elem.ptr, elem.cnst, elem.alt_ptr, cnst.head, cnst.count
    wkeys, wops, wpos, wsize = waiting.keys, waiting.ops, waiting.pos, waiting.size
    shift, nxt, prev, free, n_free = mem.shift, mem.next, mem.prev, mem.free, mem.n_free
    route, start_at, nbytes, share, op_of, taken = (dag.route, dag.start_at, dag.nbytes, dag.share, dag.op_of,
                                                    dag.taken)
    latency = elem.latency
    vop, vroute, remaining, t_upd, rate, vshare = var.op, var.route, var.remaining, var.t_upd, var.rate, var.share
    bott, in_set, seen, pass_res = var.bott, var.in_set, var.seen, var.pass_res
    dirty_mark, dirty, counts, modified, stamp = work.dirty_mark, work.dirty, work.counts, work.modified, work.fres_mark
    while wsize[0] > 0 and wkeys[0] <= horizon:
        if n_free[0] == 0:
            return False
        w = wops[0]
        _heap_remove(wkeys, wops, wpos, wsize, w)
        f = op_of[w]
        if start_at.size:
            start_at[f] = now
        if nbytes[w] <= 0.0:
            _end(f, now, dag, latency, wkeys, wops, wpos, wsize)
            continue
        n_free[0] -= 1
        s = free[n_free[0]]
        r = route[w]
        if alt_ptr[r + 1] > alt_ptr[r]:
            r = _least_loaded(r, elem, cnst)
            if taken.size:
                taken[f] = r
        _link(s, r, ptr, res, shift, nxt, prev, head, count)
        vop[s], vroute[s], remaining[s], vshare[s] = f, r, nbytes[w], share[w]
        var.cls[s] = dag.cls[w]
        rate[s], t_upd[s], bott[s], seen[s], pass_res[s] = 0.0, now, -1, 0, -1
        _add_modified(s, now, in_set, remaining, rate, t_upd, modified, counts)
        _mark_dirty(r, ptr, res, dirty_mark, dirty, counts)
        for j in range(ptr[r], ptr[r + 1]):
            stamp[res[j]] = counts[FILL]
    return True


@_jit
def _least_loaded(r, elem, cnst):
    """The candidate of route ``r`` with the largest fair share a new flow could expect (ties: the first)."""
    ptr, res, weight, bound, count = elem.ptr, elem.cnst, elem.weight, cnst.bound, cnst.count
    best_r, best = -1, -1.0
    for a in range(elem.alt_ptr[r], elem.alt_ptr[r + 1]):
        c = elem.alt_idx[a]
        est = np.inf
        for j in range(ptr[c], ptr[c + 1]):
            k = res[j]
            est = min(est, bound[k] / (weight[j] * (count[k] + 1)))
        if est > best:
            best_r, best = c, est
    return best_r


@_inline
def _reschedule(now, var, finishing, work):
    """Move every re-solved flow to its new finish time and empty the work lists."""
    c, modified, dirty, dirty_mark = work.counts, work.modified, work.dirty, work.dirty_mark
    in_set, remaining, rate = var.in_set, var.remaining, var.rate
    fkeys, fops, fpos, fsize = finishing.keys, finishing.ops, finishing.pos, finishing.size
    for i in range(c[N_MODIFIED]):
        s = modified[i]
        in_set[s] = False
        _heap_set(fkeys, fops, fpos, fsize, s, now + remaining[s] / rate[s])
    for i in range(c[N_DIRTY]):
        dirty_mark[dirty[i]] = False
    c[N_MODIFIED] = 0
    c[N_DIRTY] = 0


@_jit
def _advance(now, max_events, low, policy, dag, elem, var, cnst, mem, waiting, finishing, work, cwork):
    """Handle the events at ``now`` and the next ones, ``max_events`` event times in all.

    Returns (last time handled, next event time); the next time is
    ``NEED_SLOTS`` when the member lists must grow before going on, and
    ``NEED_OPS``, with the next time to handle instead of the last one
    handled, when fewer than ``low`` ops follow the highest op made ready.
    """
    c = dag.counts
    for _ in range(max_events):
        nxt = _step(now, policy, dag, elem, var, cnst, mem, waiting, finishing, work, cwork)
        if nxt == NEED_SLOTS:
            return now, nxt
        if c[HI] - 1 - c[TOP_READY] < low:
            return nxt, NEED_OPS
        if nxt == np.inf:
            return now, nxt
        now = nxt
    return now, now


# ---------------------------------------------------------------- small helpers (plain arrays)

@_jit
def _link(slot, r, ptr, res, shift, nxt, prev, head, count):
    """Add the members of the flow in ``slot`` (route ``r``) to their resources' lists."""
    for jl in range(ptr[r + 1] - ptr[r]):
        k = res[ptr[r] + jl]
        m = (slot << shift) + jl
        prev[m] = -1
        nxt[m] = head[k]
        if head[k] >= 0:
            prev[head[k]] = m
        head[k] = m
        count[k] += 1


@_jit
def _unlink(slot, r, ptr, res, shift, nxt, prev, head, count):
    for jl in range(ptr[r + 1] - ptr[r]):
        k = res[ptr[r] + jl]
        m = (slot << shift) + jl
        if prev[m] >= 0:
            nxt[prev[m]] = nxt[m]
        else:
            head[k] = nxt[m]
        if nxt[m] >= 0:
            prev[nxt[m]] = prev[m]
        count[k] -= 1


@_jit
def _mark_dirty(r, ptr, res, dirty_mark, dirty, counts):
    """Mark the resources of route ``r`` as changed (their flows' neighbours need a check)."""
    for j in range(ptr[r], ptr[r + 1]):
        k = res[j]
        if not dirty_mark[k]:
            dirty_mark[k] = True
            dirty[counts[N_DIRTY]] = k
            counts[N_DIRTY] += 1


@_jit
def _add_modified(s, now, in_set, remaining, rate, t_upd, modified, counts):
    """Put the flow in slot ``s`` in the set being re-solved, settling the bytes it moved so far."""
    if not in_set[s]:
        in_set[s] = True
        modified[counts[N_MODIFIED]] = s
        counts[N_MODIFIED] += 1
        remaining[s] -= rate[s] * (now - t_upd[s])
        t_upd[s] = now


@_inline
def _ready(op, now, dag, latency, wkeys, wops, wpos, wsize):
    """Op ``op`` has no unmet dependency: it waits out its route's latency (heap ``w*``, of window entries)."""
    c = dag.counts
    c[N_READY] += 1
    c[TOP_READY] = max(c[TOP_READY], op)
    w = op & dag.mask
    if dag.ready_at.size:
        dag.ready_at[op] = now
        dag.taken[op] = dag.route[w]
    _heap_set(wkeys, wops, wpos, wsize, w, now + latency[dag.route[w]])


@_inline
def _end(op, now, dag, latency, wkeys, wops, wpos, wsize):
    """Op ``op`` ended: record it, release its dependents in op order, move the window past ended ops."""
    mask, c, done, ndeps = dag.mask, dag.counts, dag.done, dag.ndeps
    edge_op, edge_next, edge_free = dag.edge_op, dag.edge_next, dag.edge_free
    if dag.end_at.size:
        dag.end_at[op] = now
    dag.last_end[0] = max(dag.last_end[0], now)
    c[N_ENDED] += 1
    w = op & mask
    done[w] = True
    e = dag.dn_head[w]
    while e >= 0:
        d = edge_op[e]
        ndeps[d & mask] -= 1
        if ndeps[d & mask] == 0:
            _ready(d, now, dag, latency, wkeys, wops, wpos, wsize)
        nxt = edge_next[e]
        edge_free[c[N_EDGE_FREE]] = e
        c[N_EDGE_FREE] += 1
        e = nxt
    dag.dn_head[w] = -1
    dag.dn_count[w] = 0
    while c[LO] < c[HI] and done[c[LO] & mask]:
        c[LO] += 1


@_jit
def _append(dag, first, route, nbytes, share, cls, dep_ptr, dep_idx, latency, waiting, started):
    """Ops ``first..`` (routes, bytes, shares, dependency CSR) enter the window; the caller made room for them
    and their edges. A dependency names an earlier op or one of the same batch. An op with no unmet dependency
    is ready at once before the run starts (``started`` False); after, it came too late (its dependencies
    ended before it entered): ``counts[LATE]`` names the first such op and the run must start again with a
    longer look-ahead."""
    mask, c = dag.mask, dag.counts
    wkeys, wops, wpos, wsize = waiting.keys, waiting.ops, waiting.pos, waiting.size
    lo = c[LO]
    for i in range(route.size):
        w = (first + i) & mask
        dag.op_of[w] = first + i
        dag.route[w] = route[i]
        dag.nbytes[w] = nbytes[i]
        dag.share[w] = share[i]
        dag.cls[w] = cls[i]
        dag.done[w] = False
        dag.dn_head[w] = -1
        dag.dn_tail[w] = -1
        dag.dn_count[w] = 0
        dag.ndeps[w] = 0
    c[HI] = first + route.size
    for i in range(route.size):
        op = first + i
        for j in range(dep_ptr[i], dep_ptr[i + 1]):
            d = dep_idx[j]
            if d < lo or dag.done[d & mask]:
                continue
            dag.ndeps[op & mask] += 1
            c[N_EDGE_FREE] -= 1
            e = dag.edge_free[c[N_EDGE_FREE]]
            dag.edge_op[e] = op
            dag.edge_next[e] = -1
            v = d & mask
            if dag.dn_tail[v] >= 0:
                dag.edge_next[dag.dn_tail[v]] = e
            else:
                dag.dn_head[v] = e
            dag.dn_tail[v] = e
            dag.dn_count[v] += 1
    for i in range(route.size):
        op = first + i
        if dag.ndeps[op & mask] == 0:
            if started:
                if c[LATE] < 0:
                    c[LATE] = op
            else:
                _ready(op, 0.0, dag, latency, wkeys, wops, wpos, wsize)


# ---------------------------------------------------------------- sharing policies

@_inline
def _isolate(elem, var, cnst, work):
    """The isolated policy: every re-solved flow gets its route's bottleneck as if alone."""
    ptr, res, weight, bound = elem.ptr, elem.cnst, elem.weight, cnst.bound
    modified, route, rate = work.modified, var.route, var.rate
    for i in range(work.counts[N_MODIFIED]):
        s = modified[i]
        r = route[s]
        best = np.inf
        for j in range(ptr[r], ptr[r + 1]):
            best = min(best, bound[res[j]] / weight[j])
        rate[s] = best


@_inline
def _by_class(now, elem, var, cnst, mem, work, cwork):
    """Class policy: the flows connected to the dirty resources (through shared resources) re-solved
    class-then-flow (:mod:`sim.classes`) from their current rates; the others' rates cannot change."""
    in_set, remaining, rate, t_upd, route, c = var.in_set, var.remaining, var.rate, var.t_upd, var.route, work.counts
    ptr, res, head, shift, nxt = elem.ptr, elem.cnst, cnst.head, mem.shift, mem.next
    queue, mark = work.fres, work.fres_mark
    c[FILL] += 1
    n = 0
    for i in range(c[N_DIRTY]):  # the resources of the flows that started or ended
        k = work.dirty[i]
        mark[k] = c[FILL]
        queue[n] = k
        n += 1
    i = 0
    while i < n:  # breadth first over resources and the flows on them
        m = head[queue[i]]
        i += 1
        while m >= 0:
            s = m >> shift
            if not in_set[s]:
                _add_modified(s, now, in_set, remaining, rate, t_upd, work.modified, c)
                for j in range(ptr[route[s]], ptr[route[s] + 1]):
                    if mark[res[j]] != c[FILL]:
                        mark[res[j]] = c[FILL]
                        queue[n] = res[j]
                        n += 1
            m = nxt[m]
    flows = work.modified[:c[N_MODIFIED]]
    classes.solve(flows, var.route, var.cls, var.share, rate, var.bott, elem.ptr, elem.cnst, elem.weight,
                  cnst.bound, cnst.arbitrated, cnst.loc, cwork)
    ptr, res, weight, usage = elem.ptr, elem.cnst, elem.weight, cnst.usage
    for i in range(flows.size):  # usage as the new rates make it
        r = var.route[flows[i]]
        for j in range(ptr[r], ptr[r + 1]):
            usage[res[j]] = 0.0
    for i in range(flows.size):
        s = flows[i]
        r = var.route[s]
        for j in range(ptr[r], ptr[r + 1]):
            usage[res[j]] += weight[j] * rate[s]


@_inline
def _resolve(now, elem, var, cnst, mem, work):
    """Max-min policy: re-solve rates around the touched resources until every flow has a bottleneck."""
    ptr, res, bound, usage, head = elem.ptr, elem.cnst, cnst.bound, cnst.usage, cnst.head
    route, rate, share, bott, in_set, seen = var.route, var.rate, var.share, var.bott, var.in_set, var.seen
    remaining, t_upd, pass_res, pass_at = var.remaining, var.t_upd, var.pass_res, var.pass_at
    shift, nxt = mem.shift, mem.next
    c, modified, dirty, fres_mark, top, top_round = (work.counts, work.modified, work.dirty, work.fres_mark,
                                                     work.top, work.top_round)
    if c[ROUND] >= ROUND_WRAP:  # (after two billion check rounds) the round marks start again
        c[ROUND] = 0
        top_round[:] = -1
        seen[:] = -1
    # start from the new flows alone: the checks below pull in every flow the change affects
    while True:
        _fill(elem, var, cnst, work)
        before = c[N_MODIFIED]
        # a re-solved flow must get the highest level on its bottleneck; neighbours above it there join
        for i in range(before):
            f = modified[i]
            k = bott[f]
            if k < 0:
                continue
            m = head[k]
            while m >= 0:
                h = m >> shift
                if not in_set[h] and rate[h] / share[h] > rate[f] / share[f] * (1.0 + RATE_RTOL):
                    _add_modified(h, now, in_set, remaining, rate, t_upd, modified, c)
                m = nxt[m]
        # a neighbour left as it was must still have a bottleneck where rates or flows changed
        c[ROUND] += 1  # a new round: check each neighbour once
        for t in range(c[N_DIRTY]):
            m = head[dirty[t]]
            while m >= 0:
                g = m >> shift
                if in_set[g] or seen[g] == c[ROUND]:
                    m = nxt[m]
                    continue
                seen[g] = c[ROUND]
                k = pass_res[g]
                if k >= 0 and fres_mark[k] <= pass_at[g]:
                    m = nxt[m]  # nothing changed on the resource where it last had its bottleneck
                    continue
                k = _bottleneck(g, route[g], ptr, res, rate, share, bound, usage, head, shift, nxt, top, top_round,
                                c[ROUND])
                if k < 0:
                    _add_modified(g, now, in_set, remaining, rate, t_upd, modified, c)
                else:
                    pass_res[g], pass_at[g] = k, c[FILL]
                m = nxt[m]
        if c[N_MODIFIED] == before:
            return


@_jit
def _bottleneck(g, r, ptr, res, rate, share, bound, usage, head, shift, nxt, top, top_round, rnd):
    """A saturated resource on route ``r`` on which no flow has a higher level than flow ``g``, -1 if none.

    No rate changes during a check round, so a resource's highest level is found once per round.
    """
    for j in range(ptr[r], ptr[r + 1]):
        k = res[j]
        if usage[k] < bound[k] * (1.0 - RATE_RTOL):
            continue
        if top_round[k] != rnd:
            best = 0.0
            m = head[k]
            while m >= 0:
                h = m >> shift
                best = max(best, rate[h] / share[h])
                m = nxt[m]
            top[k], top_round[k] = best, rnd
        if rate[g] / share[g] >= top[k] * (1.0 - RATE_RTOL):
            return k
    return -1


@_inline
def _fill(elem, var, cnst, work):
    """Progressive filling of the modified flows over what the other flows leave free.

    Each round finds the smallest fair level ``left / sumw`` over the
    resources the modified flows cross (``sumw`` sums weight x share),
    freezes every flow crossing a resource at that level (rate ``share x
    level``, recording the resource as the flow's bottleneck), and removes
    their usage. Updates ``rate`` and ``usage``; marks every resource
    crossed with the filling's change stamp, and those of flows whose rate changed as dirty.
    """
    ptr, res, weight, bound, usage = elem.ptr, elem.cnst, elem.weight, cnst.bound, cnst.usage
    route, rate, share, bott, pass_res = var.route, var.rate, var.share, var.bott, var.pass_res
    c, modified = work.counts, work.modified
    dirty, dirty_mark, left, sumw, nflows = work.dirty, work.dirty_mark, work.left, work.sumw, work.nflows
    fres, fres_mark, unfrozen, frozen = work.fres, work.fres_mark, work.unfrozen, work.frozen
    n = c[N_MODIFIED]
    c[FILL] += 1
    n_fres = 0  # the resources the modified flows cross, each once
    for i in range(n):
        f = modified[i]
        unfrozen[i] = f
        pass_res[f] = -1  # re-filled: its bottleneck must be checked afresh
        r = route[f]
        for j in range(ptr[r], ptr[r + 1]):
            k = res[j]
            if fres_mark[k] != c[FILL]:
                fres_mark[k] = c[FILL]
                fres[n_fres] = k
                n_fres += 1
                left[k] = bound[k] - usage[k]
                sumw[k] = 0.0
                nflows[k] = 0
            left[k] += weight[j] * rate[f]
            sumw[k] += weight[j] * share[f]
            nflows[k] += 1
    n_unfrozen = n
    while n_unfrozen > 0:
        level = np.inf
        keep = 0
        for t in range(n_fres):  # resources left with no unfrozen flow drop out of the list
            k = fres[t]
            if nflows[k] > 0:
                fres[keep] = k
                keep += 1
                level = min(level, max(left[k], 0.0) / sumw[k])
        n_fres = keep
        limit = level * (1.0 + RATE_RTOL)
        keep = 0
        n_frozen = 0
        for i in range(n_unfrozen):
            f = unfrozen[i]
            r = route[f]
            bott[f] = -1
            for j in range(ptr[r], ptr[r + 1]):
                k = res[j]
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
            new = share[f] * level
            for j in range(ptr[r], ptr[r + 1]):
                k = res[j]
                left[k] -= weight[j] * new
                sumw[k] -= weight[j] * share[f]
                nflows[k] -= 1
                usage[k] += weight[j] * (new - rate[f])
            if abs(new - rate[f]) > RATE_RTOL * new:
                _mark_dirty(r, ptr, res, dirty_mark, dirty, c)
            rate[f] = new
        n_unfrozen = keep


class Network:
    """The fluid state of one simulation: flows of ops over routes of resources.

    ``route[op]`` indexes a route; route ``r`` crosses resources
    ``rres[rptr[r]:rptr[r+1]]`` with weights ``rw[...]`` after latency
    ``rlat[r]``. ``dep_ptr/dep_idx`` is the schedule's dependency CSR.
    ``sharing`` is ``"maxmin"`` (the flow model) or ``"isolated"`` (the
    analytic model), or ``"classes"``: traffic classes shared
    class-then-flow (:mod:`sim.classes`); ``share`` gives each op's sharing
    weight (its traffic class's; default 1 for all), ``cls`` its class id
    (0.., default 0; only ``"classes"`` reads it) and ``arbitrated`` which
    resources arbitrate between classes (default all); ``alt_ptr/alt_idx`` is a CSR of
    candidate routes per route (adaptive routing: an op takes the least
    loaded when it starts, see :attr:`route`); ``check=True`` compares the
    incremental rates with a full re-solve after every event time (slow; a
    debug aid). With ``timeline=False`` no per-op time is kept: only
    :attr:`time` (the last end) and the count of ops ended.

    Ops may also come in batches: pass ``op_bytes=None`` (and no ``route``
    or dependencies), then :meth:`append` batches in op order, setting
    :attr:`feed` to a function that appends more when :meth:`advance` runs
    low (and returns False when there are none left), and :meth:`set_routes`
    when batches bring new routes. Only the ops in flight are held.

    >>> import numpy as np
    >>> net = Network(op_bytes=np.array([100.0, 100.0]), route=np.array([0, 0]),
    ...               rptr=np.array([0, 1]), rres=np.array([0]), rw=np.array([1.0]),
    ...               rlat=np.array([0.0]), capacity=np.array([10.0]),
    ...               dep_ptr=np.array([0, 0, 0]), dep_idx=np.array([], np.int64))
    >>> t = net.next_time
    >>> while t < np.inf:
    ...     t = net.step(t)
    >>> net.end_at.tolist(), net.time  # two equal flows on one link both finish at 2n/B
    ([20.0, 20.0], 20.0)
    """

    def __init__(self, op_bytes, route, rptr, rres, rw, rlat, capacity, dep_ptr=None, dep_idx=None,
                 sharing="maxmin", check=False, share=None, alt_ptr=None, alt_idx=None, timeline=True, cls=None,
                 arbitrated=None):
        if sharing not in POLICIES:
            raise ValueError(f"unknown sharing {sharing!r} (choose from {', '.join(POLICIES)})")
        self.policy = POLICIES[sharing]
        self.check = bool(check)
        self.timeline = bool(timeline)
        self.feed = None      # appends more ops when the window runs low; False when none are left
        self.low = 0          # advance stops when fewer ops than this follow the highest op made ready
        self.started = False
        self.arbitrated = None if arbitrated is None else np.asarray(arbitrated, np.bool_)
        empty = np.empty(0)
        self.dag = Dag(0, np.empty(0, np.int64), *(np.empty(0, t) for t in (IDX, IDX, np.float64, np.float64, np.bool_,
                                                                           IDX, IDX, IDX, np.int64, IDX, IDX)),
                       empty, empty, empty, np.empty(0, IDX), np.zeros(7, np.int64), np.zeros(1), np.empty(0, IDX))
        self.dag.counts[LATE] = -1
        self.dag.counts[TOP_READY] = -1
        self.waiting = _new_heap(0)  # window entries waiting out their latency, by start time
        self.var = self.mem = self.finishing = self.elem = self.cnst = None  # flows by slot, members, by finish
        self.work = None
        self.set_routes(rptr, rres, rw, rlat, capacity, alt_ptr, alt_idx)
        self._grow(1024 if op_bytes is None else max(min(np.size(op_bytes), 1024), 1))
        self.next_time = np.inf
        if op_bytes is not None:
            self.append(0, route, op_bytes, dep_ptr, dep_idx, share, cls)

    def set_routes(self, rptr, rres, rw, rlat, capacity, alt_ptr=None, alt_idx=None):
        """The routes and resources as they are now (earlier routes and resources keep their numbers)."""
        nroutes = np.asarray(rlat).size
        if alt_ptr is None:
            alt_ptr, alt_idx = np.zeros(nroutes + 1, IDX), np.empty(0, IDX)
        alt_ptr, alt_idx = np.asarray(alt_ptr, IDX), np.asarray(alt_idx, IDX)
        if (alt_ptr.shape != (nroutes + 1,) or alt_ptr[0] != 0 or np.any(np.diff(alt_ptr) < 0)
                or alt_ptr[-1] != alt_idx.size or np.any((alt_idx < 0) | (alt_idx >= nroutes))):
            raise ValueError(f"alt_ptr/alt_idx must be a CSR of candidate routes over the {nroutes} routes")
        self.elem = Elements(np.asarray(rptr, IDX), np.asarray(rres, IDX), np.asarray(rw, np.float64),
                             np.asarray(rlat, np.float64), alt_ptr, alt_idx)
        capacity = np.asarray(capacity, np.float64)
        nres, old = capacity.size, 0 if self.cnst is None else self.cnst.bound.size
        if self.cnst is None or nres != old:
            table = _resource_table(nres)
            table["bound"][:], table["head"][:] = capacity, -1
            n = 0 if self.work is None else self.work.modified.size
            if old:
                for name in ("usage", "head", "count"):
                    table[name][:old] = getattr(self.cnst, name)
                for name in ("left", "sumw", "nflows", "top", "fres_mark", "top_round"):
                    table[name][:old] = getattr(self.work, name)
            arbitrated = np.ones(nres, np.bool_)
            if self.arbitrated is not None:
                arbitrated[:min(nres, self.arbitrated.size)] = self.arbitrated[:nres]
            self.cnst = Constraints(table["bound"], table["usage"], table["head"], table["count"], arbitrated,
                                    np.full(nres, -1, IDX))
            work = _new_work(n, table)
            if old:
                work.counts[:] = self.work.counts
                for name in ("modified", "unfrozen", "frozen"):
                    getattr(work, name)[:] = getattr(self.work, name)
                for name in ("dirty", "dirty_mark", "fres"):
                    getattr(work, name)[:old] = getattr(self.work, name)
            self.work = work
        if self.mem is not None and self._bits() > self.mem.shift:
            self._grow(self.var.op.size)
        elif self.mem is not None:
            self._size_class_scratch()

    def _bits(self):
        return max(int(np.diff(self.elem.ptr).max(initial=1)) - 1, 0).bit_length()  # a power of two: no division

    def append(self, first, route, op_bytes, dep_ptr, dep_idx, share=None, cls=None):
        """Ops ``first..`` enter: route, bytes, sharing weight (default 1) and class id (default 0) of each,
        dependencies as a CSR of op ids (any earlier op, or one of this batch).

        Before the run starts, ops with no dependency are ready at time 0; after, an op whose dependencies
        have all ended came too late and :class:`Late` is raised (append ops ahead of the run: :attr:`feed`).
        """
        m = len(route)
        dep_ptr, dep_idx = np.asarray(dep_ptr, np.int64), np.asarray(dep_idx, np.int64)
        share = np.ones(m) if share is None else np.array(share, np.float64)
        if share.shape != (m,) or not np.all(share > 0) or not np.all(np.isfinite(share)):
            raise ValueError(f"share must hold one positive finite weight per op ({m})")
        cls = np.zeros(m, IDX) if cls is None else np.array(cls, IDX)
        if cls.shape != (m,) or not np.all((cls >= 0) & (cls < classes.MAX_CLASSES)):
            raise ValueError(f"cls must hold one class id 0..{classes.MAX_CLASSES - 1} per op ({m})")
        c = self.dag.counts
        if first != c[HI]:
            raise ValueError(f"ops must enter in order: op {first} after op {c[HI] - 1}")
        if dep_idx.size and (dep_idx.max() >= first + m or dep_idx.min() < 0):
            raise ValueError(f"a dependency of ops {first}..{first + m - 1} names no op entered so far")
        self._grow_window(first + m - c[LO], dep_idx.size)
        if self.timeline and self.dag.end_at.size < first + m:
            size = max(first + m, 2 * self.dag.end_at.size)
            times = []
            for old in (self.dag.ready_at, self.dag.start_at, self.dag.end_at):
                new = np.full(size, np.nan)
                new[:old.size] = old
                times.append(new)
            taken = np.full(size, -1, IDX)
            taken[:self.dag.taken.size] = self.dag.taken
            self.dag = self.dag._replace(ready_at=times[0], start_at=times[1], end_at=times[2], taken=taken)
        _append(self.dag, first, np.asarray(route, IDX), np.asarray(op_bytes, np.float64), share, cls, dep_ptr, dep_idx,
                self.elem.latency, self.waiting, self.started)
        if c[LATE] >= 0:
            raise Late(int(c[LATE]))
        if not self.started and self.waiting.size[0]:
            self.next_time = self.waiting.keys[0]

    def _grow_window(self, span, edges):
        """Room for ``span`` ops in the window (and the waiting heap) and ``edges`` more dependency edges."""
        dag, c = self.dag, self.dag.counts
        size = dag.ndeps.size
        if span > size:
            new = 1 << max(int(span - 1).bit_length(), 10, (2 * size - 1).bit_length())
            ops = np.arange(c[LO], c[HI], dtype=np.int64)
            at, was = ops & (new - 1), ops & dag.mask
            moved = {}
            for name, fill in (("op_of", -1), ("ndeps", 0), ("route", 0), ("nbytes", 0.0), ("share", 1.0),
                               ("done", True), ("dn_head", -1), ("dn_tail", -1), ("dn_count", 0), ("cls", 0)):
                old = getattr(dag, name)
                arr = np.full(new, fill, old.dtype)
                arr[at] = old[was]
                moved[name] = arr
            heap = _new_heap(new)  # entries waiting move with their ops
            n = int(self.waiting.size[0])
            heap.keys[:n] = self.waiting.keys[:n]
            heap.ops[:n] = dag.op_of[self.waiting.ops[:n]] & (new - 1)
            heap.pos[at] = self.waiting.pos[was]
            heap.size[0] = n
            self.waiting = heap
            dag = dag._replace(mask=new - 1, **moved)
        if edges > c[N_EDGE_FREE]:
            old = dag.edge_op.size
            new = max(2 * old, old + edges - int(c[N_EDGE_FREE]), 1024)
            edge_op, edge_next, edge_free = np.empty(new, np.int64), np.empty(new, IDX), np.empty(new, IDX)
            edge_op[:old], edge_next[:old] = dag.edge_op, dag.edge_next
            n_free = int(c[N_EDGE_FREE])
            edge_free[:n_free] = dag.edge_free[:n_free]
            added = np.arange(new - 1, old - 1, -1, dtype=IDX)
            edge_free[n_free:n_free + added.size] = added
            c[N_EDGE_FREE] = n_free + added.size
            dag = dag._replace(edge_op=edge_op, edge_next=edge_next, edge_free=edge_free)
        self.dag = dag

    # the timeline of every op (empty arrays without ``timeline``)
    ready_at = property(lambda self: self.dag.ready_at[:self.num_ops])
    start_at = property(lambda self: self.dag.start_at[:self.num_ops])
    end_at = property(lambda self: self.dag.end_at[:self.num_ops])
    route = property(lambda self: self.dag.taken[:self.num_ops],
                     doc="Each op's route as run: the candidate it took, if it had any (with the timeline).")
    time = property(lambda self: float(self.dag.last_end[0]), doc="The last end time so far.")
    num_ops = property(lambda self: int(self.dag.counts[HI]), doc="Ops appended so far.")
    num_ready = property(lambda self: int(self.dag.counts[N_READY]), doc="Ops that became ready so far.")
    num_ended = property(lambda self: int(self.dag.counts[N_ENDED]), doc="Ops that ended so far.")
    top_ready = property(lambda self: int(self.dag.counts[TOP_READY]), doc="The highest op made ready so far.")
    window = property(lambda self: int(self.dag.ndeps.size), doc="Ops the window has room for.")

    def held(self):
        """Bytes of the arrays this network holds (its window, flows, members, routes and resources)."""
        groups = (self.dag, self.elem, self.var, self.cnst, self.mem, self.waiting, self.finishing, self.work,
                  self.cwork)
        return sum(a.nbytes for g in groups for a in g if isinstance(a, np.ndarray))

    @property
    def rate(self):
        """Each op's rate (0 when not moving)."""
        return self.solve()

    def _grow(self, slots):
        """Room for ``slots`` flows active at once: their variables, members, finish heap and work lists
        (and members as wide as the longest route, which may have grown)."""
        bits = self._bits()
        w = 1 << bits
        old = 0 if self.var is None else self.var.op.size
        fresh = Variables(np.full(slots, -1, IDX), np.empty(slots, IDX), np.empty(slots), np.empty(slots),
                          np.empty(slots), np.empty(slots), np.empty(slots, IDX), np.zeros(slots, np.bool_),
                          np.zeros(slots, np.int64), np.full(slots, -1, IDX), np.zeros(slots, np.int64),
                          np.zeros(slots, IDX))
        heap = _new_heap(slots)
        nxt, prev, free = np.empty(slots * w, IDX), np.empty(slots * w, IDX), np.empty(slots, IDX)
        modified, unfrozen, frozen = np.empty(slots, IDX), np.empty(slots, IDX), np.empty(slots, IDX)
        n_free = 0
        if old:
            for a, b in zip(fresh, self.var):
                a[:old] = b
            for a, b in zip(heap, self.finishing):
                a[:b.size] = b
            ob = self.mem.shift
            if ob == bits:
                nxt[:old * w], prev[:old * w] = self.mem.next, self.mem.prev
            else:  # longer routes arrived: member (s << ob) + j moves to (s << bits) + j, lists keep their order
                def moved(m):
                    return np.where(m >= 0, ((m >> ob) << bits) + (m & ((1 << ob) - 1)), m).astype(IDX)
                at = moved(np.arange(old << ob))
                nxt[at], prev[at] = moved(self.mem.next), moved(self.mem.prev)
                self.cnst.head[:] = moved(self.cnst.head)
            n_free = self.mem.n_free[0]
            free[:n_free] = self.mem.free[:n_free]
            modified[:old] = self.work.modified
        new = np.arange(slots - 1, old - 1, -1)
        free[n_free:n_free + new.size] = new
        self.var, self.finishing = fresh, heap
        self.mem = Members(bits, nxt, prev, free, np.array([n_free + new.size], np.int64))
        self.work = self.work._replace(modified=modified, unfrozen=unfrozen, frozen=frozen)
        self._size_class_scratch()

    def _size_class_scratch(self):
        """The class solver's work arrays, for every slot, member and resource (empty for other policies)."""
        big = self.policy == CLASSES
        self.cwork = classes.scratch(self.var.op.size * big, self.mem.next.size * big, self.cnst.bound.size * big)

    def step(self, now):
        """Handle every event due at ``now``; return the next event time (inf when done)."""
        return self.advance(now, 1)

    def advance(self, now, max_events):
        """Handle the events at ``now`` and after, ``max_events`` event times at most; return the next time."""
        if self.check and max_events > 1:
            for _ in range(max_events):
                now = self.advance(now, 1)
                if now == np.inf:
                    break
            return now
        self.started = True
        while True:
            last, nxt = _advance(now, max_events, self.low, self.policy, self.dag, self.elem, self.var, self.cnst,
                                 self.mem, self.waiting, self.finishing, self.work, self.cwork)
            if nxt == NEED_OPS:
                if not self.feed():
                    self.low = 0
                now = nxt = last
                if now == np.inf:
                    break
                continue
            if nxt != NEED_SLOTS:
                break
            self._grow(2 * self.var.op.size)
            now = last
        self.next_time = nxt
        if self.check:
            self._check()
        return nxt

    def solve(self, full=False):
        """Rates of the active flows (by op): as kept incrementally, or with ``full=True`` solved from scratch.

        A full solve is progressive filling over every active flow at once
        (SimGrid's ``lmm::System::solve`` with every variable modified); it
        changes no state.
        """
        out = np.zeros(self.num_ops)
        slots = self._active_slots()
        if not full:
            out[self.var.op[slots]] = self.var.rate[slots]
            return out
        table = _resource_table(self.cnst.bound.size)
        work = _new_work(self.var.op.size, table)
        work.modified[:slots.size] = slots
        work.counts[N_MODIFIED] = slots.size
        n = self.var.op.size
        var = self.var._replace(rate=np.zeros(n), bott=np.full(n, -1, IDX), pass_res=np.full(n, -1, IDX))
        if self.policy == ISOLATED:
            _isolate(self.elem, var, self.cnst, work)
        elif self.policy == CLASSES:
            classes.solve(slots.astype(IDX), var.route, var.cls, var.share, var.rate, var.bott, self.elem.ptr,
                          self.elem.cnst, self.elem.weight, self.cnst.bound, self.cnst.arbitrated, self.cnst.loc,
                          self.cwork)
        else:
            _fill(self.elem, var, self.cnst._replace(usage=table["usage"]), work)
        out[self.var.op[slots]] = var.rate[slots]
        return out

    def _check(self):
        inc, full = self.solve(), self.solve(full=True)
        bad = np.flatnonzero(~np.isclose(inc, full, rtol=RATE_RTOL, atol=0.0))
        if bad.size:
            f = bad[0]
            raise AssertionError(f"incremental rate of op {f} is {inc[f]!r}, a full solve gives {full[f]!r}")

    def _active_slots(self):
        """Slots of the flows moving bytes, in the order of their ops."""
        slots = self.finishing.ops[:self.finishing.size[0]]
        return slots[np.argsort(self.var.op[slots], kind="stable")]

    def active(self):
        """Ops moving bytes right now."""
        return self.var.op[self._active_slots()].astype(np.int64)

    def unfinished(self):
        """Ops that never ended (non-empty only if a dependency can never be met)."""
        c = self.dag.counts
        return np.array([op for op in range(c[LO], c[HI]) if not self.dag.done[op & self.dag.mask]], np.int64)


class Late(Exception):
    """An op entered the window after its dependencies had all ended: the look-ahead was too short."""

    def __init__(self, op):
        super().__init__(f"op {op} entered the window after it should have been ready")
        self.op = op


def _new_heap(n):
    """An empty indexed heap for ``n`` ops or slots."""
    return Heap(np.empty(n), np.empty(n, IDX), np.full(n, -1, IDX), np.zeros(1, np.int64))


def _resource_table(nres):
    """Zeroed per-resource state as named column views of one row-major table.

    Every field of a resource shares one 64-byte row (one cache line: the
    table is aligned to 64 bytes), where separate arrays would cost a cache
    miss each: five float64, the int64 change stamp, four int32.
    """
    raw = np.zeros(nres * 64 + 64, np.uint8)
    at = -raw.ctypes.data % 64
    f = raw[at:at + nres * 64].view(np.float64).reshape(nres, 8)
    i8, i4 = f.view(np.int64), f.view(np.int32)
    return {"bound": f[:, 0], "usage": f[:, 1], "left": f[:, 2], "sumw": f[:, 3], "top": f[:, 4],
            "fres_mark": i8[:, 5], "head": i4[:, 12], "count": i4[:, 13], "nflows": i4[:, 14], "top_round": i4[:, 15]}


def _new_work(n, table):
    """Empty work lists for ``n`` slots, over the resources of ``table`` (:func:`_resource_table`)."""
    nres = table["bound"].size
    return Work(np.zeros(4, np.int64), np.empty(n, IDX), np.empty(nres, IDX), np.zeros(nres, np.bool_),
                table["left"], table["sumw"], table["nflows"], np.empty(nres, IDX), table["fres_mark"],
                np.empty(n, IDX), np.empty(n, IDX), table["top"], table["top_round"])
