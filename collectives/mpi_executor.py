"""MPI executor: runs any schedule over real MPI processes (mpi4py buffer API, no pickling) and checks it.

One MPI rank plays one GPU rank of the layout. Layout node ``n`` is ranks
``n*g .. n*g+g-1``; :func:`place` builds the node communicator and, when those
ranks really share a physical node, one ``MPI.Win.Allocate_shared`` window that
holds the node's host buffers (every socket's). If a layout node spans
physical nodes (or ``shared_memory=False``), host buffers live privately at the
node's first rank instead, and ``Placement.host_memory`` says so.

Who does what (every rank derives the same plan from the schedule):

- ``owner(loc)``: a GPU location is its rank; a host location is its node's
  first ("designated") rank.
- An XFER between a GPU and its own node's host memory in a shared window is a
  local copy by the GPU's rank. Any other XFER with both ends owned by one rank
  is a local copy by it; otherwise the source's owner posts an ``Isend`` and the
  destination's owner an ``Irecv``, tagged with the op id.
- A REDUCE runs on its location's owner with the numba kernels. Its inputs
  may live at other locations of the node (a host reduce reading the other
  socket's buffers): the owner reads them directly, which works when the
  input is the owner's own, or a host buffer of the node that the owner can
  reach (the shared window, or the designated rank's private host buffers).
  Any other input is refused before anything runs, on every rank.
- A multicast is its k XFERs, each executed as above.

An op is *started* by each of its participants (one rank for a local op, the
sender and the receiver otherwise) once that participant knows every
dependency has completed. A participant of a dependency knows from its own part
(local op done, ``Isend`` or ``Irecv`` complete). Any other rank that needs it
gets a zero-byte notification message, tagged with the dependency's op id on a
private communicator, from each of the dependency's participants on its own
node (only a node's ranks touch its buffers), or from all of them if none is
there. And the receiver of a message does not wait for the dependencies its
sender takes part in: the data cannot arrive before the sender knows them
complete. Both spare notifications that cross the network, where they queue
behind megabytes of data: on 4 emulated nodes at 300 Mbit/s, HFReduce's took
3.7 ms (median) and up to 161 ms. Shared
windows are opened with ``lock_all``: a rank calls ``Win.Sync`` before it sends
a notification and after it receives one, the MPI-3 pattern that orders shared
memory stores and loads by point-to-point synchronisation. Each rank drives its
part of the DAG with one progress loop over ``Waitsome``.

After a checked run every ``expect`` entry is compared with ``comm.Allreduce``
of the same inputs (float64 or int64, masked to the entry's contributors):
exactly for integers and max/min, within ``(k-1) eps sum|x|`` for float sums.
A mismatch raises :class:`~collectives.reference.ResultMismatch` on every rank
with the same message.

>>> import numpy as np
>>> from mpi4py import MPI
>>> from flyersim.collectives.ring import ring_allreduce
>>> where = place(MPI.COMM_WORLD, gpus_per_node=MPI.COMM_WORLD.size)
>>> x = np.arange(5, dtype=np.float32) + MPI.COMM_WORLD.rank
>>> run = Execution(ring_allreduce(where.layout()), where, x.size, x.dtype)
>>> run.load(x); run.execute(); run.check(x)
>>> bool(np.all(run.result("data") == np.arange(5) * MPI.COMM_WORLD.size + sum(range(MPI.COMM_WORLD.size))))
True
>>> run.free()
"""

from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from flyersim.collectives.kernels import check_op, reduce_into
from flyersim.collectives.reference import ResultMismatch, wrong
from flyersim.collectives.schedule import XFER, Layout, span_bounds

LOCAL, SEND, RECV = 0, 1, 2
_MPI_OP = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}


@dataclass
class Placement:
    """How ranks map to layout nodes and where host buffers live."""

    comm: object          # all ranks
    gpus_per_node: int
    node_comm: object     # ranks of my layout node
    shared: bool          # host buffers in a shared-memory window
    host_memory: str      # "shared window" or why not

    def layout(self, sockets=1):
        return Layout(nodes=self.comm.size // self.gpus_per_node, gpus_per_node=self.gpus_per_node, sockets=sockets)


def physical_node_size(comm):
    """Ranks per physical node, the nodes told apart by processor name; ValueError if nodes differ.

    The shared-memory split (COMM_TYPE_SHARED) must agree with the names, since host buffers of a
    node live in one shared window.
    """
    names = comm.allgather(MPI.Get_processor_name())
    per_name = {name: names.count(name) for name in names}
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    shared = local.size
    local.Free()
    if len(set(per_name.values())) > 1:
        raise ValueError(f"physical nodes run different rank counts ({per_name}); give gpus_per_node explicitly")
    if shared != per_name[names[comm.rank]]:
        raise ValueError(f"{names[comm.rank]} runs {per_name[names[comm.rank]]} ranks but shares memory among "
                         f"{shared}; give gpus_per_node explicitly")
    return shared


def place(comm, gpus_per_node=None, shared_memory=True):
    """Group ranks into layout nodes of ``gpus_per_node`` consecutive ranks (default: the physical nodes)."""
    g = physical_node_size(comm) if gpus_per_node is None else int(gpus_per_node)
    if g < 1 or comm.size % g:
        raise ValueError(f"gpus per node {g} does not divide the {comm.size} MPI ranks")
    node_comm = comm.Split(comm.rank // g, comm.rank)
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    first = np.array([comm.rank if local.rank == 0 else -1], np.int64)
    local.Allreduce(MPI.IN_PLACE, first, op=MPI.MAX)  # the physical node's id: its first world rank
    local.Free()
    ids = np.zeros(node_comm.size, np.int64)
    node_comm.Allgather(first, ids)
    one_node = bool(np.all(ids == ids[0]))
    ok = np.array([one_node], np.int8)
    comm.Allreduce(MPI.IN_PLACE, ok, op=MPI.MIN)
    if not shared_memory:
        how = "private at each node's first rank (shared memory disabled)"
    elif not ok[0]:
        how = "private at each node's first rank (a layout node spans physical nodes)"
    else:
        how = "shared window"
    return Placement(comm, g, node_comm, shared_memory and bool(ok[0]), how)


def owners(s, shared):
    """(sender rank, receiver rank) of every op; equal for a local op (a node's host memory is its first
    rank's; with ``shared``, a copy between a GPU and its node's host memory is the GPU's)."""
    lay = s.layout
    p = lay.ranks
    is_host_src, is_host_dst = s.src >= p, s.dst >= p
    node_src, node_dst = lay.node_of_location(s.src), lay.node_of_location(s.dst)
    snd = np.where(is_host_src, lay.rank(node_src, 0), s.src).astype(np.int64)  # a node's host: its first rank
    rcv = np.where(is_host_dst, lay.rank(node_dst, 0), s.dst).astype(np.int64)
    if shared:
        same_node = (node_src == node_dst) & (s.kind == XFER)
        d2h = same_node & ~is_host_src & is_host_dst
        h2d = same_node & is_host_src & ~is_host_dst
        snd, rcv = np.where(d2h, s.src, np.where(h2d, s.dst, snd)), np.where(d2h, s.src, np.where(h2d, s.dst, rcv))
    return snd, rcv


def _unreachable_input(s, shared):
    """First ``(op, input location)`` of a reduce whose owner cannot read that input, or None."""
    lay = s.layout
    p = lay.ranks
    op = np.repeat(np.arange(s.num_ops), np.diff(s.in_ptr))
    at, loc = s.dst[op].astype(np.int64), s.in_loc.astype(np.int64)
    node = lay.node_of_location
    reach = (loc == at) | ((loc >= p) & (node(loc) == node(at)) & ((at >= p) | shared))
    bad = np.flatnonzero((s.kind[op] != XFER) & ~reach)
    return None if not bad.size else (int(op[bad[0]]), int(loc[bad[0]]))


def _implied(s, snd, rcv, moves):
    """Per dependency entry (op i on dep j, in ``dep_idx`` order): is j implied for i's receiver, i.e. i is a
    message that carries data, its sender takes part in j (the data cannot arrive before j is done) and its
    receiver does not (a participant waits for its own part, which costs no message)?"""
    consumer = np.repeat(np.arange(s.num_ops), np.diff(s.dep_ptr))
    j, sender, receiver = s.dep_idx, snd[consumer], rcv[consumer]
    outside = (receiver != snd[j]) & (receiver != rcv[j])
    return moves[consumer] & (sender != receiver) & outside & ((sender == snd[j]) | (sender == rcv[j]))


def _notifications(s, snd, rcv, implied):
    """Unique (dep op, from rank, to rank) triples: a participant of op i that is not one of its dep j's
    (not the receiver of i where j is ``implied``) hears from j's participants on its own node, or from
    all of them if none is there (only ranks of a node touch its buffers)."""
    consumer = np.repeat(np.arange(s.num_ops), np.diff(s.dep_ptr))
    j = s.dep_idx
    node = s.layout.node_of
    rows = []
    for to, skip in ((snd[consumer], np.zeros_like(implied)), (rcv[consumer], implied)):
        outside = (to != snd[j]) & (to != rcv[j]) & ~skip
        near = (node(snd[j]) == node(to)) | (node(rcv[j]) == node(to))
        for frm in (snd[j], rcv[j]):
            tell = outside & ((node(frm) == node(to)) | ~near)
            rows.append(np.stack([j[tell], frm[tell], to[tell]], axis=1))
    return np.unique(np.concatenate(rows), axis=0) if rows else np.empty((0, 3), np.int64)


class Execution:
    """One schedule at one element count and dtype on the ranks of a :class:`Placement`.

    ``load(x)`` sets this rank's input (and poisons every other buffer when
    ``poison``), ``execute()`` runs the DAG, ``check(x)`` compares the result
    with ``comm.Allreduce``; ``free()`` releases the window.
    """

    def __init__(self, schedule, placement, count, dtype, op="sum"):
        s, comm = schedule, placement.comm
        lay = s.layout
        if lay.ranks != comm.size or lay.gpus_per_node != placement.gpus_per_node:
            raise ValueError(f"{s.algo}: layout has {lay.nodes}x{lay.gpus_per_node} GPUs but MPI runs "
                             f"{comm.size // placement.gpus_per_node}x{placement.gpus_per_node} ranks")
        if s.num_ops > comm.Get_attr(MPI.TAG_UB):
            raise ValueError(f"{s.algo}: {s.num_ops} ops exceed the MPI tag limit {comm.Get_attr(MPI.TAG_UB)}")
        if count < 1:
            raise ValueError(f"{s.algo}: need at least one element, got {count}")
        self.dtype = np.dtype(dtype)
        check_op(op, self.dtype)
        bad = _unreachable_input(s, placement.shared)
        if bad is not None:
            raise ValueError(f"{s.algo}: op {bad[0]} ({s.describe(bad[0])}) reads "
                             f"{lay.location_names()[bad[1]]}, which its executing rank cannot reach")
        self.s, self.placement, self.count, self.op = s, placement, int(count), op
        self.comm, self.me = comm, comm.rank
        self.notify_comm = comm.Dup()
        self._buffers()
        self._plan()

    # -- memory ---------------------------------------------------------------------------------------

    def _buffers(self):
        s, pl, n, me = self.s, self.placement, self.count, self.me
        lay = s.layout
        node = lay.node_of(me)
        touched = set(zip(s.dst.tolist(), s.out.tolist()))
        for i in range(s.num_ops):
            touched.update((int(loc), int(b)) for loc, b in zip(s.op_input_locs(i), s.op_inputs(i)))
        touched.update((me, s.buffers.index(name)) for name in s.inputs)
        touched.update((e.loc, s.buffers.index(e.buf)) for e in s.expect)
        mine_host = [lay.host(node, k) for k in range(lay.sockets)]
        host_keys = sorted(k for k in touched if k[0] in mine_host)
        self.bufs = {k: np.empty(n, self.dtype) for k in sorted(touched) if k[0] == me}
        self.win = None
        if pl.shared:
            nbytes = len(host_keys) * n * self.dtype.itemsize
            self.win = MPI.Win.Allocate_shared(nbytes if pl.node_comm.rank == 0 else 0, self.dtype.itemsize,
                                               comm=pl.node_comm)
            mem, _ = self.win.Shared_query(0)
            arena = np.frombuffer(mem, self.dtype, count=len(host_keys) * n) if host_keys else np.empty(0, self.dtype)
            for k, key in enumerate(host_keys):
                self.bufs[key] = arena[k * n:(k + 1) * n]
            self.win.Lock_all(MPI.MODE_NOCHECK)
        elif me == lay.rank(node, 0):
            self.bufs.update({key: np.empty(n, self.dtype) for key in host_keys})

    def load(self, x, poison=True):
        """Set this rank's input buffers to ``x``; with ``poison`` fill every other buffer with NaN / int min."""
        x = np.asarray(x)
        if x.shape != (self.count,) or x.dtype != self.dtype:
            raise ValueError(f"input must be {self.count} {self.dtype} elements, got {x.shape} {x.dtype}")
        inputs = {self.s.buffers.index(name) for name in self.s.inputs}
        if poison:
            bad = np.nan if self.dtype.kind == "f" else np.iinfo(self.dtype).min
            self._sync()
            writer = self.placement.node_comm.rank == 0 or not self.placement.shared
            for (loc, b), arr in self.bufs.items():
                if (loc == self.me and b not in inputs) or (loc != self.me and writer):
                    arr.fill(bad)
            self._sync()
            self.placement.node_comm.Barrier()
            self._sync()
        for b in inputs:
            np.copyto(self.bufs[self.me, b], x)

    def _sync(self):
        if self.win is not None:
            self.win.Sync()

    def result(self, name):
        """This rank's GPU buffer ``name``."""
        return self.bufs[self.me, self.s.buffers.index(name)]

    def free(self):
        if self.win is not None:
            self.win.Unlock_all()
            self.win.Free()
            self.win = None
        self.notify_comm.Free()

    # -- plan -----------------------------------------------------------------------------------------

    def _plan(self):
        s, me = self.s, self.me
        snd, rcv = owners(s, self.placement.shared)
        starts = span_bounds(self.count, s.lo, s.den)
        ends = span_bounds(self.count, s.hi, s.den)
        ops = self._ops = np.flatnonzero((snd == me) | (rcv == me))
        task_of = {int(i): t for t, i in enumerate(ops.tolist())}
        implied = _implied(s, snd, rcv, starts != ends)
        notes = _notifications(s, snd, rcv, implied)
        incoming = notes[notes[:, 2] == me]
        note_of = {(int(j), int(f)): k for k, (j, f, _) in enumerate(incoming.tolist())}
        tellers = {}  # dep op -> the ranks that notify me of it
        for j, f in note_of:
            tellers.setdefault(j, set()).add(f)
        self.note_src = incoming[:, :2].tolist()   # (tag, source) of each notification to receive
        outgoing = notes[notes[:, 1] == me]
        self.notify = [[] for _ in ops]           # per task: ranks to notify when it completes
        for j, _, to in outgoing.tolist():
            self.notify[task_of[j]].append(to)
        self.waiting = np.zeros(len(ops), np.int64)  # deps per task
        self.after_task = [[] for _ in ops]
        self.after_note = [[] for _ in incoming]
        self.actions = []
        for t, i in enumerate(ops.tolist()):
            for e in range(s.dep_ptr[i], s.dep_ptr[i + 1]):
                j = int(s.dep_idx[e])
                if rcv[i] == me and implied[e]:
                    continue
                if snd[j] == me or rcv[j] == me:
                    self.after_task[task_of[j]].append(t)
                    self.waiting[t] += 1
                else:
                    for frm in {int(snd[j]), int(rcv[j])} & tellers[j]:
                        self.after_note[note_of[j, frm]].append(t)
                        self.waiting[t] += 1
            self.actions.append(self._action(i, snd[i], rcv[i], int(starts[i]), int(ends[i])))

    def _action(self, i, snd, rcv, a, b):
        s, me = self.s, self.me
        ins = [self.bufs.get((int(loc), int(k))) for loc, k in zip(s.op_input_locs(i), s.op_inputs(i))]
        out = self.bufs.get((int(s.dst[i]), int(s.out[i])))
        if a == b:
            return (LOCAL, None, None)
        if snd == rcv:
            if s.kind[i] == XFER:
                return (LOCAL, np.copyto, (out[a:b], ins[0][a:b]))
            return (LOCAL, reduce_into, (out[a:b], [x[a:b] for x in ins], self.op))
        if snd == me:
            return (SEND, ins[0][a:b].view(np.uint8), (int(rcv), i))
        return (RECV, out[a:b].view(np.uint8), (int(snd), i))

    # -- run ------------------------------------------------------------------------------------------

    def execute(self):
        """Run this rank's part of the DAG to completion."""
        comm, ncomm, empty = self.comm, self.notify_comm, np.empty(0, np.uint8)
        waiting = self.waiting.copy()
        reqs, what = [], []  # active requests; what[k] is a task, or -1-k for notification k
        for k, (tag, src) in enumerate(self.note_src):
            reqs.append(ncomm.Irecv([empty, MPI.BYTE], source=src, tag=tag))
            what.append(-1 - k)
        sent_notes = []
        ready = [t for t in range(len(waiting)) if waiting[t] == 0]
        left = len(waiting)
        while True:
            while ready:
                t = ready.pop()
                kind, fn, arg = self.actions[t]
                if kind == LOCAL:
                    if fn is not None:
                        fn(*arg)
                    left -= 1
                    self._done(t, waiting, ready, sent_notes, empty)
                elif kind == SEND:
                    reqs.append(comm.Isend([fn, MPI.BYTE], dest=arg[0], tag=arg[1]))
                    what.append(t)
                else:
                    reqs.append(comm.Irecv([fn, MPI.BYTE], source=arg[0], tag=arg[1]))
                    what.append(t)
            if not reqs:
                break
            finished = MPI.Request.Waitsome(reqs)
            for k in finished:
                w = what[k]
                if w >= 0:
                    left -= 1
                    self._done(w, waiting, ready, sent_notes, empty)
                else:
                    self._sync()
                    for t in self.after_note[-1 - w]:
                        waiting[t] -= 1
                        if waiting[t] == 0:
                            ready.append(t)
            gone = set(finished)
            reqs = [r for k, r in enumerate(reqs) if k not in gone]
            what = [w for k, w in enumerate(what) if k not in gone]
        MPI.Request.Waitall(sent_notes)
        if left:
            raise RuntimeError(f"{self.s.algo}: rank {self.me} stalled with {left} ops not started (bad schedule)")

    def _done(self, t, waiting, ready, sent_notes, empty):
        if self.notify[t]:
            self._sync()
            tag = int(self._ops[t])
            sent_notes.extend(self.notify_comm.Isend([empty, MPI.BYTE], dest=to, tag=tag) for to in self.notify[t])
        for u in self.after_task[t]:
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)

    # -- check ----------------------------------------------------------------------------------------

    def check(self, x):
        """Compare every ``expect`` entry with ``comm.Allreduce`` of the inputs ``x``; raise ResultMismatch."""
        s, comm, me = self.s, self.comm, self.me
        self._sync()
        self.placement.node_comm.Barrier()
        self._sync()
        lay = s.layout
        wide = np.float64 if self.dtype.kind == "f" else np.int64
        ident = {"sum": 0, "max": -np.inf if wide is np.float64 else np.iinfo(wide).min,
                 "min": np.inf if wide is np.float64 else np.iinfo(wide).max}[self.op]
        problem = ""
        for group in sorted({e.contributors for e in s.expect}, key=lambda c: (c is not None, c or ())):
            member = group is None or me in group
            want = np.asarray(x, wide) if member else np.full(self.count, ident, wide)
            comm.Allreduce(MPI.IN_PLACE, want, op=_MPI_OP[self.op])
            mag = np.abs(np.asarray(x, np.float64)) if member else np.zeros(self.count)
            comm.Allreduce(MPI.IN_PLACE, mag, op=MPI.SUM)
            k = lay.ranks if group is None else len(group)
            for e in s.expect:
                if e.contributors != group or not self._reads(e.loc) or problem:
                    continue
                problem = self._compare(e, want, mag, k)
        flag = np.array([me if problem else comm.size], np.int64)
        comm.Allreduce(MPI.IN_PLACE, flag, op=MPI.MIN)
        if flag[0] == comm.size:
            return
        text = np.zeros(600, np.uint8)
        if me == flag[0]:
            raw = problem.encode()[:600]
            text[:len(raw)] = np.frombuffer(raw, np.uint8)
        comm.Bcast(text, root=int(flag[0]))
        raise ResultMismatch(bytes(text).rstrip(b"\0").decode(errors="replace"))

    def _reads(self, loc):
        lay = self.s.layout
        if loc < lay.ranks:
            return loc == self.me
        return self.me == int(lay.rank(lay.node_of_location(loc), 0))

    def _compare(self, e, want, mag, k):
        lo, hi, den = e.span
        a, b = int(span_bounds(self.count, lo, den)), int(span_bounds(self.count, hi, den))
        got = self.bufs[e.loc, self.s.buffers.index(e.buf)][a:b]
        bad = wrong(got, want[a:b], mag[a:b], k, self.op)
        if not bad.any():
            return ""
        j = int(np.argmax(bad))
        where = f"{self.s.layout.location_names()[e.loc]}:{e.buf} [{lo}/{den}, {hi}/{den})"
        return (f"{self.s.algo}: {where}: element {a + j} is {got[j].item()}, MPI Allreduce gives "
                f"{want[j].item()} ({int(bad.sum())} of {b - a} elements wrong, rank {self.me} of {self.comm.size})")
