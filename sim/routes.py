"""Map a schedule's ops onto a topology's resources: routes, weights, latencies.

Resources are the directed links of the topology graph (``bandwidth`` per
direction) and the shared pools of its nodes:

- ``bandwidth`` of a node: taken with weight 1 by every transfer that crosses
  or ends at the node (DRAM of a socket, HBM of a GPU, a root port's cap into
  the CPU fabric, a NIC's own limit), and with weight k+1 by a k-way reduce
  in that memory (k reads, 1 write);
- ``reduce_bandwidth`` of a GPU or CPU socket: the engine that performs a
  reduce, weight 1 per output byte;
- ``p2p_bandwidth`` of a CPU socket: taken by peer-to-peer transfers, i.e.
  the part of a path inside one server that crosses the socket but touches no
  host memory (GPU to GPU, GPU to NIC).

A link's class is its ``kind`` (``pcie``, ``xgmi``, ``ib``, ...); a PCIe link
also gets its direction, by the kinds of its ends: ``pcie up (gpu)`` carries
bytes from a GPU toward the CPU (host side: cpu, memory, root port, then PCIe
switch, in that order), ``pcie down (gpu)`` toward it (see :func:`link_class`).

A transfer's latency is the sum of the ``latency`` of every node and link on
its path (per-hop latency plus per-message overheads); a reduce's is its
engine's ``reduce_latency``.
"""

from dataclasses import dataclass

import numpy as np

from collectives.schedule import REDUCE
from topologies import Router

_POOL_CLASS = {"memory": "dram", "gpu": "hbm", "rootport": "rootport", "nic": "nic"}
# PCIe distance of a node kind from the CPU; every other kind is a device at the far end
_HOST_SIDE = {"cpu": 0, "memory": 0, "rootport": 1, "pcieswitch": 2}


def link_class(graph, u, v):
    """Resource class of link ``u -> v``: its kind, with direction and device kind for PCIe.

    >>> from topologies import load
    >>> g = load("fireflyer2", gpus=8)
    >>> link_class(g, "n0/gpu0", "n0/rp0"), link_class(g, "n0/rp0", "n0/gpu0"), link_class(g, "n0/cpu0", "n0/cpu1")
    ('pcie up (gpu)', 'pcie down (gpu)', 'xgmi')
    """
    kind = graph.edges[u, v].get("kind", "link")
    if kind != "pcie":
        return kind
    far = len(_HOST_SIDE)
    du, dv = (_HOST_SIDE.get(graph.nodes[x]["kind"], far) for x in (u, v))
    if du == dv:
        return kind
    device = u if du > dv else v
    return f"pcie {'up' if du > dv else 'down'} ({graph.nodes[device]['kind']})"


@dataclass(frozen=True)
class Routes:
    """Resources and per-route CSR (resources, weights, latency) of one schedule on one topology."""

    names: list        # resource display names
    classes: list      # resource class, e.g. "pcie", "dram", "ib", "cpu reduce"
    capacity: np.ndarray
    rptr: np.ndarray
    rres: np.ndarray
    rw: np.ndarray
    rlat: np.ndarray
    op_route: np.ndarray  # route index of every op

    def carried(self, op_bytes):
        """Bytes each resource carries over the whole run (weights applied)."""
        per_route = np.bincount(self.op_route, weights=op_bytes, minlength=self.rlat.size)
        lengths = np.diff(self.rptr)
        return np.bincount(self.rres, weights=self.rw * np.repeat(per_route, lengths),
                           minlength=self.capacity.size)


class _Resources:
    def __init__(self):
        self.index, self.names, self.classes, self.capacity = {}, [], [], []

    def id(self, key, name, cls, capacity):
        if key not in self.index:
            self.index[key] = len(self.names)
            self.names.append(name)
            self.classes.append(cls)
            self.capacity.append(float(capacity))
        return self.index[key]


def build_routes(graph, schedule, router=None):
    """Routes of every op of ``schedule`` (whose layout names graph nodes) on ``graph``."""
    router = router or Router(graph)
    names = schedule.layout.location_names()
    missing = [n for n in (names[0], names[-1]) if n not in graph]
    if missing:
        raise ValueError(f"topology has no location {missing[0]!r} needed by the {schedule.algo} schedule")
    nloc = len(names)
    nin = schedule.num_inputs().astype(np.int64)
    radix = int(nin.max(initial=1)) + 1
    # one route per distinct (source, destination, inputs, kind)
    key = ((schedule.src.astype(np.int64) * nloc + schedule.dst) * radix + nin) * 2 + schedule.kind
    unique, op_route = np.unique(key, return_inverse=True)
    resources = _Resources()
    rptr, rres, rw, rlat = [0], [], [], []
    for k in unique.tolist():
        kind, rest = k % 2, k // 2
        k_inputs, rest = rest % radix, rest // radix
        src, dst = names[rest // nloc], names[rest % nloc]
        if kind == REDUCE:
            usage, latency = _reduce_usage(graph, dst, k_inputs, resources)
        else:
            usage, latency = _xfer_usage(graph, router.path(src, dst), resources)
        rres.extend(usage.keys())
        rw.extend(usage.values())
        rptr.append(len(rres))
        rlat.append(latency)
    return Routes(resources.names, resources.classes, np.array(resources.capacity),
                  np.array(rptr, np.int64), np.array(rres, np.int64), np.array(rw, np.float64),
                  np.array(rlat, np.float64), op_route.astype(np.int64).ravel())


def _pool(graph, node, attr, resources, cls):
    return resources.id((node, attr), f"{node} {attr}", cls, graph.nodes[node][attr])


def _xfer_usage(graph, path, resources):
    usage, latency = {}, 0.0
    for u, v in zip(path, path[1:]):
        edge = graph.edges[u, v]
        rid = resources.id((u, v), f"{u}->{v}", link_class(graph, u, v), edge["bandwidth"])
        usage[rid] = usage.get(rid, 0.0) + 1.0
        latency += edge.get("latency", 0.0)
    for v in path:
        attrs = graph.nodes[v]
        latency += attrs.get("latency", 0.0)
        if "bandwidth" in attrs:
            rid = _pool(graph, v, "bandwidth", resources, _POOL_CLASS.get(attrs["kind"], attrs["kind"]))
            usage[rid] = usage.get(rid, 0.0) + 1.0
    for run in _server_runs(graph, path):
        if all(graph.nodes[v]["kind"] != "memory" for v in run):
            for v in run[1:-1]:
                if "p2p_bandwidth" in graph.nodes[v]:
                    rid = _pool(graph, v, "p2p_bandwidth", resources, "p2p")
                    usage[rid] = usage.get(rid, 0.0) + 1.0
    return usage, latency


def _server_runs(graph, path):
    """Maximal stretches of ``path`` inside one server."""
    runs, current, server = [], [], None
    for v in path:
        here = graph.nodes[v].get("server")
        if current and here != server:
            runs.append(current)
            current = []
        current.append(v)
        server = here
    runs.append(current)
    return [run for run in runs if graph.nodes[run[0]].get("server") is not None]


def _reduce_usage(graph, location, k_inputs, resources):
    attrs = graph.nodes[location]
    engine = location if attrs["kind"] == "gpu" else attrs.get("engine")
    if engine is None:
        raise ValueError(f"{location} has no engine to reduce with")
    usage = {}
    if "reduce_bandwidth" in graph.nodes[engine]:
        cls = f"{graph.nodes[engine]['kind']} reduce"
        usage[_pool(graph, engine, "reduce_bandwidth", resources, cls)] = 1.0
    if "bandwidth" in attrs:
        usage[_pool(graph, location, "bandwidth", resources, _POOL_CLASS.get(attrs["kind"], attrs["kind"]))] = k_inputs + 1.0
    return usage, graph.nodes[engine].get("reduce_latency", 0.0)
