"""Hierarchical, HFReduce and HFReduce-with-NVLink schedules: verified, numerically right, paper's PCIe facts."""

import numpy as np
import pytest

from flyersim.collectives.hfreduce import hfreduce_allreduce
from flyersim.collectives.hfreduce_nvlink import hfreduce_nvlink_allreduce
from flyersim.collectives.hierarchical import hier_allreduce
from flyersim.collectives.reference import run_reference
from flyersim.collectives.ring import ring_allreduce
from flyersim.collectives.schedule import REDUCE, XFER, Layout
from flyersim.collectives.trees import double_binary_tree, tree_depths
from flyersim.collectives.verify import verify
from flyersim.sim.app.runner import layout_of
from flyersim.sim.engine import simulate
from flyersim.topologies import load

NODES = range(1, 9)
GPUS = (1, 2, 4, 8)


def adjacent_pairs(g):
    return tuple((i, i + 1) for i in range(0, g, 2))


def make(name, nodes, g, sockets=2, **params):
    if name == "nvlink":
        return hfreduce_nvlink_allreduce(Layout(nodes, g, sockets, adjacent_pairs(g)), **params)
    if name == "hfreduce":
        return hfreduce_allreduce(Layout(nodes, g, sockets), **params)
    return hier_allreduce(Layout(nodes, g, sockets), **params)


@pytest.mark.parametrize("g", GPUS)
@pytest.mark.parametrize("nodes", NODES)
def test_verifier_passes(nodes, g):
    verify(hier_allreduce(Layout(nodes, g, 2)))
    verify(hier_allreduce(Layout(nodes, g, 2), outer="dbtree", chunks=2))
    verify(hfreduce_allreduce(Layout(nodes, g, 2), chunks=2))
    verify(hfreduce_allreduce(Layout(nodes, g, 1), chunks=3, h2d="memcpy"))
    if g % 2 == 0:
        verify(hfreduce_nvlink_allreduce(Layout(nodes, g, 2, adjacent_pairs(g)), chunks=2))
    else:
        with pytest.raises(ValueError, match="nvlink_pairs must cover each of the 1 GPUs"):
            hfreduce_nvlink_allreduce(Layout(nodes, g, 2, adjacent_pairs(g)))


@pytest.mark.parametrize("server, placement", [({"nic_sockets": (0,)}, {}), ({}, {"staging": [1] * 8}),
                                               ({"gpu_sockets": (1, 0) * 4}, {}), ({}, {"h2d": "memcpy"})])
def test_verifier_passes_other_placements(server, placement):
    verify(hfreduce_allreduce(Layout(3, 8, 2, **server), chunks=2, **placement))
    crossed = Layout(3, 8, 2, ((0, 2), (1, 3), (4, 6), (5, 7)), **server)
    verify(hfreduce_nvlink_allreduce(crossed, chunks=2, **placement))


CASES = [("hier", {}), ("hier", {"outer": "dbtree", "chunks": 3}), ("hfreduce", {"chunks": 3}),
         ("hfreduce", {"chunks": 5, "h2d": "memcpy"}), ("nvlink", {"chunks": 3})]


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
@pytest.mark.parametrize("nodes, g", [(1, 2), (3, 4), (5, 2), (2, 8)])
@pytest.mark.parametrize("name, params", CASES)
def test_reference_equals_numpy_sum(name, params, nodes, g, dtype):
    rng = np.random.default_rng(nodes * 100 + g)
    count = 1009  # prime: divisible by no rank, chunk or piece count
    if dtype is np.int32:
        inputs = [rng.integers(-1000, 1000, count, dtype=np.int32) for _ in range(nodes * g)]
    else:
        inputs = [rng.standard_normal(count).astype(np.float32) for _ in range(nodes * g)]
    out = run_reference(make(name, nodes, g, **params), inputs)
    want = np.sum(np.stack(inputs).astype(np.float64), axis=0)
    for r in range(nodes * g):
        np.testing.assert_allclose(out[r]["data"], want, rtol=1e-5, atol=1e-4)


def pcie_elements(schedule, count):
    """Per rank: elements copied GPU -> host (D2H) and host -> GPU (H2D)."""
    s, p = schedule, schedule.layout.ranks
    moved = s.span_elements(count)
    d2h = (s.kind == XFER) & (s.src < p) & (s.dst >= p)
    h2d = (s.kind == XFER) & (s.src >= p) & (s.dst < p)
    return (np.bincount(s.src[d2h], moved[d2h], minlength=p), np.bincount(s.dst[h2d], moved[h2d], minlength=p))


@pytest.mark.parametrize("h2d", ["gdrcopy", "memcpy"])
@pytest.mark.parametrize("nodes, g", [(1, 8), (4, 8), (3, 4), (2, 1)])
def test_hfreduce_moves_each_byte_once_each_way(nodes, g, h2d):
    count = 1009
    d2h, h2d = pcie_elements(hfreduce_allreduce(Layout(nodes, g, 2), chunks=4, h2d=h2d), count)
    assert d2h.tolist() == [count] * (nodes * g) and h2d.tolist() == [count] * (nodes * g)


def test_nvlink_halves_pcie_traffic():
    count = 1000  # a multiple of 2 * chunks: halves are exact
    d2h, h2d = pcie_elements(make("nvlink", 4, 8, chunks=4), count)
    assert d2h.tolist() == [count // 2] * 32 and h2d.tolist() == [count // 2] * 32


@pytest.mark.parametrize("p", [2, 4, 8])
def test_ring_moves_2_p_minus_1_over_p(p):
    count = 8 * 105
    s = ring_allreduce(Layout(1, p))
    sent = s.kind == XFER
    per_rank = np.bincount(s.src[sent], s.span_elements(count)[sent], minlength=p)
    assert per_rank.tolist() == [2 * (p - 1) * count // p] * p


def test_gdrcopy_crosses_sockets_once_per_socket():
    layout = Layout(2, 8, 2)
    p, chunks = layout.ranks, 3
    for h2d, remote_reads in (("gdrcopy", 1), ("memcpy", 4)):
        s = hfreduce_allreduce(layout, chunks=chunks, h2d=h2d)
        one_read = (s.group < 0) | (s.group == np.arange(s.num_ops))  # a multicast reads its source once
        from_nic = (s.kind == XFER) & np.isin(s.src, layout.host(np.arange(2), 1)) & one_read
        to_socket0 = np.isin(s.dst, layout.host(np.arange(2), 0)) | (s.dst % 8 < 4) & (s.dst < p)
        assert np.count_nonzero(from_nic & to_socket0) == remote_reads * 2 * chunks
        assert not np.any((s.kind == XFER) & (s.src >= p) & (s.dst >= p) & (s.src // 2 == s.dst // 2))  # no host
        # copy between the sockets of one node: the NIC socket's CPU reads the far staging buffers remotely


def test_full_fire_flyer_builds():
    layout = Layout(1250, 8, 2, adjacent_pairs(8))
    for s in (hfreduce_allreduce(layout, chunks=8), hfreduce_nvlink_allreduce(layout, chunks=8),
              hier_allreduce(layout, outer="dbtree", chunks=4)):
        assert s.dep_idx.size == 0 or s.dep_idx.max() < s.num_ops


def test_double_binary_tree_shape():
    for n in range(1, 40):
        parents, children = double_binary_tree(n)
        for t in range(2):
            assert np.count_nonzero(parents[t] < 0) == 1 and tree_depths(parents[t]).max() <= n.bit_length()
            kids = children[t][children[t] >= 0]
            assert sorted(kids.tolist()) == np.flatnonzero(parents[t] >= 0).tolist()
            assert all(parents[t, k] == r for r in range(n) for k in children[t, r] if k >= 0)
        inner = (children >= 0).any(axis=2)
        if n % 2 == 0:
            assert not (inner[0] & inner[1]).any()


@pytest.mark.parametrize("call, message", [
    (lambda: hfreduce_allreduce(Layout(1, 8), chunks=0), "chunks must be a positive integer"),
    (lambda: hfreduce_allreduce(Layout(1, 8), chunks=2.0), "chunks must be of type int, got 2.0"),
    (lambda: hfreduce_allreduce(Layout(1, 8), nic_socket=1), "hfreduce has no parameter 'nic_socket' .valid: chunks"),
    (lambda: hfreduce_allreduce(Layout(1, 8, 2), staging=[0] * 7), "staging must give a socket"),
    (lambda: hfreduce_nvlink_allreduce(Layout(1, 8)), "no nvlink_pairs"),
    (lambda: hfreduce_nvlink_allreduce(Layout(1, 1, 1, ((0, 0),))), "cover each of the 1 GPUs"),
    (lambda: hfreduce_nvlink_allreduce(Layout(1, 4, 1, ((0, 1), (1, 2)))), "cover each of the 4 GPUs"),
    (lambda: hfreduce_nvlink_allreduce(Layout(1, 2, 1, ((0, 1),)), chunks=-1), "chunks must be a positive"),
    (lambda: hier_allreduce(Layout(2, 2), inner="tree"), "unknown inner algorithm"),
    (lambda: hier_allreduce(Layout(2, 2), outer="ring", chunks=2), "dbtree outer phase only"),
    (lambda: hier_allreduce(Layout(2, 2), outer="dbtree", chunks=0), "chunks must be a positive integer"),
])
def test_bad_parameters_name_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_finite_staging_slots_hold_back_the_next_d2h():
    """buffers=2: chunk 2's D2H into g<j> waits for the reduce that read chunk 0's slot, and chunk 2's reduce for
    chunk 0 to have left ``sum`` (its H2D); fewer slots never make the pipeline faster."""
    layout = Layout(2, 4, 2)
    s = hfreduce_allreduce(layout, chunks=4, buffers=2)
    verify(s)
    reduces = [i for i in range(s.num_ops) if s.kind[i] == REDUCE and s.dst[i] == layout.host(0, 1)
               and s.buffers[s.out[i]] == "sum" and len(s.op_inputs(i)) == 4]
    first_d2h_chunk2 = next(i for i in range(s.num_ops) if s.kind[i] == XFER and s.src[i] == 0
                            and s.lo[i] == 2 and s.den[i] == 4)
    assert reduces[0] in s.deps(first_d2h_chunk2).tolist()
    h2d_chunk0 = [i for i in range(s.num_ops) if s.kind[i] == XFER and s.dst[i] < 4 and s.src[i] >= layout.ranks
                  and s.lo[i] == 0 and s.den[i] == 4 and s.dst[i] == 0]
    assert set(h2d_chunk0) <= set(s.deps(reduces[2]).tolist())
    graph = load("fireflyer2", gpus=16)
    times = [simulate(hfreduce_allreduce(layout_of(graph), chunks=16, buffers=k), graph, 64 << 20).time
             for k in (1, 4, 16)]
    assert times[0] >= times[1] >= times[2]


def test_h2d_and_buffers_are_checked():
    with pytest.raises(ValueError, match="h2d must be one of gdrcopy, memcpy"):
        hfreduce_allreduce(Layout(1, 8, 2), h2d="dma")
    with pytest.raises(ValueError, match="buffers must be a positive integer"):
        hfreduce_allreduce(Layout(1, 8, 2), buffers=0)
