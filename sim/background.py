"""Background traffic of a scenario as ordinary flows: storage reads and all-to-all exchanges.

Each background entry becomes one flow per (source, destination) pair. A
flow moves ``rate x duration`` bytes and never faster than its ``rate``: the
rate limit is a resource of its own on the flow's route, of capacity
``rate`` (nothing else crosses it), so the fluid solver needs no special
case. Slowed by contention, a flow takes longer than ``duration`` (it is a
volume of reads, not a clock).

- ``storage-read``: the storage nodes are network endpoints added to the
  graph, ``storage_nodes`` on each leaf of ``storage_leaves``: a leaf that
  does not exist yet is added to its zone and wired to every spine of that
  zone (two-level fat trees), and a leaf's or spine's ports must suffice
  (``radix``). A storage node carries a NIC like a compute server's (Fire-
  Flyer 2's storage servers have one 200 Gb/s NIC per zone, [P III-B] in
  ``../shared/reference/fireflyer2.md``); its disks are not modelled, so it
  serves at line rate. Server ``i`` of the chosen servers (in increasing
  order) reads from storage node ``i mod count``, into the host memory of
  its NIC's socket (the NIC's DMA writes there, as an RDMA read of 3FS does).
- ``all-to-all``: every chosen server sends ``rate / (k - 1)`` to each of the
  ``k - 1`` others, host memory to host memory of the NIC's socket.

With adaptive routing a flow lists its equal-cost paths, each with the same
rate limit, and takes the least loaded when it starts, as a job's flows do.

>>> from flyersim.topologies import Router, load
>>> g = load("fireflyer2", gpus=32)
>>> add_storage(g, "z0/leaf1", 2, "3fs", radix=40)
['3fs/st0', '3fs/st1']
>>> Router(g).path("3fs/st1", "n3/host1")[:4]
['3fs/st1', 'z0/leaf1', 'z0/spine12', 'z0/leaf0']
"""

from dataclasses import dataclass

import numpy as np

from flyersim.sim.routes import Routes, path_routes
from flyersim.topologies.routing import MAX_ALTERNATIVES


@dataclass(frozen=True)
class Flows:
    """The flows of one background entry: a label, a path, a byte count and a rate limit each, and with
    adaptive routing the further equal-cost paths of each (``more[i]``, empty with ``ecmp``)."""

    name: str
    labels: list
    paths: list
    nbytes: np.ndarray
    rate: np.ndarray
    more: tuple = ()

    def routes(self, graph):
        """:class:`Routes` of the flows (op ``i`` on route ``i``), each with its private rate-limit resource;
        with further paths, those follow as routes of their own listed as route ``i``'s candidates."""
        n = len(self.paths)
        owner = list(range(n)) + [i for i, more in enumerate(self.more) for _ in more]
        base = path_routes(graph, list(self.paths) + [p for more in self.more for p in more])
        k = len(base.names)
        lengths = np.diff(base.rptr) + 1
        rptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        rres, rw = np.empty(rptr[-1], np.int64), np.ones(rptr[-1], np.float64)
        last = rptr[1:] - 1
        body = np.setdiff1d(np.arange(rptr[-1]), last)
        rres[body], rw[body] = base.rres, base.rw
        rres[last] = k + np.asarray(owner, np.int64)
        names = base.names + [f"{self.name}: {label} rate limit" for label in self.labels]
        classes = base.classes + ["rate limit"] * n
        alt_ptr = alt_idx = None
        if len(owner) > n:
            candidates = [[i] for i in range(n)] + [[] for _ in owner[n:]]
            for r in range(n, len(owner)):
                candidates[owner[r]].append(r)
            alt_ptr = np.concatenate([[0], np.cumsum([len(c) for c in candidates])]).astype(np.int64)
            alt_idx = np.array([r for c in candidates for r in c], np.int64)
        return Routes(names, classes, np.concatenate([base.capacity, self.rate]), rptr, rres, rw, base.rlat,
                      np.arange(n, dtype=np.int64), alt_ptr, alt_idx)


def add_storage(graph, leaf, count, prefix, radix):
    """Add ``count`` storage nodes ``{prefix}/st{k}`` on ``leaf`` (created if absent); return their names."""
    nic = next(n for n, a in graph.nodes(data=True) if a.get("kind") == "nic" and a.get("server") == 0)
    link = next(attrs for _, _, attrs in graph.out_edges(nic, data=True))
    if leaf not in graph:
        _add_leaf(graph, leaf, radix, link)
    serves = any(graph.nodes[n].get("kind") == "nic" for n in graph.successors(leaf))
    if graph.nodes[leaf].get("kind") != "switch" or not (serves or "/leaf" in leaf):
        raise ValueError(f"storage_leaves: {leaf!r} is not a leaf switch")
    used = sum(1 for _ in graph.successors(leaf))
    if used + count > radix:
        raise ValueError(f"storage_leaves: leaf {leaf} has {radix - used} free ports of {radix}, "
                         f"{count} storage nodes asked")
    first = sum(1 for n in graph if n.startswith(f"{prefix}/st"))
    names = [f"{prefix}/st{first + k}" for k in range(count)]
    for name in names:
        graph.add_node(name, kind="nic", server=None, latency=graph.nodes[nic].get("latency", 0.0),
                       **({"bandwidth": graph.nodes[nic]["bandwidth"]} if "bandwidth" in graph.nodes[nic] else {}))
        graph.add_edge(name, leaf, **link)
        graph.add_edge(leaf, name, **link)
    return names


def _add_leaf(graph, leaf, radix, link):
    zone, _, rest = leaf.partition("/")
    spines = [n for n in graph if n.startswith(f"{zone}/spine")]
    if not (rest.startswith("leaf") and rest[4:].isdigit() and spines) or any(
            n.startswith(f"{zone}/core") for n in graph):
        raise ValueError(f"storage_leaves: no leaf {leaf!r}, and only a zone of a two-level fat tree (z0/leafN) "
                         f"can get a new one")
    full = [s for s in spines if sum(1 for _ in graph.successors(s)) >= radix]
    if full:
        raise ValueError(f"storage_leaves: cannot add leaf {leaf}: spine {full[0]} has no free port")
    graph.add_node(leaf, kind="switch", server=None, latency=graph.nodes[spines[0]].get("latency", 0.0))
    for spine in spines:
        graph.add_edge(leaf, spine, **link)
        graph.add_edge(spine, leaf, **link)


def storage_reads(name, servers, storage, host, rate, duration, router, routing="ecmp"):
    """Flows of server ``servers[i]`` reading ``rate`` for ``duration`` from ``storage[i mod len]`` into ``host(s)``."""
    pairs = [(storage[i % len(storage)], host(s)) for i, s in enumerate(servers)]
    return _flows(name, pairs, rate, duration, router, routing)


def all_to_all(name, servers, host, rate, duration, router, routing="ecmp"):
    """Flows of every server of ``servers`` sending ``rate / (k - 1)`` to each of the other ``k - 1``."""
    if len(servers) < 2:
        raise ValueError(f"background.{name}: an all-to-all needs at least two servers, got {len(servers)}")
    pairs = [(host(a), host(b)) for a in servers for b in servers if a != b]
    return _flows(name, pairs, rate / (len(servers) - 1), duration, router, routing)


def _flows(name, pairs, rate, duration, router, routing):
    """One flow per (source, destination) pair at ``rate`` for ``duration``; ``adaptive``: with its alternatives."""
    labels = [f"{src}->{dst}" for src, dst in pairs]
    if routing == "adaptive":
        options = [router.paths(src, dst, MAX_ALTERNATIVES) for src, dst in pairs]
        paths, more = [o[0] for o in options], tuple(o[1:] for o in options)
    else:
        paths, more = [router.path(src, dst) for src, dst in pairs], ()
    n = len(pairs)
    return Flows(name, labels, paths, np.full(n, rate * duration), np.full(n, rate), more)
