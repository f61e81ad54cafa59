"""The fluid flow model: max-min fairness and event stepping, on hand-made routes."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from flyersim.sim.fluid import Network


def _network(op_bytes, routes, capacity, latency=None, deps=None, shared=True, check=False, share=None):
    """A Network where op i uses route i; ``routes`` is a list of {resource: weight} dicts."""
    rptr = np.cumsum([0] + [len(r) for r in routes])
    rres = np.array([k for r in routes for k in r], np.int64)
    rw = np.array([w for r in routes for w in r.values()], np.float64)
    deps = deps or [[] for _ in op_bytes]
    dep_ptr = np.cumsum([0] + [len(d) for d in deps])
    dep_idx = np.array([d for ds in deps for d in ds], np.int64)
    return Network(np.array(op_bytes, float), np.arange(len(routes)), rptr, rres, rw,
                   np.array(latency or [0.0] * len(routes)), np.array(capacity, float),
                   dep_ptr, dep_idx, "maxmin" if shared else "isolated", check=check, share=share)


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


def _reference_maxmin(routes, capacity, share=None):
    """Textbook weighted progressive filling, one resource at a time (independent of sim.fluid).

    Flow ``f`` gets ``share[f]`` x the fair level of its bottleneck (shares default to 1).
    """
    share = share or {f: 1.0 for f in routes}
    rate, frozen = {}, set()
    left = dict(enumerate(capacity))
    while len(frozen) < len(routes):
        levels = {k: left[k] / sum(w * share[f] for f, r in routes.items() if f not in frozen
                                   for kk, w in r.items() if kk == k)
                  for k in left if any(k in r for f, r in routes.items() if f not in frozen)}
        k_min = min(levels, key=levels.get)
        level = levels[k_min]
        for f, r in routes.items():
            if f not in frozen and k_min in r:
                rate[f] = share[f] * level
                frozen.add(f)
                for k, w in r.items():
                    left[k] -= w * rate[f]
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
    share = draw(st.one_of(st.none(), st.lists(st.sampled_from([1.0, 3.0, 0.25]), min_size=nflows,
                                                max_size=nflows)))
    return capacity, routes, sizes, latency, deps, share


@settings(max_examples=150, deadline=None)
@given(_workloads())
def test_incremental_rates_equal_max_min_from_scratch_after_every_event(case):
    capacity, routes, sizes, latency, deps, share = case
    net = _network(sizes, routes, capacity, latency=latency, deps=deps, share=share)
    t = net.next_time
    while t < np.inf:
        t = net.step(t)
        active = net.active().tolist()
        if not active:
            continue
        expected = _reference_maxmin({f: routes[f] for f in active}, capacity,
                                     share and {f: share[f] for f in active})
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
    bad.var.rate[bad.var.op == 1] = 3.0
    with pytest.raises(AssertionError, match="full solve"):
        bad.step(bad.next_time)


def test_isolated_full_solve_is_each_route_alone():
    net = _network([10, 10], [{0: 1.0}, {0: 2.0}], [10.0], shared=False)
    net.step(net.next_time)
    assert net.solve(full=True).tolist() == [10.0, 5.0] == net.solve().tolist()


def test_unknown_sharing_policy_is_an_error():
    with pytest.raises(ValueError, match="unknown sharing 'fair'"):
        Network(np.ones(1), np.zeros(1, int), [0, 1], [0], [1.0], [0.0], [1.0], [0, 0], [], sharing="fair")


# ---------------------------------------------------------------- sharing weights (traffic classes)

def test_shares_split_a_link_in_proportion():
    # shares 3 and 1 on a 4 B/s link: 3 and 1 B/s; the 6 B flow ends at 2 s, the other then gets all 4 B/s:
    # it moved 2 of its 10 B, the 8 left take 2 s more
    net = _network([6.0, 10.0], [{0: 1.0}, {0: 1.0}], [4.0], share=[3.0, 1.0], check=True)
    net.step(net.next_time)
    assert net.rate.tolist() == [3.0, 1.0]
    assert _run(net).tolist() == [2.0, 4.0]


def test_a_class_bottlenecked_elsewhere_leaves_its_share_to_the_others():
    # flow 0 (share 3) is held to 1 B/s by link 1; flow 1 (share 1) takes the other 3 B/s of link 0
    net = _network([1.0, 1.0], [{0: 1.0, 1: 1.0}, {0: 1.0}], [4.0, 1.0], share=[3.0, 1.0], check=True)
    net.step(net.next_time)
    assert net.rate.tolist() == [1.0, 3.0]
    assert net.solve(full=True).tolist() == [1.0, 3.0]


def test_shares_weigh_with_consumption_weights():
    # weights 2 and 1, shares 1 and 2: levels x with 2*1*x + 1*2*x = 8, so x = 2: rates 2 and 4
    net = _network([1.0, 1.0], [{0: 2.0}, {0: 1.0}], [8.0], share=[1.0, 2.0])
    net.step(net.next_time)
    assert net.rate.tolist() == [2.0, 4.0]


def test_isolated_policy_ignores_shares():
    net = _network([1.0, 1.0], [{0: 1.0}, {0: 1.0}], [4.0], shared=False, share=[3.0, 1.0])
    net.step(net.next_time)
    assert net.rate.tolist() == [4.0, 4.0]


def test_unit_shares_change_no_bit():
    routes = [{0: 1.0, 1: 2.0}, {0: 1.0}, {1: 1.0, 2: 0.5}, {2: 9.0}]
    args = ([3.0, 7.0, 11.0, 5.0], routes, [10.0, 4.0, 3.0])
    kw = dict(latency=[0.0, 0.1, 0.3, 0.2])
    assert _run(_network(*args, **kw)).tobytes() == _run(_network(*args, **kw, share=[1.0] * 4)).tobytes()


@pytest.mark.parametrize("share", [[1.0], [1.0, 0.0], [1.0, np.inf]])
def test_bad_shares_are_an_error(share):
    with pytest.raises(ValueError, match="share must hold"):
        _network([1.0, 1.0], [{0: 1.0}, {0: 1.0}], [4.0], share=share)


# ---------------------------------------------------------------- route alternatives (adaptive routing)

def test_two_flows_with_two_equal_paths_take_different_paths():
    # routes 0 and 1: two equal paths (resources 0 and 1) between one pair; both ops list route 0
    net = Network(np.full(2, 10.0), np.array([0, 0]), [0, 1, 2], [0, 1], [1.0, 1.0], [0.0, 0.0], [10.0, 10.0],
                  np.zeros(3, np.int64), np.empty(0, np.int64), check=True, alt_ptr=[0, 2, 2], alt_idx=[0, 1])
    assert _run(net).tolist() == [1.0, 1.0]   # each alone on its path: 10 B at 10 B/s
    assert net.route.tolist() == [0, 1]       # the first takes the first listed (a tie), the second the idle one


def test_a_new_flow_avoids_the_path_a_busy_flow_is_on():
    # op 0 is pinned to path 0 (route 2, no candidates) from t=0; op 1 (route 0, candidates 0 and 1) starts at
    # 0.5 s (its route's latency) and takes idle path 1: both end alone (on path 0 both would end at 1.5 s)
    net = Network(np.array([10.0, 10.0]), np.array([2, 0]), [0, 1, 2, 3], [0, 1, 0], [1.0, 1.0, 1.0],
                  [0.5, 0.5, 0.0], [10.0, 10.0], np.zeros(3, np.int64), np.empty(0, np.int64), check=True,
                  alt_ptr=[0, 2, 2, 2], alt_idx=[0, 1])
    assert _run(net).tolist() == [1.0, 1.5]
    assert net.route.tolist() == [2, 1]


def test_without_candidates_every_op_keeps_its_route():
    net = Network(np.full(2, 10.0), np.array([0, 0]), [0, 1, 2], [0, 1], [1.0, 1.0], [0.0, 0.0], [10.0, 10.0],
                  np.zeros(3, np.int64), np.empty(0, np.int64))
    assert _run(net).tolist() == [2.0, 2.0]
    assert net.route.tolist() == [0, 0]


def test_bad_alternatives_are_an_error():
    with pytest.raises(ValueError, match="CSR of candidate routes"):
        Network(np.ones(1), np.zeros(1, int), [0, 1], [0], [1.0], [0.0], [1.0], [0, 0], [], alt_ptr=[0, 1],
                alt_idx=[5])


def test_slots_grow_while_flows_start():
    # 3,000 equal flows start at once on one link (the solver starts with 1,024 slots and grows mid-event),
    # plus one on a second link: all share fairly and end at 3,000 x 1 B / 3,000 B/s
    n = 3000
    net = Network(np.ones(n + 1), np.r_[np.zeros(n, int), 1], [0, 1, 2], [0, 1], [1.0, 1.0], [0.0, 0.0],
                  [float(n), 1.0], np.zeros(n + 2, np.int64), np.empty(0, np.int64))
    t = net.step(net.next_time)
    assert net.var.op.size >= n + 1 and net.active().tolist() == list(range(n + 1))
    assert np.all(net.rate == 1.0)
    while t < np.inf:
        t = net.step(t)
    assert np.all(net.end_at == 1.0)


def test_check_rounds_wrapping_around_change_no_bit():
    # the int32 round marks start again from 0 after ROUND_WRAP check rounds: a run that wraps mid-way ends
    # every op at the same bits as one that does not
    from flyersim.sim import fluid
    rng = np.random.default_rng(7)
    routes = [{int(k): float(w) for k, w in zip(rng.choice(6, 3, replace=False), rng.choice([0.5, 1.0, 2.0], 3))}
              for _ in range(60)]
    deps = [[] if f < 6 else [f - 6] for f in range(60)]
    args = (rng.uniform(1, 100, 60).tolist(), routes, rng.uniform(1, 10, 6).tolist())
    plain = _run(_network(*args, deps=deps)).copy()
    net = _network(*args, deps=deps)
    net.work.counts[fluid.ROUND] = fluid.ROUND_WRAP - 2
    wrapped = _run(net)
    assert 0 < net.work.counts[fluid.ROUND] < 1000  # it wrapped
    assert wrapped.tobytes() == plain.tobytes()
