"""Symbolic verifier: replays a schedule tracking which ranks contributed to each piece of each buffer.

The message is cut at every span boundary that any op or ``expect`` uses
(exact fractions), giving *atomic segments*; for each (location, buffer,
segment) the verifier tracks the set of contributing ranks (a Python int
bitset; 0 means undefined). Each rank's ``schedule.inputs`` buffers at its GPU
start as ``{rank}``; everything else starts undefined. It checks, for every
message size at once:

- no op reads undefined data (each input at its own location);
- a reduce's inputs have disjoint contributors (no double counting), wherever
  each input lives;
- no race: two ops touching an overlapping (location, buffer, segment), at
  least one writing, are ordered by the transitive dependency relation;
- an xfer's source and destination locations differ;
- a multicast group's copies share one source, buffer, span and dependencies;
- at the end every ``expect`` entry holds exactly its contributors.

Send/receive mismatches cannot occur (an xfer is one op, not a send and a
receive), and deadlock cannot either: dependencies point only to earlier ops,
so every schedule is acyclic by construction.

>>> from flyersim.collectives.schedule import Layout, ScheduleBuilder
>>> b = ScheduleBuilder(Layout(1, 2), "allreduce", "tiny", buffers=("data", "recv"))
>>> x = b.xfer(src=[0, 1], dst=[1, 0], span=(0, 1, 1), src_buf="data", dst_buf="recv")
>>> r = b.reduce(at=[0, 1], inputs=("data", "recv"), out="data", span=(0, 1, 1), deps=[x[::-1], x])
>>> for rank in (0, 1): b.expect(rank, "data", (0, 1, 1))
>>> verify(b.build())  # passes silently
>>> b = ScheduleBuilder(Layout(1, 2), "allreduce", "racy", buffers=("data", "recv"))
>>> x = b.xfer(src=[0, 1], dst=[1, 0], span=(0, 1, 1), src_buf="data", dst_buf="recv")
>>> r = b.reduce(at=[0, 1], inputs=("data", "recv"), out="data", span=(0, 1, 1))
>>> verify(b.build())
Traceback (most recent call last):
flyersim.collectives.verify.ScheduleError: racy: op 2 (reduce n0/gpu0:data,recv -> data [0/1, 1/1)) races with op 1 (xfer n0/gpu1:data -> n0/gpu0:recv [0/1, 1/1)) on n0/gpu0:recv [0, 1): neither depends on the other
"""

from fractions import Fraction

import numpy as np

from flyersim.collectives.schedule import XFER


class ScheduleError(ValueError):
    """A schedule breaks a rule; the message names the op or expect entry."""


def verify(schedule):
    """Raise :class:`ScheduleError` unless ``schedule`` is correct for every message size."""
    _Replay(schedule).run()


def atomic_segments(schedule):
    """Sorted span boundaries (Fractions) and, per op, its first and end segment index.

    >>> from flyersim.collectives.schedule import Layout, ScheduleBuilder
    >>> b = ScheduleBuilder(Layout(1, 2), "allgather", "demo")
    >>> _ = b.xfer(src=[0, 1], dst=[1, 0], span=([0, 1], [1, 2], 2))
    >>> bounds, seg_lo, seg_hi = atomic_segments(b.build())
    >>> [str(x) for x in bounds], seg_lo.tolist(), seg_hi.tolist()
    (['0', '1/2', '1'], [0, 1], [1, 2])
    """
    ex = schedule.expect
    num = np.concatenate([schedule.lo, schedule.hi, [e.span[0] for e in ex], [e.span[1] for e in ex]])
    den = np.concatenate([schedule.den, schedule.den, [e.span[2] for e in ex], [e.span[2] for e in ex]])
    num, den = num.astype(np.int64), den.astype(np.int64)
    if num.size == 0:
        return [], np.empty(0, np.int64), np.empty(0, np.int64)
    g = np.maximum(np.gcd(num, den), 1)
    pairs, inverse = np.unique(np.stack([num // g, den // g], axis=1), axis=0, return_inverse=True)
    values = [Fraction(int(n), int(d)) for n, d in pairs]
    order = sorted(range(len(values)), key=values.__getitem__)
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    index = rank[inverse.ravel()]
    m = schedule.num_ops
    return [values[i] for i in order], index[:m], index[m:2 * m]


def ranks_of(mask):
    """Ranks in a bitset, ascending: ``ranks_of(0b101) == [0, 2]``."""
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


class _Replay:
    def __init__(self, s):
        self.s = s
        self.names = s.layout.location_names()
        self.bounds, self.seg_lo, self.seg_hi = atomic_segments(s)
        self.nseg = max(len(self.bounds) - 1, 0)
        self.contrib, self.writer, self.readers = {}, {}, {}
        for b in s.inputs:
            if b not in s.buffers:
                raise ScheduleError(f"{s.algo}: input buffer {b!r} not declared (have {', '.join(s.buffers)})")
        self.ancestors = []

    def fail(self, msg):
        raise ScheduleError(f"{self.s.algo}: {msg}")

    def where(self, key, seg):
        loc, buf = key
        return f"{self.names[loc]}:{self.s.buffers[buf]} [{self.bounds[seg]}, {self.bounds[seg + 1]})"

    def op(self, i):
        return f"op {i} ({self.s.describe(i)})"

    def state(self, key):
        if key not in self.contrib:
            loc, buf = key
            is_input = loc < self.s.layout.ranks and self.s.buffers[buf] in self.s.inputs
            self.contrib[key] = [1 << loc if is_input else 0] * self.nseg
            self.writer[key] = [-1] * self.nseg
            self.readers[key] = [[] for _ in range(self.nseg)]
        return self.contrib[key]

    def ordered(self, a, i):
        return a < 0 or a == i or (self.ancestors[i] >> a) & 1

    def check_order(self, other, i, key, seg):
        if not self.ordered(other, i):
            self.fail(f"{self.op(i)} races with {self.op(other)} on {self.where(key, seg)}: neither depends on the other")

    def read(self, i, key, seg):
        mask = self.state(key)[seg]
        if mask == 0:
            self.fail(f"{self.op(i)} reads undefined data at {self.where(key, seg)}")
        self.check_order(self.writer[key][seg], i, key, seg)
        self.readers[key][seg].append(i)
        return mask

    def write(self, i, key, seg, mask):
        self.state(key)
        self.check_order(self.writer[key][seg], i, key, seg)
        for r in self.readers[key][seg]:
            self.check_order(r, i, key, seg)
        self.contrib[key][seg], self.writer[key][seg], self.readers[key][seg] = mask, i, []

    def run(self):
        s = self.s
        kind, src, dst, out = s.kind.tolist(), s.src.tolist(), s.dst.tolist(), s.out.tolist()
        in_ptr, in_buf, in_loc = s.in_ptr.tolist(), s.in_buf.tolist(), s.in_loc.tolist()
        self.check_groups()
        dep_ptr, dep_idx = s.dep_ptr.tolist(), s.dep_idx.tolist()
        seg_lo, seg_hi = self.seg_lo.tolist(), self.seg_hi.tolist()
        for i in range(s.num_ops):
            anc = 0
            for d in dep_idx[dep_ptr[i]:dep_ptr[i + 1]]:
                anc |= self.ancestors[d] | (1 << d)
            self.ancestors.append(anc)
            if kind[i] == XFER and src[i] == dst[i]:
                self.fail(f"{self.op(i)} transfers from a location to itself")
            if kind[i] == XFER and in_loc[in_ptr[i]] != src[i]:
                self.fail(f"{self.op(i)} reads its input at another location than its source")
            ins = list(zip(in_loc[in_ptr[i]:in_ptr[i + 1]], in_buf[in_ptr[i]:in_ptr[i + 1]]))
            for seg in range(seg_lo[i], seg_hi[i]):
                total = 0
                for key in ins:
                    mask = self.read(i, key, seg)
                    if total & mask:
                        self.fail(f"{self.op(i)} double counts ranks {ranks_of(total & mask)} "
                                  f"at {self.where(key, seg)}")
                    total |= mask
                self.write(i, (dst[i], out[i]), seg, total)
        self.check_expect()

    def check_groups(self):
        s = self.s
        if s.group is None:
            return
        members = np.flatnonzero(s.group >= 0)
        if not members.size:
            return
        lead = s.group[members]
        if np.any(lead > members) or np.any(s.group[lead] != lead):
            self.fail(f"{self.op(int(members[0]))}: a multicast group must be named by its first member")
        same = (s.kind[members] == XFER) & (s.kind[lead] == XFER) & (s.src[members] == s.src[lead])
        same &= (s.in_buf[s.in_ptr[members]] == s.in_buf[s.in_ptr[lead]]) & (s.out[members] == s.out[lead])
        same &= (s.lo[members] * s.den[lead] == s.lo[lead] * s.den[members])
        same &= (s.hi[members] * s.den[lead] == s.hi[lead] * s.den[members])
        for i, j, ok in zip(members.tolist(), lead.tolist(), same.tolist()):
            if not ok or sorted(s.deps(i).tolist()) != sorted(s.deps(j).tolist()):
                self.fail(f"{self.op(i)} differs from {self.op(j)}, the first copy of its multicast, "
                          f"in kind, source, buffers, span or dependencies")

    def check_expect(self):
        s = self.s
        everyone = (1 << s.layout.ranks) - 1
        position = {v: k for k, v in enumerate(self.bounds)}
        for e in s.expect:
            if not 0 <= e.loc < s.layout.num_locations:
                self.fail(f"expect location {e.loc} out of range 0..{s.layout.num_locations - 1}")
            want = everyone if e.contributors is None else sum(1 << c for c in set(e.contributors))
            key = (e.loc, s.buffers.index(e.buf))
            lo, hi, den = e.span
            if not 0 <= lo < hi <= den:
                self.fail(f"expect {self.names[e.loc]}:{e.buf} has a bad span {e.span}: need 0 <= lo < hi <= den")
            held = self.state(key)
            for seg in range(position[Fraction(lo, den)], position[Fraction(hi, den)]):
                have = held[seg]
                if have != want:
                    missing, extra = ranks_of(want & ~have), ranks_of(have & ~want)
                    detail = "undefined" if have == 0 else f"missing ranks {missing}, extra ranks {extra}"
                    self.fail(f"expect {self.where(key, seg)}: {detail}")
