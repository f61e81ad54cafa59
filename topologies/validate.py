"""Check a built graph against the contract the simulator relies on.

>>> import networkx as nx
>>> validate(nx.DiGraph(name="empty", nodes=0, gpus_per_node=8, sockets_per_node=1, nvlink_pairs=()))
Traceback (most recent call last):
...
flyersim.topologies.errors.TopologyError: empty: nodes must be at least 1, got 0
"""

import math

from .errors import TopologyError

KINDS = {"gpu", "memory", "cpu", "rootport", "pcieswitch", "nic", "nvswitch", "switch"}
NODE_POOLS = ("bandwidth", "reduce_bandwidth", "p2p_bandwidth", "latency", "reduce_latency",
              "reduce_stream_bandwidth", "store_bandwidth", "p2p_gpu_bandwidth")
GRAPH_KEYS = ("name", "nodes", "gpus_per_node", "sockets_per_node", "nvlink_pairs")


def validate(graph):
    """Raise :class:`TopologyError` naming the first problem; return ``graph`` if sound."""
    missing = [key for key in GRAPH_KEYS if key not in graph.graph]
    if missing:
        raise TopologyError(f"graph lacks attribute(s) {', '.join(missing)}")
    name, nodes = graph.graph["name"], graph.graph["nodes"]
    if nodes < 1:
        raise TopologyError(f"{name}: nodes must be at least 1, got {nodes}")
    for node, attrs in graph.nodes(data=True):
        _check_node(node, attrs)
    succ = dict(graph.adjacency())  # plain dicts: a 10,000-GPU graph has 55,000 links to check
    for a, nbrs in succ.items():
        for b, attrs in nbrs.items():
            _check_edge(a, b, attrs, succ)
    gpus = [n for n, kind in graph.nodes(data="kind") if kind == "gpu"]
    if len(gpus) != nodes * graph.graph["gpus_per_node"]:
        raise TopologyError(f"{name}: {len(gpus)} GPUs is not {nodes} nodes x "
                            f"{graph.graph['gpus_per_node']} GPUs per node")
    _check_connected(graph, gpus, succ)
    return graph


def _check_node(node, attrs):
    kind = attrs.get("kind")
    if kind not in KINDS:
        raise TopologyError(f"node {node}: unknown kind {kind!r} (choices: {', '.join(sorted(KINDS))})")
    server = attrs.get("server", "missing")
    if server is not None and (isinstance(server, bool) or not isinstance(server, int)):
        raise TopologyError(f"node {node}: server must be an int or None, got {server!r}")
    if (server is None) != (kind == "switch"):
        raise TopologyError(f"node {node}: a {kind} must have server={'None' if kind == 'switch' else 'int'}")
    for pool in NODE_POOLS:
        value = attrs.get(pool)
        if value is not None and not _positive(value, allow_zero=pool.endswith("latency")):
            raise TopologyError(f"node {node}: {pool} must be positive, got {value!r}")


def _check_edge(a, b, attrs, succ):
    if not _positive(attrs.get("bandwidth")):
        raise TopologyError(f"link {a} -> {b}: bandwidth must be positive, got {attrs.get('bandwidth')!r}")
    if not _positive(attrs.get("latency"), allow_zero=True):
        raise TopologyError(f"link {a} -> {b}: latency must be >= 0, got {attrs.get('latency')!r}")
    if a not in succ[b]:
        raise TopologyError(f"link {a} -> {b} has no reverse direction (links are duplex)")


def _positive(value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value >= 0 if allow_zero else value > 0


def _check_connected(graph, gpus, succ):
    """Every GPU reaches every other GPU, and host memory inside its own server."""
    reached = _reachable(succ, gpus[0])
    for gpu in gpus:
        if gpu not in reached:
            raise TopologyError(f"{graph.graph['name']}: GPU {gpu} has no path to {gpus[0]}")
    own = {n for n, s in graph.nodes(data="server") if s == 0}
    # what reaches host memory inside server 0: one search back from its memories, not one per GPU
    near = {n for n in own if graph.nodes[n]["kind"] == "memory"}
    frontier, pred = list(near), graph.pred
    while frontier:
        found = []
        for node in frontier:
            for p in pred[node]:
                if p in own and p not in near:
                    near.add(p)
                    found.append(p)
        frontier = found
    for gpu in (g for g in gpus if g in own):
        if gpu not in near:
            raise TopologyError(f"{graph.graph['name']}: GPU {gpu} has no path to host memory in its server")


def _reachable(succ, source):
    """The nodes ``source`` reaches (itself included) over the adjacency ``succ``: ``nx.descendants``
    without its per-edge generator (a third of a 10,000-GPU topology's validation)."""
    seen, frontier = {source}, [source]
    while frontier:
        nxt = []
        for node in frontier:
            for n in succ[node]:
                if n not in seen:
                    seen.add(n)
                    nxt.append(n)
        frontier = nxt
    return seen
