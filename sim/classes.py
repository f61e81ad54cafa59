"""Traffic classes shared class-then-flow: the equilibrium of weighted arbitration between classes on every link.

InfiniBand maps a flow's service level to a virtual lane, and a link's
output port arbitrates between its lanes by weight (IBTA spec vol. 1,
7.6.9): a class with weight ``w`` gets ``w / sum`` of a contended link, and
what an idle or satisfied class leaves goes to the others (work-conserving).
Inside a lane, the class's flows share its part fairly. The rates of flows
crossing many links are the equilibrium of all the links' arbitration at
once, defined here as:

An allocation is **class-fair** when it is feasible and every flow ``f``
of class ``c`` has a *bottleneck*: a saturated resource ``r`` where ``f``'s
rate is the largest of the class-``c`` flows at ``r``, and class ``c``'s
consumption at ``r`` over its weight is the largest of the classes at ``r``.

With one class this is the bottleneck characterisation of max-min
fairness; with one flow per class, and equal consumption weights per
resource (every link), the bottleneck characterisation of weighted max-min
(``share = w``). A resource that does not arbitrate (``arbitrated`` False:
PCIe, memory and engines have no service levels) treats all its flows as
one class.

Progressive filling does not find it: a class frozen at a resource's
current weighted share is wrong when another class there is later held
below its share elsewhere (the resource then ends unsaturated), and two
links can each wait on the other. So the solver iterates the definition
itself: each flow's *best response* is the least, over its resources, of
the rate that resource's arbitration would give it if it wanted more, the
other flows keeping their rates (classes split the capacity by weight
between those that want more than they use, the class's part is split
max-min between its flows); a fixed point is exactly a class-fair
allocation. Rates move a fraction ``DAMPING`` of the way to their best
responses (undamped, two links can oscillate; the step halves only while
they do) until every rate is within ``RTOL`` (relative) of its best
response. Tested on random networks against the definition
(``tests/test_classes.py``); about 25 sweeps from zero on small networks.
Where rates creep (see ``DAMPING``) it takes as many sweeps as the creep
needs, distance over offset: a 128-GPU HFReduce job beside storage at 80 %
of leaf uplinks (48 flows re-solved at one event) took 2,035 sweeps from
the rates before the event, 561 from zero; more than ``MAX_SWEEPS`` is an
error. The answer is accepted only once it meets the definition within
``FAIR_RTOL`` (checked, :func:`_fair`).

Cost per sweep: the flows' elements, plus a sort of each class's flows at
each resource whose flows' rates moved; ``solve`` re-solves every flow
given to it. :mod:`sim.fluid`'s cached machine code embeds this kernel,
and numba does not notice when a function of another file changes: after
editing this file, touch ``sim/fluid.py``.

>>> import numpy as np
>>> # one link of 10 B/s: class 0 (weight 1) has one flow, class 1 (weight 4) has four
>>> rate, bott = np.zeros(5), np.empty(5, np.int32)
>>> sweeps = solve(np.arange(5, dtype=np.int32), np.zeros(5, np.int32), np.array([0, 1, 1, 1, 1], np.int32),
...                np.array([1.0, 4, 4, 4, 4]), rate, bott, np.array([0, 1], np.int32), np.array([0], np.int32),
...                np.array([1.0]), np.array([10.0]), np.ones(1, np.bool_), np.full(1, -1, np.int32),
...                scratch(5, 5, 1))
>>> np.round(rate, 9).tolist()  # class 1 gets 4/5 of the link, split between its four flows
[2.0, 2.0, 2.0, 2.0, 2.0]
"""

from collections import namedtuple

import numpy as np

from flyersim.jit import njit

# How far a rate moves toward its best response per sweep (measured on random networks: 0.5 and 0.7 always
# converged, 0.85 did not always). It halves when STALL sweeps did not halve the distance to the best responses
# and the farthest flow overshot its best response in over a quarter of them (an oscillation). Not when rates
# creep: two links each giving a pair of flows what the other leaves (a sum pinned twice, offset by a little)
# move both at a constant speed until their order at a link flips, and a smaller step only slows that
# (tests/test_classes.py; a 128-GPU job beside storage gave up so).
DAMPING, STALL = 0.7, 200
# Converged when every rate is this close (relative) to its best response; rates then meet the definition to
# about 1e-9 (RATE_RTOL of sim.fluid, tests/test_classes.py).
RTOL = 1e-11
# On large networks rounding in the sums of a link's rates can keep rates this far (relative) from their best
# responses: accepted after STALL sweeps (sim.fluid's RATE_RTOL).
ROUNDING = 1e-9
# The answer must meet the definition within this (relative; sim.fluid's RATE_RTOL), else the iteration goes on.
FAIR_RTOL = 1e-9
# Give up (an error, never a silent answer) after this many sweeps.
MAX_SWEEPS = 20000

# Class ids are 0..MAX_CLASSES-1 (InfiniBand has 16 service levels).
MAX_CLASSES = 64

# The kernel allocates nothing (it runs inside sim.fluid's kernels, compiled without numba's runtime).
_jit = njit(error_model="numpy", _nrt=False, nogil=True)

Scratch = namedtuple("Scratch", "lres count fill dirty mflow ma mres fmem resp fptr x best at idx pos keys perm sx sa "
                                "pre suf demand cw seen alloc order done gap ok")
Scratch.__doc__ = """Work arrays of :func:`solve`, from :func:`scratch`."""


def scratch(flows, members, nres):
    """Work arrays for solving up to ``flows`` flows with ``members`` elements in all over ``nres`` resources."""
    e, f, k = np.empty, flows, MAX_CLASSES
    return Scratch(e(nres, np.int32), e(nres + 1, np.int64), e(nres, np.int64), e(nres, np.bool_),
                   e(members, np.int32), e(members), e(members, np.int32), e(members, np.int64), e(members),
                   e(f + 1, np.int64), e(f), e(f), e(f, np.int32), e(f, np.int64), e(f, np.int64), e(f),
                   e(f, np.int64), e(f), e(f), e(f + 1), e(f + 1), e(k), e(k), np.zeros(k, np.int64), e(k),
                   e(k, np.int64), e(k, np.bool_), e(f), e(f, np.bool_))


@_jit
def solve(flows, route, cls, share, rate, bott, ptr, res, weight, bound, arbitrated, loc, work):
    """Class-fair rates of the flows (slots) ``flows``, starting from their ``rate``; returns the sweeps used.

    Per slot: ``route``, class id ``cls`` (0..), class weight ``share``; writes ``rate`` and ``bott`` (a
    resource where the rate is its best response). Route ``r`` crosses ``res[ptr[r]:ptr[r+1]]`` with
    consumption ``weight``; per resource: capacity ``bound``, whether it ``arbitrated`` between classes,
    and ``loc``, scratch that must hold -1 (and is left so); ``work``: a :func:`scratch` big enough.
    Raises if the iteration does not converge.
    """
    n = flows.size
    # the resources the flows cross, numbered locally, with their members (flow, consumption weight)
    nres = 0
    lres, count, fill, dirty, mflow, ma, mres, fmem, resp = (work.lres, work.count, work.fill, work.dirty, work.mflow,
                                                             work.ma, work.mres, work.fmem, work.resp)
    fptr, x, best, at, idx, pos, keys, perm = work.fptr, work.x, work.best, work.at, work.idx, work.pos, work.keys, \
        work.perm
    sx, sa, pre, suf = work.sx, work.sa, work.pre, work.suf
    demand, cw, seen, alloc, order, done = work.demand, work.cw, work.seen, work.alloc, work.order, work.done
    gap, ok = work.gap, work.ok
    total = 0
    for i in range(n):
        r = route[flows[i]]
        total += ptr[r + 1] - ptr[r]
    count[0] = 0
    for i in range(n):
        r = route[flows[i]]
        for j in range(ptr[r], ptr[r + 1]):
            k = res[j]
            if loc[k] < 0:
                loc[k] = nres
                lres[nres] = k
                count[nres + 1] = 0
                nres += 1
            count[loc[k] + 1] += 1
    mptr = count  # prefix sums in place: the members of resource q are mptr[q]:mptr[q+1]
    for q in range(nres):
        mptr[q + 1] += mptr[q]
        fill[q] = mptr[q]
    fptr[0] = 0  # each flow's members are fmem[fptr[i]:fptr[i+1]]
    ncls = 1
    for i in range(n):
        s = flows[i]
        ncls = max(ncls, cls[s] + 1)
        r = route[s]
        fptr[i + 1] = fptr[i] + ptr[r + 1] - ptr[r]
        for j in range(ptr[r], ptr[r + 1]):
            q = loc[res[j]]
            m = fill[q]
            mflow[m], ma[m], mres[m] = i, weight[j], q
            fmem[fptr[i] + j - ptr[r]] = m
            fill[q] += 1
    for i in range(n):
        x[i] = rate[flows[i]]
    # each member's best response at its resource, recomputed only where a rate moved (dirty)
    for m in range(total):
        resp[m] = np.inf
    for q in range(nres):
        dirty[q] = True
    # per class at one resource: demand, weight, presence stamp; members of one class sorted by rate
    damping = DAMPING
    flips = 0  # sweeps where the flow farthest from its best response overshot it (its gap changed sign)
    for i in range(n):
        gap[i] = 0.0
    last = np.inf  # the distance to the best responses STALL sweeps ago
    sweeps = 0
    stamp = 0
    for c in range(ncls):
        stamp = max(stamp, seen[c])
    while True:
        sweeps += 1
        for q in range(nres):
            if not dirty[q]:
                continue
            dirty[q] = False
            k = lres[q]
            lo, hi = mptr[q], mptr[q + 1]
            arb = arbitrated[k]
            stamp += 1
            nc = 0
            for m in range(lo, hi):
                c = cls[flows[mflow[m]]] if arb else 0
                if seen[c] != stamp:
                    seen[c] = stamp
                    order[nc] = c
                    nc += 1
                    demand[c] = 0.0
                    cw[c] = share[flows[mflow[m]]] if arb else 1.0
                demand[c] += ma[m] * x[mflow[m]]
            _class_parts(order, nc, demand, cw, bound[k], alloc, done)
            for t in range(nc):
                c = order[t]
                # this class's members at k, sorted by rate
                nm = 0
                for m in range(lo, hi):
                    if (cls[flows[mflow[m]]] if arb else 0) == c:
                        idx[nm] = m
                        nm += 1
                _within(idx, nm, mflow, ma, x, alloc[c], sx, sa, pre, suf, pos, keys, perm, resp)
        moved, flip = 0.0, False
        for i in range(n):
            best[i], at[i] = np.inf, -1
            for u in range(fptr[i], fptr[i + 1]):
                if resp[fmem[u]] < best[i]:
                    best[i], at[i] = resp[fmem[u]], mres[fmem[u]]
            b = max(best[i], 0.0)
            if (sweeps == 1 and x[i] == 0.0) or not (np.isfinite(b) and np.isfinite(x[i])):
                new = b  # a new flow starts at its best response
            else:
                new = x[i] + damping * (b - x[i])
            g = b - x[i] if np.isfinite(b) and np.isfinite(x[i]) else 0.0
            if g != 0.0:  # how far from its best response (not the damped step)
                rel = abs(g) / max(b, 1e-300)
                if rel > moved:
                    moved, flip = rel, g * gap[i] < 0.0
            gap[i] = g
            if new != x[i]:
                step = abs(new - x[i]) / max(new, 1e-300) if np.isfinite(new) else 0.0
                if step > 0.01 * RTOL or not np.isfinite(new):  # its resources' responses change
                    for u in range(fptr[i], fptr[i + 1]):
                        dirty[mres[fmem[u]]] = True
            x[i] = new
        if moved <= RTOL or (sweeps >= STALL and moved <= ROUNDING):
            if _fair(n, nres, lres, mptr, mflow, ma, flows, cls, share, x, bound, arbitrated, demand, cw, alloc,
                     seen, ok):
                break
            for c in range(ncls):  # _fair stamped seen
                stamp = max(stamp, seen[c])
        flips += flip
        if sweeps % STALL == 0:
            if moved > 0.5 * last and flips > STALL // 4:  # oscillating: a smaller step
                damping *= 0.5
            last, flips = moved, 0
        if sweeps >= MAX_SWEEPS:
            for q in range(nres):
                loc[lres[q]] = -1
            raise RuntimeError("class-fair sharing did not converge (or not to a class-fair allocation within "
                               "1e-9)")
    for i in range(n):
        s = flows[i]
        rate[s] = x[i]
        bott[s] = lres[at[i]] if at[i] >= 0 else -1
    for q in range(nres):
        loc[lres[q]] = -1
    return sweeps


@_jit
def _fair(n, nres, lres, mptr, mflow, ma, flows, cls, share, x, bound, arbitrated, demand, cw, top, seen, ok):
    """Whether the rates ``x`` are class-fair (the definition above) within ``FAIR_RTOL``: feasible, and every
    flow has a saturated resource where it is the fastest of its class and its class's level the highest."""
    for i in range(n):
        ok[i] = not np.isfinite(x[i])  # a flow no resource limits
    stamp = 0
    for c in range(seen.size):
        stamp = max(stamp, seen[c])
    for q in range(nres):
        k = lres[q]
        lo, hi = mptr[q], mptr[q + 1]
        arb = arbitrated[k]
        stamp += 1
        use, level = 0.0, 0.0
        for m in range(lo, hi):
            i = mflow[m]
            c = cls[flows[i]] if arb else 0
            if seen[c] != stamp:
                seen[c] = stamp
                demand[c], top[c] = 0.0, 0.0
                cw[c] = share[flows[i]] if arb else 1.0
            demand[c] += ma[m] * x[i]
            top[c] = max(top[c], x[i])
            use += ma[m] * x[i]
        if use > bound[k] * (1.0 + FAIR_RTOL):
            return False
        if use < bound[k] * (1.0 - FAIR_RTOL):
            continue
        for m in range(lo, hi):
            c = cls[flows[mflow[m]]] if arb else 0
            level = max(level, demand[c] / cw[c])
        for m in range(lo, hi):
            i = mflow[m]
            c = cls[flows[i]] if arb else 0
            if x[i] * (1.0 + FAIR_RTOL) >= top[c] and demand[c] / cw[c] * (1.0 + FAIR_RTOL) >= level:
                ok[i] = True
    for i in range(n):
        if not ok[i]:
            return False
    return True


@_jit
def _class_parts(order, nc, demand, cw, capacity, alloc, done):
    """For each class ``c`` of ``order[:nc]``: its part of ``capacity`` if it wanted more, the others asking
    ``demand`` (weighted max-min between classes, work-conserving)."""
    for t in range(nc):
        c = order[t]
        rest, ws = capacity, cw[c]
        for u in range(nc):
            if u != t:
                ws += cw[order[u]]
        for u in range(nc):
            done[u] = u == t
        while True:  # classes asking less than their weighted share keep their demand
            lam = rest / ws
            changed = False
            for u in range(nc):
                o = order[u]
                if not done[u] and demand[o] <= cw[o] * lam:
                    done[u] = True
                    rest -= demand[o]
                    ws -= cw[o]
                    changed = True
            if not changed:
                break
        alloc[c] = cw[c] * max(rest / ws, 0.0)


@_jit
def _within(idx, nm, mflow, ma, x, part, sx, sa, pre, suf, pos, keys, perm, resp):
    """Each member's best response inside its class (into ``resp``): the level ``mu`` where the others keep
    ``min(rate, mu)`` and it takes ``mu``, all within the class's ``part``."""
    for u in range(nm):  # insertion sort of the members by rate (a resource carries few flows of one class)
        key = x[mflow[idx[u]]]
        v = u
        while v > 0 and keys[v - 1] > key:
            keys[v], perm[v] = keys[v - 1], perm[v - 1]
            v -= 1
        keys[v], perm[v] = key, u
    for u in range(nm):
        m = idx[perm[u]]
        sx[u], sa[u] = x[mflow[m]], ma[m]
        pos[perm[u]] = u
    pre[0] = 0.0
    for u in range(nm):
        pre[u + 1] = pre[u] + sa[u] * sx[u]
    suf[nm] = 0.0
    for u in range(nm - 1, -1, -1):
        suf[u] = suf[u + 1] + sa[u]
    for u in range(nm):
        m = idx[u]
        p = pos[u]
        af, xf = ma[m], x[mflow[m]]
        # psi(k): the class's use at level sx[k] with this member taking the level; find the first k >= part
        lo, hi = 0, nm
        while lo < hi:
            mid = (lo + hi) // 2
            if _psi(mid, p, af, xf, sx, pre, suf) >= part:
                hi = mid
            else:
                lo = mid + 1
        k = lo  # the level lies in [sx[k-1], sx[k]] (members below k keep their rate)
        if p < k:
            mu = (part - pre[k] + af * xf) / (suf[k] + af)
        else:
            mu = (part - pre[k]) / suf[k]
        resp[m] = mu


@_jit
def _psi(k, p, af, xf, sx, pre, suf):
    if p < k:
        return pre[k] - af * xf + sx[k] * (suf[k] + af)
    return pre[k] + sx[k] * suf[k]
