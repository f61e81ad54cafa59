"""NCCL's topology decisions on a hardware graph: path types, P2P, GPUDirect RDMA, ring order, channels.

:func:`nccl_params` returns topology facts under generic keyword names; any
schedule generator (or resolver) that declares a parameter of that name in its
signature receives it (see :func:`collectives.build`). Rules and sources:

- **Path types** (NCCL ``src/graph/paths.cc`` ``ncclTopoSetPaths``; ``topo.h``
  ``PATH_*``): NVL when the path is NVLink only (NVSwitch or bridge); PIX
  through at most one PCIe bridge; PXB through several bridges without the
  CPU; PHB through one CPU's host bridge; SYS across the inter-socket link. A
  ``rootport`` node shared by two devices counts as a bridge (a path through it
  does not cross the CPU) [I: the graph says the two GPUs meet below the CPU].
- **NCCL release** (``nccl_version``, default the graph's ``[nccl] version``,
  else 2.23): selects the P2P rule below. Releases before 2.7.8 are not
  transcribed.
- **P2P** (``ncclTopoCheckP2p``): from 2.23 (NVIDIA/nccl PR #1331), allowed
  when the path type <= PXB, and on AMD x86 CPUs with at most two GPUs in the
  server up to SYS. In 2.7.8 to 2.22.3 the default level is SYS ("use P2P
  whenever we can"), lowered to PXB only on ARM and Intel CPUs, so on AMD every
  GPU pair uses P2P [I: the Intel rule of those releases, PHB on some CPU
  models, is taken as PXB]. Otherwise NCCL diverts the pair through the
  receiving GPU's CPU (``ncclTopoComputePaths`` ``addInterStep``), i.e. the
  SHM transport.
- **GPUDirect RDMA** (``ncclTopoCheckGdr``): used when the GPU-NIC path type
  <= ``NCCL_NET_GDR_LEVEL``, default PXB (i.e. GPU and NIC under a common PCIe
  switch); a cluster sets it in its ``[nccl] net_gdr_level``. A100 (compute
  capability 8.0) enables GDR reads too, so one flag covers both directions.
  Judged for the GPUs that talk to the network (the ring's first and last GPU
  of a server, the tree's chain head).
- **Ring order**: enter and leave a server through GPUs on the NIC's socket,
  crossing sockets as few times as possible (the outcome of NCCL's
  ``search.cc`` on such servers; also what the Fire-Flyer paper tuned NCCL to
  do, arXiv:2408.14158 VI-A3).
- **Search bandwidth and channels** (``search.cc`` ``ncclTopoCompute``): NCCL
  rates links with its own constants (``topo.h``): a PCIe Gen4 x16 link
  ``PCI_BW_GEN4 = 24`` GB/s, AMD inter-socket ``AMD_BW = 16`` GB/s, an A100
  NVLink ``SM80_NVLINK_BW = 20`` GB/s per link (a graph NVLink edge of B bytes/s
  counts as B/25e9 links of 25 GB/s), the NIC at its port speed (graph network
  edge). One channel's speed is the largest value of NCCL's speed arrays
  (``speedArrayIntra``/``speedArrayInter``, NCCL 2.9-2.18 ``search.cc``) that the
  ring's most loaded link can carry; the search keeps adding channels at that
  speed while every link still can (capped at ``MAXCHANNELS/2 = 16``), and
  ``ncclTopoPostset`` then duplicates the channels, so the runtime ``channels``
  is twice the searched count. The tree graph is rated the same way over the
  chain + the head's NIC. [I: a simplification of the recursive search, which
  also tries other orders and NIC pairs.]
"""

import networkx as nx
import numpy as np

from flyersim.topologies import Router

PATH_NAMES = ("LOC", "NVL", "PIX", "PXB", "PHB", "SYS")
LOC, NVL, PIX, PXB, PHB, SYS = range(6)
PCI_BW_GEN4 = 24e9      # topo.h: Gen4 x16 as NCCL rates it (16 lanes x 120 / 80 GB/s)
AMD_BW = 16e9           # topo.h: AMD inter-socket P2P bandwidth
SM80_NVLINK_BW = 20e9   # topo.h: per NVLink link on A100
NVLINK_LINK = 25e9      # one NVLink3 link, per direction (A100 datasheet)
SPEED_INTRA = (40.0, 30.0, 20.0, 18.0, 15.0, 12.0, 10.0, 9.0, 7.0, 6.0, 5.0, 4.0, 3.0)
SPEED_INTER = (48.0, 30.0, 28.0, 24.0, 20.0, 18.0, 15.0, 12.0, 10.0, 9.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.4, 1.2,
               0.24, 0.12)
MAX_SEARCH_CHANNELS = 16
DEFAULT_VERSION = (2, 23)  # when a cluster declares no [nccl] version: the newest rules transcribed here


def path_type(graph, path):
    """NCCL path type of a path of graph nodes inside one server."""
    kinds = [graph.nodes[v]["kind"] for v in path]
    edges = [graph.edges[u, v].get("kind") for u, v in zip(path, path[1:])]
    if all(k == "nvlink" for k in edges):
        return NVL
    cpus = sum(k == "cpu" for k in kinds)
    if cpus >= 2 or "xgmi" in edges:
        return SYS
    if cpus == 1:
        return PHB
    bridges = sum(k in ("pcieswitch", "rootport") for k in kinds[1:-1])
    return PIX if bridges <= 1 else PXB


def _server(graph, s=0):
    return sorted(n for n, srv in graph.nodes(data="server") if srv == s)


def _link_bw(graph, u, v):
    """NCCL's rating of one directed edge (None: NCCL does not model it as a limit)."""
    kind = graph.edges[u, v].get("kind")
    bw = graph.edges[u, v]["bandwidth"]
    if kind == "pcie":
        return min(bw, PCI_BW_GEN4)
    if kind == "xgmi":
        return AMD_BW
    if kind == "nvlink":
        return bw / NVLINK_LINK * SM80_NVLINK_BW
    if kind in ("fabric", "memory"):
        return None
    if graph.nodes[u].get("server") is None or graph.nodes[v].get("server") is None:
        return bw  # network edge: the port speed
    return None


def _rate(graph, router, hops, speeds):
    """(speed per channel, channels) for paths ``hops`` each carried once per channel."""
    load = {}
    for path in hops:
        for u, v in zip(path, path[1:]):
            bw = _link_bw(graph, u, v)
            if bw is not None:
                load[(u, v)] = (load.get((u, v), (bw, 0))[0], load.get((u, v), (bw, 0))[1] + 1)
    if not load:
        return speeds[0], MAX_SEARCH_CHANNELS
    cap = min(bw / n for bw, n in load.values()) / 1e9
    speed = next((s for s in speeds if s <= cap), speeds[-1])
    channels = max(1, min(MAX_SEARCH_CHANNELS, int(min(bw / 1e9 / (n * speed) for bw, n in load.values()))))
    return speed, channels


def release(version):
    """A release as a tuple: ``"2.10.3"`` -> ``(2, 10, 3)``; a tuple passes through.

    >>> release("2.10"), release((2, 23))
    ((2, 10), (2, 23))
    >>> release("2.7.3")
    Traceback (most recent call last):
    ValueError: nccl_version 2.7.3: releases before 2.7.8 are not transcribed
    """
    parts = tuple(version) if isinstance(version, tuple) else tuple(
        int(p) if p.isdigit() else -1 for p in str(version).split("."))
    if len(parts) < 2 or min(parts) < 0:
        raise ValueError(f"nccl_version: expected a release such as 2.10 or 2.10.3, got {version!r}")
    if parts < (2, 7, 8):
        raise ValueError(f"nccl_version {'.'.join(map(str, parts))}: releases before 2.7.8 are not transcribed")
    return parts


def p2p_level(version, vendor, gpus):
    """NCCL's default P2P path level (``ncclTopoCheckP2p``) for a release, CPU vendor and GPUs per server.

    >>> PATH_NAMES[p2p_level((2, 10), "amd", 8)], PATH_NAMES[p2p_level((2, 23), "amd", 8)]
    ('SYS', 'PXB')
    """
    amd = vendor.lower() == "amd"
    if release(version) < (2, 23):
        return SYS if amd else PXB
    return SYS if amd and gpus <= 2 else PXB


def nccl_params(graph, cpu_vendor=None, nccl_version=None):
    """Topology facts NCCL would derive on ``graph``, as generator keyword arguments (see module docstring)."""
    g = graph.graph["gpus_per_node"]
    declared = graph.graph.get("nccl") or {}
    version = release(nccl_version or declared.get("version", DEFAULT_VERSION))
    gdr_level = PATH_NAMES.index(declared.get("net_gdr_level", "PXB"))
    nodes = graph.graph["nodes"]
    router = Router(graph)
    vendor = cpu_vendor or next((d.get("vendor") for _, d in graph.nodes(data=True)
                                 if d.get("kind") == "cpu" and d.get("vendor")), "amd")  # both presets: AMD EPYC
    gpus = [f"n0/gpu{j}" for j in range(g)]
    local = graph.subgraph(_server(graph))
    nvl = nx.DiGraph((u, v) for u, v, k in local.edges(data="kind") if k == "nvlink")

    def best_path(a, b):
        """NCCL's path: NVLink-only when one exists (highest bandwidth), else the router's path."""
        if a in nvl and b in nvl and nx.has_path(nvl, a, b):
            return nx.shortest_path(nvl, a, b)
        return router.path(a, b)

    types = np.zeros((g, g), np.int64)
    for i in range(g):
        for j in range(g):
            if i != j:
                types[i, j] = path_type(graph, best_path(gpus[i], gpus[j]))
    allowed = types <= p2p_level(version, vendor, g)
    pairs = tuple((i, j) for i in range(g) for j in range(i + 1, g) if allowed[i, j])
    p2p = True if allowed.all() else (pairs if pairs else False)

    # sockets: the CPU a device reaches first
    cpus = sorted(n for n in local if graph.nodes[n]["kind"] == "cpu")
    nics = sorted(n for n in local if graph.nodes[n]["kind"] == "nic")

    def socket(node):
        if not cpus:
            return 0
        hops = nx.single_source_shortest_path_length(local.to_undirected(as_view=True), node)
        return min(range(len(cpus)), key=lambda c: (hops.get(cpus[c], 1 << 30), c))

    gpu_socket = [socket(x) for x in gpus]
    nic_socket = socket(nics[0]) if nics else 0
    near = [j for j in range(g) if gpu_socket[j] == nic_socket]
    far = [j for j in range(g) if gpu_socket[j] != nic_socket]
    order = tuple(near[:1] + far + near[1:]) if near else tuple(range(g))

    def nic_of(j):
        path = router.path(gpus[j], "n1/gpu0") if nodes > 1 else None
        return next((v for v in path if graph.nodes[v]["kind"] == "nic"), None) if path else None

    def gdr_ok(j, level):
        nic = nic_of(j) or (f"n0/{nics[0].split('/', 1)[1]}" if nics else None)
        return nic is not None and path_type(graph, router.path(gpus[j], nic)) <= level
    talkers = {order[0], order[-1]}
    gdr = bool(nics) and all(gdr_ok(j, gdr_level) for j in talkers)

    def hop_paths(a, b):
        if allowed[a, b] or a == b:
            return [best_path(gpus[a], gpus[b])]
        host = f"n0/host{gpu_socket[b]}"  # SHM: through the receiver's CPU
        return [router.path(gpus[a], host), router.path(host, gpus[b])]

    ring_intra = [p for k in range(g - 1) for p in hop_paths(order[k], order[k + 1])]
    chain_intra = ring_intra[:]  # the tree's chain follows the same order (one direction per phase)
    inter = []
    if nodes > 1:
        out = router.path(gpus[order[-1]], f"n1/gpu{order[0]}")
        if not gdr:  # through pinned host memory by the NIC
            host = f"n0/host{nic_socket}"
            out = router.path(gpus[order[-1]], host) + router.path(host, f"n1/gpu{order[0]}")[1:]
        inter = [out]
    multi_nic = max(1, len(nics))
    intra_speed, intra_ch = _rate(graph, router, ring_intra or [[gpus[0]]], SPEED_INTRA)
    if inter:
        inter_speed, inter_ch = _rate(graph, router, ring_intra + inter, SPEED_INTER)
        inter_ch = min(MAX_SEARCH_CHANNELS, inter_ch * multi_nic)  # each channel may use its own NIC
    else:
        inter_speed, inter_ch = intra_speed, intra_ch
    ring_channels = inter_ch if nodes > 1 else intra_ch
    tree_speed, tree_ch = _rate(graph, router, chain_intra + inter, SPEED_INTER if inter else SPEED_INTRA)
    nvlink = bool(g > 1) and all(types[order[k], order[k + 1]] == NVL for k in range(g - 1))
    return {
        "p2p": p2p,
        "gdr": gdr,
        "local_order": order,
        "channels": 2 * ring_channels,
        "nccl_graph": {
            "ring": {"channels": ring_channels, "speed_intra": intra_speed, "speed_inter": inter_speed},
            "tree": {"channels": min(tree_ch * multi_nic, MAX_SEARCH_CHANNELS) if inter else tree_ch,
                     "speed_intra": tree_speed, "speed_inter": tree_speed},
            "nvlink": nvlink,
            "net_within_pxb": bool(nics) and all(gdr_ok(j, PXB) for j in talkers),
            "compute_capability": 80,  # both presets are A100
        },
        "nccl_path_types": {(i, j): PATH_NAMES[types[i, j]] for i in range(g) for j in range(g) if i != j},
        "gpu_sockets": tuple(gpu_socket),
        "nic_socket": nic_socket,
    }
