"""Allreduce generators (tree, recursive doubling, Rabenseifner, double binary tree): verified, run, counted."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from flyersim.collectives.dbtree import dbtree_allreduce
from flyersim.collectives.rabenseifner import rabenseifner_allreduce
from flyersim.collectives.recursive_doubling import rd_allreduce
from flyersim.collectives.reference import run_reference
from flyersim.collectives.schedule import XFER, Layout
from flyersim.collectives.trees import double_binary_tree, tree_depths
from flyersim.collectives.tree import tree_allreduce
from flyersim.collectives.verify import verify

GENERATORS = {
    "tree": tree_allreduce,
    "recursive_doubling": rd_allreduce,
    "rabenseifner": rabenseifner_allreduce,
    "dbtree": dbtree_allreduce,
    "dbtree_1_chunk": lambda layout: dbtree_allreduce(layout, chunks=1),
    "dbtree_3_chunks": lambda layout: dbtree_allreduce(layout, chunks=3),
}
DTYPES = [np.int32, np.float32, np.float64, np.float16]


def layout_of(p):
    """A nodes x gpus_per_node split of p that varies with p (8, 4, 2 or 1 GPUs a node)."""
    g = int(np.gcd(p, 8))
    return Layout(p // g, g, sockets=1 + p % 2)


def xfer_rounds(s):
    """Longest chain of xfers through the dependency DAG (reduces cost no round), and xfers per level."""
    level = np.zeros(s.num_ops, np.int64)
    for i in range(s.num_ops):
        before = level[s.deps(i)].max(initial=0)
        level[i] = before + (s.kind[i] == XFER)
    xfers = level[s.kind == XFER]
    return int(level.max(initial=0)), np.bincount(xfers, minlength=1)[1:].tolist()


def lg(p):
    return p.bit_length() - 1


@pytest.mark.parametrize("name", ["dbtree_1_chunk", "dbtree_3_chunks"])  # defaults: tests/test_collectives.py
def test_verifies_at_1_to_64_ranks(name):
    for p in range(1, 65):
        s = GENERATORS[name](layout_of(p))
        assert s.collective == "allreduce" and len(s.expect) == p
        verify(s)


@pytest.mark.parametrize("name", GENERATORS)
def test_one_rank_has_no_ops(name):
    s = GENERATORS[name](Layout(1, 1))
    assert s.num_ops == 0
    verify(s)
    assert run_reference(s, [np.arange(3.0)])[0]["data"].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", GENERATORS)
def test_reference_matches_numpy(name, dtype):
    rng = np.random.default_rng(7)
    for p in (2, 3, 5, 6, 8, 12, 13):
        s = GENERATORS[name](layout_of(p))
        for n in (0, 1, p - 1, 17, 100):
            if np.dtype(dtype).kind == "i":
                inputs = [rng.integers(-1000, 1000, n).astype(dtype) for _ in range(p)]
            else:
                inputs = [rng.uniform(-1, 1, n).astype(dtype) for _ in range(p)]
            out = run_reference(s, inputs)  # raises ResultMismatch on a wrong element
            assert all(out[r]["data"].dtype == dtype for r in range(p))


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(sorted(GENERATORS)), p=st.integers(1, 20), n=st.integers(0, 100),
       dtype=st.sampled_from(DTYPES))
def test_reference_any_size(name, p, n, dtype):
    rng = np.random.default_rng(p * 1000 + n)
    inputs = [rng.integers(-50, 50, n).astype(dtype) for _ in range(p)]
    run_reference(GENERATORS[name](layout_of(p)), inputs)


@pytest.mark.parametrize("p", [2, 4, 8, 16, 32])
def test_recursive_doubling_power_of_two_has_lg_p_rounds_of_p_xfers(p):
    s = rd_allreduce(Layout(1, p))
    assert xfer_rounds(s) == (lg(p), [p] * lg(p))
    assert np.all(s.span_elements(p) == p)  # every op moves the whole message


@pytest.mark.parametrize("p", [3, 5, 6, 7, 12, 24])
def test_recursive_doubling_fold_adds_two_rounds(p):
    q = 1 << lg(p)
    s = rd_allreduce(Layout(1, p))
    assert xfer_rounds(s)[0] == lg(p) + 2  # ranks outside the fold start early, so only the depth is fixed
    assert (s.kind == XFER).sum() == 2 * (p - q) + q * lg(p)


@pytest.mark.parametrize("p", [2, 3, 5, 8, 13, 32])
def test_tree_rounds_and_counts(p):
    s = tree_allreduce(Layout(1, p))
    rounds = (p - 1).bit_length()
    assert xfer_rounds(s)[0] == 2 * rounds
    assert (s.kind == XFER).sum() == 2 * (p - 1) and (s.kind != XFER).sum() == p - 1


@pytest.mark.parametrize("p", [2, 4, 8, 16, 64])
def test_rabenseifner_power_of_two_moves_2_p_minus_1_over_p_per_rank(p):
    s = rabenseifner_allreduce(Layout(1, p))
    assert xfer_rounds(s) == (2 * lg(p), [p] * (2 * lg(p)))
    x = s.kind == XFER
    sent = np.bincount(s.src[x], weights=(s.hi[x] - s.lo[x]) / s.den[x], minlength=p)
    reduced = np.bincount(s.dst[~x], weights=(s.hi[~x] - s.lo[~x]) / s.den[~x], minlength=p)
    assert np.allclose(sent, 2 * (p - 1) / p) and np.allclose(reduced, (p - 1) / p)


@pytest.mark.parametrize("p", [3, 6, 7, 12])
def test_rabenseifner_fold_has_2_floor_lg_p_plus_2_rounds(p):
    assert xfer_rounds(rabenseifner_allreduce(Layout(1, p)))[0] == 2 * lg(p) + 2


@pytest.mark.parametrize("p,chunks", [(2, 1), (6, 4), (8, 8), (13, 3), (16, 2)])
def test_dbtree_pipeline_depth_and_counts(p, chunks):
    s = dbtree_allreduce(Layout(1, p), chunks=chunks)
    parents, _ = double_binary_tree(p)
    d = max(tree_depths(parents[0]).max(), tree_depths(parents[1]).max())
    assert xfer_rounds(s)[0] == 2 * d + chunks - 1  # chunk k-1 leaves the deepest leaf k-1 sends late
    assert (s.kind == XFER).sum() == 2 * chunks * 2 * (p - 1)  # per tree and chunk: one up, one down per edge
    assert set(s.den.tolist()) == {2 * chunks}


@pytest.mark.parametrize("p", [2, 4, 6, 10, 16, 64])
def test_dbtree_even_p_no_rank_reduces_in_both_trees(p):
    s = dbtree_allreduce(Layout(1, p), chunks=2)
    r = s.kind != XFER
    first_half = s.hi[r] <= s.den[r] // 2
    assert not set(s.dst[r][first_half].tolist()) & set(s.dst[r][~first_half].tolist())


@pytest.mark.parametrize("chunks", [0, -1, 2.5, True, "8"])  # None: the size-dependent default
def test_dbtree_rejects_bad_chunks(chunks):
    with pytest.raises(ValueError, match="chunks must be (a positive integer|of type int)"):
        dbtree_allreduce(Layout(1, 4), chunks=chunks)


def test_all_build_1024_ranks_with_backward_deps():
    layout = Layout(128, 8)
    for name in ("tree", "recursive_doubling", "rabenseifner", "dbtree"):
        s = GENERATORS[name](layout)
        assert np.all(s.dep_idx < np.repeat(np.arange(s.num_ops), np.diff(s.dep_ptr))), name
        assert len(s.expect) == 1024
    assert (rd_allreduce(layout).kind == XFER).sum() == 1024 * 10
