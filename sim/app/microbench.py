"""Microbenchmarks behind ``flyersim calibrate``: medians over repeats, with their spread.

Every benchmark runs on all ranks at once, as a collective's steps do (so
concurrent copies share the memory system as they will in the collective).
A repeat is timed between barriers and its time is the maximum over ranks;
a :class:`Figure` keeps the median and the quartiles of the repeats.

>>> from mpi4py import MPI
>>> t = memcpy(MPI.COMM_WORLD, 1 << 16, repeats=5)
>>> 0 < t.low <= t.value <= t.high
True
>>> rate(1 << 16, t, Figure(0.0, 0.0, 0.0)).value == (1 << 16) / t.value
True
"""

from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from flyersim.collectives.kernels import reduce_into


@dataclass(frozen=True)
class Figure:
    """Median and quartiles (25th, 75th percentile) of repeated measurements."""

    value: float
    low: float
    high: float

    def __str__(self):
        return f"{self.value:.4g} (IQR {self.low:.4g} .. {self.high:.4g})"


def timed(comm, fn, repeats, warmup=2, mean=False):
    """Seconds per call of ``fn`` on every rank at once: median (with ``mean``, the mean) and quartiles over
    ``repeats``."""
    times = np.empty(repeats)
    for k in range(warmup + repeats):
        comm.Barrier()
        start = MPI.Wtime()
        fn()
        if k >= warmup:
            times[k - warmup] = MPI.Wtime() - start
    comm.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
    low, high = (float(np.percentile(times, q)) for q in (25, 75))
    return Figure(float(times.mean() if mean else np.median(times)), low, high)


def rate(nbytes, t, t0):
    """Bytes per second of moving ``nbytes`` in time ``t`` beyond the fixed cost ``t0`` (quartiles swap)."""
    return Figure(*(nbytes / max(a - t0.value, 1e-12) for a in (t.value, t.high, t.low)))


def nodes(comm):
    """``(node index of every world rank, leader world rank of every node)``: nodes by shared memory, in rank order.

    >>> from mpi4py import MPI
    >>> of, leaders = nodes(MPI.COMM_WORLD)
    >>> leaders[0], of[0]
    (0, 0)
    """
    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
    first = local.allreduce(comm.rank, op=MPI.MIN)
    local.Free()
    firsts = comm.allgather(first)
    leaders = sorted(set(firsts))
    return [leaders.index(f) for f in firsts], leaders


def rounds(k):
    """Pairings of ``k`` nodes so that every pair meets once, all pairs of a round at once (circle method).

    >>> rounds(4)
    [[(0, 3), (1, 2)], [(0, 2), (3, 1)], [(0, 1), (2, 3)]]
    >>> rounds(3)
    [[(1, 2)], [(0, 2)], [(0, 1)]]
    """
    n = k + k % 2
    ring = list(range(n))
    out = []
    for _ in range(n - 1):
        out.append([(ring[i], ring[n - 1 - i]) for i in range(n // 2) if max(ring[i], ring[n - 1 - i]) < k])
        ring = [ring[0], ring[-1], *ring[1:-1]]
    return out


def partner(comm, leaders, pairs):
    """This rank's peer in ``pairs`` of node indices if it leads one of those nodes, else -1."""
    for a, b in pairs:
        if comm.rank == leaders[a]:
            return leaders[b]
        if comm.rank == leaders[b]:
            return leaders[a]
    return -1


def train(comm, peer, messages=64, repeats=11):
    """LogGP ``(o, g)`` of 8-byte messages to ``peer`` (-1 idles), median and quartiles over ``repeats``.

    The lower rank posts ``messages`` back-to-back ``Isend`` calls and waits for
    one reply; ``o`` is its time per ``Isend`` call (the sender's overhead), ``g``
    the time per message beyond a one-message train, ``(T(m) - T(1)) / (m - 1)``
    (the gap: the rate at which the pair can move short messages).
    """
    bufs = np.zeros((messages, 8), np.uint8)
    post = np.zeros(1)

    def run(m):
        def once():
            if peer < 0:
                return
            if comm.rank < peer:
                start = MPI.Wtime()
                reqs = [comm.Isend(bufs[j], dest=peer, tag=j) for j in range(m)]
                post[0] = (MPI.Wtime() - start) / m
                MPI.Request.Waitall(reqs)
                comm.Recv(bufs[0], source=peer, tag=messages)
            else:
                MPI.Request.Waitall([comm.Irecv(bufs[j], source=peer, tag=j) for j in range(m)])
                comm.Send(bufs[0], dest=peer, tag=messages)
        return once
    posts = []

    def timed_train():
        run(messages)()
        posts.append(post[0])
    long = timed(comm, timed_train, repeats)
    short = timed(comm, run(1), repeats)
    per = np.array(posts[-repeats:])
    comm.Allreduce(MPI.IN_PLACE, per, op=MPI.MAX)
    o = Figure(*(float(np.percentile(per, q)) for q in (50, 25, 75)))
    g = Figure(*(max(a - b, 0.0) / (messages - 1) for a, b in
                 ((long.value, short.value), (long.low, short.high), (long.high, short.low))))
    return o, g


def chain(comm, a, b, hops=40, repeats=11, count=1):
    """One-way time of a ``count``-element float32 message through the MPI executor: ``hops`` transfers
    a -> b -> a ..., each waiting for the previous, per hop (median and quartiles; every rank takes part,
    only a and b move).

    Beyond a raw ``Send``/``Recv`` ping-pong it holds the executor's own cost per op (its progress loop,
    dependency bookkeeping, notifications): the per-message software cost the schedules pay.
    """
    from flyersim.collectives.mpi_executor import Execution, place
    from flyersim.collectives.schedule import ScheduleBuilder

    placement = place(comm, comm.size)  # one layout node: no host buffers are touched
    build = ScheduleBuilder(placement.layout(), "allreduce", "chain")
    last = -1
    for k in range(hops):
        src, dst = (a, b) if k % 2 == 0 else (b, a)
        last = int(build.xfer(src, dst, (0, 1, 1), deps=[last])[0])
    run = Execution(build.build(), placement, count, np.float32)
    try:
        run.load(np.zeros(count, np.float32))
        t = timed(comm, run.execute, repeats)
    finally:
        run.free()
    return Figure(t.value / hops, t.low / hops, t.high / hops)


def flight(comm, a, b, messages=8, repeats=5, count=1):
    """Time per message of ``messages`` independent ``count``-element float32 transfers a -> b posted at
    once, through the MPI executor and as raw ``Isend``/``Irecv`` + ``Waitall``: ``(executor, raw)``, each
    the median and quartiles per message (every rank takes part, only a and b move).

    Their difference is what the executor adds per message while other messages are on the wire: its
    software cost beyond what the transfers hide (a dependent :func:`chain` hides none of it).
    """
    from flyersim.collectives.mpi_executor import Execution, place
    from flyersim.collectives.schedule import ScheduleBuilder

    placement = place(comm, comm.size)
    build = ScheduleBuilder(placement.layout(), "allreduce", "flight")
    for k in range(messages):
        build.xfer(a, b, (k, k + 1, messages))
    run = Execution(build.build(), placement, count * messages, np.float32)
    out, back = np.ones((messages, count * 4), np.uint8), np.empty((messages, count * 4), np.uint8)

    def raw():
        if comm.rank == a:
            MPI.Request.Waitall([comm.Isend(out[k], dest=b, tag=k) for k in range(messages)])
        elif comm.rank == b:
            MPI.Request.Waitall([comm.Irecv(back[k], source=a, tag=k) for k in range(messages)])
    try:
        run.load(np.zeros(count * messages, np.float32))
        t = timed(comm, run.execute, repeats)
    finally:
        run.free()
    r = timed(comm, raw, repeats)
    return tuple(Figure(x.value / messages, x.low / messages, x.high / messages) for x in (t, r))


def copies(comm, a, hops=40, repeats=11):
    """Time per op of a chain of 1-element local copies through the MPI executor: ``hops`` copies by rank
    ``a`` between its GPU buffer and its node's host memory (D2H, H2D, D2H, ...), each waiting for the
    previous (median and quartiles; every rank takes part, only ``a`` copies).

    What a copy costs the executor beyond moving its bytes (its loop, the dependency bookkeeping): no
    message is sent, unlike :func:`chain`.
    """
    from flyersim.collectives.mpi_executor import Execution, place
    from flyersim.collectives.schedule import ScheduleBuilder

    placement = place(comm)  # layout nodes = physical nodes: host buffers in the node's shared window
    lay = placement.layout()
    host = lay.host(lay.node_of(a), 0)
    build = ScheduleBuilder(lay, "allreduce", "copies")
    last = -1
    for k in range(hops):
        src, dst = (a, host) if k % 2 == 0 else (host, a)
        last = int(build.xfer(src, dst, (0, 1, 1), deps=[last])[0])
    run = Execution(build.build(), placement, 1, np.float32)
    try:
        run.load(np.zeros(1, np.float32))
        t = timed(comm, run.execute, repeats)
    finally:
        run.free()
    return Figure(t.value / hops, t.low / hops, t.high / hops)


def counterpart(comm, of, pairs, cross=False):
    """``(peer, direction)`` of this rank when every rank of node a pairs with the rank of the same local
    index on node b, for ``(a, b)`` in ``pairs`` (node indices, ``of`` from :func:`nodes`); direction is +1
    on node a, -1 on node b (with ``cross``, the reverse for odd local indices: one-way streams then load
    both directions of each node's link, each rank one way); ``(-1, 0)`` for a rank outside the pairs (or
    without a counterpart).

    >>> counterpart(MPI.COMM_WORLD, [0] * MPI.COMM_WORLD.size, [])
    (-1, 0)
    """
    members = {}
    for rank, node in enumerate(of):
        members.setdefault(node, []).append(rank)
    me = of[comm.rank]
    j = members[me].index(comm.rank)
    for a, b in pairs:
        for here, there, sign in ((a, b, 1), (b, a, -1)):
            if me == here and j < len(members[there]):
                return members[there][j], -sign if cross and j % 2 else sign
    return -1, 0


def streams(comm, peer, direction, nbytes, repeats, both=True):
    """Time for every paired rank to move ``nbytes`` to its ``peer`` at once: both ways (``Isend`` + ``Irecv``),
    or with ``both=False`` one way, from the ranks of direction +1 to those of -1 (``peer`` -1 idles)."""
    if both:
        return exchange(comm, peer, nbytes, repeats)
    buf = np.ones(nbytes, np.uint8)

    def once():
        if direction > 0:
            comm.Send(buf, dest=peer)
        elif direction < 0:
            comm.Recv(buf, source=peer)
    return timed(comm, once, repeats)


def peers(comm):
    """(peer inside my physical node, peer on another physical node): world ranks, or -1 for none.

    Local rank l pairs with l ^ 1; node k pairs with node k ^ 1 at the same local rank.
    """
    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
    members = np.array(local.allgather(comm.rank))
    cross = comm.Split(local.rank, comm.rank)
    others = np.array(cross.allgather(comm.rank))
    mine, node = local.rank, cross.rank
    local.Free()
    cross.Free()
    intra = int(members[mine ^ 1]) if (mine ^ 1) < members.size else -1
    inter = int(others[node ^ 1]) if (node ^ 1) < others.size else -1
    return intra, inter


def pingpong(comm, peer, rounds=100, repeats=11, nbytes=8):
    """One-way time of an ``nbytes`` message to ``peer`` (half a round trip; -1 idles)."""
    buf = np.zeros(nbytes, np.uint8)

    def trips():
        for _ in range(rounds):
            if comm.rank < peer:
                comm.Send(buf, dest=peer)
                comm.Recv(buf, source=peer)
            elif peer >= 0:
                comm.Recv(buf, source=peer)
                comm.Send(buf, dest=peer)
    t = timed(comm, trips, repeats)
    return Figure(t.value / (2 * rounds), t.low / (2 * rounds), t.high / (2 * rounds))


def exchange(comm, peer, nbytes, repeats, count=1, mean=False):
    """Time for this rank and ``peer`` to send each other ``count`` messages of ``nbytes`` at once, all posted
    together (Isend + Irecv; -1 idles); ``mean``: see :func:`timed`."""
    out, back = np.ones((count, nbytes), np.uint8), np.empty((count, nbytes), np.uint8)

    def swap():
        if peer >= 0:
            MPI.Request.Waitall([comm.Irecv(b, source=peer) for b in back] + [comm.Isend(o, dest=peer) for o in out])
    return timed(comm, swap, repeats, mean=mean)


def memcpy(comm, nbytes, repeats):
    """Time for every rank to copy ``nbytes`` between two private arrays (``np.copyto``)."""
    src, dst = np.ones(nbytes, np.uint8), np.empty(nbytes, np.uint8)
    return timed(comm, lambda: np.copyto(dst, src), repeats)


def reduce(comm, nbytes, repeats):
    """Time for every rank to add ``nbytes`` of float32 into another array in place (the executor's kernel)."""
    n = max(nbytes // 4, 1)
    acc, add = np.ones(n, np.float32), np.ones(n, np.float32)
    reduce_into(acc, [acc, add], "sum")  # compile outside the timing
    return timed(comm, lambda: reduce_into(acc, [acc, add], "sum"), repeats)
