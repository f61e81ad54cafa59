"""The simulator end to end: closed forms, fair sharing, busbw bounds and run invariants.

DESIGN.md, testing habits: with no contention ring allreduce equals the
Thakur-Rabenseifner-Gropp closed form; two flows on one link finish at 2n/B;
no resource carries more than capacity x time (busbw may exceed a reduce
engine's capacity: it counts user bytes); every run conserves bytes, keeps
resources within capacity, respects dependencies and is monotone in size.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from flyersim import collectives
from flyersim.collectives.costs import ring_allreduce
from flyersim.collectives.schedule import XFER, Layout, ScheduleBuilder
from flyersim.sim.engine import simulate
from flyersim.sim.metrics import bottleneck
from flyersim.sim.routes import Routes, build_routes
from flyersim.sim.app.runner import layout_of, run_sizes, search_of
from flyersim.topologies import Router, load
from flyersim.topologies.units import MiB

RTOL = 1e-9


# --------------------------------------------------------------------------------------------
# closed forms


def _alpha_beta_topology(shape, p, alpha, bandwidth, gamma):
    """``p`` one-GPU servers where a GPU->GPU transfer costs alpha + n/bandwidth and a reduce gamma per byte.

    Every latency is 0 except one: the switch's (single-switch: every path crosses it
    once) or the network link's (ring: a ring neighbour is one link away). All links
    run at ``bandwidth``; the GPU's HBM pool and the NIC pool are dropped so only
    links limit a transfer; the GPU reduce engine runs at 1/gamma.
    """
    overrides = {
        "server.gpus": 1,
        "parameters.pcie_bandwidth": bandwidth, "parameters.pcie_latency": 0.0,
        "parameters.memory_latency": 0.0,
        "parameters.gpu_bandwidth": "none", "parameters.gpu_latency": 0.0,
        "parameters.gpu_reduce_bandwidth": 1 / gamma if gamma else "none",
        "parameters.gpu_reduce_latency": 0.0,
        "parameters.nic_bandwidth": "none", "parameters.nic_latency": 0.0,
        "network.link_bandwidth": bandwidth,
        "network.link_latency": alpha if shape == "ring" else 0.0,
    }
    if shape == "single-switch":
        overrides["network.switch_latency"] = alpha
    return load(shape, nodes=p, overrides=overrides)


def _path_alpha_beta(graph, a, b):
    """alpha (sum of node and edge latencies on the path, sim/routes.py) and beta (1 / slowest link)."""
    path = Router(graph).path(a, b)
    alpha = sum(graph.nodes[v].get("latency", 0.0) for v in path) + sum(
        graph.edges[u, v].get("latency", 0.0) for u, v in zip(path, path[1:]))
    beta = 1 / min(graph.edges[u, v]["bandwidth"] for u, v in zip(path, path[1:]))
    return alpha, beta


PARAMS = [  # alpha (s), link bandwidth (B/s), gamma (s/B)
    (1e-6, 10e9, 1e-11),
    (3e-6, 2.5e9, 0.0),
    (0.5e-6, 100e9, 2e-10),
]
SHAPES = ["single-switch", "ring"]
RANKS = [2, 3, 5, 8, 13]


@pytest.fixture(scope="module")
def closed_form_cases():
    """(shape, p, params) -> (graph, schedule, routes), built once for the module."""
    cache = {}

    def get(shape, p, params):
        key = shape, p, params
        if key not in cache:
            g = _alpha_beta_topology(shape, p, *params)
            s = collectives.build("ring", layout_of(g))
            cache[key] = g, s, build_routes(g, s)
        return cache[key]
    return get


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("params", PARAMS)
def test_alpha_beta_topology_states_alpha_and_beta_by_hand(shape, params):
    alpha, bandwidth, _ = params
    g = _alpha_beta_topology(shape, 5, *params)
    for a, b in [("n0/gpu0", "n1/gpu0"), ("n4/gpu0", "n0/gpu0"), ("n2/gpu0", "n3/gpu0")]:
        got_alpha, got_beta = _path_alpha_beta(g, a, b)
        assert got_alpha == pytest.approx(alpha, rel=1e-12, abs=0)
        assert got_beta == pytest.approx(1 / bandwidth, rel=1e-12)


@pytest.mark.parametrize("model", ["analytic", "flow"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", RANKS)
@pytest.mark.parametrize("params", PARAMS)
def test_ring_allreduce_equals_closed_form_when_size_divides(closed_form_cases, model, shape, p, params):
    alpha, bandwidth, gamma = params
    g, s, routes = closed_form_cases(shape, p, params)
    for itemsize in (4, 2, 8):
        for count in (p, p * 1000, p * 12345):
            n = count * itemsize
            run = simulate(s, routes, n, itemsize, model)
            expected = ring_allreduce(p, n, alpha, 1 / bandwidth, gamma)
            assert run.time == pytest.approx(expected, rel=RTOL, abs=0), (n, itemsize)


@pytest.mark.parametrize("model", ["analytic", "flow"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [3, 5, 8, 13])
@pytest.mark.parametrize("params", PARAMS)
def test_ring_allreduce_non_divisible_size_costs_the_largest_chunk(closed_form_cases, model, shape, p, params):
    """count = q p + r (0 < r < p) elements: chunks hold q or q + 1 elements.

    Each chunk travels its own chain of 2(p-1) transfers and p-1 reduces with no
    dependency on other chunks, so the time is the closed form of a message of p
    largest chunks: ring_allreduce(p, p ceil(count/p) itemsize). In the flow model
    this holds when consecutive sends on a link never overlap: a small chunk
    catches up at most (p-1) itemsize (2 beta + gamma) on a large one, so
    alpha >= that suffices (true for every PARAMS row here).
    """
    alpha, bandwidth, gamma = params
    g, s, routes = closed_form_cases(shape, p, params)
    itemsize = 4
    assert alpha >= (p - 1) * itemsize * (2 / bandwidth + gamma)
    for count in (p * 1000 + 1, p * 1000 + p - 1, p * 777 + p // 2):
        n = count * itemsize
        run = simulate(s, routes, n, itemsize, model)
        largest = math.ceil(count / p)
        assert run.op_bytes.max() == largest * itemsize
        expected = ring_allreduce(p, p * largest * itemsize, alpha, 1 / bandwidth, gamma)
        assert run.time == pytest.approx(expected, rel=RTOL, abs=0), count
        assert run.time > ring_allreduce(p, n, alpha, 1 / bandwidth, gamma)


@pytest.mark.parametrize("shape", SHAPES)
def test_non_divisible_with_zero_alpha_keeps_sends_in_order_in_the_flow_model(shape):
    """With alpha = 0 a small chunk could catch up with a larger one on a link, but a rank's
    send waits for its previous one (sendrecv order), so both models give the
    largest-chunk closed form."""
    params = (0.0, 1e9, 5e-10)
    p, itemsize, count = 5, 4, 5 * 1000 + 4
    g = _alpha_beta_topology(shape, p, *params)
    s = collectives.build("ring", layout_of(g))
    expected = ring_allreduce(p, p * math.ceil(count / p) * itemsize, 0.0, 1e-9, 5e-10)
    analytic = simulate(s, g, count * itemsize, itemsize, "analytic").time
    flow = simulate(s, g, count * itemsize, itemsize, "flow").time
    assert analytic == pytest.approx(expected, rel=RTOL, abs=0)
    assert flow == pytest.approx(expected, rel=RTOL, abs=0)


def test_one_rank_costs_nothing():
    g = _alpha_beta_topology("single-switch", 1, *PARAMS[0])
    s = collectives.build("ring", layout_of(g))
    assert simulate(s, g, 4096, 4, "flow").time == 0.0


# --------------------------------------------------------------------------------------------
# fair sharing at the simulate level


@pytest.mark.parametrize("n", [1000, 4 * MiB, 12])
def test_two_equal_flows_into_one_gpu_both_finish_at_2n_over_b(n):
    bandwidth = 5e9
    g = _alpha_beta_topology("single-switch", 3, 0.0, bandwidth, 0.0)
    b = ScheduleBuilder(Layout(nodes=3, gpus_per_node=1), "allreduce", "two-to-one",
                        buffers=("data", "recv0", "recv1"))
    b.xfer(src=0, dst=2, span=(0, 1, 1), dst_buf="recv0")
    b.xfer(src=1, dst=2, span=(0, 1, 1), dst_buf="recv1")
    s = b.build()
    routes = build_routes(g, s)
    shared = [routes.names[k] for k in range(len(routes.names))
              if routes.carried(np.ones(2))[k] == 2]       # resources both flows cross
    assert "sw0->n2/nic0" in shared and "n2/cpu0->n2/gpu0" in shared
    run = simulate(s, routes, n, 1, "flow")
    assert run.end_at == pytest.approx([2 * n / bandwidth] * 2, rel=1e-12)
    assert run.time == pytest.approx(2 * n / bandwidth, rel=1e-12)
    # the analytic model ignores the sharing: each alone at n/B, the shared link at 200 %
    alone = simulate(s, routes, n, 1, "analytic")
    assert alone.time == pytest.approx(n / bandwidth, rel=1e-12)
    assert bottleneck(alone)[2] == pytest.approx(2.0, rel=1e-9)
    # the shared link ran full for the whole run
    assert bottleneck(run)[2] == pytest.approx(1.0, rel=1e-9)


def test_route_alternatives_spread_flows_and_carried_bytes_follow_the_route_taken():
    # two xfers between one pair; a hand-made Routes gives their route (0, path "a") a candidate (1, path "b")
    b = ScheduleBuilder(Layout(nodes=2, gpus_per_node=1), "allreduce", "two-flows", buffers=("data", "recv"))
    b.xfer(src=0, dst=1, span=(0, 1, 1), dst_buf="recv")
    b.xfer(src=0, dst=1, span=(0, 1, 1), dst_buf="data")
    routes = Routes(["a", "b"], ["link", "link"], np.array([10.0, 10.0]), np.array([0, 1, 2]), np.array([0, 1]),
                    np.array([1.0, 1.0]), np.zeros(2), np.array([0, 0]))
    run = simulate(b.build(), routes, 100, 1, "flow", alternatives=([0, 2, 2], [0, 1]))
    assert run.op_route.tolist() == [0, 1] and run.time == 10.0
    assert run.carried().tolist() == [100.0, 100.0]
    assert simulate(b.build(), routes, 100, 1, "flow").carried().tolist() == [200.0, 0.0]


# --------------------------------------------------------------------------------------------
# capacity bound: carried bytes, not busbw (busbw counts user bytes; a reduce engine counts output bytes)


def _carried_within_capacity(run):
    """Every resource carried at most capacity x time bytes over the run (weights applied)."""
    carried, cap = run.carried(), run.routes.capacity
    over = carried > cap * run.time * (1 + 1e-9)
    assert not over.any(), [(run.routes.names[k], carried[k], cap[k] * run.time) for k in np.flatnonzero(over)[:3]]


@pytest.mark.parametrize("preset,gpus", [("fireflyer2", 16), ("single-switch", 16), ("ring", 16),
                                         ("fat-tree", 32), ("dgx-a100", 16)])
def test_no_resource_carries_more_than_capacity_times_time(preset, gpus):
    """Flow model only: the analytic model ignores contention, so where ring hops share a
    resource (dgx-a100's GPU7 -> NIC PCIe, fireflyer2's P2P pool) it may oversubscribe it."""
    g = load(preset, gpus=gpus)
    sizes = [1024, 64 * 1024 + 12, 4 * MiB, 16 * MiB]
    records, runs = run_sizes(g, ["ring"], sizes, model="flow", keep_runs=True)
    for rec, run in zip(records, runs):
        _carried_within_capacity(run)
        # nccl-tests conventions, written out: algbw = S / t, busbw = algbw x 2(n-1)/n
        assert rec["algbw_GBps"] == pytest.approx(rec["bytes"] / run.time / 1e9, rel=1e-12)
        assert rec["busbw_GBps"] == pytest.approx(rec["bytes"] / run.time / 1e9 * 2 * (gpus - 1) / gpus, rel=1e-12)


def test_busbw_may_exceed_a_reduce_engine_capacity_but_carried_bytes_may_not():
    """The case that broke the old "busbw <= bottleneck capacity" property: 2 GPUs, ring, 12 bytes,
    bound by a 10 GB/s GPU reduce engine. busbw counts 2(n-1)/n user bytes per byte of message,
    the engine counts the bytes it outputs, which the ring's floor spans make fewer."""
    g = _alpha_beta_topology("single-switch", 2, 0.0, 1000e9, 1e-10)
    [rec], [run] = run_sizes(g, ["ring"], [12], keep_runs=True)
    neck = run.routes.names.index(rec["bottleneck"])
    assert run.routes.classes[neck] == "gpu reduce" and run.routes.capacity[neck] == pytest.approx(10e9)
    assert rec["busbw_GBps"] * 1e9 > run.routes.capacity[neck]
    _carried_within_capacity(run)


# --------------------------------------------------------------------------------------------
# invariants of every run


def _edge_ends(name):
    u, sep, v = name.partition("->")
    return (u, v) if sep else None


def _routed_balance(graph, s, op_bytes):
    """Net bytes into each graph node from multicasts (union of paths) and remote reduce inputs (input to engine)."""
    router, names, balance, cache = Router(graph), s.layout.location_names(), {}, {}

    def edges(src, dsts):
        if (src, dsts) not in cache:
            cache[src, dsts] = {e for d in dsts for e in zip(router.path(src, d), router.path(src, d)[1:])}
        return cache[src, dsts]

    def add(es, nbytes):
        for u, v in es:
            balance[u] = balance.get(u, 0.0) - nbytes
            balance[v] = balance.get(v, 0.0) + nbytes

    groups = {}
    for i in np.flatnonzero(s.group >= 0).tolist():
        groups.setdefault(int(s.group[i]), []).append(names[s.dst[i]])
    for lead, dsts in groups.items():
        add(edges(names[s.src[lead]], tuple(sorted(dsts))), op_bytes[lead])
    for i in np.flatnonzero(s.kind != XFER).tolist():
        at = names[s.dst[i]]
        engine = at if graph.nodes[at]["kind"] == "gpu" else graph.nodes[at]["engine"]
        for loc in s.op_input_locs(i).tolist():
            if loc != s.dst[i]:
                add(edges(names[loc], (engine,)), op_bytes[i])
    return balance


def check_invariants(graph, runs):
    """Assert the invariants of DESIGN.md on runs of one schedule at increasing sizes, all models."""
    by_model = {}
    for run in runs:
        s = run.schedule
        n = s.num_ops
        # every op ran, in order: ready <= start <= end, and not before its dependencies ended
        assert not np.isnan(run.end_at).any()
        assert np.all(run.ready_at >= 0)
        assert np.all(run.start_at >= run.ready_at)
        assert np.all(run.end_at >= run.start_at)
        owners = np.repeat(np.arange(n), np.diff(s.dep_ptr))
        assert np.all(run.ready_at[owners] >= run.end_at[s.dep_idx])
        # an op starts its route's latency after it is ready (no queueing: resources are shared, not locked)
        lat = run.routes.rlat[run.routes.op_route]
        assert np.allclose(run.start_at - run.ready_at, lat, rtol=1e-9, atol=1e-15)
        # op sizes: a span (lo, hi, den) holds within one element of its exact fraction of the message
        exact = (s.hi - s.lo) / s.den * run.count * run.itemsize
        assert np.all(np.abs(run.op_bytes - exact) < run.itemsize * (1 + 1e-9))
        # bytes sent = bytes received, per location (schedule) and per graph node (routes); a multicast
        # and a reduce's remote input are checked against the paths the router gives (union for a multicast)
        multi = s.group >= 0
        xfer = (s.kind == XFER) & ~multi
        nloc = s.layout.num_locations
        sent = np.bincount(s.src[xfer], weights=run.op_bytes[xfer], minlength=nloc)
        received = np.bincount(s.dst[xfer], weights=run.op_bytes[xfer], minlength=nloc)
        assert sent.sum() == received.sum() == s.span_elements(run.count)[xfer].sum() * run.itemsize
        carried = run.carried()
        flow_in, flow_out = {}, {}
        for k, name in enumerate(run.routes.names):
            ends = _edge_ends(name)
            if ends:
                flow_out[ends[0]] = flow_out.get(ends[0], 0.0) + carried[k]
                flow_in[ends[1]] = flow_in.get(ends[1], 0.0) + carried[k]
        local = xfer & (s.src == s.dst)
        names = s.layout.location_names()
        net = {v: flow_in.get(v, 0.0) - flow_out.get(v, 0.0) for v in set(flow_in) | set(flow_out)}
        extra = _routed_balance(graph, s, run.op_bytes)
        for loc, name in enumerate(names):
            own_local = run.op_bytes[local & (s.src == loc)].sum()
            expect = (received[loc] - own_local) - (sent[loc] - own_local) + extra.pop(name, 0.0)
            assert net.pop(name, 0.0) == pytest.approx(expect, rel=1e-9, abs=1e-6), name
        for node in set(net) | set(extra):      # switches, NICs, CPUs, root ports only forward (or replicate)
            assert net.get(node, 0.0) == pytest.approx(extra.get(node, 0.0), rel=1e-9,
                                                       abs=1e-6 * max(1.0, sent.sum())), node
        # no resource above capacity (the flow model shares; the analytic model runs each op
        # as if alone, so overlapping ops may oversubscribe: see test_two_equal_flows...)
        if run.model == "flow":
            _carried_within_capacity(run)
        by_model.setdefault(run.model, []).append(run)
    # time monotone in size, for each model, among runs of one schedule shape: a pipeline cut into more
    # chunks at a larger size may legitimately finish sooner (nccl-tree, 2 ranks: 176,524 B in 1 chunk
    # takes 135 us, 264,788 B in 2 chunks 118 us), so sizes are compared only at equal op counts
    for model, model_runs in by_model.items():
        for ops in {r.schedule.num_ops for r in model_runs}:
            same = sorted((r for r in model_runs if r.schedule.num_ops == ops), key=lambda r: r.nbytes)
            times = [r.time for r in same]
            assert all(a <= b * (1 + 1e-12) for a, b in zip(times, times[1:])), (model, ops, times)
    # contention only slows
    if {"flow", "analytic"} <= set(by_model):
        for f, a in zip(by_model["flow"], by_model["analytic"]):
            assert f.nbytes == a.nbytes
            assert f.time >= a.time * (1 - 1e-12), (f.nbytes, f.time, a.time)


@pytest.fixture(scope="module")
def graphs16():
    bridged = {"server.nvlink_pairs": [[0, 1], [2, 3], [4, 5], [6, 7]]}
    return {"fireflyer2": load("fireflyer2", gpus=16), "single-switch": load("single-switch", gpus=16),
            "fireflyer2-nvlink": load("fireflyer2", gpus=16, overrides=bridged)}


# Monotone in size holds between sizes far enough apart, not between neighbours one element
# apart: floor-split spans make a single op shrink when N grows by one (span (2, 3, 5): 1
# element at N = 2, 0 at N = 3), and max-min sharing is continuous but not monotone in op
# sizes (nccl-tree on fireflyer2/16, flow: 1 MiB -> 371.715 us, 1 MiB + 4 B -> 371.697 us).
INVARIANT_SIZES = [4, 1000, 4096, 65536 + 12, 1 * MiB, 4 * MiB + 4]


def _build(g, layout, algo, nbytes):
    """Build the schedule ``algo`` runs at ``nbytes`` on ``g`` (ValueError when it does not serve the layout)."""
    search = search_of(g, layout)
    name, size = collectives.schedule_key(algo, layout, nbytes, search=search)
    return collectives.build(name, layout, nbytes=size, search=search)


@pytest.mark.parametrize("preset", ["fireflyer2", "single-switch", "fireflyer2-nvlink"])
@pytest.mark.parametrize("algo", collectives.names())
def test_invariants_of_every_registered_algorithm(graphs16, preset, algo):
    g = graphs16[preset]
    layout = layout_of(g)
    try:
        _build(g, layout, algo, 1 * MiB)
    except ValueError as err:
        pytest.skip(f"{algo} does not build at 16 GPUs on {preset}: {err}")
    runs = []
    for model in ("analytic", "flow"):
        records, model_runs = run_sizes(g, [algo], INVARIANT_SIZES, model=model, keep_runs=True)
        assert [r["bytes"] for r in records] == INVARIANT_SIZES
        runs += model_runs
    # a size-resolved algorithm may switch schedules between sizes; check each schedule's runs together
    for concrete in {r.schedule.algo for r in runs}:
        check_invariants(g, [r for r in runs if r.schedule.algo == concrete])
    # and the whole sweep, including switches, is still monotone per model
    for model in ("analytic", "flow"):
        times = [r.time for r in runs if r.model == model]
        assert all(a <= b * (1 + 1e-12) for a, b in zip(times, times[1:])), (model, times)


# --------------------------------------------------------------------------------------------
# property test over random small topologies


@st.composite
def _cases(draw):
    shape = draw(st.sampled_from(["single-switch", "ring", "fat-tree", "torus"]))
    gpus = draw(st.integers(1, 3))
    if shape == "torus":
        dims = draw(st.sampled_from([[2, 2], [2, 3], [3, 1], [1, 2]]))
        nodes = dims[0] * dims[1]
    else:
        dims, nodes = None, draw(st.integers(1, 5))
    bw = lambda lo, hi: draw(st.floats(lo, hi)) * 1e9
    lat = lambda: draw(st.sampled_from([0.0, 0.1e-6, 0.5e-6, 2e-6, 7.3e-6]))
    overrides = {
        "server.gpus": gpus,
        "parameters.pcie_bandwidth": bw(1, 64), "parameters.pcie_latency": lat(),
        "parameters.memory_bandwidth": bw(20, 300), "parameters.memory_latency": lat(),
        "parameters.gpu_bandwidth": draw(st.sampled_from(["none", 1555e9, 200e9])),
        "parameters.gpu_reduce_bandwidth": bw(10, 600), "parameters.gpu_latency": lat(),
        "parameters.gpu_reduce_latency": lat(),
        "parameters.nic_bandwidth": draw(st.sampled_from(["none", 12.5e9, 50e9])),
        "parameters.nic_latency": lat(),
        "network.link_bandwidth": bw(0.5, 50), "network.link_latency": lat(),
    }
    if shape == "torus":
        overrides["network.dims"] = dims
    if shape in ("single-switch", "fat-tree"):
        overrides["network.switch_latency"] = lat()
    if shape == "fat-tree":
        overrides["network.radix"] = draw(st.sampled_from([4, 8]))
        overrides["network.oversubscription"] = draw(st.sampled_from([1, 2]))
    algo = draw(st.sampled_from(collectives.names()))
    dtype = draw(st.sampled_from(["float32", "float64", "float16", "int32"]))
    itemsize = np.dtype(dtype).itemsize
    p = nodes * gpus
    # sizes at least 1.5x apart (see INVARIANT_SIZES), some not divisible by p
    counts = [draw(st.integers(1, 2000))]
    for _ in range(draw(st.integers(1, 3))):
        grown = int(counts[-1] * draw(st.floats(1.5, 30.0))) + 1
        if p > 1 and draw(st.booleans()):
            grown += (-grown) % p + draw(st.integers(1, p - 1))     # remainder 1..p-1
        counts.append(grown)
    return shape, nodes, overrides, algo, dtype, [c * itemsize for c in counts]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_invariants_hold_on_random_small_topologies(case):
    shape, nodes, overrides, algo, dtype, sizes = case
    g = load(shape, nodes=nodes, overrides=overrides)
    layout = layout_of(g)
    try:
        _build(g, layout, algo, sizes[-1])
    except ValueError:
        assume(False)               # the algorithm does not serve this layout
    runs = []
    for model in ("analytic", "flow"):
        records, model_runs = run_sizes(g, [algo], sizes, dtype=dtype, model=model, keep_runs=True)
        assert all(r["count"] * np.dtype(dtype).itemsize == r["bytes"] for r in records)
        runs += model_runs
    for concrete in {r.schedule.algo for r in runs}:
        check_invariants(g, [r for r in runs if r.schedule.algo == concrete])

