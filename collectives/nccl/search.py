"""NCCL's topology search (``src/graph/search.cc``): channels and speeds of the ring and tree graphs.

:func:`search` gives what NCCL's algorithms take from the topology: the P2P
pairs and GDR flag of :mod:`.paths`, the runtime channel count, and the
inputs of the tuning model (:mod:`.tuning`). The link ratings need the links
each hop crosses: ``routes``, ``{(src, dst): (link, ...)}`` over location
names, as ``topologies.facts.server_routes`` lists them (each link with
``name``, ``kind``, ``bandwidth`` and ``network``). Without routes (a layout
built by hand, an MPI job) the search returns NCCL's rules on the layout and
:data:`DEFAULT_CHANNELS` / the tuning model's default graph.

Rating (``search.cc`` ``ncclTopoCompute``): NCCL rates links with its own
constants (``topo.h``): a PCIe Gen4 x16 link ``PCI_BW_GEN4 = 24`` GB/s, AMD
inter-socket ``AMD_BW = 16`` GB/s, an A100 NVLink ``SM80_NVLINK_BW = 20`` GB/s
per link (a graph NVLink edge of B bytes/s counts as B/25e9 links of 25 GB/s),
the NIC at its port speed (a network link). One channel's speed is the largest
value of NCCL's speed arrays (``speedArrayIntra``/``speedArrayInter``, NCCL
2.9-2.18) that the ring's most loaded link can carry; the search keeps adding
channels at that speed while every link still can (capped at ``MAXCHANNELS/2 =
16``), and ``ncclTopoPostset`` then duplicates the channels, so the runtime
``channels`` is twice the searched count. The ring enters and leaves a server
as :func:`.paths.local_order` says; a hop NCCL does not connect with P2P goes
through the receiver's CPU (SHM); between servers without GDR through pinned
memory by the NIC. The tree graph is rated the same way over the chain + the
head's NIC. [I: a simplification of the recursive search, which also tries
other orders and NIC pairs.]

>>> from flyersim.collectives.schedule import Layout
>>> found = search(Layout(2, 4))
>>> found.channels, found.p2p, found.gdr, found.graph["ring"]["speed_inter"]
(2, True, False, 12.0)
"""

from dataclasses import dataclass

from flyersim.collectives.nccl import paths

PCI_BW_GEN4 = 24e9      # topo.h: Gen4 x16 as NCCL rates it (16 lanes x 120 / 80 GB/s)
AMD_BW = 16e9           # topo.h: AMD inter-socket P2P bandwidth
SM80_NVLINK_BW = 20e9   # topo.h: per NVLink link on A100
NVLINK_LINK = 25e9      # one NVLink3 link, per direction (A100 datasheet)
SPEED_INTRA = (40.0, 30.0, 20.0, 18.0, 15.0, 12.0, 10.0, 9.0, 7.0, 6.0, 5.0, 4.0, 3.0)
SPEED_INTER = (48.0, 30.0, 28.0, 24.0, 20.0, 18.0, 15.0, 12.0, 10.0, 9.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.4, 1.2,
               0.24, 0.12)
MAX_SEARCH_CHANNELS = 16
DEFAULT_CHANNELS = 2    # without routes: one searched channel, duplicated by ncclTopoPostset
# without routes: a PCIe server, one channel of 12 GB/s (NCCL's PCI Gen3 x16 rating, topo.h PCI_BW)
DEFAULT_GRAPH = {"ring": {"channels": 1, "speed_intra": 12.0, "speed_inter": 12.0},
                 "tree": {"channels": 1, "speed_intra": 12.0, "speed_inter": 12.0},
                 "nvlink": False, "net_within_pxb": False, "compute_capability": 80}


@dataclass(frozen=True)
class Search:
    """What NCCL's algorithms take from the topology (see the module docstring)."""

    p2p: object      # True, False or the allowed local pairs
    gdr: bool
    channels: int    # runtime channels (twice the searched ring channels)
    graph: dict      # tuning inputs: ring/tree channels and speeds, nvlink, net_within_pxb, compute_capability


def link_bw(link):
    """NCCL's rating of one link (None: NCCL does not model it as a limit)."""
    if link.kind == "pcie":
        return min(link.bandwidth, PCI_BW_GEN4)
    if link.kind == "xgmi":
        return AMD_BW
    if link.kind == "nvlink":
        return link.bandwidth / NVLINK_LINK * SM80_NVLINK_BW
    if link.kind in ("fabric", "memory"):
        return None
    return link.bandwidth if link.network else None


def rate(routes, speeds):
    """(speed per channel in GB/s, channels) for ``routes`` (tuples of links) each carried once per channel."""
    load = {}
    for route in routes:
        for link in route:
            bw = link_bw(link)
            if bw is not None:
                load[link.name] = (bw, load.get(link.name, (bw, 0))[1] + 1)
    if not load:
        return speeds[0], MAX_SEARCH_CHANNELS
    cap = min(bw / n for bw, n in load.values()) / 1e9
    speed = next((s for s in speeds if s <= cap), speeds[-1])
    channels = max(1, min(MAX_SEARCH_CHANNELS, int(min(bw / 1e9 / (n * speed) for bw, n in load.values()))))
    return speed, channels


def search(layout, routes=None, version=None, gdr_level=paths.GDR_LEVEL):
    """NCCL ``version``'s :class:`Search` on ``layout`` (whose facts give P2P and GDR, at ``gdr_level``:
    ``NCCL_NET_GDR_LEVEL``) rated over ``routes``."""
    order = paths.local_order(layout)
    allowed = paths.p2p_allowed(layout, version)
    talkers = {order[0], order[-1]}
    use_gdr = paths.gdr(layout, talkers, gdr_level)
    p2p = paths.p2p_pairs(layout, version)
    if routes is None:
        return Search(p2p, use_gdr, DEFAULT_CHANNELS, DEFAULT_GRAPH)
    g, nodes = layout.gpus_per_node, layout.nodes
    names = layout.location_names()
    gpu = names[:g]
    host = [names[layout.host(0, s)] for s in range(layout.sockets)]

    def hop(a, b):
        if allowed[a, b] or a == b:
            return [routes[gpu[a], gpu[b]]]
        via = host[layout.gpu_sockets[b]]  # SHM: through the receiver's CPU
        return [routes[gpu[a], via], routes[via, gpu[b]]]

    ring_intra = [r for k in range(g - 1) for r in hop(order[k], order[k + 1])]
    chain_intra = ring_intra[:]  # the tree's chain follows the same order (one direction per phase)
    inter = []
    if nodes > 1:
        first = names[layout.rank(1, order[0])]
        if use_gdr:
            inter = [routes[gpu[order[-1]], first]]
        else:  # through pinned host memory by the NIC
            nic_host = host[layout.nic_socket]
            inter = [routes[gpu[order[-1]], nic_host] + routes[nic_host, first]]
    multi_nic = max(1, len(layout.nic_sockets))
    intra_speed, intra_ch = rate(ring_intra or [()], SPEED_INTRA)
    if inter:
        inter_speed, inter_ch = rate(ring_intra + inter, SPEED_INTER)
        inter_ch = min(MAX_SEARCH_CHANNELS, inter_ch * multi_nic)  # each channel may use its own NIC
    else:
        inter_speed, inter_ch = intra_speed, intra_ch
    ring_channels = inter_ch if nodes > 1 else intra_ch
    tree_speed, tree_ch = rate(chain_intra + inter, SPEED_INTER if inter else SPEED_INTRA)
    nvlink = bool(g > 1) and bool(layout.gpu_paths) and all(
        layout.gpu_paths[order[k]][order[k + 1]] == "NVL" for k in range(g - 1))
    graph = {
        "ring": {"channels": ring_channels, "speed_intra": intra_speed, "speed_inter": inter_speed},
        "tree": {"channels": min(tree_ch * multi_nic, MAX_SEARCH_CHANNELS) if inter else tree_ch,
                 "speed_intra": tree_speed, "speed_inter": tree_speed},
        "nvlink": nvlink,
        "net_within_pxb": paths.gdr(layout, talkers, "PXB"),
        "compute_capability": layout.gpu_arch,
    }
    return Search(p2p, use_gdr, 2 * ring_channels, graph)
