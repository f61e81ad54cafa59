"""Routing policies, per-instance slowdowns, failures, late ranks and OS noise (issue 12 items 3 and 4)."""

import numpy as np
import pytest

from flyersim import collectives, topologies
from flyersim.sim.app.runner import layout_of
from flyersim.sim.routes import build_routes
from flyersim.topologies import Router
from flyersim.topologies.routing import MAX_ALTERNATIVES


# ---------------------------------------------------------------- equal-cost alternatives

@pytest.mark.parametrize("preset, gpus, src, dst", [
    ("fireflyer2", 8 * 21, "n0/gpu0", "n20/gpu3"),     # two leaves of one zone: 20 spines
    ("fireflyer2", 8 * 21, "n0/gpu0", "n1/gpu0"),      # one leaf: one path
    ("fat-tree", 4 * 64, "n0/gpu0", "n63/gpu1"),       # several zones
    ("single-switch", 8, "n0/gpu0", "n1/gpu0"),
])
def test_alternatives_are_distinct_equal_cost_paths_ecmp_first(preset, gpus, src, dst):
    graph = topologies.load(preset, gpus=gpus)
    router = Router(graph)
    paths = router.paths(src, dst)
    assert paths[0] == router.path(src, dst)
    assert 1 <= len(paths) <= MAX_ALTERNATIVES
    assert len({tuple(p) for p in paths}) == len(paths)
    assert {len(p) for p in paths} == {len(paths[0])}
    for p in paths:
        assert p[0] == src and p[-1] == dst and all(graph.has_edge(u, v) for u, v in zip(p, p[1:]))


def test_alternatives_cover_every_spine_and_the_cap_spreads_them():
    router = Router(topologies.load("fireflyer2", gpus=8 * 21))
    spines = [p[7] for p in router.paths("n0/gpu0", "n20/gpu0")]
    assert sorted(spines) == sorted(f"z0/spine{s}" for s in range(20))
    few = [p[7] for p in router.paths("n0/gpu0", "n20/gpu0", limit=4)]
    assert len(set(few)) == 4 and few[0] == spines[0]


def test_inside_a_server_there_is_one_path():
    router = Router(topologies.load("fireflyer2", gpus=16))
    assert router.paths("n0/gpu0", "n0/gpu5") == [router.path("n0/gpu0", "n0/gpu5")]


def test_adaptive_routes_keep_the_ecmp_routes_first_and_add_equal_latency_candidates():
    graph = topologies.load("fireflyer2", gpus=8 * 21)
    schedule = collectives.build("ring", layout_of(graph), "allreduce")
    ecmp, adaptive = build_routes(graph, schedule), build_routes(graph, schedule, routing="adaptive")
    n = ecmp.rlat.size
    assert ecmp.alt_ptr is None
    assert np.array_equal(ecmp.rptr, adaptive.rptr[:n + 1]) and ecmp.names == adaptive.names[:len(ecmp.names)]
    assert np.array_equal(ecmp.op_route, adaptive.op_route)
    sizes = np.diff(adaptive.alt_ptr)
    assert sizes.size == adaptive.rlat.size and sizes.max() == 20 and sizes.min() == 0
    assert not sizes[n:].any()  # the alternatives themselves are fixed
    for r in np.flatnonzero(sizes):
        options = adaptive.alt_idx[adaptive.alt_ptr[r]:adaptive.alt_ptr[r + 1]]
        assert options[0] == r and len(set(options.tolist())) == options.size
        assert np.allclose(adaptive.rlat[options], adaptive.rlat[r], rtol=1e-12)


def test_unknown_routing_is_refused():
    graph = topologies.load("fireflyer2", gpus=16)
    schedule = collectives.build("ring", layout_of(graph), "allreduce")
    with pytest.raises(ValueError, match="unknown routing 'static'"):
        build_routes(graph, schedule, routing="static")
