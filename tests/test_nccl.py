"""NCCL baseline: schedules verify and sum correctly, topology rules, tuning choice, end to end."""

import itertools
import math

import numpy as np
import pytest

from flyersim import collectives
from flyersim import topologies
from flyersim.collectives.nccl import nccl_ring, nccl_tree, paths, search
from flyersim.collectives.nccl.tuning import choose, times
from flyersim.collectives.reference import run_reference
from flyersim.collectives.schedule import XFER, Layout
from flyersim.collectives.verify import verify
from flyersim.sim.app.runner import layout_of, run_sizes, search_of

GPUS = (1, 2, 4, 8)


def two_socket(nodes, g):
    return Layout(nodes, g, sockets=2, gpu_sockets=tuple(j * 2 // g for j in range(g)), nic_sockets=(1,))


@pytest.mark.parametrize("gen", [nccl_ring, nccl_tree])
@pytest.mark.parametrize("p2p,gdr", list(itertools.product([True, False], [True, False])))
def test_verifies_over_layouts(gen, p2p, gdr):
    for nodes, g in itertools.product(range(1, 9), GPUS):
        if nodes * g > 32 and nodes not in (8,):
            continue
        s = gen(two_socket(nodes, g), channels=2, p2p=p2p, gdr=gdr, chunks=2)
        assert len(s.expect) == nodes * g
        verify(s)


@pytest.mark.parametrize("gen", [nccl_ring, nccl_tree])
def test_reference_sums_match_numpy(gen):
    rng = np.random.default_rng(0)
    for nodes, g, p2p, gdr in [(1, 8, False, False), (3, 4, ((0, 1),), False), (2, 2, True, True), (5, 1, False, False)]:
        s = gen(two_socket(nodes, g), channels=3, p2p=p2p, gdr=gdr, chunks=2)
        for n in (1, 7, 50):
            x = [rng.integers(-100, 100, n).astype(np.int32) for _ in range(nodes * g)]
            out = run_reference(s, x)
            for r in range(nodes * g):
                np.testing.assert_array_equal(out[r]["data"], np.sum(x, axis=0))


def test_transports_follow_the_flags():
    lay = two_socket(2, 4)
    hosts = set(range(lay.ranks, lay.num_locations))
    direct = nccl_ring(lay, channels=1, p2p=True, gdr=True)
    assert not (set(direct.src) | set(direct.dst)) & hosts  # all GPU to GPU
    staged = nccl_ring(lay, channels=1, p2p=False, gdr=False)
    xs = staged.kind == XFER
    assert not np.any((staged.src[xs] < lay.ranks) & (staged.dst[xs] < lay.ranks))  # every hop via a host
    net_hosts = {lay.host(n, 1) for n in range(2)}
    between = [(a, b) for a, b in zip(staged.src[xs], staged.dst[xs]) if a in hosts and b in hosts]
    assert between and all(a in net_hosts and b in net_hosts and a != b for a, b in between)  # by the NIC


def test_nccl_search_fireflyer2_and_dgx():
    graph = topologies.load("fireflyer2", gpus=16, overrides={"nccl.version": "2.23", "nccl.net_gdr_level": "PXB"})
    lay = layout_of(graph)
    ff = search_of(graph, lay)
    assert ff.gdr is False                        # GPU-NIC through the CPU (PHB/SYS) > PXB
    assert ff.p2p == ((5, 6),)                    # 2.23: only the two GPUs below one root port; others PHB/SYS > PXB
    era = search_of(topologies.load("fireflyer2", gpus=16))  # the preset: NCCL 2.10, NCCL_NET_GDR_LEVEL=PHB
    assert era.p2p is True and era.gdr is True    # 2.10 on AMD: P2P level SYS; NIC-socket GPUs within PHB
    assert search_of(graph, lay, nccl_version="2.10.3").p2p is True
    assert lay.gpu_paths[0][1] == "PHB" and lay.gpu_paths[0][4] == "SYS"
    order = paths.local_order(lay)
    assert order[0] in (4, 5, 6, 7) and order[-1] in (4, 5, 6, 7)  # NIC socket at the ends
    assert lay.nic_socket == 1 and lay.gpu_sockets == (0, 0, 0, 0, 1, 1, 1, 1)
    dgx = search_of(topologies.load("dgx-a100", gpus=16))
    assert dgx.gdr is True and dgx.p2p is True and dgx.graph["nvlink"] is True


def test_p2p_level_follows_the_cpu_vendor():
    """NCCL allows P2P up to SYS on AMD with at most two GPUs per server; not on Intel."""
    amd = layout_of(topologies.load("single-switch", nodes=1, overrides={"server.gpus": 2}))
    intel = layout_of(topologies.load("single-switch", nodes=1, overrides={"server.gpus": 2,
                                                                           "server.cpu_model": "intel-icelake"}))
    assert amd.gpu_paths[0][1] == intel.gpu_paths[0][1] == "PHB"
    assert paths.p2p_pairs(amd) is True and paths.p2p_pairs(intel) is False


def test_search_without_routes_keeps_nccl_defaults():
    found = search(Layout(2, 4))
    assert (found.p2p, found.gdr, found.channels) == (True, False, 2)


def ring_tree_times(nodes, g, nbytes, ch, speed):
    """Independent arithmetic of NCCL 2.7.5 tuning.cc, Simple protocol, PCI servers, > 2 nodes."""
    ranks = nodes * g
    ring_bw = ch * speed * ranks / (2 * (ranks - 1))
    ring_lat = 8.4 + (2 * (ranks - 1) - 2 * (nodes - 1)) * 5.7 + 2 * (nodes - 1) * 9.6
    if nbytes >= ranks / 16 * 65536:
        ring_lat *= 1.9
    tree_bw = min(ch * speed * 0.9, 80.0) * 0.5
    log_size = int(math.log2(nbytes >> 6))
    corr = (.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5, .5, .5, .5, .5, .5, .6, .6, .7, .8, .9)
    if log_size < 22:
        tree_bw *= corr[log_size]
    tree_lat = 2 * ((g - 1) * 28 + math.log2(nodes) * 50)
    return ring_lat + nbytes / (1000 * ring_bw), tree_lat + nbytes / (1000 * tree_bw)


def test_tuning_at_16_nodes_matches_independent_arithmetic():
    found = search_of(topologies.load("fireflyer2", gpus=128))
    graph = found.graph
    lay = Layout(16, 8)
    ch, speed = graph["ring"]["channels"], graph["ring"]["speed_inter"]
    for nbytes in (1 << 16, 1 << 20, 186 << 20, 1 << 30):
        ring, tree = ring_tree_times(16, 8, nbytes, ch, speed)
        t = times(lay, nbytes, graph)
        assert t["ring", "Simple"] == pytest.approx(ring) and t["tree", "Simple"] == pytest.approx(tree)
    assert choose(lay, 1 << 16, graph) == "nccl-tree"   # small: the tree's log-depth latency wins
    assert choose(lay, 1 << 30, graph) == "nccl-ring"   # large: the ring's bandwidth wins
    assert collectives.schedule_key("nccl", lay, 1 << 30, search=found) == ("nccl-ring", 1 << 30)


def test_parameters_are_declared_not_sniffed():
    """An undeclared parameter is an error naming the valid ones; search facts are not parameters of ring."""
    assert collectives.build("nccl-ring", Layout(2, 2), p2p=False, gdr=False, channels=1).num_ops > 0
    with pytest.raises(ValueError, match=r"ring has no parameter 'channels' \(valid: none\)"):
        collectives.build("ring", Layout(2, 2), channels=1)
    with pytest.raises(ValueError, match="nccl-ring has no parameter 'unrelated' .valid: channels, p2p, gdr"):
        collectives.build("nccl-ring", Layout(2, 2), unrelated=3)
    assert collectives.build("nccl", Layout(16, 8), channels=1).algo == "nccl-ring"  # large-message limit


def test_run_sizes_end_to_end():
    records = run_sizes(topologies.load("fireflyer2", gpus=16), ["nccl"], [1 << 20, 186 << 20])
    assert [r["algo"].startswith("nccl-") for r in records] == [True, True]
    assert all(r["busbw_GBps"] > 0 for r in records)


@pytest.mark.parametrize("bad", [dict(channels=0), dict(chunks=0), dict(local_order=(0, 0)), dict(gdr="yes")])
def test_bad_parameters(bad):
    with pytest.raises(ValueError, match="nccl"):
        nccl_ring(Layout(1, 2), **bad)
