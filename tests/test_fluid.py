"""The fluid flow model: max-min fairness and event stepping, on hand-made routes."""

import numpy as np
from hypothesis import given, settings, strategies as st

from sim.fluid import Network, _solve_maxmin


def _network(op_bytes, routes, capacity, latency=None, deps=None, shared=True):
    """A Network where op i uses route i; ``routes`` is a list of {resource: weight} dicts."""
    rptr = np.cumsum([0] + [len(r) for r in routes])
    rres = np.array([k for r in routes for k in r], np.int64)
    rw = np.array([w for r in routes for w in r.values()], np.float64)
    deps = deps or [[] for _ in op_bytes]
    dep_ptr = np.cumsum([0] + [len(d) for d in deps])
    dep_idx = np.array([d for ds in deps for d in ds], np.int64)
    return Network(np.array(op_bytes, float), np.arange(len(routes)), rptr, rres, rw,
                   np.array(latency or [0.0] * len(routes)), np.array(capacity, float),
                   dep_ptr, dep_idx, shared)


def _run(net):
    t = net.next_time
    while t < np.inf:
        t = net.step(t)
    return net.end_at


def test_two_equal_flows_on_one_link_finish_at_2n_over_b():
    n, bw = 1e6, 1e9
    assert np.allclose(_run(_network([n, n], [{0: 1.0}, {0: 1.0}], [bw])), 2 * n / bw, rtol=1e-12)


def test_short_flow_releases_bandwidth_to_long_one():
    # both share 10 B/s: the 10 B flow ends at 2 s, the 30 B flow then runs alone: 2 + 20/10
    ends = _run(_network([10, 30], [{0: 1.0}, {0: 1.0}], [10.0]))
    assert np.allclose(ends, [2.0, 4.0])


def test_weights_count_bytes_of_resource_per_byte_of_flow():
    # a 3-way reduce reads 3 and writes 1 units of memory per output byte
    ends = _run(_network([100.0], [{0: 4.0}], [400.0]))
    assert np.allclose(ends, [1.0])


def test_dependencies_and_latency_serialise_ops():
    ends = _run(_network([10, 10], [{0: 1.0}, {0: 1.0}], [10.0], latency=[0.5, 0.25], deps=[[], [0]]))
    assert np.allclose(ends, [1.5, 2.75])


def test_empty_op_takes_only_its_latency():
    assert np.allclose(_run(_network([0.0], [{0: 1.0}], [1.0], latency=[3e-6])), [3e-6])


def test_analytic_model_ignores_sharing():
    ends = _run(_network([10, 10], [{0: 1.0}, {0: 1.0}], [10.0], shared=False))
    assert np.allclose(ends, [1.0, 1.0])


def test_max_min_gives_unshared_capacity_to_the_unconstrained_flow():
    # flow 0 crosses links 0 and 1, flow 1 only link 0 (cap 10), flow 2 only link 1 (cap 4)
    # link 1 saturates first at 2 each; flow 1 then takes the remaining 8 of link 0
    net = _network([1.0] * 3, [{0: 1.0, 1: 1.0}, {0: 1.0}, {1: 1.0}], [10.0, 4.0])
    net.step(net.next_time)
    assert np.allclose(net.rate, [2.0, 8.0, 2.0])


@st.composite
def _flows(draw):
    nres = draw(st.integers(1, 6))
    nflows = draw(st.integers(1, 12))
    capacity = np.array(draw(st.lists(st.floats(0.5, 100.0), min_size=nres, max_size=nres)))
    routes = []
    for _ in range(nflows):
        members = draw(st.lists(st.integers(0, nres - 1), min_size=1, max_size=nres, unique=True))
        routes.append({k: draw(st.sampled_from([0.5, 1.0, 2.0, 9.0])) for k in members})
    return capacity, routes


@settings(max_examples=200, deadline=None)
@given(_flows())
def test_max_min_is_feasible_and_every_flow_has_a_saturated_bottleneck(case):
    capacity, routes = case
    rptr = np.cumsum([0] + [len(r) for r in routes]).astype(np.int64)
    rres = np.array([k for r in routes for k in r], np.int64)
    rw = np.array([w for r in routes for w in r.values()])
    n, nres = len(routes), capacity.size
    rate = np.zeros(n)
    _solve_maxmin(np.arange(n), n, np.arange(n), rptr, rres, rw, capacity, rate,
                  np.empty(nres), np.empty(nres), np.zeros(nres, np.int64), np.zeros(nres, np.bool_))
    usage = np.zeros(nres)
    for f, r in enumerate(routes):
        for k, w in r.items():
            usage[k] += w * rate[f]
    assert np.all(usage <= capacity * (1 + 1e-9))
    for f, r in enumerate(routes):
        # max-min: some resource of f is full and no flow on it gets a higher rate than f
        assert any(usage[k] >= capacity[k] * (1 - 1e-9)
                   and all(rate[g] <= rate[f] * (1 + 1e-9) for g, rg in enumerate(routes) if k in rg)
                   for k in r)
