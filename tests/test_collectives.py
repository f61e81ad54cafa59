"""Collectives: verifier, reference executor, kernels, costs and the ring schedules."""

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from flyersim.collectives import ALGORITHMS, build, costs
from flyersim.collectives.kernels import combine, reduce_into
from flyersim.collectives.reference import ResultMismatch, run_reference
from flyersim.collectives.ring import ring_allreduce
from flyersim.collectives.schedule import Layout, ScheduleBuilder
from flyersim.collectives.verify import ScheduleError, verify

DTYPES = [np.float16, np.float32, np.float64, np.int32]


def bridged(g):
    """NVLink bridges between GPUs 2i and 2i+1 (none for an odd count)."""
    return tuple((i, i + 1) for i in range(0, g, 2)) if g % 2 == 0 else ()


def layouts(p):
    """Every nodes x gpus_per_node split of p ranks with up to 8 GPUs a node, one and two sockets."""
    return [Layout(p // g, g, sockets, bridged(g)) for g in range(1, min(p, 8) + 1) if p % g == 0
            for sockets in (1, 2)]


def one_layout(p):
    """One nodes x gpus_per_node split of p that varies with p (8, 4, 2 or 1 GPUs a node)."""
    g = int(np.gcd(p, 8))
    return Layout(p // g, g, 1 + p % 2, bridged(g))


def serves(algo, collective, layout):
    """Whether a registered algorithm serves ``layout``; the ValueError for one it does not must name the reason."""
    power_of_two = layout.ranks & (layout.ranks - 1) == 0
    if algo == "hfreduce-nvlink":
        return bool(layout.nvlink_pairs)
    return power_of_two or (collective, algo) not in {("reduce_scatter", "rh"), ("allgather", "rd")}


def check(key, layout):
    collective, algo = key
    if not serves(algo, collective, layout):
        with pytest.raises(ValueError, match="power-of-two rank count|nvlink_pairs"):
            build(algo, layout, collective)
        return 0
    schedule = build(algo, layout, collective)
    assert schedule.collective == collective and schedule.layout == layout
    assert len(schedule.expect) >= (1 if collective == "reduce" else layout.ranks)
    verify(schedule)
    return 1


KEYS = pytest.mark.parametrize("key", sorted(ALGORITHMS), ids="-".join)


@pytest.mark.parametrize("key", sorted(k for k, a in ALGORITHMS.items() if a.pick is None), ids="-".join)
def test_every_registered_algorithm_verifies_at_1_to_64_ranks(key):
    """Algorithms that pick another by size run as registered concrete ones, which this covers at 1..64."""
    assert sum(check(key, one_layout(p)) for p in range(1, 65)) > 0


@KEYS
def test_every_registered_algorithm_verifies_every_split_up_to_12_ranks(key):
    assert sum(check(key, layout) for p in range(1, 13) for layout in layouts(p)) > 0


def test_ring_verifies_at_64_ranks_and_has_3p_p_minus_1_ops():
    s = ring_allreduce(Layout(8, 8, 2))
    verify(s)
    assert s.num_ops == 3 * 64 * 63


def test_ring_one_rank_is_empty_and_correct():
    s = ring_allreduce(Layout(1, 1))
    assert s.num_ops == 0
    verify(s)
    out = run_reference(s, [np.arange(4.0)])
    assert out[0]["data"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_ring_builds_1024_ranks():
    s = ring_allreduce(Layout(128, 8))
    p = 1024
    assert s.num_ops == 3 * p * (p - 1)
    # reduce-scatter: sends after the first wait for the sender's last reduce and last send, each
    # reduce for its incoming send; allgather: every send waits for the reduce-scatter's end at both
    # ends, and after the first also for what it forwards and the sender's last send
    assert s.dep_idx.size == 2 * p * (p - 2) + p * (p - 1) + 2 * p + 4 * p * (p - 2)
    assert np.all(s.dep_idx < np.repeat(np.arange(s.num_ops), np.diff(s.dep_ptr)))


@pytest.mark.parametrize("outer", ["rabenseifner", "rd"])
@pytest.mark.parametrize("nodes,g", [(1, 4), (2, 2), (3, 2), (4, 2), (5, 3), (6, 4), (7, 1)])
def test_smp_verifies_with_either_outer_algorithm(outer, nodes, g):
    s = build("smp", Layout(nodes, g), outer=outer)
    verify(s)
    leader_ops = build(outer, Layout(nodes, 1)).num_ops
    assert s.num_ops == leader_ops + nodes * 3 * (g - 1)  # per node: g-1 sends + reduces up, g-1 sends down


def test_smp_with_one_rank_per_node_is_its_outer_algorithm():
    for outer in ("rabenseifner", "rd"):
        s, flat = build("smp", Layout(6, 1), outer=outer), build(outer, Layout(6, 1))
        assert [s.describe(i) for i in range(s.num_ops)] == [flat.describe(i) for i in range(flat.num_ops)]


# --- the verifier catches broken schedules -------------------------------------------------------


def two_rank_exchange(deps_on_recv=True, deps_on_send=True):
    b = ScheduleBuilder(Layout(1, 2), "allreduce", "broken", buffers=("data", "recv"))
    x = b.xfer(src=[0, 1], dst=[1, 0], span=(0, 1, 1), src_buf="data", dst_buf="recv")
    deps = ([x[::-1]] if deps_on_recv else []) + ([x] if deps_on_send else [])
    b.reduce(at=[0, 1], inputs=("data", "recv"), out="data", span=(0, 1, 1), deps=deps)
    for r in (0, 1):
        b.expect(r, "data", (0, 1, 1))
    return b


def test_correct_exchange_passes():
    verify(two_rank_exchange().build())


def test_missing_dependency_on_incoming_data_is_a_race():
    with pytest.raises(ScheduleError, match=r"op 2 \(reduce n0/gpu0:data,recv -> data .*races with op 1"):
        verify(two_rank_exchange(deps_on_recv=False).build())


def test_overwriting_data_still_being_sent_is_a_race():
    with pytest.raises(ScheduleError, match=r"races with op 0 \(xfer n0/gpu0:data -> n0/gpu1:recv"):
        verify(two_rank_exchange(deps_on_send=False).build())


def test_double_counting_is_caught():
    b = ScheduleBuilder(Layout(1, 2), "allreduce", "twice", buffers=("data", "recv"))
    x = b.xfer(src=0, dst=1, span=(0, 1, 1), src_buf="data", dst_buf="recv")
    r = b.reduce(at=1, inputs=("data", "recv"), out="data", span=(0, 1, 1), deps=[x])
    back = b.xfer(src=1, dst=0, span=(0, 1, 1), src_buf="data", dst_buf="recv", deps=[r])
    b.reduce(at=0, inputs=("data", "recv"), out="data", span=(0, 1, 1), deps=[back])
    with pytest.raises(ScheduleError, match=r"op 3 \(reduce n0/gpu0.*double counts ranks \[0\]"):
        verify(b.build())


def test_missing_contribution_is_caught():
    b = ScheduleBuilder(Layout(1, 3), "allreduce", "partial", buffers=("data", "recv"))
    x = b.xfer(src=0, dst=1, span=(0, 1, 1), src_buf="data", dst_buf="recv")
    b.reduce(at=1, inputs=("data", "recv"), out="data", span=(0, 1, 1), deps=[x])
    b.expect(1, "data", (0, 1, 1))
    with pytest.raises(ScheduleError, match=r"expect n0/gpu1:data \[0, 1\): missing ranks \[2\], extra ranks \[\]"):
        verify(b.build())


def test_read_of_undefined_data_is_caught():
    b = ScheduleBuilder(Layout(1, 2), "allgather", "undefined", buffers=("data", "recv"))
    b.xfer(src=0, dst=1, span=(1, 2, 2), src_buf="recv", dst_buf="data")
    with pytest.raises(ScheduleError, match=r"op 0 \(xfer n0/gpu0:recv -> n0/gpu1:data \[1/2, 2/2\)\) reads undefined "
                                            r"data at n0/gpu0:recv \[1/2, 1\)"):
        verify(b.build())


def test_host_buffers_start_undefined_and_self_transfer_is_rejected():
    layout = Layout(1, 2)
    b = ScheduleBuilder(layout, "broadcast", "host")
    b.xfer(src=layout.host(0), dst=0, span=(0, 1, 1))
    with pytest.raises(ScheduleError, match="reads undefined data at n0/host0:data"):
        verify(b.build())
    b = ScheduleBuilder(layout, "broadcast", "self")
    b.xfer(src=1, dst=1, span=(0, 1, 1))
    with pytest.raises(ScheduleError, match="transfers from a location to itself"):
        verify(b.build())


def test_race_on_overlapping_but_different_spans():
    b = ScheduleBuilder(Layout(1, 3), "allgather", "overlap")
    b.xfer(src=0, dst=2, span=(0, 2, 3))
    b.xfer(src=1, dst=2, span=(1, 2, 2))  # overlaps [1/2, 2/3)
    with pytest.raises(ScheduleError, match=r"op 1 .* races with op 0 .* on n0/gpu2:data \[1/2, 2/3\)"):
        verify(b.build())


def test_wrong_expect_is_caught_by_verifier_and_reference():
    s = ring_allreduce(Layout(1, 3))
    wrong = dataclasses.replace(s.expect[1], contributors=(0, 1))
    s = dataclasses.replace(s, expect=(s.expect[0], wrong))
    with pytest.raises(ScheduleError, match=r"extra ranks \[2\]"):
        verify(s)
    with pytest.raises(ResultMismatch, match=r"n0/gpu1:data \[0/1, 1/1\): element 0 is 6, expected sum of ranks \[0, 1\] = 3"):
        run_reference(s, [np.full(4, r + 1, np.int32) for r in range(3)])


# --- reference executor -----------------------------------------------------------------------------


def random_inputs(rng, p, n, dtype):
    if dtype == np.int32:
        return [rng.integers(-2**31, 2**31, n).astype(np.int32) for _ in range(p)]
    return [(rng.standard_normal(n) * 100).astype(dtype) for _ in range(p)]


@settings(max_examples=150, deadline=None)
@given(key=st.sampled_from(sorted(ALGORITHMS)), p=st.integers(1, 9), n=st.integers(0, 200),
       dtype=st.sampled_from(DTYPES), op=st.sampled_from(["sum", "max", "min"]), seed=st.integers(0, 2**32 - 1))
def test_reference_matches_numpy(key, p, n, dtype, op, seed):
    collective, algo = key
    inputs = random_inputs(np.random.default_rng(seed), p, n, dtype)
    layout = Layout(1, p, nvlink_pairs=bridged(p))
    assume(serves(algo, collective, layout))
    out = run_reference(build(algo, layout, collective), inputs, op)  # checks every expect entry
    if collective == "allreduce" and (dtype == np.int32 or op != "sum"):
        want = {"sum": np.sum, "max": np.max, "min": np.min}[op](np.stack(inputs), axis=0).astype(dtype)
        for r in range(p):
            np.testing.assert_array_equal(out[r]["data"], want)


def test_reference_rejects_bad_inputs():
    s = ring_allreduce(Layout(1, 2))
    with pytest.raises(ValueError, match="one input per rank"):
        run_reference(s, [np.zeros(3)])
    with pytest.raises(ValueError, match="one dtype and length"):
        run_reference(s, [np.zeros(3), np.zeros(4)])
    with pytest.raises(ValueError, match="unsupported dtype int64"):
        run_reference(s, [np.zeros(3, np.int64)] * 2)


# --- kernels ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op,ufunc", [("sum", np.add), ("max", np.maximum), ("min", np.minimum)])
def test_combine_matches_numpy_ufunc(dtype, op, ufunc):
    rng = np.random.default_rng(1)
    a, b = random_inputs(rng, 2, 50, dtype)
    out = np.empty_like(a)
    combine(out, a, b, op)
    np.testing.assert_array_equal(out, ufunc(a, b))


def test_reduce_into_with_out_aliasing_a_later_input():
    xs = [np.array([1.0, 2.0]), np.array([10.0, 20.0]), np.array([100.0, 200.0])]
    reduce_into(xs[2], xs, "sum")
    assert xs[2].tolist() == [111.0, 222.0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["sum", "max", "min"])
@pytest.mark.parametrize("k", [2, 3, 8, 9, 16])
@pytest.mark.parametrize("in_place", [False, True])
def test_reduce_into_one_pass_equals_pairwise_passes_bit_for_bit(dtype, op, k, in_place):
    # k > 8 takes more than one pass (kernels.GROUP inputs each); 1003 elements leave a partial vector
    rng = np.random.default_rng(k)
    xs = random_inputs(rng, k, 1003, dtype)
    if dtype != np.int32:
        xs[1][::7] = np.nan  # propagates as numpy's does
    expected = xs[0].copy()
    for x in xs[1:]:
        combine(expected, expected, x, op)
    ufunc = {"sum": np.add, "max": np.maximum, "min": np.minimum}[op]
    np.testing.assert_array_equal(expected, ufunc.reduce(np.stack(xs), axis=0, dtype=dtype))  # k-1 passes are numpy's fold
    out = xs[0] if in_place else np.empty_like(xs[0])
    reduce_into(out, xs, op)
    assert out.tobytes() == expected.tobytes()


def test_kernel_errors():
    a = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="unknown reduction op 'prod'"):
        combine(a, a, a, "prod")
    with pytest.raises(ValueError, match="dtype mismatch"):
        combine(a, a, np.zeros(3), "sum")
    with pytest.raises(ValueError, match="at least two inputs"):
        reduce_into(a, [a], "sum")


# --- costs and registry ---------------------------------------------------------------------------------


def test_costs_hand_values():
    # ring allreduce, 8 ranks, 1 MB, 5 us, 10 GB/s, no reduce cost: 14*5us + 2*7/8*1e6/1e10 s
    assert costs.ring_allreduce(8, 1e6, 5e-6, 1e-10, 0.0) == pytest.approx(70e-6 + 175e-6)
    assert costs.recursive_doubling_allreduce(16, 100, 1.0, 1.0, 1.0) == 4 * 201
    assert costs.rabenseifner_allreduce(4, 100, 1.0, 1.0, 1.0) == pytest.approx(4 + 150 + 75)
    assert costs.binomial_reduce(7, 10, 1.0, 1.0, 0.0) == 3 * 11
    assert costs.ring_reduce_scatter(4, 400, 1.0, 1.0, 1.0) + costs.ring_allgather(4, 400, 1.0, 1.0) == \
        costs.ring_allreduce(4, 400, 1.0, 1.0, 1.0)
    assert costs.busbw_factor("allreduce", 4) == 1.5 and costs.busbw_factor("allgather", 2) == 0.5
    with pytest.raises(ValueError, match="power-of-two rank count, got 6"):
        costs.recursive_doubling_allgather(6, 1, 1, 1)
    with pytest.raises(ValueError, match="positive integer"):
        costs.ring_allreduce(0, 1, 1, 1, 1)


def test_build_unknown_algorithm():
    with pytest.raises(ValueError, match=r"unknown reduce_scatter algorithm 'hfreduce' \(choose from ring, rh\)"):
        build("hfreduce", Layout(1, 2), "reduce_scatter")
