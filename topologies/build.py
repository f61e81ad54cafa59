"""Build the graph of a :class:`~topologies.config.Spec`: servers, then the network.

Every server is a copy of one template (local names such as ``gpu0``, ``rp3``)
prefixed with ``n{i}/``.  Network builders attach the servers' NICs to switches
(``z0/leaf3``, ``z0/spine7``, ``iz/sw1``, ``sw0``) or to each other (ring, torus).

>>> from flyersim.topologies.config import read
>>> g = build(read("single-switch"), nodes=2)
>>> g.graph["nodes"], g.nodes["n1/gpu0"]["server"], g.nodes["sw0"]["kind"]
(2, 1, 'switch')

Two optional ``[network]`` keys model a network slower than its node links:
``switch_bandwidth``, every switch's forwarding capacity (a pool, all ports and
directions together, class ``switch``), and, in a fat tree,
``uplink_bandwidth``, the per-direction rate of every link above the leaves
(default ``link_bandwidth``):

>>> over = {"network.switch_bandwidth": "10GB/s", "network.uplink_bandwidth": "1GB/s"}
>>> g = build(read("fat-tree", overrides=over), nodes=2)
>>> g.nodes["z0/leaf0"]["bandwidth"], g.edges["z0/leaf0", "z0/spine0"]["bandwidth"] / 1e9
(10000000000.0, 1.0)
"""

import fnmatch
import math

import networkx as nx

from .errors import TopologyError


def build(spec, nodes=None, zones=None):
    """A duplex ``nx.DiGraph`` of ``nodes`` servers (default ``spec.nodes``)."""
    nodes = spec.nodes if nodes is None else nodes
    if nodes < 1:
        raise TopologyError(f"nodes must be at least 1, got {nodes}")
    local_nodes, local_edges = server_template(spec)
    graph = nx.DiGraph(name=spec.name, nodes=nodes, gpus_per_node=spec.gpus,
                       sockets_per_node=spec.sockets, nvlink_pairs=spec.nvlink_pairs,
                       shape=spec.network["shape"], cpu_model=spec.cpu_model, gpu_model=spec.gpu_model,
                       nccl=dict(spec.nccl or {}), mpi=dict(spec.mpi or {}))
    for i in range(nodes):  # in bulk: per-call overhead was half of a 10,000-GPU graph's build
        prefix = f"n{i}/"
        graph.add_nodes_from((prefix + name, _localise(attrs, prefix, i)) for name, attrs in local_nodes)
        graph.add_edges_from(edge for a, b, attrs in local_edges
                             for edge in ((prefix + a, prefix + b, attrs), (prefix + b, prefix + a, attrs)))
    nics = [name for name, attrs in local_nodes if attrs["kind"] == "nic"]
    if not nics:
        raise TopologyError("the server has no NIC (add a server.device of kind 'nic')")
    NETWORKS[spec.network["shape"]](graph, nodes, nics, spec.network, zones)
    return graph


def element_bound(spec, nodes):
    """An upper bound on the nodes plus links of ``build(spec, nodes)``, computed without building it.

    One server's components and links (duplex: two each) times ``nodes``, plus at most 12 network
    links or switches per NIC (a fat-tree's leaf, spine and inter-zone shares; a 3-D torus's 6 duplex
    links), plus 16 per fat-tree switch port for the switches a zone has however few its servers.
    An absurd server (over 10^8 components in all) is bounded by its component count alone.

    >>> from flyersim.topologies.config import read
    >>> spec = read("fireflyer2")
    >>> g = build(spec, nodes=4)
    >>> g.number_of_nodes() + g.number_of_edges() <= element_bound(spec, 4)
    True
    """
    per_server = spec.gpus + len(spec.devices)
    if nodes * per_server > 10**8:
        return nodes * per_server
    local_nodes, local_edges = server_template(spec)
    nics = sum(1 for _, attrs in local_nodes if attrs["kind"] == "nic")
    fixed = 16 * spec.network["radix"] if spec.network["shape"] == "fat-tree" else 0  # a zone's first switches
    return nodes * (len(local_nodes) + 2 * len(local_edges) + 12 * nics) + fixed + 64


def server_template(spec):
    """``(nodes, edges)`` of one server with local names: ``[(name, attrs)]``, ``[(a, b, attrs)]``."""
    nodes = [(f"gpu{j}", {"kind": "gpu", **spec.gpu}) for j in range(spec.gpus)]
    for device in spec.devices:
        nodes.append((device["name"], {k: v for k, v in device.items() if k != "name"}))
    names = [name for name, _ in nodes]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise TopologyError(f"server.device {duplicate}: defined twice")
    for s in range(spec.sockets):
        for name in (f"cpu{s}", f"host{s}"):
            if name not in names:
                raise TopologyError(f"server has {spec.sockets} sockets but no device {name}")
    for name, attrs in nodes:
        engine = attrs.get("engine")
        if engine is not None and (engine not in names or dict(nodes)[engine]["kind"] != "cpu"):
            raise TopologyError(f"server.device {name}: engine {engine!r} is not a cpu device")
    edges, by_pair = [], {}  # {a, b} -> the entry that linked them: each pair once (links are duplex)

    def add(a, b, attrs, entry):
        pair = frozenset((a, b))
        if pair in by_pair and by_pair[pair] != entry:
            raise TopologyError(f"{entry}: {a} - {b} is already linked by {by_pair[pair]} "
                                f"(one link per pair; links are duplex)")
        if pair not in by_pair:
            by_pair[pair] = entry
            edges.append((a, b, attrs))

    for i, link in enumerate(spec.links, start=1):
        entry = f"server.link #{i} {list(link['ends'])}"
        first, second = link["ends"]
        if first == second and not any(c in first for c in "*?["):
            raise TopologyError(f"{entry}: links {first} to itself")
        ends = [fnmatch.filter(names, pattern) for pattern in link["ends"]]
        for pattern, matched in zip(link["ends"], ends):
            if not matched:
                raise TopologyError(f"{entry}: unknown device {pattern!r} (devices: {', '.join(names)})")
        attrs = {k: link[k] for k in ("bandwidth", "latency", "kind")}
        for a in ends[0]:
            for b in ends[1]:
                if a != b:  # patterns that overlap ("gpu*" to "gpu*") link every pair, not a device to itself
                    add(a, b, attrs, entry)
    for a, b in spec.nvlink_pairs:
        add(f"gpu{a}", f"gpu{b}", {**spec.nvlink, "kind": "nvlink"}, f"server.nvlink_pairs {[a, b]}")
    return nodes, edges


def _localise(attrs, prefix, server):
    out = {**attrs, "server": server}
    if "engine" in out:
        out["engine"] = prefix + out["engine"]
    return out


def _duplex(graph, a, b, attrs):
    graph.add_edge(a, b, **attrs)
    graph.add_edge(b, a, **attrs)


def _switch(graph, name, net):
    """A switch; with ``switch_bandwidth`` also a pool every byte it forwards takes (class ``switch``)."""
    extra = {"bandwidth": net["switch_bandwidth"]} if "switch_bandwidth" in net else {}
    graph.add_node(name, kind="switch", server=None, latency=net["switch_latency"], **extra)


def _wire(graph, a, b, net, uplink=False):
    """A duplex network link; ``uplink``: above a fat tree's leaves, at ``uplink_bandwidth`` if given."""
    rate = net.get("uplink_bandwidth", net["link_bandwidth"]) if uplink else net["link_bandwidth"]
    _duplex(graph, a, b, {"bandwidth": rate, "latency": net["link_latency"], "kind": "ib"})


def _fixed_zones(net, zones):
    if zones is not None:
        raise TopologyError(f"zones apply to fat-tree networks only, not {net['shape']}")


def single_switch(graph, nodes, nics, net, zones):
    """Every NIC on one switch ``sw0`` of ``radix`` ports."""
    _fixed_zones(net, zones)
    if nodes * len(nics) > net["radix"]:
        raise TopologyError(f"{nodes} servers x {len(nics)} NICs exceed the switch's {net['radix']} ports")
    _switch(graph, "sw0", net)
    for i in range(nodes):
        for nic in nics:
            _wire(graph, f"n{i}/{nic}", "sw0", net)


def torus(graph, nodes, nics, net, zones):
    """Servers on a torus of ``dims`` (a ring is one dimension); NIC ``k`` links NIC ``k``."""
    _fixed_zones(net, zones)
    dims = net.get("dims", (nodes,))
    if math.prod(dims) != nodes:
        raise TopologyError(f"a torus of dims {list(dims)} holds {math.prod(dims)} servers, not {nodes}")
    for i in range(nodes):
        coords, rest = [], i
        for d in dims:
            coords.append(rest % d)
            rest //= d
        for axis, d in enumerate(dims):
            if d == 1:
                continue
            step = math.prod(dims[:axis])
            j = i + step * ((coords[axis] + 1) % d - coords[axis])
            for nic in nics:
                _wire(graph, f"n{i}/{nic}", f"n{j}/{nic}", net)


def fat_tree_shape(net, nics):
    """``(down, up, max_leaves)`` of a fat-tree zone; see :func:`fat_tree`.

    >>> fat_tree_shape({"radix": 40, "levels": 2, "oversubscription": 1}, ["nic0"])
    (20, 20, 40)
    """
    radix, over = net["radix"], net["oversubscription"]
    down = max(1, min(radix - 1, round(radix * over / (over + 1))))
    return down, radix - down, radix if net["levels"] == 2 else radix * (radix // 2)


def zone_capacity(net, nics, zones):
    """Servers one zone holds (a leaf gives one port to the inter-zone switch when zones > 1).

    >>> net = {"radix": 40, "levels": 2, "oversubscription": 1, "rails": False}
    >>> zone_capacity(net, ["nic0"], 1), zone_capacity(net, ["nic0"], 2)
    (800, 760)
    """
    max_leaves = fat_tree_shape(net, nics)[2]
    return (max_leaves // _rails(net, nics)) * _servers_per_leaf(net, nics, zones)


def _rails(net, nics):
    return len(nics) if net["rails"] else 1


def _servers_per_leaf(net, nics, zones):
    ports = fat_tree_shape(net, nics)[0] - (zones > 1)
    return ports if net["rails"] else ports // len(nics)


def fat_tree(graph, nodes, nics, net, zones):
    """Fat-tree zones of ``radix``-port switches, joined by inter-zone switches.

    A leaf has ``down`` server ports and ``up = radix - down`` uplinks
    (``down/up`` = oversubscription).  Two levels: ``up`` spines, each linked
    once to every leaf (at most ``radix`` leaves).  Three levels: pods of
    ``radix/2`` leaves and ``up`` spines; spine ``s`` of every pod links to the
    ``radix/2`` cores of group ``s``.  Servers fill leaves in order; with
    ``rails`` NIC ``k`` of every server goes to the rail-``k`` leaf of its group.
    Zones: one if the servers fit, else the fewest that hold them (split
    evenly), or ``zones`` if given.  With more than one zone every leaf gives
    one server port to inter-zone switch ``iz/sw{leaf * interzone_switches //
    max_leaves}`` (leaves 0-19 of every zone on ``iz/sw0`` when radix is 40
    with 2 levels and 2 inter-zone switches).
    """
    zones = zones if zones is not None else net["zones"]
    if zones == "auto":
        zones = 1 if nodes <= zone_capacity(net, nics, 1) else \
            math.ceil(nodes / zone_capacity(net, nics, 2))
    elif not isinstance(zones, int) or isinstance(zones, bool) or zones < 1:
        raise TopologyError(f"zones must be a whole number >= 1 or 'auto', got {zones!r}")
    if zones > nodes:
        raise TopologyError(f"cannot split {nodes} servers over {zones} zones")
    per_leaf, rails = _servers_per_leaf(net, nics, zones), _rails(net, nics)
    if per_leaf < 1:
        raise TopologyError(f"a leaf's server ports cannot hold a server with {len(nics)} NICs")
    _, up, max_leaves = fat_tree_shape(net, nics)
    for z in range(zones):
        members = range(z * nodes // zones, (z + 1) * nodes // zones)
        if len(members) > zone_capacity(net, nics, zones):
            raise TopologyError(f"{nodes} servers do not fit {zones} zone(s) of "
                                f"{zone_capacity(net, nics, zones)} servers "
                                f"(radix {net['radix']}, {net['levels']} levels)")
        leaves = math.ceil(len(members) / per_leaf) * rails
        for j, i in enumerate(members):
            for k, nic in enumerate(nics):
                leaf = (j // per_leaf) * rails + k if net["rails"] else j // per_leaf
                _wire(graph, f"n{i}/{nic}", _leaf(graph, z, leaf, net), net)
        _upper_levels(graph, z, leaves, up, net)
        for leaf in range(leaves if zones > 1 else 0):
            iz = f"iz/sw{leaf * net['interzone_switches'] // max_leaves}"
            if iz not in graph:
                _switch(graph, iz, net)
            _wire(graph, f"z{z}/leaf{leaf}", iz, net, uplink=True)
    graph.graph["zones"] = zones


def _leaf(graph, zone, leaf, net):
    name = f"z{zone}/leaf{leaf}"
    if name not in graph:
        _switch(graph, name, net)
    return name


def _upper_levels(graph, zone, leaves, up, net):
    radix = net["radix"]
    if net["levels"] == 2:
        for s in range(up):
            _switch(graph, f"z{zone}/spine{s}", net)
            for leaf in range(leaves):
                _wire(graph, f"z{zone}/leaf{leaf}", f"z{zone}/spine{s}", net, uplink=True)
        return
    pod_size = radix // 2
    pods = math.ceil(leaves / pod_size)
    for p in range(pods):
        for s in range(up):
            spine = f"z{zone}/spine{p * up + s}"
            _switch(graph, spine, net)
            for leaf in range(p * pod_size, min(leaves, (p + 1) * pod_size)):
                _wire(graph, f"z{zone}/leaf{leaf}", spine, net, uplink=True)
            for c in range(pod_size if pods > 1 else 0):
                core = f"z{zone}/core{s * pod_size + c}"
                if core not in graph:
                    _switch(graph, core, net)
                _wire(graph, spine, core, net, uplink=True)


NETWORKS = {"single-switch": single_switch, "fat-tree": fat_tree, "ring": torus, "torus": torus}
