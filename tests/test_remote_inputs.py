"""Reduce inputs at their own locations and multicast transfers: builder, verifier, reference and simulator.

The Fire-Flyer 2 CPU on the NIC socket reads the staging buffers of the other
socket directly (over xGMI), and with GDRCopy one host read serves the GPUs of
a NUMA node (fireflyer2.md, HFReduce). The MPI side is in tests/test_mpi.py.
"""

import numpy as np
import pytest

from flyersim.collectives.reference import run_reference
from flyersim.collectives.schedule import Layout, ScheduleBuilder
from flyersim.collectives.verify import ScheduleError, verify
from flyersim.sim.engine import simulate
from flyersim.sim.app.runner import layout_of
from flyersim.topologies import load

LAYOUT = Layout(nodes=1, gpus_per_node=4, sockets=2)  # GPUs 0..3, host memories 4 (socket 0) and 5 (socket 1)
HOST0, HOST1 = LAYOUT.host(0, 0), LAYOUT.host(0, 1)


def staged_allreduce(layout=LAYOUT, race=False, double=False):
    """GPUs stage on alternating sockets, socket 1 reduces them where they are, multicasts the sum per socket."""
    g = layout.gpus_per_node
    b = ScheduleBuilder(layout, "allreduce", "staged", buffers=("data", "sum") + tuple(f"g{j}" for j in range(g)))
    span = (0, 1, 1)
    where = [layout.host(0, j % 2) for j in range(g)]
    d2h = [b.xfer(j, where[j], span, "data", f"g{j}") for j in range(g)]
    inputs = [(f"g{j}", where[j]) for j in range(g)]
    if double:
        inputs[1] = ("g0", where[0])
    deps = d2h[1:] if race else d2h  # race: forget the D2H into socket 0's g0
    total = b.reduce(HOST1 if layout is LAYOUT else layout.host(0, 1), tuple(inputs), "sum", span, deps=deps)
    for s in range(2):
        gpus = [j for j in range(g) if j * 2 // g == s]
        b.multicast(layout.host(0, 1), gpus, span, "sum", "data", deps=[total])
    for r in range(g):
        b.expect(r, "data", span)
    return b.build()


def test_reduce_inputs_name_their_locations():
    s = staged_allreduce()
    verify(s)
    r = int(np.flatnonzero(s.kind == 1)[0])
    assert s.op_input_locs(r).tolist() == [HOST0, HOST1, HOST0, HOST1]
    assert s.describe(r) == "reduce n0/host1:n0/host0:g0,g1,n0/host0:g2,g3 -> sum [0/1, 1/1)"
    copies = np.flatnonzero(s.group >= 0)
    assert s.group[copies].tolist() == [5, 5, 7, 7] and s.dst[copies].tolist() == [0, 1, 2, 3]


def test_input_locs_argument_equals_pairs():
    def build(pairs):
        b = ScheduleBuilder(LAYOUT, "allreduce", "x", buffers=("data", "a", "b"))
        if pairs:
            b.reduce(HOST1, (("a", HOST0), ("b", HOST1)), "data", (0, 1, 1))
        else:
            b.reduce([HOST1], ("a", "b"), "data", (0, 1, 1), input_locs=([HOST0], None))
        return b.build()
    assert build(True).in_loc.tolist() == build(False).in_loc.tolist() == [HOST0, HOST1]


def test_verifier_catches_a_race_on_a_remote_input():
    with pytest.raises(ScheduleError, match=r"races with op 0 .* on n0/host0:g0 \[0, 1\)"):
        verify(staged_allreduce(race=True))


def test_verifier_catches_double_counting_across_locations():
    with pytest.raises(ScheduleError, match=r"double counts ranks \[0\] at n0/host0:g0"):
        verify(staged_allreduce(double=True))


def test_verifier_reads_each_input_at_its_own_location():
    b = ScheduleBuilder(LAYOUT, "allreduce", "wrong-socket", buffers=("data", "g0", "g1", "sum"))
    b.xfer(0, HOST0, (0, 1, 1), "data", "g0")
    d = b.xfer(1, HOST1, (0, 1, 1), "data", "g1")
    b.reduce(HOST1, (("g0", HOST1), ("g1", HOST1)), "sum", (0, 1, 1), deps=[d])  # g0 is on socket 0
    with pytest.raises(ScheduleError, match="reads undefined data at n0/host1:g0"):
        verify(b.build())


def test_builder_refuses_inputs_on_another_node():
    layout = Layout(2, 2, 2)
    b = ScheduleBuilder(layout, "allreduce", "far", buffers=("data", "a"))
    with pytest.raises(ValueError, match="far: a reduce's inputs must be in one node: the reduce at n0/host1 "
                                         "has an input at n1/host0"):
        b.reduce(layout.host(0, 1), (("a", layout.host(1, 0)), "data"), "data", (0, 1, 1))


def test_verifier_checks_multicast_copies_agree():
    import dataclasses
    s = staged_allreduce()
    lead = int(np.flatnonzero(s.group >= 0)[0])
    lo = s.lo.copy()
    lo[lead + 1] = 0
    hi = s.hi.copy()
    hi[lead + 1], lo[lead + 1] = 1, 0
    den = s.den.copy()
    den[lead + 1] = 2
    with pytest.raises(ScheduleError, match="first copy of its multicast"):
        verify(dataclasses.replace(s, hi=hi, lo=lo, den=den))


@pytest.mark.parametrize("dtype", ["float32", "int32"])
@pytest.mark.parametrize("count", [1, 7, 1001])
def test_reference_equals_numpy_with_remote_inputs_and_multicast(dtype, count):
    rng = np.random.default_rng(count)
    inputs = [rng.integers(-50, 50, count).astype(dtype) for _ in range(4)]
    out = run_reference(staged_allreduce(), inputs)
    want = np.sum(np.stack(inputs).astype(np.float64), axis=0)
    for r in range(4):
        np.testing.assert_allclose(out[r]["data"].astype(np.float64), want, rtol=1e-6)


def test_simulator_charges_remote_inputs_and_multicast_exactly():
    """Hand count on one Fire-Flyer 2 server (GPU j on root port j; GPUs 0-3 on socket 0, 4-7 on socket 1).

    D2H gpu0 -> host0:a and gpu5 -> host1:b; the socket-1 CPU reduces a (remote) + b (local) into host1:sum;
    sum is multicast to gpu0 and gpu1 (both behind socket 0). For N bytes:

    - host0 DRAM: N (D2H write) + N (remote read) = 2N; host1 DRAM: N (D2H) + N (local read) + N (write)
      + N (one multicast read, not two) = 4N;
    - xGMI cpu0->cpu1: N (the remote read); cpu1->cpu0: N (the multicast's shared prefix, once);
    - host0->cpu0 link: N (the remote read); host1->cpu1 link: N (the multicast, once);
    - cpu1 reduce threads: 3N (they stream 2 inputs and 1 output); fabric cpu0->rp0 and cpu0->rp1: N each (the branches); GPU0 HBM: 2N, GPU1 HBM: N.
    """
    graph = load("fireflyer2", gpus=8)
    layout = layout_of(graph)
    h0, h1 = layout.host(0, 0), layout.host(0, 1)
    b = ScheduleBuilder(layout, "allreduce", "hand", buffers=("data", "a", "b", "sum"))
    x = b.xfer(0, h0, (0, 1, 1), "data", "a")
    y = b.xfer(5, h1, (0, 1, 1), "data", "b")
    r = b.reduce(h1, (("a", h0), ("b", h1)), "sum", (0, 1, 1), deps=[x, y])
    m = b.multicast(h1, [0, 1], (0, 1, 1), "sum", "data", deps=[r])
    s = b.build()
    n = 1 << 20
    for model in ("flow", "analytic"):
        run = simulate(s, graph, n, model=model)
        carried = dict(zip(run.routes.names, run.carried()))
        want = {"n0/host0 bandwidth": 2 * n, "n0/host1 bandwidth": 4 * n,
                "n0/cpu0->n0/cpu1": n, "n0/cpu1->n0/cpu0": n, "n0/host0->n0/cpu0": n, "n0/host1->n0/cpu1": n,
                "n0/cpu1 reduce threads": 3 * n, "n0/cpu0->n0/rp0": n, "n0/cpu0->n0/rp1": n,
                "n0/gpu0 bandwidth": 2 * n, "n0/gpu1 bandwidth": n, "n0/gpu5 bandwidth": n}
        assert {k: carried.get(k, 0.0) for k in want} == want
        assert "n0/cpu0 reduce threads" not in carried
        assert run.end_at[m[1, 0]] == run.end_at[m[0, 0]]  # the copies land together, as one flow
        assert run.op_bytes[m].tolist() == [[n], [n]]
