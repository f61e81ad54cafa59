"""``flyersim calibrate``: measure this MPI job's machine and write a topology TOML for ``flyersim run``.

Under ``mpiexec -n N flyersim calibrate --out measured.toml`` it measures

- point-to-point one-way latency (8 B ping-pong / 2) and bandwidth (16 MiB
  ping-pong) between two ranks of one physical node, and between the first
  ranks of two physical nodes when the job spans more than one;
- memcpy bandwidth of one rank (64 MiB ``np.copyto``), the speed of the
  executor's copies into and out of shared host memory;
- the numba sum kernel's throughput (output bytes/s on 16 MiB float32) and its
  call latency (one element);

and writes a single-switch cluster of ``N/g`` nodes x ``g`` GPUs (one GPU per
rank) in which: each PCIe link runs at the memcpy bandwidth; the CPU's
``p2p_bandwidth`` (GPU-to-GPU through the socket) and the network run at the
measured MPI bandwidths; every GPU carries half the intra-node MPI latency (a
GPU-to-GPU path has two GPU ends) and each NIC half the extra latency between
nodes; reductions on GPU and CPU use the kernel's throughput and latency; the
DRAM and HBM pools are left out, since the measured copy and kernel speeds
already include memory. Without a second physical node the
network gets the intra-node MPI figures, as the job's "nodes" then talk
through shared memory; the TOML says which.
"""

import sys
import time

import numpy as np

from collectives.kernels import combine


def add_parser(sub, positive_int):
    """Register ``flyersim calibrate``."""
    p = sub.add_parser("calibrate", help="measure MPI latency/bandwidth, memcpy and reduce speed; write a topology TOML")
    p.add_argument("--out", required=True, metavar="FILE.toml", help="where to write the topology")
    p.add_argument("--gpus-per-node", type=positive_int,
                   help="ranks per node of the written cluster (default: ranks per physical node)")
    p.set_defaults(func=command)


def command(args):
    from mpi4py import MPI

    from collectives.mpi_executor import physical_node_size

    comm = MPI.COMM_WORLD
    if comm.size == 1:
        print("flyersim: note: 1 MPI rank: no point-to-point figures (start with mpiexec -n N)", file=sys.stderr)
    try:
        per_node = physical_node_size(comm)
        g = args.gpus_per_node or per_node
        if comm.size % g:
            raise ValueError(f"gpus per node {g} does not divide the {comm.size} MPI ranks")
    except ValueError as err:
        if comm.rank == 0:
            print(f"flyersim: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    m = measure(comm, per_node)
    if comm.rank == 0:
        text = toml(m, comm.size // g, g)
        with open(args.out, "w") as f:
            f.write(text)
        for key, value in m.items():
            print(f"{key:>22} = {value}")
        print(f"# topology written to {args.out}", file=sys.stderr)


def _pingpong(comm, peer, nbytes, rounds):
    """Seconds per one-way trip between this rank and ``peer`` (the lower rank starts)."""
    from mpi4py import MPI

    buf = np.zeros(nbytes, np.uint8)
    start = MPI.Wtime()
    for _ in range(rounds):
        if comm.rank < peer:
            comm.Send(buf, dest=peer)
            comm.Recv(buf, source=peer)
        else:
            comm.Recv(buf, source=peer)
            comm.Send(buf, dest=peer)
    return (MPI.Wtime() - start) / (2 * rounds)


def _pair(comm, a, b):
    """(latency s, bandwidth B/s) between ranks a and b; every rank calls, others wait."""
    out = np.zeros(2)
    if comm.rank in (a, b):
        peer = b if comm.rank == a else a
        _pingpong(comm, peer, 8, 100)  # warm up
        lat = _pingpong(comm, peer, 8, 1000)
        big = 16 << 20
        _pingpong(comm, peer, big, 2)
        out[:] = lat, big / _pingpong(comm, peer, big, 10)
    comm.Bcast(out, root=a)
    comm.Barrier()
    return float(out[0]), float(out[1])


def _best(fn, reps):
    """Smallest wall time of ``reps`` calls of ``fn``."""
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _local(comm):
    """memcpy bandwidth, reduce bandwidth and reduce latency measured on rank 0 alone."""
    out = np.zeros(3)
    if comm.rank == 0:
        src, dst = np.ones(64 << 18, np.float32), np.empty(64 << 18, np.float32)
        copy = src.nbytes / _best(lambda: np.copyto(dst, src), 5)
        a, b = src[:4 << 20], src[4 << 20:8 << 20]
        c = dst[:4 << 20]
        combine(c, a, b, "sum")  # compile
        red = c.nbytes / _best(lambda: combine(c, a, b, "sum"), 5)
        one = _best(lambda: combine(c[:1], a[:1], b[:1], "sum"), 200)
        out[:] = copy, red, one
    comm.Bcast(out, root=0)
    return out.tolist()


def measure(comm, per_node):
    """Dict of measured figures (SI units), identical on every rank."""
    m = {}
    if comm.size > 1 and per_node > 1:
        m["intra_latency_s"], m["intra_bandwidth_Bps"] = _pair(comm, 0, 1)
    if comm.size > per_node:
        m["inter_latency_s"], m["inter_bandwidth_Bps"] = _pair(comm, 0, per_node)
    m["memcpy_bandwidth_Bps"], m["reduce_bandwidth_Bps"], m["reduce_latency_s"] = _local(comm)
    return m


def toml(m, nodes, gpus):
    """The topology text for measured figures ``m`` (see the module docstring for the mapping).

    >>> text = toml({"intra_latency_s": 2e-6, "intra_bandwidth_Bps": 5e9, "memcpy_bandwidth_Bps": 8e9,
    ...              "reduce_bandwidth_Bps": 4e9, "reduce_latency_s": 1e-6}, nodes=2, gpus=2)
    >>> import tomllib; tomllib.loads(text)["parameters"]["gpu_latency"]
    '1000ns'
    """
    intra_lat = m.get("intra_latency_s", m.get("inter_latency_s", 0.0))
    intra_bw = m.get("intra_bandwidth_Bps", m.get("inter_bandwidth_Bps", m["memcpy_bandwidth_Bps"]))
    inter_lat = m.get("inter_latency_s", intra_lat)
    inter_bw = m.get("inter_bandwidth_Bps", intra_bw)
    net = "measured between physical nodes" if "inter_latency_s" in m else \
        "no second physical node: intra-node MPI figures (the job's nodes share one machine)"

    def bw(x):
        return f'"{x / 1e6:.0f}MB/s"'

    def ns(x):
        return f'"{x * 1e9:.0f}ns"'

    return f"""# Written by flyersim calibrate from measurements of an MPI job; see sim/calibrate.py for the mapping.
name = "measured"
nodes = {nodes}

[parameters]
pcie_bandwidth = {bw(m["memcpy_bandwidth_Bps"])}          # memcpy of one rank (copies to/from shared host memory)
pcie_latency = "0ns"
p2p_bandwidth = {bw(intra_bw)}           # MPI ping-pong bandwidth inside a node
gpu_latency = {ns(intra_lat / 2)}               # half the MPI one-way latency inside a node
reduce_bandwidth = {bw(m["reduce_bandwidth_Bps"])}        # numba sum kernel, output bytes/s
reduce_latency = {ns(m["reduce_latency_s"])}             # numba sum kernel call, one element
nic_bandwidth = {bw(inter_bw)}           # network: {net}
nic_latency = {ns(max(inter_lat - intra_lat, 0.0) / 2)}

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
latency = "$pcie_latency"
kind = "pcie"

[[server.link]]
ends = ["nic0", "cpu0"]
bandwidth = "$pcie_bandwidth"
latency = "$pcie_latency"
kind = "pcie"

[[server.link]]
ends = ["host0", "cpu0"]
bandwidth = "$pcie_bandwidth"
latency = "0ns"
kind = "memory"

[network]
shape = "single-switch"
link_bandwidth = "$nic_bandwidth"
link_latency = "0ns"
switch_latency = "0ns"
radix = {max(nodes, 2)}
"""
