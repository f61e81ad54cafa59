"""``flyersim calibrate``: measure this MPI job's machine and write a topology TOML for ``flyersim run``.

``mpiexec -n N flyersim calibrate --out measured.toml --size 8MiB`` runs the
microbenchmarks of :mod:`flyersim.sim.app.microbench` with ``--size``-byte messages and
arrays on all ranks at once (median of ``--repeats``, quartiles kept) and
writes a single-switch cluster of N/g nodes x g GPUs (one GPU per rank):

=================  ==============================================================
parameter          measured as
=================  ==============================================================
gpu_latency        half the one-way time of an 8 B MPI ping-pong inside a node
                   (a GPU-to-GPU path has two GPU ends)
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
nic_bandwidth /    exchanges / ping-pong between ranks of two physical nodes; on
nic_latency        one machine, the intra-node figures (the "nodes" share memory)
=================  ==============================================================

Copies run at very different speeds when their buffers fit in cache and when
they stream from DRAM, and a topology has one bandwidth per resource. So the
cache regime is an explicit input, ``--size``: the TOML is valid for
collectives whose per-step messages are about that size, and says so.
``flyersim validate`` calibrates once per message size for this reason.
"""

import sys

from flyersim.topologies.units import format_size, parse_size


def add_parser(sub, positive_int):
    """Register ``flyersim calibrate``."""
    p = sub.add_parser("calibrate", help="measure MPI latency/bandwidth, memcpy and reduce speed; write a topology TOML")
    p.add_argument("--out", required=True, metavar="FILE.toml", help="where to write the topology")
    p.add_argument("--size", default="8MiB", help="message and array size of the bandwidth benchmarks (default 8MiB)")
    p.add_argument("--repeats", type=positive_int, default=15, help="repeats per benchmark, median kept (default 15)")
    p.add_argument("--gpus-per-node", type=positive_int,
                   help="ranks per node of the written cluster (default: ranks per physical node)")
    p.set_defaults(func=command)


def command(args):
    """Entry point (every rank runs it); rank 0 writes ``args.out`` and prints the figures."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    try:
        size = parse_size(args.size)
        if size < 4:
            raise ValueError(f"--size must be at least 4 B (one float32), got {args.size!r}")
        g = gpus_per_node(comm, args.gpus_per_node)
    except ValueError as err:
        if comm.rank == 0:
            print(f"flyersim: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    params = measure(comm, size, args.repeats)
    if comm.rank == 0:
        with open(args.out, "w") as f:
            f.write(toml(params, comm.size // g, g, f"mpiexec -n {comm.size} flyersim calibrate --size "
                         f"{format_size(size)} --repeats {args.repeats}"))
        for name, (fig, unit, _) in params.items():
            print(f"{name:>17} = {fig} {unit}")
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


def measure(comm, size, repeats):
    """Topology parameters: name -> (Figure, unit, how measured); identical on every rank."""
    from flyersim.collectives.mpi_executor import physical_node_size
    from flyersim.sim.app import microbench as mb  # mpi4py and numba: only when measuring

    per_node = physical_node_size(comm)
    intra, inter = mb.peers(comm)
    pairs = per_node - per_node % 2  # ranks of a node that have an exchange partner
    zero = mb.Figure(0.0, 0.0, 0.0)
    p = {}
    lat_intra = mb.pingpong(comm, intra) if pairs else zero
    if pairs:
        x = mb.rate(size, mb.exchange(comm, intra, size, repeats), lat_intra)
        p["p2p_bandwidth"] = (_scale(x, pairs), "B/s",
                              f"{pairs} x per-direction rate of Isend/Irecv exchanges of {format_size(size)} "
                              f"between rank pairs of a node, all at once, beyond the 8 B time")
        p["gpu_latency"] = (_scale(lat_intra, 0.5), "s", "half the one-way time of an 8 B ping-pong in a node")
    copy = mb.rate(size, mb.memcpy(comm, size, repeats), zero)
    p["pcie_bandwidth"] = (copy, "B/s", f"np.copyto of {format_size(size)} on every rank at once")
    p["host_bandwidth"] = (_scale(copy, per_node), "B/s", f"{per_node} x pcie_bandwidth (every rank copies at once)")
    one = mb.reduce(comm, 4, repeats)
    p["reduce_bandwidth"] = (mb.rate(size, mb.reduce(comm, size, repeats), one), "B/s",
                             f"numba float32 sum in place, {format_size(size)} output on every rank at once, "
                             f"beyond the one-element time")
    p["reduce_latency"] = (one, "s", "numba float32 sum of one element")
    if comm.size > per_node:
        lat_inter = mb.pingpong(comm, inter)
        p["nic_bandwidth"] = (mb.rate(size, mb.exchange(comm, inter, size, repeats), lat_inter), "B/s",
                              f"per-direction rate of Isend/Irecv exchanges of {format_size(size)} "
                              f"between ranks of two physical nodes, beyond the 8 B time")
        p["nic_latency"] = (mb.Figure(*(max(a - b, 0.0) / 2 for a, b in
                                        zip(_tuple(lat_inter), _tuple(lat_intra)))), "s",
                            "half the 8 B one-way time between nodes beyond the one inside a node")
    else:
        p["nic_bandwidth"] = (p.get("p2p_bandwidth", (copy,))[0], "B/s",
                              "one physical node: the job's nodes talk through shared memory (= p2p_bandwidth)")
        p["nic_latency"] = (zero, "s", "one physical node: no network hop")
    return p


def _tuple(f):
    return f.value, f.low, f.high


def _scale(f, k):
    from flyersim.sim.app.microbench import Figure

    return Figure(f.value * k, f.low * k, f.high * k)


def _value(fig, unit):
    return f'"{fig.value / 1e6:.1f}MB/s"' if unit == "B/s" else f'"{fig.value * 1e9:.1f}ns"'


def toml(params, nodes, gpus, command):
    """Topology text from ``measure``'s parameters; each line says how it was measured and its spread.

    >>> from flyersim.sim.app.microbench import Figure
    >>> f = {k: (Figure(2e9, 1e9, 3e9), "B/s", "test") for k in
    ...      ("p2p_bandwidth", "pcie_bandwidth", "host_bandwidth", "reduce_bandwidth", "nic_bandwidth")}
    >>> f.update({k: (Figure(1e-6, 1e-6, 1e-6), "s", "test") for k in ("gpu_latency", "reduce_latency", "nic_latency")})
    >>> import tomllib; tomllib.loads(toml(f, 2, 2, "cmd"))["parameters"]["gpu_latency"]
    '1000.0ns'
    """
    lines = [f"{name} = {_value(fig, unit)}".ljust(34) + f"# {how}; median {fig}"
             for name, (fig, unit, how) in params.items()]
    if "p2p_bandwidth" not in params:  # one rank per node: no path between GPUs of a node
        copy = _value(params["pcie_bandwidth"][0], "B/s")
        lines += [f"p2p_bandwidth = {copy}".ljust(34) + "# one rank per node: no GPU-to-GPU path (= pcie_bandwidth)",
                  'gpu_latency = "0ns"'.ljust(34) + "# one rank per node: no GPU-to-GPU path in a node"]
    parameters = "\n".join(lines)
    return f"""# Written by: {command}
# Each parameter: how it was measured, then the median and quartiles over the repeats. See sim/calibrate.py.
name = "measured"
description = "calibrated by flyersim calibrate on this MPI job"
nodes = {nodes}

[parameters]
{parameters}

[server]
gpus = {gpus}
sockets = 1
gpu = {{ reduce_bandwidth = "$reduce_bandwidth", latency = "$gpu_latency", reduce_latency = "$reduce_latency" }}

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

[[server.link]]
ends = ["gpu*", "cpu0"]
bandwidth = "$pcie_bandwidth"
latency = "0ns"
kind = "pcie"

[[server.link]]
ends = ["nic0", "cpu0"]
bandwidth = "$nic_bandwidth"
latency = "0ns"
kind = "pcie"

[[server.link]]
ends = ["host0", "cpu0"]
bandwidth = "$host_bandwidth"
latency = "0ns"
kind = "memory"

[network]
shape = "single-switch"
link_bandwidth = "$nic_bandwidth"
link_latency = "0ns"
switch_latency = "0ns"
radix = {max(nodes, 2)}
"""
