"""Where a scenario's jobs run: servers by explicit list or by a policy, and the leaf of every server.

A server's *leaf* is the switch its first NIC is wired to (``z0/leaf3``; a
network without switches, a ring or torus, gives every server its own) and
its *zone* the fat-tree zone of that leaf. Jobs with explicit ``servers`` are
placed first, then the others in file order on the servers still free:

- ``packed``: as few leaves as possible: the leaf with the fewest free
  servers that holds the whole job, else the leaves with the most free
  servers first (so jobs that fit in a leaf never share one);
- ``spread``: one server of each leaf in turn, leaves taken zone by zone in
  turn (zone 0's first leaf, zone 1's first leaf, zone 0's second, ...);
- ``random``: servers drawn without replacement with the job's ``seed``.

A job's ranks follow its servers in increasing order, 8 GPUs per server on
``fireflyer2`` (rank ``8 i + j`` is GPU ``j`` of the job's ``i``-th server).

>>> from flyersim.topologies import load
>>> g = load("fireflyer2", nodes=60)
>>> leaves = server_leaves(g)
>>> leaves[0], leaves[20], leaves[59]
('z0/leaf0', 'z0/leaf1', 'z0/leaf2')
>>> pick("packed", 16, list(range(60)), leaves), pick("spread", 4, list(range(60)), leaves)
((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), (0, 1, 20, 40))
>>> placed(Layout(nodes=2, gpus_per_node=2, sockets=1), (5, 9)).location_names()
['n5/gpu0', 'n5/gpu1', 'n9/gpu0', 'n9/gpu1', 'n5/host0', 'n9/host0']
"""

from dataclasses import dataclass

import numpy as np

from flyersim.collectives.schedule import Layout


def server_leaves(graph):
    """The leaf switch of every server (by server index), or the server's own name where NICs link no switch."""
    nodes = graph.graph["nodes"]
    leaves = [None] * nodes
    for name, attrs in graph.nodes(data=True):
        server = attrs.get("server")
        if attrs.get("kind") != "nic" or server is None or leaves[server] is not None:
            continue
        switches = [m for m in graph.successors(name) if graph.nodes[m].get("kind") == "switch"]
        leaves[server] = switches[0] if switches else f"n{server}"
    return [leaf or f"n{i}" for i, leaf in enumerate(leaves)]


def zone_of(leaf):
    """The fat-tree zone of a leaf name (``z1/leaf4`` -> 1); 0 for a network without zones."""
    head = leaf.split("/", 1)[0]
    return int(head[1:]) if head[:1] == "z" and head[1:].isdigit() else 0


def place(jobs, graph):
    """``{job name: servers}`` for every job of a scenario on ``graph``; a bad placement is a one-line ValueError."""
    nodes, per_server = graph.graph["nodes"], graph.graph["gpus_per_node"]
    owner = {}
    out = {}
    for job in (j for j in jobs if j.servers is not None):
        for s in job.servers:
            if s >= nodes:
                raise ValueError(f"jobs.{job.name}.servers: no server {s} (the cluster has servers 0..{nodes - 1})")
            if s in owner:
                raise ValueError(f"jobs.{job.name}.servers: server {s} is also in job {owner[s]} "
                                 f"(placements must not overlap)")
            owner[s] = job.name
        out[job.name] = tuple(sorted(job.servers))
    leaves = server_leaves(graph)
    for job in (j for j in jobs if j.servers is None):
        need = job.nodes
        if job.gpus is not None:
            if job.gpus % per_server:
                raise ValueError(f"jobs.{job.name}.gpus: {job.gpus} is not a multiple of the {per_server} GPUs "
                                 f"per server")
            need = job.gpus // per_server
        free = [s for s in range(nodes) if s not in owner]
        if need > nodes:
            raise ValueError(f"jobs.{job.name}: needs {need} servers ({need * per_server} GPUs), larger than the "
                             f"cluster's {nodes}")
        if need > len(free):
            raise ValueError(f"jobs.{job.name}: needs {need} servers ({need * per_server} GPUs), only "
                             f"{len(free)} of the cluster's {nodes} are free after the jobs before it")
        servers = pick(job.placement, need, free, leaves, job.seed)
        for s in servers:
            owner[s] = job.name
        out[job.name] = servers
    return {job.name: out[job.name] for job in jobs}


def pick(policy, need, free, leaves, seed=0):
    """``need`` servers of ``free`` (ascending) by ``policy``, in increasing order."""
    if policy == "random":
        return tuple(sorted(int(s) for s in np.random.default_rng(seed).choice(free, need, replace=False)))
    by_leaf = {}
    for s in free:
        by_leaf.setdefault(leaves[s], []).append(s)
    if policy == "packed":
        fits = [leaf for leaf, servers in by_leaf.items() if len(servers) >= need]
        if fits:
            best = min(fits, key=lambda leaf: len(by_leaf[leaf]))
            return tuple(by_leaf[best][:need])
        chosen = []
        for leaf in sorted(by_leaf, key=lambda leaf: -len(by_leaf[leaf])):
            chosen += by_leaf[leaf][:need - len(chosen)]
            if len(chosen) == need:
                break
        return tuple(sorted(chosen))
    if policy == "spread":
        order = sorted(by_leaf, key=lambda leaf: (_rank_in_zone(leaf, by_leaf), zone_of(leaf)))
        chosen, depth = [], 0
        while len(chosen) < need:
            for leaf in order:
                if depth < len(by_leaf[leaf]) and len(chosen) < need:
                    chosen.append(by_leaf[leaf][depth])
            depth += 1
        return tuple(sorted(chosen))
    raise ValueError(f"unknown placement {policy!r}")


def _rank_in_zone(leaf, by_leaf):
    """Position of ``leaf`` among the leaves of its zone (in order of their first free server)."""
    zone = zone_of(leaf)
    return [x for x in by_leaf if zone_of(x) == zone].index(leaf)


@dataclass(frozen=True)
class PlacedLayout(Layout):
    """A job's layout whose node ``i`` is the cluster's server ``servers[i]``: locations are named as the
    cluster's, so a schedule built on the job's own layout routes on the cluster (:func:`placed`)."""

    servers: tuple = ()

    def location_names(self):
        g = self.gpus_per_node
        gpus = [f"n{self.servers[r // g]}/gpu{r % g}" for r in range(self.ranks)]
        hosts = [f"n{self.servers[n]}/host{s}" for n in range(self.nodes) for s in range(self.sockets)]
        return gpus + hosts


def placed(layout, servers):
    """``layout`` (of ``len(servers)`` nodes) with its nodes on the cluster's ``servers``."""
    fields = {k: getattr(layout, k) for k in Layout.__dataclass_fields__}
    return PlacedLayout(**fields, servers=tuple(int(s) for s in servers))
