"""Routes are the same bit for bit however they are computed: fingerprints of whole route tables, and the
router's paths inside a server against networkx's own search.

The fingerprints were recorded with the networkx-view implementation of :mod:`sim.routes` (before its
per-node lookups became plain dicts and the stream's renumbering stopped rebuilding every route), on
several presets and sizes, with ECMP and adaptive routing, failed network parts, whole schedules and
streamed ones. A change in any resource name, class, capacity, weight, latency or route numbering fails.
"""

import hashlib

import networkx as nx
import numpy as np
import pytest

from flyersim import collectives
from flyersim.collectives.schedule import Layout
from flyersim.collectives.stream import stream
from flyersim.sim.app.runner import layout_of, search_of
from flyersim.sim.routes import RouteTable, build_routes
from flyersim.topologies import Router, load
from flyersim.topologies.faults import fail
from flyersim.topologies.routing import ordered_subgraph, width


def fingerprint(names, classes, capacity, rptr, rres, rw, rlat, *arrays):
    h = hashlib.sha256()
    h.update("\n".join(names).encode())
    h.update("\n".join(classes).encode())
    for a in (capacity, rptr, rres, rw, rlat, *arrays):
        h.update(b"|" if a is None else np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _schedule(graph, algo):
    layout = layout_of(graph)
    search = search_of(graph, layout) if collectives.get(algo).search else None
    return layout, search, collectives.build(algo, layout, nbytes=2**20, search=search)


WHOLE = {  # (preset, gpus, algo, routing, failed parts) -> fingerprint
    ("fireflyer2", 16, "hfreduce", "ecmp", ()): '43491dc5e83f60a0',
    ("fireflyer2", 16, "ring", "ecmp", ()): '9e1acc0bf0761fc9',
    ("fireflyer2", 128, "hfreduce", "ecmp", ()): '204fe0308a939663',
    ("fireflyer2", 1024, "hfreduce", "ecmp", ()): 'c1d1f01fbf132987',
    ("fireflyer2", 128, "nccl", "ecmp", ()): 'f9b2783b1d967697',
    ("fireflyer2", 64, "dbtree", "ecmp", ()): '5cec135433f49d32',
    ("fireflyer2", 64, "hier", "ecmp", ()): '46cd28d0a351d45e',
    ("fireflyer2", 168, "ring", "adaptive", ()): '9cfbcf82d7053abe',
    ("fireflyer2", 168, "hfreduce", "adaptive", ("z0/spine3", "z0/leaf0<->z0/spine1")): 'c18557038d540471',
    ("fireflyer2", 64, "nccl", "ecmp", ("z0/spine0",)): '18eeaf713028ef2b',
    ("dgx-a100", 32, "nccl", "ecmp", ()): '7f82ff4082271db4',
    ("dgx-a100", 16, "hfreduce", "ecmp", ()): 'e114157c3906d059',
    ("fat-tree", 64, "rabenseifner", "adaptive", ()): '1a72c7e2eaf2b552',
    ("torus", 64, "ring", "ecmp", ()): '81b51d2f178dbaf0',
    ("ring", 32, "tree", "ecmp", ()): 'ce07de11b201ce81',
    ("single-switch", 16, "rd", "ecmp", ()): 'e74ea00d0534cbd0',
}


@pytest.mark.parametrize("case", list(WHOLE), ids=lambda c: "-".join(map(str, c[:4])))
def test_whole_schedule_routes_unchanged(case):
    preset, gpus, algo, routing, failed = case
    graph = load(preset, gpus=gpus)
    if failed:
        graph = fail(graph, list(failed))
    _, _, schedule = _schedule(graph, algo)
    r = build_routes(graph, schedule, routing=routing)
    got = fingerprint(r.names, r.classes, r.capacity, r.rptr, r.rres, r.rw, r.rlat, r.op_route, r.alt_ptr, r.alt_idx)
    assert got == WHOLE[case]


STREAMED = {  # (preset, gpus, algo) -> fingerprint of RouteTable.routes() (not of the order routes are found in,
    # which follows how the stream batches its ops; each op's final route is checked against build_routes')
    ("fireflyer2", 128, "hfreduce"): '72463346c5698616',
    ("fireflyer2", 64, "nccl"): '774f8dd7e517bf0c',
    ("dgx-a100", 32, "hier"): 'e1c5f1a64f42c7ca',
    ("fat-tree", 32, "ring"): 'e83410c36c69297f',
}


@pytest.mark.parametrize("case", list(STREAMED), ids=lambda c: "-".join(map(str, c)))
def test_streamed_routes_unchanged(case):
    preset, gpus, algo = case
    graph = load(preset, gpus=gpus)
    layout, search, whole = _schedule(graph, algo)
    expected = build_routes(graph, whole)
    for min_ops in (1, 1 << 14):  # a batch per builder call, and merged batches: the same table either way
        table = RouteTable(graph, layout, algo)
        found = np.concatenate([table.add(batch, first) for first, batch in stream(
            algo, layout, nbytes=2**20, search=search, min_ops=min_ops)])
        fields, renumber = table.routes()
        assert fingerprint(*fields) == STREAMED[case]
        # the same routes as the whole schedule's, numbered alike
        assert fields[0] == expected.names and np.array_equal(fields[4], expected.rres)
        assert np.array_equal(renumber[found], expected.op_route)


@pytest.mark.parametrize("preset, gpus", [("fireflyer2", 16), ("dgx-a100", 16), ("single-switch", 8), ("torus", 64)])
def test_in_server_paths_are_networkx_widest_shortest_paths(preset, gpus):
    """The router searches once per source (``nx.predecessor``) and enumerates the paths itself; every path
    inside a server is still the first widest of ``nx.all_shortest_paths``."""
    graph = load(preset, gpus=gpus)
    server = ordered_subgraph(graph, [n for n, s in graph.nodes(data="server") if s == 1])
    router = Router(graph)
    for a in server:
        for b in server:
            expected = max(nx.all_shortest_paths(server, a, b), key=lambda path: width(server, path))
            assert router.path(a, b) == expected
