"""Deterministic routes between graph nodes, with ECMP in the network.

Inside a server: fewest hops within that server, and among those the widest
(largest bottleneck bandwidth over its links and node pools; the first
found by networkx on a tie), so on a DGX two GPUs meet on an NVSwitch rather than on the
PCIe switch they share.  Between servers: to the
nearest NIC of the source server, over a shortest path of network nodes
(switches and NICs) choosing among equal next hops by a stable hash of
``(src, dst)``, then from the nearest NIC of the destination server.

:meth:`Router.paths` lists a route's equal-cost alternatives, the choices
ECMP hashes among (nearest NICs at either end, every shortest network path
between them), for adaptive routing: the ECMP path first, then at most
``MAX_ALTERNATIVES - 1`` others spread evenly over the rest.

>>> from flyersim.topologies import load
>>> Router(load("single-switch", nodes=2)).path("n0/gpu0", "n1/gpu1")
['n0/gpu0', 'n0/cpu0', 'n0/nic0', 'sw0', 'n1/nic0', 'n1/cpu0', 'n1/gpu1']
"""

import itertools
import zlib

import networkx as nx
from networkx.algorithms.shortest_paths.generic import _build_paths_from_predecessors  # what nx.all_shortest_paths enumerates with

from .errors import TopologyError

# Equal-cost alternatives kept per route (the ECMP path included). A flow's start scans every candidate, so
# this bounds its cost; 32 covers every spine of a two-level fat-tree zone of radix up to 64 (fireflyer2:
# 20 spines per zone), and a three-level tree's spine x core choices are sampled evenly down to it.
MAX_ALTERNATIVES = 32


class Router:
    """Routes over one topology; servers are assumed identical (as :func:`topologies.load` builds them)."""

    def __init__(self, graph):
        self.graph = graph
        server0 = [n for n, s in graph.nodes(data="server") if s == 0]
        self._local = nx.relabel_nodes(ordered_subgraph(graph, server0), _local_name)
        self._nics = [n for n, kind in self._local.nodes(data="kind") if kind == "nic"]
        network = {n for n, kind in graph.nodes(data="kind") if kind in ("switch", "nic")}
        self._net = {n: [m for m in graph.successors(n) if m in network] for n in graph if n in network}
        self._local_paths = {}
        self._pred = {}  # local source -> its shortest-path predecessors inside a server (nx.predecessor)
        self._nic_hops = {}
        self._dist = {}
        self._below = {}

    def path(self, src, dst):
        """Node names from ``src`` to ``dst`` inclusive."""
        for node in (src, dst):
            if node not in self.graph:
                raise TopologyError(f"no node {node!r} in topology {self.graph.graph.get('name')}")
        s_server, d_server = self.graph.nodes[src]["server"], self.graph.nodes[dst]["server"]
        if s_server is not None and s_server == d_server:
            return self._in_server(src, _local_name(dst))
        key = zlib.crc32(f"{src}|{dst}".encode())
        s_nic = src if s_server is None else self._nearest_nic(src, key)
        d_nic = dst if d_server is None else self._nearest_nic(dst, key)
        head = [src] if s_server is None else self._in_server(src, _local_name(s_nic))
        tail = [dst] if d_server is None else self._in_server(d_nic, _local_name(dst))
        return head[:-1] + self._network(s_nic, d_nic, key) + tail[1:]

    def paths(self, src, dst, limit=MAX_ALTERNATIVES):
        """Equal-cost paths ``src`` .. ``dst``: :meth:`path` first, then up to ``limit - 1`` other ECMP choices.

        The choices are the nearest NICs of either server and every shortest
        network path between them; when there are more than ``limit``, those
        kept are spread evenly over the choices in order (every first hop
        gets its share). Inside a server there is one path.

        >>> from flyersim.topologies import load
        >>> r = Router(load("fireflyer2", gpus=8 * 21))  # 21 servers: two leaves, 20 spines
        >>> options = r.paths("n0/gpu0", "n20/gpu0")
        >>> len(options), options[0] == r.path("n0/gpu0", "n20/gpu0"), len({p[7] for p in options})
        (20, True, 20)
        >>> len(r.paths("n0/gpu0", "n20/gpu0", limit=4)), r.paths("n0/gpu0", "n0/gpu1") == [r.path("n0/gpu0", "n0/gpu1")]
        (4, True)
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a whole number >= 1, got {limit!r}")
        first = self.path(src, dst)
        s_server, d_server = self.graph.nodes[src]["server"], self.graph.nodes[dst]["server"]
        if s_server is not None and s_server == d_server:
            return [first]
        key = zlib.crc32(f"{src}|{dst}".encode())
        s_nics = [src] if s_server is None else self._nics_of(src, key)
        d_nics = [dst] if d_server is None else self._nics_of(dst, key)
        pairs = [(a, b) for a in s_nics for b in d_nics]
        out, seen = [first], {tuple(first)}
        quota = max(1, limit // len(pairs))
        for s_nic, d_nic in pairs:
            head = [src] if s_server is None else self._in_server(src, _local_name(s_nic))
            tail = [dst] if d_server is None else self._in_server(d_nic, _local_name(dst))
            for middle in self._network_paths(s_nic, d_nic, quota):
                path = head[:-1] + middle + tail[1:]
                if tuple(path) not in seen and len(out) < limit:
                    seen.add(tuple(path))
                    out.append(path)
        return out

    def _nics_of(self, node, key):
        """The nearest NICs of ``node``, the one :meth:`path` picks first."""
        first = self._nearest_nic(node, key)
        return [first] + [n for n in self._nic_choices(node) if n != first]

    def _in_server(self, src, local_dst):
        prefix, local_src = src.split("/", 1)
        pair = (local_src, local_dst)
        if pair not in self._local_paths:
            pred = self._pred.get(local_src)
            if pred is None:  # one search per source, not per pair (a 512-GPU server has 512^2 pairs)
                pred = self._pred[local_src] = nx.predecessor(self._local, local_src)
            if local_dst not in pred:
                raise TopologyError(f"no path from {local_src} to {local_dst} inside a server")
            paths = list(shortest_paths(pred, local_src, local_dst))
            self._local_paths[pair] = paths[0] if len(paths) == 1 else max(
                paths, key=lambda path: width(self._local, path))
        return [f"{prefix}/{n}" for n in self._local_paths[pair]]

    def _nearest_nic(self, node, key):
        choices = self._nic_choices(node)
        return choices[key % len(choices)]

    def _nic_choices(self, node):
        """The NICs of ``node``'s server nearest to it, among those still cabled to the network (a failed
        cable leaves a NIC without network links: :func:`topologies.faults.fail`)."""
        local, prefix = _local_name(node), node.split("/", 1)[0]
        if local not in self._nic_hops:
            hops = nx.single_source_shortest_path_length(self._local, local)
            if not any(n in hops for n in self._nics):
                raise TopologyError(f"{node} reaches no NIC of its server")
            self._nic_hops[local] = hops
        hops = self._nic_hops[local]
        cabled = [n for n in self._nics if n in hops and self._net.get(f"{prefix}/{n}")]
        near = cabled or [n for n in self._nics if n in hops]  # none cabled: the server is cut off (faults)
        best = min(hops[n] for n in near)
        return [f"{prefix}/{n}" for n in near if hops[n] == best]

    def _distances(self, src, dst):
        """The node shortest paths to ``dst`` aim for (its one switch, for a leaf device) and every node's hops to it."""
        goal = self._net[dst][0] if len(self._net[dst]) == 1 else dst
        dist = self._dist.get(goal)
        if dist is None:
            dist = self._dist[goal] = _bfs(self._net, goal)
        if src not in dist:
            raise TopologyError(f"no network path from {src} to {dst}")
        return goal, dist

    def _network(self, src, dst, key):
        """Shortest network path ``src`` .. ``dst`` with per-hop ECMP by ``key``."""
        goal, dist = self._distances(src, dst)
        path, node = [src], src
        while node != goal:
            step = dist[node] - 1
            nexts = [n for n in self._net[node] if dist.get(n) == step]
            node = nexts[key % len(nexts)]
            path.append(node)
        return path if goal == dst else path + [dst]

    def _network_paths(self, src, dst, limit):
        """Up to ``limit`` shortest network paths ``src`` .. ``dst``, spread evenly over all of them in order.

        Paths are numbered in order of next hops (each node's successors as
        the graph lists them); path ``i * total // k`` (k = the smaller of ``limit`` and ``total``) is decoded from the
        number of shortest paths below each node, so nothing lists them all.
        """
        goal, dist = self._distances(src, dst)
        below = self._below.get(goal)
        if below is None:  # shortest paths from each node to goal, filled closest first
            below = self._below[goal] = {goal: 1}
            for node in sorted(dist, key=dist.get):
                if node != goal:
                    below[node] = sum(below.get(n, 0) for n in self._net[node] if dist.get(n) == dist[node] - 1)
        total = below[src]
        count = min(limit, total)
        picks = [i * total // count for i in range(count)]
        out = []
        for index in picks:
            path, node = [src], src
            while node != goal:
                for n in self._net[node]:
                    if dist.get(n) == dist[node] - 1:
                        if index < below[n]:
                            node = n
                            break
                        index -= below[n]
                path.append(node)
            out.append(path if goal == dst else path + [dst])
        return out


def shortest_paths(pred, source, target):
    """Every shortest path ``source`` .. ``target`` given ``pred = nx.predecessor(graph, source)``, in the order
    ``nx.all_shortest_paths(graph, source, target)`` yields them: networkx's own enumeration (the helper that
    ``all_shortest_paths`` runs after its search), over a search done once per source.

    >>> g = nx.DiGraph([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")])
    >>> list(shortest_paths(nx.predecessor(g, "a"), "a", "d")) == list(nx.all_shortest_paths(g, "a", "d"))
    True
    """
    return _build_paths_from_predecessors({source}, target, pred)


def ordered_subgraph(graph, nodes):
    """Copy of the subgraph of ``graph`` induced by ``nodes``, its nodes and edges in ``graph``'s order.

    Not ``graph.subgraph(nodes)``: that view iterates a set of ``nodes`` when
    they are under half the graph, so its order, and every tie broken by that
    order (a GPU's nearest NIC, a widest path), would follow PYTHONHASHSEED.

    >>> g = nx.DiGraph([("c", "b"), ("b", "a"), ("a", "x")])
    >>> list(ordered_subgraph(g, ["a", "b", "c"])), list(ordered_subgraph(g, "ab").edges)
    (['c', 'b', 'a'], [('b', 'a')])
    """
    keep = set(nodes)
    sub = graph.__class__()
    sub.graph.update(graph.graph)
    sub.add_nodes_from((n, attrs) for n, attrs in graph.nodes(data=True) if n in keep)
    adj = graph.adj  # the kept nodes' links only (one server of 10,000 GPUs: not the whole graph's 55,000)
    sub.add_edges_from((u, v, attrs) for u in list(sub) for v, attrs in adj[u].items() if v in keep)
    return sub


def width(graph, path):
    """Bottleneck bandwidth of ``path``: the least ``bandwidth`` of its links and of its nodes' pools.

    >>> from flyersim.topologies import load
    >>> g = load("dgx-a100", nodes=1)
    >>> width(g, ["n0/gpu0", "n0/pciesw0", "n0/gpu1"]), width(g, ["n0/gpu0", "n0/nvswitch0", "n0/gpu1"])
    (24000000000.0, 50000000000.0)
    """
    links = (graph.edges[u, v]["bandwidth"] for u, v in zip(path, path[1:]))
    pools = (graph.nodes[v]["bandwidth"] for v in path if "bandwidth" in graph.nodes[v])
    return min(itertools.chain(links, pools), default=float("inf"))


def _local_name(node):
    return node.split("/", 1)[1]


def _bfs(adjacency, source):
    dist, frontier = {source: 0}, [source]
    while frontier:
        nxt = []
        for node in frontier:
            for n in adjacency[node]:
                if n not in dist:
                    dist[n] = dist[node] + 1
                    nxt.append(n)
        frontier = nxt
    return dist
