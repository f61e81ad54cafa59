"""The fluid flow model: max-min fairness and event stepping, on hand-made routes."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from flyersim.sim.fluid import Network


def _network(op_bytes, routes, capacity, latency=None, deps=None, shared=True, check=False):
    """A Network where op i uses route i; ``routes`` is a list of {resource: weight} dicts."""
    rptr = np.cumsum([0] + [len(r) for r in routes])
    rres = np.array([k for r in routes for k in r], np.int64)
    rw = np.array([w for r in routes for w in r.values()], np.float64)
    deps = deps or [[] for _ in op_bytes]
    dep_ptr = np.cumsum([0] + [len(d) for d in deps])
    dep_idx = np.array([d for ds in deps for d in ds], np.int64)
    return Network(np.array(op_bytes, float), np.arange(len(routes)), rptr, rres, rw,
                   np.array(latency or [0.0] * len(routes)), np.array(capacity, float),
                   dep_ptr, dep_idx, "maxmin" if shared else "isolated", check=check)


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


def _reference_maxmin(routes, capacity):
    """Textbook weighted progressive filling, one resource at a time (independent of sim.fluid)."""
    rate, frozen = {}, set()
    left = dict(enumerate(capacity))
    while len(frozen) < len(routes):
        shares = {k: left[k] / sum(w for f, r in routes.items() if f not in frozen for kk, w in r.items() if kk == k)
                  for k in left if any(k in r for f, r in routes.items() if f not in frozen)}
        k_min = min(shares, key=shares.get)
        level = shares[k_min]
        for f, r in routes.items():
            if f not in frozen and k_min in r:
                rate[f] = level
                frozen.add(f)
                for k, w in r.items():
                    left[k] -= w * level
    return rate


@st.composite
def _workloads(draw):
    nres = draw(st.integers(1, 5))
    nflows = draw(st.integers(1, 14))
    capacity = draw(st.lists(st.floats(0.5, 100.0), min_size=nres, max_size=nres))
    routes, sizes, latency, deps = [], [], [], []
    for f in range(nflows):
        members = draw(st.lists(st.integers(0, nres - 1), min_size=1, max_size=nres, unique=True))
        routes.append({k: draw(st.sampled_from([0.5, 1.0, 2.0, 9.0])) for k in members})
        sizes.append(draw(st.floats(1.0, 100.0)))
        latency.append(draw(st.sampled_from([0.0, 0.1, 0.7, 2.0])))
        deps.append(draw(st.lists(st.integers(0, f - 1), max_size=2, unique=True)) if f else [])
    return capacity, routes, sizes, latency, deps


@settings(max_examples=150, deadline=None)
@given(_workloads())
def test_incremental_rates_equal_max_min_from_scratch_after_every_event(case):
    capacity, routes, sizes, latency, deps = case
    net = _network(sizes, routes, capacity, latency=latency, deps=deps)
    t = net.next_time
    while t < np.inf:
        t = net.step(t)
        active = net.active().tolist()
        if not active:
            continue
        expected = _reference_maxmin({f: routes[f] for f in active}, capacity)
        got = {f: net.rate[f] for f in active}
        assert all(np.isclose(got[f], expected[f], rtol=1e-7) for f in active), (got, expected)
        # the library's own full re-solve agrees to the solver's rate tolerance
        np.testing.assert_allclose(net.solve()[active], net.solve(full=True)[active], rtol=1e-9, atol=0)
    assert not np.isnan(net.end_at).any()


def test_full_solve_and_check_mode():
    # the three-flow example: a full solve from scratch gives the same rates; check=True runs clean
    net = _network([1.0] * 3, [{0: 1.0, 1: 1.0}, {0: 1.0}, {1: 1.0}], [10.0, 4.0], check=True)
    net.step(net.next_time)
    assert np.allclose(net.solve(full=True), [2.0, 8.0, 2.0])
    assert np.allclose(net.solve(), net.solve(full=True))
    assert np.isclose(_run(net)[1], 1 / 8)
    # check mode raises when the incremental state is wrong
    # (op 3, on a resource of its own, starts at 0.5 s and re-solves nothing else)
    bad = _network([10.0] * 4, [{0: 1.0, 1: 1.0}, {0: 1.0}, {1: 1.0}, {2: 1.0}], [10.0, 4.0, 1.0],
                   latency=[0, 0, 0, 0.5], check=True)
    bad.step(bad.next_time)
    bad.var.rate[bad.flow_of(1)] = 3.0
    with pytest.raises(AssertionError, match="full solve"):
        bad.step(bad.next_time)


def test_isolated_full_solve_is_each_route_alone():
    net = _network([10, 10], [{0: 1.0}, {0: 2.0}], [10.0], shared=False)
    net.step(net.next_time)
    assert net.solve(full=True).tolist() == [10.0, 5.0] == net.solve().tolist()


def test_unknown_sharing_policy_is_an_error():
    with pytest.raises(ValueError, match="unknown sharing 'fair'"):
        Network(np.ones(1), np.zeros(1, int), [0, 1], [0], [1.0], [0.0], [1.0], [0, 0], [], sharing="fair")
