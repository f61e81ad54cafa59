"""NCCL's tuning model: which algorithm (ring or tree) and protocol NCCL picks for an allreduce of n bytes.

A transcription of ``ncclTopoTuneModel`` and ``ncclTopoGetAlgoTime`` in
NVIDIA/nccl ``src/graph/tuning.cc`` at NCCL 2.7.5 (commit 01afd20a), the
NCCL generation of the Fire-Flyer 2 paper's era. Per algorithm a (tree, ring)
and protocol p (LL, LL128, Simple), time = latency + bytes / bandwidth, with

- bus bandwidth ``nChannels * speed`` of NCCL's topology search (``speed_intra``
  for <= 2 servers, ``speed_inter`` beyond), capped at 235 GB/s on A100, then the
  per-protocol refinements below; algorithm bandwidth = bus bandwidth times
  ``nRanks / (2 (nRanks - 1))`` for ring, 1/2 for tree;
- latency ``baseLat[a][p]`` plus per-hop ``hwLat`` (NVLink or PCI inside a
  server, NET between servers): ring ``(nsteps - nInterSteps) intra +
  nInterSteps inter`` with ``nsteps = 2 (nRanks - 1)``, ``nInterSteps =
  2 (nNodes - 1)``; tree ``2 ((nRanks/nNodes - 1) intra + log2(nNodes) inter)``;
- at run time the tree bandwidth is scaled by ``treeCorrectionFactor`` for
  sizes below 256 MiB and the Simple ring latency by 1.9 beyond
  ``nRanks/16 * 64 KiB`` on several servers ("plateau effect of ring").

LL128 is enabled by default only when the intra-server path is NVLink and the
GPU-NIC path is within PXB on Volta/Ampere. The topology inputs (``channels``,
``speed_*``, ``nvlink``, ``net_within_pxb``, ``compute_capability``) are the
``graph`` of NCCL's search (:mod:`.search`); without one, a PCIe server is
assumed (one channel of 12 GB/s, NCCL's PCI Gen3 x16 rating).

The ``nccl`` algorithm (:func:`nccl_allreduce`) runs what this model picks
for the message size: ``nccl-ring`` or ``nccl-tree``.

>>> from flyersim.collectives.schedule import Layout
>>> choose(Layout(16, 8), 1 << 20), choose(Layout(16, 8), 1 << 30)
('nccl-tree', 'nccl-ring')
"""

import math

from flyersim.collectives.nccl.ring import nccl_ring
from flyersim.collectives.nccl.search import DEFAULT_GRAPH
from flyersim.collectives.nccl.transports import SHARED
from flyersim.collectives.nccl.tree import nccl_tree
from flyersim.collectives.params import Param, Params

TREE, RING = 0, 1
LL, LL128, SIMPLE = 0, 1, 2
ALGOS = ("tree", "ring")
PROTOCOLS = ("LL", "LL128", "Simple")
# tuning.cc (2.7.5): Latencies in us; Tree { LL, LL128, Simple }, Ring { LL, LL128, Simple }
BASE_LAT = ((4.4, 4.4, 0.0), (3.6, 10.0, 8.4))
HW_NVLINK, HW_PCI, HW_NET = 0, 1, 2
HW_LAT = (
    ((0.52, 1.2, 28.0), (0.47, 1.9, 3.4)),   # NVLink: tree, ring
    ((1.0, 1.9, 28.0), (1.0, 2.5, 5.7)),     # PCI
    ((5.0, 8.5, 50.0), (2.7, 4.0, 9.6)),     # NET
)
LL128_MAX_BW_ALLREDUCE = 16.7  # ll128MaxBwPerCh[ncclCollAllReduce], GB/s per channel
TREE_CORRECTION = (  # treeCorrectionFactor[protocol][log2(bytes/64)], 64 B .. 128 MiB
    (1.0, 1.0, 1.0, 1.0, .9, .8, .7, .7, .7, .7, .6, .5, .4, .4, .5, .6, .7, .8, .9, 1.0, 1.0, 1.0),
    (1.0, 1.0, 1.0, 1.0, 1.0, .9, .8, .8, .8, .7, .6, .6, .6, .5, .6, .6, .7, .7, .8, .9, .9, 1.0),
    (.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5, .5, .5, .5, .5, .5, .6, .6, .7, .8, .9),
)

def log2i(n):
    """NCCL's ``log2i``: floor(log2 n), 0 for n <= 1."""
    return max(int(n), 1).bit_length() - 1


def model(layout, nccl_graph=None):
    """``{(algo, proto): (latency_us, algbw_GBps)}`` for allreduce, as ``ncclTopoTuneModel`` computes it."""
    graph = nccl_graph or DEFAULT_GRAPH
    ranks, nodes = layout.ranks, layout.nodes
    cc80 = graph.get("compute_capability", 80) == 80
    ppn = ranks / nodes
    nsteps, inter_steps = 2 * (ranks - 1), 2 * (nodes - 1)
    intra_hw = HW_NVLINK if graph["nvlink"] else HW_PCI
    ll128_on = graph["nvlink"] and (nodes == 1 or graph["net_within_pxb"]) and graph.get("compute_capability") in (70, 80)
    out = {}
    for a, name in enumerate(ALGOS):
        g = graph[name]
        for p in (LL, LL128, SIMPLE):
            if p == LL128 and not ll128_on:
                continue
            speed = g["speed_intra"] if nodes <= 2 else g["speed_inter"]
            bus = g["channels"] * speed
            if cc80:
                bus = min(bus, 235.0)
            if a == RING and p == LL:
                bus *= 1.0 / 4.0
            if a == RING and p == LL128:
                bus = min(bus * (0.7 if ppn < 2 else 0.92), LL128_MAX_BW_ALLREDUCE * g["channels"])
            max_tree = (105.0 if cc80 and p == LL128 else 80.0) if nodes > 2 else (130.0 if cc80 and p == LL128 else 110.0)
            if a == TREE:
                bus = min(bus * 0.9, max_tree)
            if a == TREE and p == LL:
                bus *= 1.0 / 3.8
            if a == TREE and p == LL128:
                bus = min(bus * (7.0 / 9.0 if nodes == 1 else 0.915), LL128_MAX_BW_ALLREDUCE * g["channels"] * 7.0 / 9.0)
            ratio = 0.5 if a == TREE else ranks / nsteps
            intra = HW_LAT[intra_hw][a][p] * (1.8 if nodes > 1 and p == LL else 1.0)
            inter = HW_LAT[HW_NET][a][p]
            lat = BASE_LAT[a][p]
            if a == RING:
                lat += (nsteps - inter_steps) * intra + inter_steps * inter
            else:
                lat += 2 * ((ranks // nodes - 1) * intra + log2i(nodes) * inter)
            out[name, PROTOCOLS[p]] = (lat, bus * ratio)
    return out


def times(layout, nbytes, nccl_graph=None):
    """``{(algo, proto): predicted time in us}`` as ``ncclTopoGetAlgoTime``."""
    res = {}
    for (algo, proto), (lat, bw) in model(layout, nccl_graph).items():
        p = PROTOCOLS.index(proto)
        log_size = log2i(nbytes >> 6)
        if algo == "tree" and log_size < 22:
            bw *= TREE_CORRECTION[p][log_size]
        if algo == "ring" and p == SIMPLE and layout.nodes > 1 and nbytes >= layout.ranks / 16.0 * 65536:
            lat *= 1.9
        res[algo, proto] = lat + nbytes / (1000 * bw) if bw > 0 else math.inf
    return res


def choose(layout, nbytes, nccl_graph=None):
    """``"nccl-ring"`` or ``"nccl-tree"``: the algorithm of NCCL's fastest (algorithm, protocol) for ``nbytes``."""
    if layout.ranks <= 1:
        return "nccl-ring"
    t = times(layout, int(nbytes), nccl_graph)
    best = min(t, key=lambda k: (t[k], ALGOS.index(k[0]), PROTOCOLS.index(k[1])))  # NCCL scans tree first
    return f"nccl-{best[0]}"


PARAMS = Params(
    "nccl", *SHARED,
    Param("chunks", int, None, "chunks of the algorithm picked (nccl-ring: rounds per channel; nccl-tree: chunks "
                               "per channel; default from the size)"),
)


def pick(layout, nbytes, search=None):
    """The algorithm NCCL runs for ``nbytes`` (``None``: the large-message limit), given NCCL's ``search``."""
    return choose(layout, 1 << 50 if nbytes is None else nbytes, search.graph if search else None)


def nccl_allreduce(layout, nbytes=None, search=None, **params):
    """The schedule NCCL runs for ``nbytes``: :func:`pick`'s algorithm built with ``params`` (:data:`PARAMS`).

    Runners build the picked algorithm through the registry instead (``collectives.schedule_key``), so that
    sizes that pick the same size-independent schedule share it.
    """
    make = nccl_ring if pick(layout, nbytes, search) == "nccl-ring" else nccl_tree
    return make(layout, nbytes, search, **PARAMS.bind(params))
