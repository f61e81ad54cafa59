"""The host-side resources of a PCIe A100 node (issue 9), each pinned by a hand-computed time on Fire-Flyer 2.

One server (GPU0-3 on socket 0, GPU4-7 and the NIC on socket 1) unless said; every expected time is
bytes / the binding capacity from the preset's sourced values, plus the route's latency.
"""

import pytest

from flyersim.collectives.schedule import ScheduleBuilder
from flyersim.sim.app.runner import layout_of
from flyersim.sim.engine import simulate
from flyersim.topologies import load
from flyersim.topologies.units import GB, parse_bandwidth

N = 64 << 20


def one_op_run(graph, make, nbytes=N):
    layout = layout_of(graph)
    b = ScheduleBuilder(layout, "allreduce", "hand", buffers=("data", "a", "b", "c", "sum"))
    make(b, layout)
    run = simulate(b.build(), graph, nbytes)
    return run, dict(zip(run.routes.names, run.carried()))


def latency(run, op=0):
    return run.routes.rlat[run.routes.op_route[op]]


@pytest.mark.parametrize("threads", [1, 2])
def test_gdrcopy_stores_bind_a_socket_writing_four_gpus(threads):
    """host1 -> GPU0-3 by CPU stores: the socket-0 store threads write 4N at threads x 20 GB/s
    (gdrcopy #288), slower than every wire (xGMI 96 GB/s carries N once, each PCIe link N at 27 GB/s)."""
    g = load("fireflyer2", gpus=8, overrides={"parameters.gdrcopy_threads": threads})
    run, carried = one_op_run(g, lambda b, lay: b.multicast(lay.host(0, 1), [0, 1, 2, 3], (0, 1, 1), "sum",
                                                             "data", engine="cpu"))
    assert carried["n0/cpu0 gdrcopy stores"] == 4 * N and "n0/cpu1 gdrcopy stores" not in carried
    assert run.time == pytest.approx(4 * N / (threads * 20 * GB) + latency(run), rel=1e-9)


def test_copy_engines_do_not_use_the_store_threads():
    g = load("fireflyer2", gpus=8)
    run, carried = one_op_run(g, lambda b, lay: b.multicast(lay.host(0, 1), [0, 1, 2, 3], (0, 1, 1), "sum", "data"))
    assert not any("gdrcopy" in name for name in carried)
    assert run.time == pytest.approx(N / (27 * GB) + latency(run), rel=1e-9)  # each GPU's PCIe link


@pytest.mark.parametrize("threads,binding", [(2, "threads"), (16, "dram")])
def test_cpu_reduce_streams_k_plus_1_bytes(threads, binding):
    """A 3-way reduce on socket 1 (inputs local) streams 4 bytes per output byte: reduce threads x 22 GB/s
    (kerncraft Zen 2 1-core triad) or the socket's sustained 133 GB/s DRAM, whichever is smaller."""
    g = load("fireflyer2", gpus=8, overrides={"parameters.reduce_threads": threads})
    run, carried = one_op_run(g, lambda b, lay: b.reduce(lay.host(0, 1), ("a", "b", "c"), "sum", (0, 1, 1)))
    assert carried["n0/cpu1 reduce threads"] == 4 * N and carried["n0/host1 bandwidth"] == 4 * N
    rate = threads * 22 * GB if binding == "threads" else 133 * GB
    assert run.time == pytest.approx(4 * N / rate + latency(run), rel=1e-9)


def test_infiniband_runs_at_its_effective_rate():
    """Host memory to host memory across two servers: 96.6 % of HDR's 200 Gb/s, 24.15 GB/s."""
    g = load("fireflyer2", gpus=16)
    run, _ = one_op_run(g, lambda b, lay: b.xfer(lay.host(0, 1), lay.host(1, 1), (0, 1, 1), "sum", "sum"))
    assert run.time == pytest.approx(N / (24.15 * GB) + latency(run), rel=1e-9)


def test_gpu_to_gpu_p2p_is_per_pair_and_gpu_to_nic_per_socket():
    """Two P2P copies on socket 0 (GPU0->GPU1, GPU2->GPU3) each get their own pair's 22 GB/s
    (nccl-tests #74); GPU4 -> the other server's GPU4 with GPUDirect RDMA crosses socket 1's
    GPU<->NIC pool, 9 GiB/s [P IV-D2]."""
    g = load("fireflyer2", gpus=16)
    run, carried = one_op_run(g, lambda b, lay: b.xfer([0, 2], [1, 3], (0, 1, 1)))
    assert carried["p2p n0/gpu0 to n0/gpu1"] == carried["p2p n0/gpu2 to n0/gpu3"] == N
    assert "n0/cpu0 p2p_bandwidth" not in carried
    assert run.time == pytest.approx(N / (22 * GB) + latency(run), rel=1e-9)
    run, carried = one_op_run(g, lambda b, lay: b.xfer(4, 12, (0, 1, 1)))
    assert carried["n0/cpu1 p2p_bandwidth"] == carried["n1/cpu1 p2p_bandwidth"] == N
    assert run.time == pytest.approx(N / parse_bandwidth("9GiB/s") + latency(run), rel=1e-9)


def test_three_xgmi_links():
    g = load("fireflyer2", gpus=8)
    assert g.edges["n0/cpu0", "n0/cpu1"]["bandwidth"] == 96 * GB
