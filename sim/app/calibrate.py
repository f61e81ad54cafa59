"""``flyersim calibrate``: measure this MPI job's machine and write a topology TOML for ``flyersim run``.

``mpiexec -n N flyersim calibrate --out measured.toml --size 8MiB`` runs the
microbenchmarks of :mod:`flyersim.sim.app.microbench` with ``--size``-byte messages and
arrays on all ranks at once (median of ``--repeats``, quartiles kept) and
writes a single-switch cluster of N/g nodes x g GPUs (one GPU per rank):

=================  ==============================================================
parameter          measured as
=================  ==============================================================
message_latency    ``[mpi]``, per message (GPU to GPU, or between nodes): the
                   8 B one-way time of a raw ping-pong inside a node (LogGP
                   ``o + L + o``) plus what ``--size`` messages posted
                   together through the MPI executor (between two nodes'
                   leaders, else inside a node) take each beyond raw
                   ``Isend``/``Irecv`` of the same messages: the part of the
                   executor's per-message cost that other messages on the
                   wire do not hide
library_latency    the MPI library's own cost per message: the 8 B one-way time
                   inside a node (``message_latency`` without the executor's
                   part); listed, not charged: validate predicts the library's
                   Allreduce with it
copy_latency       ``[mpi]``, per local copy (a GPU to or from its node's host
                   memory: no message): a chain of dependent 1-element copies
                   through the executor, per copy
p2p_bandwidth      the node's shared-memory transport: per-direction rate of
                   simultaneous Isend/Irecv exchanges between rank pairs of a node,
                   ``size / (t - 8 B time)``, times the ranks exchanging at once
pcie_bandwidth     ``np.copyto`` of ``size`` bytes, every rank at once: each GPU's
                   link to host memory (the executor's D2H / H2D copies)
host_bandwidth     pcie_bandwidth times the ranks of a node: host memory serves
                   every rank's copy at once
reduce_bandwidth   the executor's numba sum kernel, in place, ``size`` bytes of
                   output on every rank at once, beyond its one-element time
reduce_latency     that kernel's time for one element
link_bandwidth     per direction: every rank of node 0 sending ``max(size, 4 MiB)``
                   to its counterpart on node 1 at once, one way (the other
                   ranks idle; the network has no cache regime, and a short
                   transfer measures a shaper's burst allowance instead of its
                   sustained rate: with a 256 KiB tbf bucket, 128 KiB
                   exchanges ran at twice the 1 Gbit/s line rate)
nic_bandwidth      both directions together: every rank of nodes 0 and 1
                   sending one way to its counterpart at once, ranks of odd
                   local index the other way (each rank one way, both
                   directions of each NIC loaded; with one rank per node an
                   exchange, = pair_bandwidth), at least link_bandwidth; a
                   full-duplex NIC gives 2 x link_bandwidth (the convention
                   of :mod:`flyersim.sim.routes`)
pair_bandwidth     ``[mpi]``, both directions together: every rank of nodes 0
                   and 1 exchanging messages of ``--pair-size`` bytes (default
                   ``--size``; a train of them, posted at once, of at least
                   1 MiB in all) with its counterpart at once (``Isend`` +
                   ``Irecv``, each rank both ways): what the transport
                   carries between two hosts that exchange messages of that
                   size, taken by every message between those two nodes
nic_latency        half the 8 B one-way time between node leaders beyond the
                   one inside a node
switch_bandwidth   with 3 nodes or more, one switch: everything the network
                   carried at once when every rank of every node sent to its
                   counterpart on a partner node (odd local ranks the other
                   way), all pairs of a round at once, median of the rounds
                   that pair every node with every other; the switch's pool,
                   all directions together
uplink_bandwidth   with ``--leaf-size K``: per direction, every rank of leaf 0's
                   nodes sending to its counterpart on leaf 1's at once; written
                   as one spine link of that rate per leaf (and no switch pool)
=================  ==============================================================

Exchanges and one-way traffic are measured apart because the emulated nodes
(``tests/cluster``, MPICH over TCP) carry far less when two nodes exchange than
when each rank sends one way: at 300 Mbit/s per direction, 36 MB/s one way,
40-49 MB/s in all when nodes 0 and 1 exchange 4 MiB or more per rank pair, while a ring (each rank sending
to the next node and receiving from the previous, on other ranks) moved 32 MB/s
each way through every node's link at once, and nodes 0 and 1 carried 68 MB/s in
all when half their ranks sent each way (each rank one way). So the NIC's pool
is measured with each rank one way, and an exchange's lower figure is a pool of
the pair of nodes (``pair_bandwidth``, in ``[mpi]``: a property of the
transport, not of a wire) that every message between those two nodes takes:
Rabenseifner's exchanges meet it, a ring over three nodes or more (one way
between each pair of nodes) does not; on two nodes of one rank each a ring's
steps are exchanges between the one pair and meet it (with two ranks each, one
rank sends each way: the NIC's pool).

What an exchange carries depends on its message size (and on how many rank
pairs exchange at once), so ``pair_bandwidth`` is measured at the size of the
messages the collectives exchange between two nodes, ``--pair-size``, not at a
fixed 4 MiB; ``flyersim validate`` measures it per schedule, at each size and
number of rank pairs with which that schedule exchanges between nodes
(:func:`exchange_rate`). One connection per rank pair carried the duplex rate
with messages up to 2 MiB and far less from 4 MiB on (each row the total of
both directions, median of 5-7 exchanges, load 7-9):

=========================  =====  =====  ===========  =====  ======
emulated nodes             1 MiB  2 MiB  4 MiB        8 MiB  16 MiB
=========================  =====  =====  ===========  =====  ======
2 x 1 rank, 200 Mbit/s     49.5   -      46.9 / 24.7  -      24.1
4 x 2 ranks, 300 Mbit/s    73.0   70.6   45.3         47.9   -
=========================  =====  =====  ===========  =====  ======

(MB/s, both directions together; with 2 ranks per node, two streams each
way; one-way streams carried the line rate, 23.9 and 36 MB/s, at every size;
the 4 MiB exchange between two one-rank nodes was bimodal, 24.7 in one run,
46.9 in another.) A 4 MiB exchange therefore made a two-node ring of 2 MiB, whose
1 MiB steps ran at the duplex rate, 84 % too slow; with the pair measured at
1 MiB it was predicted within 1 % in four runs at load 3 (87.6-88.1 ms
measured, a raw-MPI ring of the same steps 87.8 ms), but 12.8 % too fast in
one at load 8, where the executor's ring took 99.7 ms and raw MPI 87.5-90.6
(the executor alternated between the two). Trains of at least 1 MiB: one 256 KiB
exchange carried 51.8 MB/s at 200 Mbit/s, past the 2 x 25 MB/s line rate (the
emulation's 256 KiB tbf bucket).

It is the message size, not how long the exchange lasts: on a quiet machine
(4 x 2 ranks, 300 Mbit/s) trains of 256 KiB, 1 MiB and 2 MiB messages, 16 MiB
per rank pair each way, carried 70-71 MB/s in all, four 4 MiB messages 48. And
it is the MPI transport, not the emulated network: raw TCP between the same
two namespaces, one connection per rank pair carrying both directions from one
thread, carried 69-71 MB/s at 2, 8 and 32 MiB. MPICH's
``MPIR_CVAR_CH4_OFI_RNDV_PROTOCOL`` (direct, pipeline), a 1 MiB eager
threshold, libfabric's zero-copy sends or its ``sockets`` provider, no progress
throttle, MPICH's auto-progress, a 3 ms tbf queue and 128 MiB socket buffers
all left it at 37-63 MB/s from 4 MiB on.

Every network figure moves all ranks of the nodes involved at once, as a
collective does: on emulated nodes (``tests/cluster``) a single pair of ranks
exchanging reached about half what a link carries one way (59 against 112 MB/s
per direction on a 1 Gbit/s link, 8 ranks on 2 cores), and two pairs through
one link 80, so a one-pair exchange as the link's capacity made every schedule
that loads a node's link unevenly (trees: HFReduce, hier) too slow. All-pairs
rounds carried 234-254 MB/s in all, the two cores' limit on the emulation's
TCP traffic, which the switch pool holds; on a real non-blocking switch it is
the sum of the links and never binds.

With one physical node the network figures are the intra-node ones (the
"nodes" share memory).

**Per-op software costs, by op kind.** The executor runs a transfer between
two ranks as a message (``Isend``/``Irecv``, its progress loop) and a GPU's
copy to or from its node's host memory as a local ``np.copyto`` with no
message, so the two are measured apart (``message_latency``,
``copy_latency``) and charged per op by kind (:func:`flyersim.sim.routes.op_cost`),
not per GPU end: a host-to-host message between nodes (HFReduce's network
stage) pays a whole message, a local copy no part of one. A message's cost is
a delay before its bytes move, in series with them as LogGP has it for a
message that waits for the one before (``o + L + k G + o``); it holds no
wire, so other transfers use the links meanwhile. What the library (and the
kernel below it) does while messages are on the wire is not a cost in series:
every schedule validated keeps several messages in flight (a ring step sends
one and receives one on each rank), so the cost charged is measured with
messages in flight, a few ``--size`` messages posted at once through the
executor minus the same as raw ``Isend`` calls. A chain of dependent messages
(nothing else in flight) hides none of it and is written as a comment: on 4
emulated nodes x 2 ranks at 300 Mbit/s under load, 2 MiB messages cost 3.9 ms
each in flight (IQR 1.7-4.6) and 5.2 ms per dependent hop (3.5-6.1). LogGP's gap ``g`` per short
message is measured and written as a comment, not used: ``g`` (the least
interval between two sends of one rank) only matters to trains of messages
shorter than ``g`` x bandwidth (about 10 KiB on the emulated nodes: ``g`` up to
0.08 ms at 110 MB/s), while every schedule validated sends one message per
step of at least S / ranks.

Copies run at very different speeds when their buffers fit in cache and when
they stream from DRAM, and a topology has one bandwidth per resource. So the
cache regime is an explicit input, ``--size``: the TOML is valid for
collectives whose per-step messages are about that size, and says so.
``flyersim validate`` calibrates once per message size for this reason.
"""

import sys

from flyersim.sim.app.args import size
from flyersim.sim.outputs import atomic_path, check_writable
from flyersim.topologies.units import format_size


OVERLAP_SIZE = 64 << 10  # messages above this: fewer hops in the chain and ping-pong of message_latency
NETWORK_SIZE = 4 << 20  # at least this much per one-way network stream: a sustained rate, past any burst allowance
PAIR_FLOOR = 1 << 20  # at least this much per stream of a pair exchange: past the emulation's 256 KiB tbf bucket (docstring)
TRAIN_MESSAGE = PAIR_FLOOR // 64  # the smallest message of an exchange train: at most 64 messages per stream


def add_parser(sub, positive_int):
    """Register ``flyersim calibrate``."""
    p = sub.add_parser("calibrate", help="measure MPI latency/bandwidth, memcpy and reduce speed; write a topology TOML")
    p.add_argument("--out", required=True, metavar="FILE.toml", help="where to write the topology")
    p.add_argument("--size", "--sizes", dest="size", type=size, default="8MiB",
                   help="message and array size of the bandwidth benchmarks (default 8MiB)")
    p.add_argument("--pair-size", type=size, metavar="SIZE",
                   help="message size of the exchanges between two nodes that measure [mpi] pair_bandwidth "
                        "(default --size; in trains of at least 1MiB per rank pair): the size of the messages "
                        "the collectives exchange between nodes")
    p.add_argument("--repeats", type=positive_int, default=15, help="repeats per benchmark, median kept (default 15)")
    p.add_argument("--gpus-per-node", type=positive_int,
                   help="ranks per node of the written cluster (default: ranks per physical node)")
    p.add_argument("--leaf-size", type=positive_int, metavar="K",
                   help="nodes per leaf switch behind shared uplinks (nodes 0..K-1 on the first leaf, ...): "
                        "measure the uplink and write a two-level fat tree")
    p.set_defaults(func=command)


def command(args):
    """Entry point (every rank runs it); rank 0 writes ``args.out`` and prints the figures."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    try:
        if args.size < 4:
            raise ValueError(f"--size must be at least 4 B (one float32), got {format_size(args.size)}")
        g = gpus_per_node(comm, args.gpus_per_node)
        check_writable(args.out, "--out")
    except ValueError as err:
        if comm.rank == 0:
            print(f"flyersim: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    try:
        params, notes = measure(comm, args.size, args.repeats, args.leaf_size, args.pair_size)
        leaf = "" if args.leaf_size is None else f" --leaf-size {args.leaf_size}"
        if args.pair_size is not None:
            leaf += f" --pair-size {format_size(args.pair_size)}"
        text = toml(params, comm.size // g, g, f"mpiexec -n {comm.size} flyersim calibrate --size "
                    f"{format_size(args.size)} --repeats {args.repeats}{leaf}", notes, args.leaf_size)
    except ValueError as err:  # the same on every rank
        if comm.rank == 0:
            print(f"flyersim: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    if comm.rank == 0:
        with atomic_path(args.out) as tmp:
            tmp.write_text(text)
        for name, (fig, unit, _) in params.items():
            print(f"{name:>17} = {fig} {unit}")
        for note in notes:
            print(f"# {note}")
        print(f"# topology written to {args.out}", file=sys.stderr)


def gpus_per_node(comm, asked=None):
    """GPUs per node of the written cluster: ``asked`` or the ranks per physical node; ValueError if it cannot tile."""
    from flyersim.collectives.mpi_executor import physical_node_size

    if comm.size == 1:
        print("flyersim: note: 1 MPI rank: no point-to-point figures (start with mpiexec -n N)", file=sys.stderr)
    g = asked or physical_node_size(comm)
    if comm.size % g:
        raise ValueError(f"gpus per node {g} does not divide the {comm.size} MPI ranks")
    return g


def measure(comm, size, repeats, leaf_size=None, pair_size=None, chain=True):
    """Topology parameters: name -> (Figure, unit, how measured); identical on every rank.

    ``library_latency`` is ``message_latency`` without the executor's part: the MPI library's own cost
    per message, for predicting the library's collectives (``validate``'s ``mpi`` rows); the topology
    lists it among its parameters but charges ``message_latency``.

    ``chain``: also time a dependent chain of ``size`` messages through the executor and a raw ping-pong
    of them, for a note only (about two minutes at 64 MiB over a 300 Mbit/s link).

    ``pair_size``: bytes per message of the exchange trains that measure ``pair_bandwidth`` (default
    ``size``; see :func:`exchange_rate`); 0: not measured (``validate`` measures it per schedule), but with
    one rank per node the NIC's duplex is still such an exchange, of ``size``.

    ``leaf_size``: nodes per leaf switch behind a shared uplink (nodes 0..K-1 on the first leaf, ...);
    then ``uplink_bandwidth`` is measured too and :func:`toml` writes a two-level fat tree.

    Also ``notes``: figures measured but not in the model (LogGP's ``g``), as text.
    """
    from flyersim.collectives.mpi_executor import physical_node_size
    from flyersim.sim.app import microbench as mb  # mpi4py and numba: only when measuring

    per_node = physical_node_size(comm)
    of, leaders = mb.nodes(comm)
    intra, _ = mb.peers(comm)
    pairs = per_node - per_node % 2  # ranks of a node that have an exchange partner
    zero = mb.Figure(0.0, 0.0, 0.0)
    p, notes = {}, []
    lat_intra = mb.pingpong(comm, intra) if pairs else zero
    if len(leaders) > 1:  # LogGP o and g between two nodes' leaders, the others idle
        a, b = leaders[0], leaders[1]
        where = "between the leaders of two nodes"
    else:
        a, b = 0, comm.bcast(intra)  # rank 0 and its partner in the node (-1: none)
        where = "between two ranks of a node"
    peer = b if comm.rank == a else a if comm.rank == b else -1
    o, g = mb.train(comm, peer) if b >= 0 else (zero, zero)
    few = size > OVERLAP_SIZE  # long messages: a few are enough and take long
    chain = chain and b >= 0
    raw = mb.pingpong(comm, peer, 3 if few else 100, 5 if few else 11, nbytes=size) if chain else zero
    hop = mb.chain(comm, a, b, 6 if few else 40, 5 if few else 11, count=size // 4) if chain else zero
    along, alone = mb.flight(comm, a, b, 4 if few else 16, 5, count=size // 4) if b >= 0 else (zero, zero)
    local = mb.copies(comm, a)
    if pairs:
        x = mb.rate(size, mb.exchange(comm, intra, size, repeats), lat_intra)
        p["p2p_bandwidth"] = (_scale(x, pairs), "B/s",
                              f"{pairs} x per-direction rate of Isend/Irecv exchanges of {format_size(size)} "
                              f"between rank pairs of a node, all at once, beyond the 8 B time")
    p["message_latency"] = (_plus(lat_intra, _minus(along, alone)), "s",
                            f"per message: the 8 B one-way time in a node plus what {format_size(size)} messages "
                            f"in flight together through the MPI executor take each beyond raw Isends ({where})")
    p["library_latency"] = (lat_intra, "s", "per message of the MPI library itself: the 8 B one-way time in a "
                                            "node: message_latency without the executor's part (unused by the "
                                            "topology; validate predicts the library's Allreduce with it)")
    if chain:
        notes.append(f"a dependent chain of {format_size(size)} messages through the executor, per hop beyond a "
                     f"raw ping-pong ({where}): {_minus(hop, raw)}; not charged (the schedules keep other "
                     f"messages in flight)")
    p["copy_latency"] = (local, "s", "per local copy: a chain of 1-element copies between a GPU and host memory "
                                     "through the MPI executor, per copy")
    notes.append(f"LogGP o (time per Isend call in a train of 64 8 B messages, {where}): {o}; inside "
                 f"message_latency")
    notes.append(f"LogGP g (gap per 8 B message in a train, {where}): {g}; not modelled")
    copy = mb.rate(size, mb.memcpy(comm, size, repeats), zero)
    p["pcie_bandwidth"] = (copy, "B/s", f"np.copyto of {format_size(size)} on every rank at once")
    p["host_bandwidth"] = (_scale(copy, per_node), "B/s", f"{per_node} x pcie_bandwidth (every rank copies at once)")
    one = mb.reduce(comm, 4, repeats)
    p["reduce_bandwidth"] = (mb.rate(size, mb.reduce(comm, size, repeats), one), "B/s",
                             f"numba float32 sum in place, {format_size(size)} output on every rank at once, "
                             f"beyond the one-element time")
    p["reduce_latency"] = (one, "s", "numba float32 sum of one element")
    if len(leaders) > 1:
        lat_inter = mb.pingpong(comm, mb.partner(comm, leaders, [(0, 1)]))
        big = max(size, NETWORK_SIZE)
        what = format_size(big)
        peer, way = mb.counterpart(comm, of, [(0, 1)])
        n = comm.allreduce(int(way > 0))  # streams from node 0 to node 1
        link = mb.rate(n * big, mb.streams(comm, peer, way, big, repeats, both=False), lat_inter)
        p["link_bandwidth"] = (link, "B/s", f"per direction: every rank of node 0 sending {what} to its counterpart "
                                            f"on node 1 at once, one way ({n} streams, the others idle), beyond "
                                            f"the 8 B time")
        if pair_size != 0 or per_node == 1:
            both, how = exchange_rate(comm, of, size if pair_size is None else pair_size, n, repeats)
            if pair_size != 0:
                p["pair_bandwidth"] = (both, "B/s", how)
        if per_node > 1:  # each rank one way, half of them each way: the NICs' duplex, not an exchange's
            peer, way = mb.counterpart(comm, of, [(0, 1)], cross=True)
            duplex = mb.rate(n * big, mb.streams(comm, peer, way, big, repeats, both=False), lat_inter)
            how = (f"both directions together: every rank of nodes 0 and 1 sending {what} one way to its "
                   f"counterpart at once, ranks of odd local index the other way ({n} streams), at least "
                   f"link_bandwidth")
        else:
            duplex, how = both, f"both directions together: {how.removeprefix('[mpi] both directions together: ')} " \
                                "(one rank per node), at least link_bandwidth"
        p["nic_bandwidth"] = (_at_least(duplex, link), "B/s", how)
        p["nic_latency"] = (_scale(_minus(lat_inter, lat_intra), 0.5), "s",
                            "half the 8 B one-way time between node leaders beyond the one inside a node")
        if leaf_size:
            k = leaf_size
            if len(leaders) % k or len(leaders) == k:
                raise ValueError(f"--leaf-size {k} does not split the {len(leaders)} nodes into several leaves")
            peer, way = mb.counterpart(comm, of, [(i, i + k) for i in range(k)])
            m = comm.allreduce(int(way > 0))
            up = mb.rate(m * big, mb.streams(comm, peer, way, big, repeats, both=False), lat_inter)
            p["uplink_bandwidth"] = (up, "B/s", f"per direction: every rank of nodes 0..{k - 1} (leaf 0) sending "
                                                f"{what} to its counterpart on nodes {k}..{2 * k - 1} at once, one "
                                                f"way ({m} streams): what leaf 0's uplinks carry")
        elif len(leaders) > 2:
            carried = []
            for pairs in mb.rounds(len(leaders)):
                peer, way = mb.counterpart(comm, of, pairs, cross=True)
                m = comm.allreduce(int(way > 0))
                carried.append(mb.rate(m * big, mb.streams(comm, peer, way, big, repeats, both=False), lat_inter))
            middle = sorted(carried, key=lambda f: f.value)[len(carried) // 2]
            p["switch_bandwidth"] = (middle, "B/s",
                                     f"all directions together: every rank of every node sending {what} one way "
                                     f"to its counterpart on a partner node (odd local ranks the other way), all "
                                     f"pairs of a round at once (the median of {len(carried)} rounds that pair "
                                     f"every node with every other)")
    else:
        link = p.get("p2p_bandwidth", (copy,))[0]
        p["link_bandwidth"] = (link, "B/s", "one physical node: the job's nodes talk through shared memory "
                                            "(= p2p_bandwidth)")
        p["nic_bandwidth"] = (_scale(link, 2), "B/s", "2 x link_bandwidth (a NIC's pool counts both directions)")
        p["nic_latency"] = (zero, "s", "one physical node: no network hop")
    return p, notes


def exchange_rate(comm, of, nbytes, streams, repeats):
    """``(Figure, how)``: ``pair_bandwidth`` for messages of ``nbytes``, both directions together: the first
    ``streams`` ranks of node 0 each exchanging a train of ``nbytes`` messages (at least :data:`PAIR_FLOOR` in
    all, posted at once) with their counterparts on node 1; the whole time (the 8 B one-way time between
    nodes is under 1 % of it on the emulated nodes), its mean over the repeats rather than the median: the
    time of a train of 4 MiB messages or more is bimodal on the emulated nodes (quartiles 41-49 MB/s,
    47-61), and a collective's time sums its steps', each drawn from that distribution, so the steps enter
    it with their mean. Messages of at least :data:`TRAIN_MESSAGE`: a train of
    smaller ones measures per-message costs (``message_latency``), not a rate. Every rank calls it; ``of`` is
    :func:`flyersim.sim.app.microbench.nodes`'s first result."""
    from flyersim.sim.app import microbench as mb

    peer, way = mb.counterpart(comm, of, [(0, 1)])
    if peer >= 0 and sum(1 for r in range(comm.rank) if of[r] == of[comm.rank]) >= streams:
        peer = -1  # beyond the first streams ranks of its node
    nbytes = max(nbytes, TRAIN_MESSAGE)
    count = -(-PAIR_FLOOR // nbytes)
    t = mb.exchange(comm, peer, nbytes, repeats, count, mean=True)
    k = comm.allreduce(int(peer >= 0 and way > 0))  # streams each way
    fig = mb.rate(2 * k * count * nbytes, t, mb.Figure(0.0, 0.0, 0.0))
    train = f"{count} x {format_size(nbytes)}" if count > 1 else format_size(nbytes)
    return fig, (f"[mpi] both directions together: {k} rank(s) of node 0 each exchanging {train} with "
                 f"its counterpart on node 1 at once ({2 * k} streams)")


def _minus(a, b):
    """``a - b`` (at least 0), its range from the quartiles that bound it."""
    from flyersim.sim.app.microbench import Figure

    return Figure(max(a.value - b.value, 0.0), max(a.low - b.high, 0.0), max(a.high - b.low, 0.0))


def _at_least(a, b):
    """``a``, each of its figures raised to at least ``b``'s."""
    from flyersim.sim.app.microbench import Figure

    return Figure(max(a.value, b.value), max(a.low, b.low), max(a.high, b.high))


def _plus(a, b):
    from flyersim.sim.app.microbench import Figure

    return Figure(a.value + b.value, a.low + b.low, a.high + b.high)


def _scale(f, k):
    from flyersim.sim.app.microbench import Figure

    return Figure(f.value * k, f.low * k, f.high * k)


def _value(fig, unit):
    return f'"{fig.value / 1e6:.4f}MB/s"' if unit == "B/s" else f'"{fig.value * 1e9:.1f}ns"'


def toml(params, nodes, gpus, command, notes=(), leaf_size=None):
    """Topology text from ``measure``'s parameters; each line says how it was measured and its spread.

    The network is one switch, or with ``leaf_size`` (and a measured ``uplink_bandwidth``) a two-level
    fat tree of leaves of ``leaf_size`` nodes under one spine link each of ``uplink_bandwidth``.

    >>> from flyersim.sim.app.microbench import Figure
    >>> f = {k: (Figure(2e9, 1e9, 3e9), "B/s", "test") for k in ("p2p_bandwidth", "pcie_bandwidth",
    ...      "host_bandwidth", "reduce_bandwidth", "nic_bandwidth", "link_bandwidth")}
    >>> f.update({k: (Figure(1e-6, 1e-6, 1e-6), "s", "test") for k in
    ...      ("message_latency", "copy_latency", "reduce_latency", "nic_latency")})
    >>> import tomllib; tomllib.loads(toml(f, 2, 2, "cmd"))["parameters"]["message_latency"]
    '1000.0ns'
    """
    lines = [f"{name} = {_value(fig, unit)}".ljust(34) + f"# {how}; median {fig}"
             for name, (fig, unit, how) in params.items()]
    if "p2p_bandwidth" not in params:  # one rank per node: no path between GPUs of a node
        copy = _value(params["pcie_bandwidth"][0], "B/s")
        lines += [f"p2p_bandwidth = {copy}".ljust(34) + "# one rank per node: no GPU-to-GPU path (= pcie_bandwidth)"]
    parameters = "\n".join(lines)
    measured = "".join(f"# {note}\n" for note in notes)
    pair = 'pair_bandwidth = "$pair_bandwidth"\n' if "pair_bandwidth" in params else ""
    return f"""# Written by: {command}
# Each parameter: how it was measured, then the median and quartiles over the repeats. See sim/app/calibrate.py.
# Capacity convention (sim/routes.py): a link's bandwidth is per direction, a node's pool (the NIC's
# nic_bandwidth) counts both directions together.
{measured}name = "measured"
description = "calibrated by flyersim calibrate on this MPI job"
nodes = {nodes}

[parameters]
{parameters}

[server]
gpus = {gpus}
sockets = 1
gpu = {{ reduce_bandwidth = "$reduce_bandwidth", reduce_latency = "$reduce_latency" }}

[[server.device]]
name = "cpu0"
kind = "cpu"
reduce_bandwidth = "$reduce_bandwidth"
reduce_latency = "$reduce_latency"
p2p_bandwidth = "$p2p_bandwidth"

[[server.device]]
name = "host0"
kind = "memory"
engine = "cpu0"

[[server.device]]
name = "nic0"
kind = "nic"
bandwidth = "$nic_bandwidth"
latency = "$nic_latency"

[[server.link]]                 # no latency of its own: a message's is message_latency, a copy's copy_latency
ends = ["gpu*", "cpu0"]
bandwidth = "$pcie_bandwidth"
latency = "0ns"
kind = "pcie"

[[server.link]]
ends = ["nic0", "cpu0"]
bandwidth = "$link_bandwidth"
latency = "0ns"
kind = "pcie"

[[server.link]]
ends = ["host0", "cpu0"]
bandwidth = "$host_bandwidth"
latency = "0ns"
kind = "memory"

[mpi]                          # software cost per op, by kind (sim/routes.py op_cost)
message_latency = "$message_latency"
copy_latency = "$copy_latency"
{pair}
{_network(params, nodes, leaf_size)}"""


def _network(params, nodes, leaf_size):
    """The ``[network]`` table: one switch (its pool ``switch_bandwidth`` if measured), or leaves of
    ``leaf_size`` nodes each under one spine link of the measured ``uplink_bandwidth`` per direction."""
    if not leaf_size or "uplink_bandwidth" not in params:
        pool = 'switch_bandwidth = "$switch_bandwidth"\n' if "switch_bandwidth" in params else ""
        return f"""[network]
shape = "single-switch"
link_bandwidth = "$link_bandwidth"
{pool}link_latency = "0ns"
switch_latency = "0ns"
radix = {max(nodes, 2)}
"""
    if nodes // leaf_size > leaf_size + 1:
        raise ValueError(f"{nodes // leaf_size} leaves of {leaf_size} nodes do not fit one fat-tree zone of "
                         f"radix {leaf_size + 1}")
    return f"""[network]                      # leaves of {leaf_size} nodes, one spine link each at uplink_bandwidth
shape = "fat-tree"
levels = 2
radix = {leaf_size + 1}
oversubscription = {leaf_size}
zones = 1
link_bandwidth = "$link_bandwidth"
uplink_bandwidth = "$uplink_bandwidth"
link_latency = "0ns"
switch_latency = "0ns"
"""
