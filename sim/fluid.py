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
  ``min(capacity / weight)`` as if it were alone (shares play no part).

Max-min rates are kept exact *incrementally* (SimGrid's selective update).
The max-min fair allocation is the unique feasible one in which every flow
has a *bottleneck*: a saturated resource on which no flow gets more. When
flows start or end, only the flows on the resources they touch are re-solved
(progressive filling over what the others leave free, scanning only the
resources those flows cross); then, in a check round, any flow next to them
that lost its bottleneck, or that outruns a re-solved flow on that flow's
bottleneck, joins the set and the set is re-solved, until every flow has a
bottleneck again. A neighbour that passed the previous round's check is
checked again only if the last filling touched a resource on its route (the
only place rates and usage change between rounds). In a large collective
most events touch a handful of flows, so an event costs little however many
flows are active. :meth:`Network.solve` with ``full=True`` solves every
active flow from scratch instead: the oracle of the tests, and the
``check=True`` debug mode. The incremental rates agree with it to
``RATE_RTOL``, not bit for bit: both accumulate floating-point sums in an
order that depends on the path taken.

State lives in named groups of arrays (:class:`Dag` and :class:`Demand` per
op, :class:`Elements` per route, :class:`Constraints` per resource,
:class:`Variables`, :class:`Members` and the finishing :class:`Heap` per
*slot*, the waiting :class:`Heap` and a :class:`Work` scratch set), all
indices int32. A slot holds one active flow: a few thousand slots serve
millions of ops, so the state the solver's hot loops touch stays in the
caches; the per-resource arrays (of ``Constraints`` and ``Work``) are column
views of row-major tables, so one resource's fields share a cache line. The per-event kernels are inlined into one loop (:func:`_advance`)
and unpack each group once: numba reference-counts an array each time it is
read out of a tuple. The driver (:mod:`sim.engine`) owns the clock.
"""

from collections import namedtuple

import numpy as np

from flyersim.jit import njit

# Times closer than this (relative) are one event.
TIME_RTOL = 1e-12
# A resource within this (relative) of capacity is saturated; rates this close are equal.
RATE_RTOL = 1e-9
# _step result besides a next event time: the member lists are full, grow them and call again.
NEED_SLOTS = -1.0
# sharing policies
MAXMIN, ISOLATED = 0, 1
POLICIES = {"maxmin": MAXMIN, "isolated": ISOLATED}
# Work.counts: sizes of the modified, touched and dirty lists, the bottleneck-check round and the filling call
N_MODIFIED, N_TOUCHED, N_DIRTY, ROUND, FILL = 0, 1, 2, 3, 4

IDX = np.int32  # op, resource, route and slot indices

_jit = njit(error_model="numpy")
# inlined into their callers (numba IR), so that the arrays they unpack are not reference-counted per call
_inline = njit(error_model="numpy", inline="always")

Dag = namedtuple("Dag", "ndeps dn_ptr dn_idx route ready_at start_at end_at")
Dag.__doc__ = """The ops: unmet dependencies, who waits for whom (CSR), route, and the three times of each op."""
Elements = namedtuple("Elements", "ptr cnst weight latency alt_ptr alt_idx")
Elements.__doc__ = """Routes: route ``r`` crosses resources ``cnst[ptr[r]:ptr[r+1]]`` with consumption ``weight``
after ``latency[r]`` seconds; an op on route ``r`` starts on one of ``alt_idx[alt_ptr[r]:alt_ptr[r+1]]`` if any."""
Demand = namedtuple("Demand", "nbytes share")
Demand.__doc__ = """Per op: the bytes its flow moves and its sharing weight."""
Variables = namedtuple("Variables", "op route remaining t_upd rate share bott in_set seen")
Variables.__doc__ = """The active flows, one per *slot* (compact: a few thousand slots serve millions of ops): the op
in it (-1: free), its route, bytes left as of ``t_upd``, rate, sharing weight (``rate / share`` is the flow's fair
level), bottleneck resource, whether in the set being re-solved, and last check round."""
Constraints = namedtuple("Constraints", "bound usage head count")
Constraints.__doc__ = """Per-resource: capacity, rate used, first member (linked list) and number of active members."""
Members = namedtuple("Members", "shift next prev free n_free")
Members.__doc__ = """Element lists of the active flows: the flow in slot ``s`` holds members ``(s << shift) + j``
(its j-th element), linked per resource by ``next``/``prev``; ``free[:n_free[0]]`` are free slots."""
Heap = namedtuple("Heap", "keys ops pos size")
Heap.__doc__ = """A binary min-heap of ops (waiting) or slots (finishing): ``pos[i]`` is where ``i`` is (-1: absent)."""
Work = namedtuple("Work", "counts modified touched touched_mark dirty dirty_mark left sumw nflows fres fres_mark "
                         "unfrozen frozen top top_round")
Work.__doc__ = """Scratch of one re-solve: the flows (slots) being re-solved (``modified``), the resources they touch,
the resources whose flows changed rate (``dirty``), the filling's per-resource sums, the resources it fills
(``fres``, marked with the filling call) and flows it has not frozen yet or freezes this round, and the
highest level on a resource (``top``) as found in check round ``top_round``."""


# ---------------------------------------------------------------- binary min-heaps of ops, indexed by op
# Two are used: ops waiting out their latency (keyed by start time) and active
# flows (keyed by finish time, moved whenever a rate changes). Each kernel
# unpacks the groups it uses once: reading an array out of a group inside a
# loop would reference-count it at every access.

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
def _step(now, policy, dag, dem, elem, var, cnst, mem, waiting, finishing, work):
    """Handle every event due at ``now``; return the next event time, inf when done.

    Returns ``NEED_SLOTS`` (before starting a flow it has no slot for) when
    the member lists are full; the caller grows them and calls again, which
    resumes where this call stopped.
    """
    horizon = now * (1.0 + TIME_RTOL) + 1e-300
    _retire_drained(now, horizon, dag, elem, var, cnst, mem, waiting, finishing, work)
    if not _start_ready(now, horizon, dag, dem, elem, var, cnst, mem, waiting, work):
        return NEED_SLOTS
    c = work.counts
    if c[N_MODIFIED] > 0 or c[N_TOUCHED] > 0 or c[N_DIRTY] > 0:
        if policy == MAXMIN:
            _resolve(now, elem, var, cnst, mem, work)
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
    end_at, ndeps, dn_ptr, dn_idx, route, ready_at, latency = (dag.end_at, dag.ndeps, dag.dn_ptr, dag.dn_idx,
                                                               dag.route, dag.ready_at, elem.latency)
    touched_mark, touched, dirty_mark, dirty, counts = (work.touched_mark, work.touched, work.dirty_mark,
                                                         work.dirty, work.counts)
    while fsize[0] > 0 and fkeys[0] <= horizon:
        s = fops[0]
        _heap_remove(fkeys, fops, fpos, fsize, s)
        f = vop[s]
        end_at[f] = now
        r = vroute[s]
        for j in range(ptr[r], ptr[r + 1]):
            k = res[j]
            usage[k] -= weight[j] * rate[s]
            _touch(k, touched_mark, touched, counts)
        _mark_dirty(r, ptr, res, dirty_mark, dirty, counts)
        _unlink(s, r, ptr, res, shift, nxt, prev, head, count)
        for j in range(ptr[r], ptr[r + 1]):
            if count[res[j]] == 0:
                usage[res[j]] = 0.0  # no rounding drift left behind on an idle resource
        vop[s] = -1
        free[n_free[0]] = s
        n_free[0] += 1
        _release(f, now, ndeps, dn_ptr, dn_idx, route, ready_at, latency, wkeys, wops, wpos, wsize)


@_inline
def _start_ready(now, horizon, dag, dem, elem, var, cnst, mem, waiting, work):
    """Ops whose latency has elapsed by ``horizon`` start moving bytes (empty ones end at once).

    False when a flow needs a member slot and none is free.
    """
    ptr, res, alt_ptr, head, count = elem.ptr, elem.cnst, elem.alt_ptr, cnst.head, cnst.count
    wkeys, wops, wpos, wsize = waiting.keys, waiting.ops, waiting.pos, waiting.size
    shift, nxt, prev, free, n_free = mem.shift, mem.next, mem.prev, mem.free, mem.n_free
    route, start_at, end_at, nbytes, share = dag.route, dag.start_at, dag.end_at, dem.nbytes, dem.share
    ndeps, dn_ptr, dn_idx, ready_at, latency = dag.ndeps, dag.dn_ptr, dag.dn_idx, dag.ready_at, elem.latency
    vop, vroute, remaining, t_upd, rate, vshare = var.op, var.route, var.remaining, var.t_upd, var.rate, var.share
    bott, in_set, seen = var.bott, var.in_set, var.seen
    touched_mark, touched, dirty_mark, dirty, counts, modified = (work.touched_mark, work.touched, work.dirty_mark,
                                                                   work.dirty, work.counts, work.modified)
    while wsize[0] > 0 and wkeys[0] <= horizon:
        if n_free[0] == 0:
            return False
        f = wops[0]
        _heap_remove(wkeys, wops, wpos, wsize, f)
        start_at[f] = now
        if nbytes[f] <= 0.0:
            end_at[f] = now
            _release(f, now, ndeps, dn_ptr, dn_idx, route, ready_at, latency, wkeys, wops, wpos, wsize)
            continue
        n_free[0] -= 1
        s = free[n_free[0]]
        r = route[f]
        if alt_ptr[r + 1] > alt_ptr[r]:
            r = _least_loaded(r, elem, cnst)
            route[f] = r
        _link(s, r, ptr, res, shift, nxt, prev, head, count)
        vop[s], vroute[s], remaining[s], vshare[s] = f, r, nbytes[f], share[f]
        rate[s], t_upd[s], bott[s], seen[s] = 0.0, now, -1, 0
        _add_modified(s, now, in_set, remaining, rate, t_upd, modified, counts)
        _mark_dirty(r, ptr, res, dirty_mark, dirty, counts)
        for j in range(ptr[r], ptr[r + 1]):
            _touch(res[j], touched_mark, touched, counts)
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
    c, modified, touched, touched_mark, dirty, dirty_mark = (work.counts, work.modified, work.touched,
                                                             work.touched_mark, work.dirty, work.dirty_mark)
    in_set, remaining, rate = var.in_set, var.remaining, var.rate
    fkeys, fops, fpos, fsize = finishing.keys, finishing.ops, finishing.pos, finishing.size
    for i in range(c[N_MODIFIED]):
        s = modified[i]
        in_set[s] = False
        _heap_set(fkeys, fops, fpos, fsize, s, now + remaining[s] / rate[s])
    for i in range(c[N_TOUCHED]):
        touched_mark[touched[i]] = False
    for i in range(c[N_DIRTY]):
        dirty_mark[dirty[i]] = False
    c[N_MODIFIED] = 0
    c[N_TOUCHED] = 0
    c[N_DIRTY] = 0


@_jit
def _advance(now, max_events, policy, dag, dem, elem, var, cnst, mem, waiting, finishing, work):
    """Handle the events at ``now`` and the next ones, ``max_events`` event times in all.

    Returns (last time handled, next event time); the next time is
    ``NEED_SLOTS`` when the member lists must grow before going on.
    """
    for _ in range(max_events):
        nxt = _step(now, policy, dag, dem, elem, var, cnst, mem, waiting, finishing, work)
        if nxt == NEED_SLOTS or nxt == np.inf:
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
def _touch(k, touched_mark, touched, counts):
    if not touched_mark[k]:
        touched_mark[k] = True
        touched[counts[N_TOUCHED]] = k
        counts[N_TOUCHED] += 1


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
def _release(f, now, ndeps, dn_ptr, dn_idx, route, ready_at, latency, wkeys, wops, wpos, wsize):
    """Op ``f`` ended: its dependents with no other unmet dependency wait out their latency (heap ``w*``)."""
    for j in range(dn_ptr[f], dn_ptr[f + 1]):
        d = dn_idx[j]
        ndeps[d] -= 1
        if ndeps[d] == 0:
            ready_at[d] = now
            _heap_set(wkeys, wops, wpos, wsize, d, now + latency[route[d]])


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
def _resolve(now, elem, var, cnst, mem, work):
    """Max-min policy: re-solve rates around the touched resources until every flow has a bottleneck."""
    ptr, res, bound, usage, head = elem.ptr, elem.cnst, cnst.bound, cnst.usage, cnst.head
    route, rate, share, bott, in_set, seen = var.route, var.rate, var.share, var.bott, var.in_set, var.seen
    remaining, t_upd = var.remaining, var.t_upd
    shift, nxt = mem.shift, mem.next
    c, modified, dirty, fres_mark, top, top_round = (work.counts, work.modified, work.dirty, work.fres_mark,
                                                     work.top, work.top_round)
    first = c[ROUND] + 1  # the first check round of this re-solve
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
                passed = seen[g] >= first  # it had a bottleneck last round
                seen[g] = c[ROUND]
                if passed and not _crosses_filled(route[g], ptr, res, fres_mark, c[FILL]):
                    m = nxt[m]  # and nothing it depends on changed since
                    continue
                if not _has_bottleneck(g, route[g], ptr, res, rate, share, bound, usage, head, shift, nxt,
                                       top, top_round, c[ROUND]):
                    _add_modified(g, now, in_set, remaining, rate, t_upd, modified, c)
                m = nxt[m]
        if c[N_MODIFIED] == before:
            return


@_jit
def _crosses_filled(r, ptr, res, fres_mark, fill):
    """Whether route ``r`` crosses a resource of filling call ``fill``: the only place where usage and rates
    change between two check rounds of a re-solve."""
    for j in range(ptr[r], ptr[r + 1]):
        if fres_mark[res[j]] == fill:
            return True
    return False


@_jit
def _has_bottleneck(g, r, ptr, res, rate, share, bound, usage, head, shift, nxt, top, top_round, rnd):
    """Whether flow ``g`` (route ``r``) crosses a saturated resource on which no flow has a higher level.

    No rate changes during a check round, so a resource's highest level is found once per round.
    """
    if ptr[r] == ptr[r + 1]:
        return True
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
            return True
    return False


@_inline
def _fill(elem, var, cnst, work):
    """Progressive filling of the modified flows over what the other flows leave free.

    Each round finds the smallest fair level ``left / sumw`` over the
    resources the modified flows cross (``sumw`` sums weight x share),
    freezes every flow crossing a resource at that level (rate ``share x
    level``, recording the resource as the flow's bottleneck), and removes
    their usage. Updates ``rate`` and ``usage``; marks every resource
    crossed as touched, and those of flows whose rate changed as dirty.
    """
    ptr, res, weight, bound, usage = elem.ptr, elem.cnst, elem.weight, cnst.bound, cnst.usage
    route, rate, share, bott = var.route, var.rate, var.share, var.bott
    c, modified, touched, touched_mark = work.counts, work.modified, work.touched, work.touched_mark
    dirty, dirty_mark, left, sumw, nflows = work.dirty, work.dirty_mark, work.left, work.sumw, work.nflows
    fres, fres_mark, unfrozen, frozen = work.fres, work.fres_mark, work.unfrozen, work.frozen
    n = c[N_MODIFIED]
    c[FILL] += 1
    n_fres = 0  # the resources the modified flows cross, each once
    for i in range(n):
        f = modified[i]
        unfrozen[i] = f
        r = route[f]
        for j in range(ptr[r], ptr[r + 1]):
            k = res[j]
            if fres_mark[k] != c[FILL]:
                fres_mark[k] = c[FILL]
                fres[n_fres] = k
                n_fres += 1
                _touch(k, touched_mark, touched, c)
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


@_jit
def _initial_heap(dag, elem, waiting):
    for op in range(dag.ndeps.size):
        if dag.ndeps[op] == 0:
            dag.ready_at[op] = 0.0
            _heap_set(waiting.keys, waiting.ops, waiting.pos, waiting.size, op, elem.latency[dag.route[op]])


class Network:
    """The fluid state of one simulation: flows of ops over routes of resources.

    ``route[op]`` indexes a route; route ``r`` crosses resources
    ``rres[rptr[r]:rptr[r+1]]`` with weights ``rw[...]`` after latency
    ``rlat[r]``. ``dep_ptr/dep_idx`` is the schedule's dependency CSR.
    ``sharing`` is ``"maxmin"`` (the flow model) or ``"isolated"`` (the
    analytic model); ``share`` gives each op's sharing weight under max-min
    (its traffic class's; default 1 for all); ``alt_ptr/alt_idx`` is a CSR of
    candidate routes per route (adaptive routing: an op takes the least
    loaded when it starts, see :attr:`route`); ``check=True`` compares the incremental rates with a
    full re-solve after every event time (slow; a debug aid).

    >>> import numpy as np
    >>> net = Network(op_bytes=np.array([100.0, 100.0]), route=np.array([0, 0]),
    ...               rptr=np.array([0, 1]), rres=np.array([0]), rw=np.array([1.0]),
    ...               rlat=np.array([0.0]), capacity=np.array([10.0]),
    ...               dep_ptr=np.array([0, 0, 0]), dep_idx=np.array([], np.int64))
    >>> t = net.next_time
    >>> while t < np.inf:
    ...     t = net.step(t)
    >>> net.end_at.tolist()  # two equal flows on one link both finish at 2n/B
    [20.0, 20.0]
    """

    def __init__(self, op_bytes, route, rptr, rres, rw, rlat, capacity, dep_ptr, dep_idx, sharing="maxmin",
                 check=False, share=None, alt_ptr=None, alt_idx=None):
        if sharing not in POLICIES:
            raise ValueError(f"unknown sharing {sharing!r} (choose from {', '.join(POLICIES)})")
        self.policy = POLICIES[sharing]
        self.check = bool(check)
        n = op_bytes.size
        dep_ptr, dep_idx = np.asarray(dep_ptr, np.int64), np.asarray(dep_idx, np.int64)
        dn_ptr, dn_idx = _dependents(dep_ptr, dep_idx, n)
        self.dag = Dag(np.diff(dep_ptr).astype(IDX), dn_ptr, dn_idx, np.array(route, IDX),
                       np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan))
        nroutes = np.asarray(rlat).size
        if alt_ptr is None:
            alt_ptr, alt_idx = np.zeros(nroutes + 1, IDX), np.empty(0, IDX)
        alt_ptr, alt_idx = np.asarray(alt_ptr, IDX), np.asarray(alt_idx, IDX)
        if (alt_ptr.shape != (nroutes + 1,) or alt_ptr[0] != 0 or np.any(np.diff(alt_ptr) < 0)
                or alt_ptr[-1] != alt_idx.size or np.any((alt_idx < 0) | (alt_idx >= nroutes))):
            raise ValueError(f"alt_ptr/alt_idx must be a CSR of candidate routes over the {nroutes} routes")
        self.elem = Elements(np.asarray(rptr, IDX), np.asarray(rres, IDX), np.asarray(rw, np.float64),
                             np.asarray(rlat, np.float64), alt_ptr, alt_idx)
        share = np.ones(n) if share is None else np.array(share, np.float64)
        if share.shape != (n,) or not np.all(share > 0) or not np.all(np.isfinite(share)):
            raise ValueError(f"share must hold one positive finite weight per op ({n})")
        self.dem = Demand(np.asarray(op_bytes, np.float64), share)
        nres = np.asarray(capacity).size
        table = _resource_table(nres)
        table["bound"][:], table["head"][:] = capacity, -1
        self.cnst = Constraints(table["bound"], table["usage"], table["head"], table["count"])
        self.waiting = _new_heap(n)    # ops waiting out their latency, by start time
        self.var = self.mem = self.finishing = None  # active flows by slot, their members, by finish time
        self.work = _new_work(0, table)
        self._grow(max(min(n, 1024), 1))
        _initial_heap(self.dag, self.elem, self.waiting)
        self.next_time = self.waiting.keys[0] if self.waiting.size[0] else np.inf

    # the timeline and rates of every op
    ready_at = property(lambda self: self.dag.ready_at)
    start_at = property(lambda self: self.dag.start_at)
    end_at = property(lambda self: self.dag.end_at)

    @property
    def rate(self):
        """Each op's rate (0 when not moving)."""
        return self.solve()
    route = property(lambda self: self.dag.route, doc="Each op's route: the candidate it took, if it had any.")

    def _grow(self, slots):
        """Room for ``slots`` flows active at once: their variables, members, finish heap and work lists."""
        bits = max(int(np.diff(self.elem.ptr).max(initial=1)) - 1, 0).bit_length()  # a power of two: no division
        w = 1 << bits
        old = 0 if self.var is None else self.var.op.size
        fresh = Variables(np.full(slots, -1, IDX), np.empty(slots, IDX), np.empty(slots), np.empty(slots),
                          np.empty(slots), np.empty(slots), np.empty(slots, IDX), np.zeros(slots, np.bool_),
                          np.zeros(slots, np.int64))
        heap = _new_heap(slots)
        nxt, prev, free = np.empty(slots * w, IDX), np.empty(slots * w, IDX), np.empty(slots, IDX)
        modified, unfrozen, frozen = np.empty(slots, IDX), np.empty(slots, IDX), np.empty(slots, IDX)
        n_free = 0
        if old:
            for a, b in zip(fresh, self.var):
                a[:old] = b
            for a, b in zip(heap, self.finishing):
                a[:b.size] = b
            nxt[:old * w], prev[:old * w] = self.mem.next, self.mem.prev
            n_free = self.mem.n_free[0]
            free[:n_free] = self.mem.free[:n_free]
            modified[:old] = self.work.modified
        new = np.arange(slots - 1, old - 1, -1)
        free[n_free:n_free + new.size] = new
        self.var, self.finishing = fresh, heap
        self.mem = Members(bits, nxt, prev, free, np.array([n_free + new.size], np.int64))
        self.work = self.work._replace(modified=modified, unfrozen=unfrozen, frozen=frozen)

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
        while True:
            last, nxt = _advance(now, max_events, self.policy, self.dag, self.dem, self.elem, self.var, self.cnst,
                                 self.mem, self.waiting, self.finishing, self.work)
            if nxt != NEED_SLOTS:
                break
            self._grow(min(2 * self.var.op.size, self.dem.nbytes.size))
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
        out = np.zeros(self.dem.nbytes.size)
        slots = self._active_slots()
        if not full:
            out[self.var.op[slots]] = self.var.rate[slots]
            return out
        table = _resource_table(self.cnst.bound.size)
        work = _new_work(self.var.op.size, table)
        work.modified[:slots.size] = slots
        work.counts[N_MODIFIED] = slots.size
        var = self.var._replace(rate=np.zeros(self.var.op.size), bott=np.full(self.var.op.size, -1, IDX))
        if self.policy == ISOLATED:
            _isolate(self.elem, var, self.cnst, work)
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
        return np.flatnonzero(np.isnan(self.dag.end_at))


def _new_heap(n):
    """An empty indexed heap for ``n`` ops or slots."""
    return Heap(np.empty(n), np.empty(n, IDX), np.full(n, -1, IDX), np.zeros(1, np.int64))


def _resource_table(nres):
    """Zeroed per-resource state as named column views of row-major tables.

    The fields one resource's check or filling reads together share a row (a
    cache line or two), where separate arrays would cost a cache miss each.
    """
    f, i, c = np.zeros((nres, 5)), np.zeros((nres, 3), IDX), np.zeros((nres, 2), np.int64)
    return {"bound": f[:, 0], "usage": f[:, 1], "left": f[:, 2], "sumw": f[:, 3], "top": f[:, 4],
            "head": i[:, 0], "count": i[:, 1], "nflows": i[:, 2], "fres_mark": c[:, 0], "top_round": c[:, 1]}


def _new_work(n, table):
    """Empty work lists for ``n`` slots, over the resources of ``table`` (:func:`_resource_table`)."""
    nres = table["bound"].size
    return Work(np.zeros(5, np.int64), np.empty(n, IDX), np.empty(nres, IDX), np.zeros(nres, np.bool_),
                np.empty(nres, IDX), np.zeros(nres, np.bool_), table["left"], table["sumw"], table["nflows"],
                np.empty(nres, IDX), table["fres_mark"], np.empty(n, IDX), np.empty(n, IDX), table["top"],
                table["top_round"])


def _dependents(dep_ptr, dep_idx, n):
    """Reverse a dependency CSR: for each op, the ops that wait for it."""
    owners = np.repeat(np.arange(n, dtype=IDX), np.diff(dep_ptr))
    order = np.argsort(dep_idx, kind="stable")
    dn_ptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(dep_idx, minlength=n), out=dn_ptr[1:])
    return dn_ptr, owners[order]
