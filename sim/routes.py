"""Map a schedule's ops onto a topology's resources: routes, weights, latencies.

Resources are the directed links of the topology graph (``bandwidth`` per
direction) and the shared pools of its nodes:

**Capacity convention for full-duplex parts.** A link's ``bandwidth`` is one
direction's (each direction is its own resource); a node's ``bandwidth`` pool
counts everything crossing the node, both directions together. So a NIC of
200 Gb/s per direction, full duplex, is ``nic_bandwidth = "50GB/s"`` (the
presets) and its wire to the switch ``link_bandwidth = "200Gb/s"``;
``flyersim calibrate`` writes links at the one-way rate r it measured and the
NIC's pool at what both directions carried together (2r when full duplex).
``--explain`` reports each pool's utilisation against that
both-directions capacity.

- ``bandwidth`` of a node: taken with weight 1 by every transfer that crosses
  or ends at the node (DRAM of a socket, HBM of a GPU, a root port's cap into
  the CPU fabric, a NIC's own limit); a reduce takes 1 (the write) at its
  location and 1 (a read) at each input's location, so a k-way reduce with
  every input local weighs k+1; an input elsewhere also takes the route from
  its memory to the reducing engine (e.g. the xGMI link);
- ``reduce_bandwidth`` of a GPU or CPU socket: the engine that performs a
  reduce, weight 1 per output byte;
- ``reduce_stream_bandwidth`` of a CPU socket (``reduce_threads`` x
  ``reduce_thread_bandwidth``, class ``cpu reduce threads``): reduce threads
  bound by the bytes they stream, so a k-way reduce weighs k+1 (k reads, 1
  write) per output byte;
- ``store_bandwidth`` of a CPU socket (``store_threads`` x
  ``store_thread_bandwidth``, class ``cpu stores (gdrcopy)``): CPU threads
  writing into GPU memory (GDRCopy). A copy the schedule marks as driven by
  the ``cpu`` takes it once per GPU written, on the last socket its path
  crosses (the socket the GPU hangs off);
- ``p2p_bandwidth`` of a CPU socket: taken by peer-to-peer transfers, i.e.
  the part of a path inside one server that crosses the socket but touches no
  host memory (GPU to NIC; GPU to GPU too unless ``p2p_gpu_bandwidth`` is set);
- ``pair_bandwidth`` of the topology's ``[mpi]`` table: every message between two servers takes a pool
  of its pair of servers, both directions together (class ``mpi pair``): what the message-passing
  transport carries between two hosts that exchange, which can be below what their NICs carry when
  their traffic goes one way per pair (see :mod:`flyersim.sim.app.calibrate`);
- ``p2p_gpu_bandwidth`` of a CPU socket: a GPU-to-GPU peer-to-peer transfer
  through it takes a pool of this capacity of its own pair of GPUs (per
  direction per pair, class ``p2p gpu-gpu``) instead of the socket pool.

A link's class is its ``kind`` (``pcie``, ``xgmi``, ``ib``, ...); a PCIe link
also gets its direction, by the kinds of its ends: ``pcie up (gpu)`` carries
bytes from a GPU toward the CPU (host side: cpu, memory, root port, then PCIe
switch, in that order), ``pcie down (gpu)`` toward it (see :func:`link_class`).

**Routing.** ``ecmp`` (the default) gives every transfer the one path the
topology's router hashes it onto (:meth:`topologies.Router.path`),
collisions included. ``adaptive`` adds, for each transfer between servers,
its equal-cost alternatives (:meth:`topologies.Router.paths`, at most
``MAX_ALTERNATIVES`` with the ECMP path first) as further routes, listed per
route in a CSR (``alt_ptr``, ``alt_idx``): each flow takes the candidate
with the largest estimated fair share when it starts (:mod:`sim.fluid`).

A multicast reads its source once and takes the union of its copies' paths
(each resource once). A transfer's latency is the sum of the ``latency`` of every node and link on
its path (per-hop latency plus per-message overheads), plus the software cost of its kind from the
topology's ``[mpi]`` table (:func:`op_cost`: ``message_latency`` for a message, ``copy_latency`` for
a local copy; none without the table); a reduce's is its engine's ``reduce_latency`` (plus the
longest route of a remote input). A latency holds no resource: other flows use the wires meanwhile.
"""

from dataclasses import dataclass

import numpy as np

from flyersim.collectives.schedule import ENGINES, REDUCE
from flyersim.topologies import Router
from flyersim.topologies.routing import MAX_ALTERNATIVES

ROUTING = ("ecmp", "adaptive")  # routing policies, see the module docstring

_POOL_CLASS = {"memory": "dram", "gpu": "hbm", "rootport": "rootport", "nic": "nic"}
# PCIe distance of a node kind from the CPU; every other kind is a device at the far end
_HOST_SIDE = {"cpu": 0, "memory": 0, "rootport": 1, "pcieswitch": 2}


def link_class(graph, u, v):
    """Resource class of link ``u -> v``: its kind, with direction and device kind for PCIe.

    >>> from flyersim.topologies import load
    >>> g = load("fireflyer2", gpus=8)
    >>> link_class(g, "n0/gpu0", "n0/rp0"), link_class(g, "n0/rp0", "n0/gpu0"), link_class(g, "n0/cpu0", "n0/cpu1")
    ('pcie up (gpu)', 'pcie down (gpu)', 'xgmi')
    """
    return _link_class(graph.nodes, graph.adj, u, v)


def _link_class(nodes, succ, u, v):
    kind = succ[u][v].get("kind", "link")
    if kind != "pcie":
        return kind
    far = len(_HOST_SIDE)
    du, dv = (_HOST_SIDE.get(nodes[x]["kind"], far) for x in (u, v))
    if du == dv:
        return kind
    device = u if du > dv else v
    return f"pcie {'up' if du > dv else 'down'} ({nodes[device]['kind']})"


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
    op_route: np.ndarray = None  # route index of every op (None: a streamed schedule's, never all at once)
    alt_ptr: np.ndarray = None  # CSR of candidates: route r may take alt_idx[alt_ptr[r]:alt_ptr[r+1]] (itself
    alt_idx: np.ndarray = None  # first; none listed: fixed); None: every route is fixed (ecmp)

    def carried(self, op_bytes, op_route=None):
        """Bytes each resource carries over the whole run (weights applied), ops on ``op_route`` (default theirs)."""
        op_route = self.op_route if op_route is None else op_route
        return self.carried_by_route(np.bincount(op_route, weights=op_bytes, minlength=self.rlat.size))

    def carried_by_route(self, per_route):
        """Bytes each resource carries when route r carries ``per_route[r]`` bytes (weights applied)."""
        lengths = np.diff(self.rptr)
        return np.bincount(self.rres, weights=self.rw * np.repeat(per_route, lengths),
                           minlength=self.capacity.size)


class _Resources:
    """The resources routes use, numbered in the order first named, and the graph's attributes as plain dicts
    (networkx's views cost a call per lookup, and a 10,000-GPU route table makes millions)."""

    def __init__(self, graph):
        self.nodes = dict(graph.nodes(data=True))  # node -> its attribute dict
        self.succ = dict(graph.adjacency())        # u -> {v: the link's attribute dict}
        self.mpi = dict(graph.graph.get("mpi") or {})  # the [mpi] table: per-op costs, pair pools
        self.index, self.names, self.classes, self.capacity = {}, [], [], []

    def _add(self, key, name, cls, capacity):
        self.index[key] = rid = len(self.names)
        self.names.append(name)
        self.classes.append(cls)
        self.capacity.append(float(capacity))
        return rid

    def link(self, u, v):
        """The number of link ``u -> v``."""
        rid = self.index.get((u, v))
        if rid is None:
            rid = self._add((u, v), f"{u}->{v}", _link_class(self.nodes, self.succ, u, v),
                            self.succ[u][v]["bandwidth"])
        return rid

    def pool(self, node, attr, cls, label=None):
        """The number of ``node``'s pool ``attr`` (a capacity in its attributes), class ``cls``."""
        rid = self.index.get((node, attr))
        if rid is None:
            rid = self._add((node, attr), f"{node} {label or attr}", cls, self.nodes[node][attr])
        return rid

    def pair(self, a, b, capacity):
        """The number of the peer-to-peer pool of GPUs ``a`` to ``b``."""
        rid = self.index.get(("p2p", a, b))
        if rid is None:
            rid = self._add(("p2p", a, b), f"p2p {a} to {b}", "p2p gpu-gpu", capacity)
        return rid


def build_routes(graph, schedule, router=None, routing="ecmp"):
    """Routes of every op of ``schedule`` (whose layout names graph nodes) on ``graph``.

    One route per distinct op shape: an xfer by (source, destination); a
    reduce by its location and the sorted locations of its inputs; a
    multicast by its source and its destinations, on its first copy, while
    the other copies get an empty route (see :func:`flow_bytes`). With
    ``routing="adaptive"`` the equal-cost alternatives of every xfer follow
    as further routes (the routes and resources before them are the
    ``ecmp`` ones, in the same order).
    """
    if routing not in ROUTING:
        raise ValueError(f"unknown routing {routing!r} (choose from {', '.join(ROUTING)})")
    router = router or Router(graph)
    names = schedule.layout.location_names()
    missing = [n for n in names if n not in graph]
    if missing:
        raise ValueError(f"topology has no location {missing[0]!r} needed by the {schedule.algo} schedule")
    s, nloc, m = schedule, len(names), schedule.num_ops
    group, follower, leader, is_reduce, plain, by_cpu, key = _op_kinds(s, nloc)
    op_route = np.zeros(m, np.int64)
    resources = _Resources(graph)
    rptr, rres, rw, rlat = [0], [], [], []

    def add(usage, latency):
        rres.extend(usage.keys())
        rw.extend(usage.values())
        rptr.append(len(rres))
        rlat.append(latency)

    # ordinary transfers
    unique, inverse = np.unique(key, return_inverse=True)
    op_route[plain] = inverse.ravel()
    others = []  # (route, [further equal-cost paths], cpu) for adaptive routing
    for k in unique.tolist():
        pair, cpu = divmod(k, 2)
        src, dst = names[pair // nloc], names[pair % nloc]
        if routing == "adaptive":
            path, *more = router.paths(src, dst, MAX_ALTERNATIVES)
            others.append((len(rlat), more, bool(cpu)))
        else:
            path = router.path(src, dst)
        add(*_xfer_usage(resources, path, cpu=bool(cpu)))
    # reduces: location, then the sorted locations of the inputs
    rows = np.flatnonzero(is_reduce)
    if rows.size:
        table = _padded(s.in_ptr, s.in_loc, rows)
        unique, inverse = np.unique(np.column_stack([s.dst[rows], np.sort(table, axis=1)]), axis=0,
                                    return_inverse=True)
        op_route[rows] = len(rlat) + inverse.ravel()
        for row in unique.tolist():
            add(*_reduce_usage(resources, router, names, row[0], [x for x in row[1:] if x >= 0]))
    # multicasts: source, then the sorted destinations, on the first copy
    rows = np.flatnonzero(leader)
    if rows.size:
        members = np.flatnonzero(group >= 0)
        members = members[np.lexsort((members, group[members]))]
        lead = group[members]
        first = np.searchsorted(lead, lead)  # index of each member's group start in ``members``
        table = np.full((m, int(np.max(np.arange(members.size) - first)) + 1), -1, np.int64)
        table[lead, np.arange(members.size) - first] = s.dst[members]
        unique, inverse = np.unique(np.column_stack([by_cpu[rows], s.src[rows], np.sort(table[rows], axis=1)]),
                                    axis=0, return_inverse=True)
        op_route[rows] = len(rlat) + inverse.ravel()
        for row in unique.tolist():
            paths = [router.path(names[row[1]], names[d]) for d in row[2:] if d >= 0]
            add(*_multicast_usage(resources, paths, cpu=bool(row[0])))
    # further copies of a multicast: moved by the first copy's flow
    op_route[follower] = len(rlat)
    add({}, 0.0)
    alt_ptr = alt_idx = None
    if routing == "adaptive":
        candidates = [[] for _ in rlat]
        for route, more, cpu in others:
            for path in more:
                candidates[route] += [route] if not candidates[route] else []
                candidates[route].append(len(rlat))
                candidates.append([])
                add(*_xfer_usage(resources, path, cpu=cpu))
        alt_ptr = np.zeros(len(candidates) + 1, np.int64)
        np.cumsum([len(c) for c in candidates], out=alt_ptr[1:])
        alt_idx = np.array([r for c in candidates for r in c], np.int64)
    return Routes(resources.names, resources.classes, np.array(resources.capacity),
                  np.array(rptr, np.int64), np.array(rres, np.int64), np.array(rw, np.float64),
                  np.array(rlat, np.float64), op_route, alt_ptr, alt_idx)


def _op_kinds(s, nloc):
    """Per op of schedule ``s``: its multicast group, follower, leader, reduce, plain-transfer and CPU-driven
    masks, and each plain transfer's route key (source and destination location, CPU-driven or not)."""
    m = s.num_ops
    group = s.group if s.group is not None else np.full(m, -1, np.int64)
    follower = (group >= 0) & (group != np.arange(m))
    leader = (group >= 0) & ~follower
    is_reduce = (s.kind == REDUCE) & ~follower
    plain = ~(is_reduce | leader | follower)
    by_cpu = (s.engine == ENGINES.index("cpu")).astype(np.int64) if s.engine is not None else np.zeros(m, np.int64)
    key = (s.src[plain].astype(np.int64) * nloc + s.dst[plain]) * 2 + by_cpu[plain]
    return group, follower, leader, is_reduce, plain, by_cpu, key


def alternative_bound(schedule):
    """At most how many alternative routes ``routing="adaptive"`` adds to ``schedule``'s
    (:func:`build_routes`): ``MAX_ALTERNATIVES - 1`` per distinct ordinary transfer between two servers
    (inside a server there is one path), counted before any route is built (:mod:`sim.budget`).

    >>> from flyersim import collectives
    >>> from flyersim.collectives.schedule import Layout
    >>> alternative_bound(collectives.build("ring", Layout(nodes=2, gpus_per_node=4)))  # 2 of its hops cross
    62
    """
    names = schedule.layout.location_names()
    server = np.array([name.split("/", 1)[0] for name in names])
    unique = np.unique(_op_kinds(schedule, len(names))[-1]) // 2
    return int(np.count_nonzero(server[unique // len(names)] != server[unique % len(names)])) * \
        (MAX_ALTERNATIVES - 1)


def path_routes(graph, paths):
    """Routes of plain copies along given node paths, route ``i`` (and op ``i``) along ``paths[i]``: traffic
    that is no schedule's, e.g. a storage node's reads (:mod:`sim.background`).

    >>> from flyersim.topologies import Router, load
    >>> g = load("fireflyer2", gpus=16)
    >>> r = path_routes(g, [Router(g).path("n0/host1", "n1/host1")])
    >>> "n0/nic0->z0/leaf0" in r.names, r.op_route.tolist()
    (True, [0])
    """
    resources = _Resources(graph)
    rptr, rres, rw, rlat = [0], [], [], []
    for path in paths:
        usage, latency = _xfer_usage(resources, path)
        rres.extend(usage.keys())
        rw.extend(usage.values())
        rptr.append(len(rres))
        rlat.append(latency)
    return Routes(resources.names, resources.classes, np.array(resources.capacity, np.float64),
                  np.array(rptr, np.int64), np.array(rres, np.int64), np.array(rw, np.float64),
                  np.array(rlat, np.float64), np.arange(len(paths), dtype=np.int64))


class RouteTable:
    """Routes of a schedule's ops found batch by batch (:mod:`collectives.stream`), numbered as found.

    :meth:`add` gives each op of a batch its route, building the routes of shapes not seen before;
    :meth:`routes` numbers routes and resources as :func:`build_routes` (``ecmp``) would for the whole
    schedule at once (shapes sorted: transfers, reduces, multicasts, then the empty route), so reports do
    not depend on the batches; the order of resources never changes a simulated time.
    """

    def __init__(self, graph, layout, algo, router=None):
        self.graph, self.router = graph, router or Router(graph)
        self.names = layout.location_names()
        missing = [n for n in self.names if n not in graph]
        if missing:
            raise ValueError(f"topology has no location {missing[0]!r} needed by the {algo} schedule")
        self.resources = _Resources(graph)
        self.keys = []      # shape of each route, as found
        self.index = {}     # shape -> route
        self.usage = []     # (usage, latency) of each route
        self._flat = [np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0)], 0  # elements() so far
        self.codes = {}     # kind -> (sorted int64 codes of shapes seen, their routes): a batch's lookup in numpy
        self.patterns = {}  # the shapes of a recent batch (bytes, see _pattern) -> its routes; oldest first

    @property
    def size(self):
        return len(self.keys)

    def _route(self, key):
        r = self.index.get(key)
        if r is None:
            r = self.index[key] = len(self.keys)
            self.keys.append(key)
            self.usage.append(self._build(key))
        return r

    def _build(self, key):
        resources, router, names = self.resources, self.router, self.names
        if key[0] == "x":
            _, src, dst, cpu = key
            return _xfer_usage(resources, router.path(names[src], names[dst]), cpu=bool(cpu))
        if key[0] == "r":
            return _reduce_usage(resources, router, names, key[1], list(key[2]))
        if key[0] == "m":
            _, cpu, src, dsts = key
            return _multicast_usage(resources, [router.path(names[src], names[d]) for d in dsts], cpu=bool(cpu))
        return {}, 0.0

    def add(self, s, first=0):
        """Route of each op of batch ``s`` (its op ids start at ``first``), as found (int64 array).

        A batch whose ops have the shapes of a recent batch, op by op (a ring's steps), takes that batch's
        routes without looking its shapes up again.
        """
        m = s.num_ops
        group = s.group if s.group is not None else np.full(m, -1, np.int64)
        pattern = _pattern(s, group, first)
        op_route = self.patterns.pop(pattern, None)
        if op_route is None:
            op_route = self._add(s, first, group)
            op_route.flags.writeable = False
            if len(self.patterns) >= _PATTERNS:
                del self.patterns[next(iter(self.patterns))]  # the least recently used
        self.patterns[pattern] = op_route
        return op_route

    def _add(self, s, first, group):
        nloc, m = len(self.names), s.num_ops
        ids = first + np.arange(m)
        follower = (group >= 0) & (group != ids)
        leader = (group >= 0) & ~follower
        is_reduce = (s.kind == REDUCE) & ~follower
        plain = ~(is_reduce | leader | follower)
        by_cpu = (s.engine == ENGINES.index("cpu")).astype(np.int64) if s.engine is not None else np.zeros(m, np.int64)
        op_route = np.zeros(m, np.int64)
        # ordinary transfers
        key = (s.src[plain].astype(np.int64) * nloc + s.dst[plain]) * 2 + by_cpu[plain]
        unique, inverse = np.unique(key, return_inverse=True)
        found = self._lookup("x", unique, lambda i: ("x", int(unique[i]) // 2 // nloc, int(unique[i]) // 2 % nloc,
                                                     int(unique[i]) % 2))
        op_route[plain] = found[inverse.ravel()]
        # reduces: location, then the sorted locations of the inputs
        rows = np.flatnonzero(is_reduce)
        if rows.size:
            table = np.sort(_padded(s.in_ptr, s.in_loc, rows), axis=1)
            if (nloc + 1.0) ** (table.shape[1] + 1) < 2.0**62:  # one int64 code per shape: sorted inputs, then dst
                code = np.zeros(rows.size, np.int64)
                for col in (*table.T, s.dst[rows]):
                    code = code * (nloc + 1) + (col + 1)  # padding (-1) first: leading zero digits
                unique, first_row, inverse = np.unique(code, return_index=True, return_inverse=True)
                found = self._lookup("r", unique, lambda i: ("r", int(s.dst[rows[first_row[i]]]), tuple(
                    int(x) for x in table[first_row[i]] if x >= 0)))
            else:
                unique, inverse = np.unique(np.column_stack([s.dst[rows], table]), axis=0, return_inverse=True)
                found = np.array([self._route(("r", row[0], tuple(x for x in row[1:] if x >= 0)))
                                  for row in unique.tolist()], np.int64)
            op_route[rows] = found[inverse.ravel()]
        # multicasts: source, then the sorted destinations, on the first copy
        rows = np.flatnonzero(leader)
        if rows.size:
            members = np.flatnonzero(group >= 0)
            members = members[np.lexsort((members, group[members]))]
            lead = group[members] - first
            start = np.searchsorted(lead, lead)  # index of each member's group start in ``members``
            table = np.full((m, int(np.max(np.arange(members.size) - start)) + 1), -1, np.int64)
            table[lead, np.arange(members.size) - start] = s.dst[members]
            unique, inverse = np.unique(np.column_stack([by_cpu[rows], s.src[rows], np.sort(table[rows], axis=1)]),
                                        axis=0, return_inverse=True)
            found = [self._route(("m", row[0], row[1], tuple(d for d in row[2:] if d >= 0)))
                     for row in unique.tolist()]
            op_route[rows] = np.asarray(found, np.int64)[inverse.ravel()]
        # further copies of a multicast: moved by the first copy's flow
        if follower.any():
            op_route[follower] = self._route(("e",))
        return op_route

    def _lookup(self, kind, codes, shape):
        """Routes of the shapes of sorted unique int64 ``codes`` of ``kind``; ``shape(i)``: the shape of code i."""
        known, routes = self.codes.get(kind, (np.empty(0, np.int64), np.empty(0, np.int64)))
        at = np.minimum(np.searchsorted(known, codes), max(known.size - 1, 0))
        hit = (known[at] == codes) if known.size else np.zeros(codes.size, bool)
        out = np.where(hit, routes[at] if known.size else 0, -1)
        new = np.flatnonzero(~hit)
        if new.size:
            out[new] = [self._route(shape(i)) for i in new.tolist()]
            known, routes = np.concatenate([known, codes[new]]), np.concatenate([routes, out[new]])
            order = np.argsort(known, kind="stable")
            self.codes[kind] = known[order], routes[order]
        return out

    def elements(self):
        """The routes as found: CSR ``(rptr, rres, rw, rlat)`` and the resource capacities.

        Each call flattens only the routes found since the previous one (a stream calls it after every batch
        that found new routes)."""
        (lengths, rres, rw, rlat), done = self._flat
        new = self.usage[done:]
        count = sum(len(u) for u, _ in new)
        lengths = np.concatenate([lengths, np.fromiter((len(u) for u, _ in new), np.int64, len(new))])
        rres = np.concatenate([rres, np.fromiter((k for u, _ in new for k in u), np.int64, count)])
        rw = np.concatenate([rw, np.fromiter((w for u, _ in new for w in u.values()), np.float64, count)])
        rlat = np.concatenate([rlat, np.fromiter((lat for _, lat in new), np.float64, len(new))])
        self._flat = [lengths, rres, rw, rlat], len(self.usage)
        rptr = np.zeros(lengths.size + 1, np.int64)
        np.cumsum(lengths, out=rptr[1:])
        return rptr, rres, rw, rlat, np.array(self.resources.capacity, np.float64)

    def routes(self):
        """``(fields of Routes but op_route, renumber)``: routes and resources in :func:`build_routes`' order;
        ``renumber[r]`` is the new number of route r as found. The empty route is always present.

        Resources are renumbered, not found again: a route names its resources in the order it first uses them,
        so numbering them in order of first use over the routes in the new order gives what building the routes
        afresh in that order would.
        """
        self._route(("e",))
        kinds = {"x": 0, "r": 1, "m": 2, "e": 3}
        width = {kind: max((len(k[-1]) for k in self.keys if k[0] == kind), default=0) for kind in "rm"}

        def order(i):  # np.unique's order of the padded shape rows, per kind
            k = self.keys[i]
            if k[0] == "x":
                return (0, (k[1] * len(self.names) + k[2]) * 2 + k[3])
            if k[0] == "r":
                return (1, (k[1], *(-1,) * (width["r"] - len(k[2])), *k[2]))
            if k[0] == "m":
                return (2, (k[1], k[2], *(-1,) * (width["m"] - len(k[3])), *k[3]))
            return (kinds[k[0]], ())

        ordered = sorted(range(len(self.keys)), key=order)
        renumber = np.empty(len(ordered), np.int64)
        renumber[ordered] = np.arange(len(ordered))
        rptr, rres, rw, rlat, capacity = self.elements()
        lengths = np.diff(rptr)[ordered]
        at = np.repeat(rptr[ordered], lengths) + np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths,
                                                                                     lengths)
        old = rres[at]  # the resources of the routes in the new order
        unique, first = np.unique(old, return_index=True)
        named = unique[np.argsort(first)]  # old numbers in order of first use
        new = np.empty(capacity.size, np.int64)
        new[named] = np.arange(named.size)
        fields = ([self.resources.names[i] for i in named.tolist()],
                  [self.resources.classes[i] for i in named.tolist()], capacity[named],
                  np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), new[old], rw[at], rlat[ordered])
        return fields, renumber


_PATTERNS = 8  # batches' shapes a RouteTable remembers (a ring's steps alternate between two or three)


def _pattern(s, group, first):
    """What decides the routes of batch ``s``'s ops, op by op, as bytes: kinds, endpoints, copy engines,
    input locations and multicast groups (relative to the batch's first op ``first``)."""
    engine = s.engine if s.engine is not None else np.zeros(0, np.int8)
    columns = ((np.array([s.num_ops, engine.size, s.in_loc.size]), np.int64), (s.kind, np.int8), (s.src, np.int32),
               (s.dst, np.int32), (engine, np.int8), (np.where(group >= 0, group - first, -1), np.int64),
               (s.in_ptr - s.in_ptr[0], np.int64), (s.in_loc, np.int32))
    return b"".join(np.ascontiguousarray(a, dtype).tobytes() for a, dtype in columns)


def flow_bytes(schedule, op_bytes, first=0):
    """Bytes each op's flow moves: a multicast's further copies move none (its first copy moves them all).

    ``first``: the op id of the schedule's first op (a batch of a stream).
    """
    if schedule.group is None:
        return op_bytes
    follower = (schedule.group >= 0) & (schedule.group != first + np.arange(schedule.num_ops))
    return np.where(follower, 0.0, op_bytes)


def _padded(ptr, values, rows):
    """Rows ``rows`` of a CSR as a matrix padded with -1."""
    lengths = (ptr[rows + 1] - ptr[rows]).astype(np.int64)
    table = np.full((rows.size, int(lengths.max(initial=1))), -1, np.int64)
    which = np.repeat(np.arange(rows.size), lengths)
    col = np.arange(which.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    table[which, col] = values[np.repeat(ptr[rows], lengths) + col]
    return table


def _xfer_usage(resources, path, sink_pool=True, cpu=False):
    """Usage of a copy along ``path``; ``sink_pool=False``: the last node only reads (a reduce engine);
    ``cpu``: CPU threads store the bytes (see :func:`_store_engine`)."""
    nodes, succ = resources.nodes, resources.succ
    usage, latency = {}, 0.0
    if cpu:
        usage.update(_store_engine(resources, path))
    for u, v in zip(path, path[1:]):
        rid = resources.link(u, v)
        usage[rid] = usage.get(rid, 0.0) + 1.0
        latency += succ[u][v].get("latency", 0.0)
    if sink_pool:  # a transfer of its own, not a reduce reading a remote input
        latency += _op_cost(resources.mpi, nodes, path[0], path[-1])
        usage.update(_pair_pool(resources, path[0], path[-1]))
    for v in path:
        attrs = nodes[v]
        latency += attrs.get("latency", 0.0)
        if "bandwidth" in attrs and (sink_pool or v != path[-1]):
            rid = resources.pool(v, "bandwidth", _POOL_CLASS.get(attrs["kind"], attrs["kind"]))
            usage[rid] = usage.get(rid, 0.0) + 1.0
    for run in _server_runs(nodes, path):
        if any(nodes[v]["kind"] == "memory" for v in run):
            continue
        inner = [nodes[v] for v in run[1:-1]]
        pair = [a["p2p_gpu_bandwidth"] for a in inner if "p2p_gpu_bandwidth" in a]
        if pair and nodes[run[0]]["kind"] == nodes[run[-1]]["kind"] == "gpu":
            rid = resources.pair(run[0], run[-1], min(pair))
            usage[rid] = usage.get(rid, 0.0) + 1.0
            continue
        for v in run[1:-1]:
            if "p2p_bandwidth" in nodes[v]:
                rid = resources.pool(v, "p2p_bandwidth", "p2p")
                usage[rid] = usage.get(rid, 0.0) + 1.0
    return usage, latency


def op_cost(graph, src, dst):
    """Software cost of one transfer ``src -> dst`` by its kind, from the topology's ``[mpi]`` table: a
    *copy* (both ends in one server, not both GPUs: a GPU's copy to or from host memory) pays
    ``copy_latency``, a *message* (GPU to GPU, or between servers) ``message_latency``; 0 without them.

    >>> from flyersim.topologies import load
    >>> g = load("fireflyer2", gpus=16)
    >>> g.graph["mpi"] = {"message_latency": 5e-6, "copy_latency": 1e-6}
    >>> op_cost(g, "n0/gpu0", "n0/host0"), op_cost(g, "n0/gpu0", "n0/gpu1"), op_cost(g, "n0/host0", "n1/host0")
    (1e-06, 5e-06, 5e-06)
    """
    return _op_cost(graph.graph.get("mpi") or {}, graph.nodes, src, dst)


def _op_cost(mpi, nodes, src, dst):
    if not mpi:
        return 0.0
    a, b = nodes[src], nodes[dst]
    server = a.get("server")
    copy = server is not None and server == b.get("server") and not (a["kind"] == b["kind"] == "gpu")
    return mpi.get("copy_latency" if copy else "message_latency", 0.0)


def _pair_pool(resources, src, dst):
    """``{resource: 1}`` of the pool two servers share for the messages between them, both directions
    together (``pair_bandwidth`` of the topology's ``[mpi]`` table), for a transfer between servers; else {}.

    >>> from flyersim.topologies import load
    >>> g = load("fireflyer2", gpus=16)
    >>> g.graph["mpi"] = {"pair_bandwidth": 1e9}
    >>> r = _Resources(g)
    >>> _pair_pool(r, "n1/gpu0", "n0/host0") == _pair_pool(r, "n0/gpu3", "n1/gpu2"), r.names
    (True, ['n0<->n1 messages'])
    """
    cap = resources.mpi.get("pair_bandwidth")
    a, b = resources.nodes[src].get("server"), resources.nodes[dst].get("server")
    if cap is None or a is None or b is None or a == b:
        return {}
    key = ("servers", min(a, b), max(a, b))
    rid = resources.index.get(key)
    if rid is None:
        rid = resources._add(key, f"n{key[1]}<->n{key[2]} messages", "mpi pair", cap)
    return {rid: 1.0}


def _store_engine(resources, path):
    """The store threads of the last CPU socket on ``path`` (the one next to the GPU written), weight 1."""
    nodes = resources.nodes
    cpu = next((v for v in reversed(path) if nodes[v]["kind"] == "cpu"), None)
    if cpu is None or "store_bandwidth" not in nodes[cpu]:
        return {}
    return {resources.pool(cpu, "store_bandwidth", "cpu stores (gdrcopy)", "gdrcopy stores"): 1.0}


def _server_runs(nodes, path):
    """Maximal stretches of ``path`` inside one server."""
    runs, current, server = [], [], None
    for v in path:
        here = nodes[v].get("server")
        if current and here != server:
            runs.append(current)
            current = []
        current.append(v)
        server = here
    runs.append(current)
    return [run for run in runs if nodes[run[0]].get("server") is not None]


def _multicast_usage(resources, paths, cpu=False):
    """One read at the source, the union of the paths: a resource on several paths (a shared prefix) counts once;
    with ``cpu``, store threads write every destination, so their engine counts once per path."""
    usage, latency = {}, 0.0
    for path in paths:
        one, lat = _xfer_usage(resources, path)
        for rid, w in one.items():
            usage[rid] = max(usage.get(rid, 0.0), w)
        latency = max(latency, lat)
    for path in paths if cpu else ():
        for rid, w in _store_engine(resources, path).items():
            usage[rid] = usage.get(rid, 0.0) + w
    return usage, latency


def _reduce_usage(resources, router, names, loc, in_locs):
    """A reduce at ``loc`` by its engine: per output byte, 1 engine unit, 1 read of each input's memory (plus the
    route from that memory to the engine for an input elsewhere, e.g. over xGMI) and 1 write at ``loc``."""
    nodes = resources.nodes
    location = names[loc]
    attrs = nodes[location]
    engine = location if attrs["kind"] == "gpu" else attrs.get("engine")
    if engine is None:
        raise ValueError(f"{location} has no engine to reduce with")
    usage, latency = {}, nodes[engine].get("reduce_latency", 0.0)
    if "reduce_bandwidth" in nodes[engine]:
        usage[resources.pool(engine, "reduce_bandwidth", f"{nodes[engine]['kind']} reduce")] = 1.0
    if "reduce_stream_bandwidth" in nodes[engine]:  # threads streaming k inputs and 1 output
        usage[resources.pool(engine, "reduce_stream_bandwidth", "cpu reduce threads",
                             "reduce threads")] = len(in_locs) + 1.0
    local = 1 + sum(1 for x in in_locs if x == loc)  # the write and the local reads
    if "bandwidth" in attrs:
        rid = resources.pool(location, "bandwidth", _POOL_CLASS.get(attrs["kind"], attrs["kind"]))
        usage[rid] = float(local)
    remote = 0.0
    for x in in_locs:
        if x == loc:
            continue
        one, lat = _xfer_usage(resources, router.path(names[x], engine), sink_pool=False)
        for rid, w in one.items():
            usage[rid] = usage.get(rid, 0.0) + w
        remote = max(remote, lat)
    return usage, latency + remote
