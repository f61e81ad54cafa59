"""Streamed schedules: batches in op order, a windowed simulation that gives the materialised run's exact bits."""

import numpy as np
import pytest

from flyersim import collectives, topologies
from flyersim.collectives.schedule import Layout, ScheduleBuilder
from flyersim.collectives.stream import Stream, stream
from flyersim.sim import engine
from flyersim.sim.app.runner import layout_of, run_sizes, search_of
from flyersim.sim.fluid import Late, Network
from flyersim.sim.routes import RouteTable, build_routes

MiB = 2**20


@pytest.fixture(scope="module")
def cluster():
    graph = topologies.load("fireflyer2", gpus=32)
    layout = layout_of(graph)
    return graph, layout, search_of(graph, layout)


def _both(graph, layout, search, algo, lookahead, size=186 * MiB, min_ops=1):
    key = collectives.schedule_key(algo, layout, size, "allreduce", search)
    whole = collectives.build(key[0], layout, "allreduce", nbytes=key[1], search=search)
    tries = []
    run_stream = engine._run_stream

    def counting(*args):
        tries.append(args[-2])
        return run_stream(*args)

    engine._run_stream = counting
    try:
        streamed = engine.simulate_stream(lambda: stream(key[0], layout, "allreduce", nbytes=key[1], search=search,
                                                         min_ops=min_ops),
                                          graph, size, timeline=True, lookahead=lookahead)
    finally:
        engine._run_stream = run_stream
    return engine.simulate(whole, build_routes(graph, whole), size), streamed, tries


@pytest.mark.parametrize("min_ops", [1, 1000])
@pytest.mark.parametrize("algo", ["ring", "hfreduce", "nccl", "dbtree", "hier", "rabenseifner"])
def test_a_streamed_run_is_the_materialised_run_bit_for_bit(cluster, algo, min_ops):
    # a look-ahead of 8 ops keeps only a few batches in the window (and forces restarts where it is too short);
    # batches of one builder call each (min_ops=1), or several merged
    whole, streamed, tries = _both(*cluster, algo, lookahead=8, min_ops=min_ops)
    assert streamed.num_ops == whole.num_ops and streamed.schedule.num_ops == 0
    assert streamed.end_at.tobytes() == whole.end_at.tobytes() and streamed.time == whole.time
    assert streamed.ready_at.tobytes() == whole.ready_at.tobytes()
    assert streamed.op_bytes.tobytes() == whole.op_bytes.tobytes()
    assert streamed.routes.names == whole.routes.names  # resources numbered as the whole schedule's
    assert streamed.carried().tobytes() == whole.carried().tobytes()
    assert tries[0] == 8 and all(b == 16 * a for a, b in zip(tries, tries[1:]))


def test_a_ring_streams_in_a_window_of_a_few_steps(cluster):
    graph, layout, search = cluster
    windows = {}
    original = Network.append

    def run(min_ops):
        def spy(net, *args, **kw):
            original(net, *args, **kw)
            windows[min_ops] = max(windows.get(min_ops, 0), net.window)

        Network.append = spy
        try:
            return engine.simulate_stream(lambda: stream("ring", layout, min_ops=min_ops), graph, 186 * MiB,
                                          lookahead=64)
        finally:
            Network.append = original

    one, merged = run(1), run(512)
    # 32 ranks, 3 * 32 * 31 ops; the window never holds more than a handful of 32-op steps (merged: the
    # look-ahead and a few batches of 16 steps)
    assert one.num_ops == 2976 and windows[1] <= 1024 and one.end_at is None and one.time > 0
    assert merged.time == one.time and windows[512] <= 2048


def test_a_run_without_timeline_keeps_aggregates_only(cluster):
    graph, _, _ = cluster
    (rec,), (run,) = run_sizes(graph, ["ring"], [MiB], keep_runs=True, timeline=False, stream=True)
    (whole,), (full,) = run_sizes(graph, ["ring"], [MiB], keep_runs=True, stream=False)
    assert run.end_at is None and run.op_bytes is None and run.routes.op_route is None
    assert rec["time_s"] == full.time and rec["bottleneck"] == whole["bottleneck"]
    assert run.carried().tobytes() == full.carried().tobytes()


def test_an_op_entering_after_it_was_due_stops_the_run():
    net = Network(None, None, [0, 1], [0], [1.0], [0.0], [10.0], timeline=False)
    net.append(0, [0], [10.0], [0, 0], [])
    net.feed = lambda: False
    assert net.advance(net.next_time, 10) == np.inf  # op 0 ran and ended
    with pytest.raises(Late, match="op 1 entered the window after it should have been ready"):
        net.append(1, [0], [10.0], [0, 1], [0])


def test_ops_enter_in_order():
    net = Network(None, None, [0, 1], [0], [1.0], [0.0], [10.0])
    with pytest.raises(ValueError, match="ops must enter in order: op 3 after op -1"):
        net.append(3, [0], [1.0], [0, 0], [])
    with pytest.raises(ValueError, match="names no op entered so far"):
        net.append(0, [0], [1.0], [0, 1], [5])


def test_a_builder_error_reaches_the_consumer():
    def broken():
        b = ScheduleBuilder(Layout(1, 2), "allreduce", "broken")
        b.xfer(src=0, dst=1, span=(0, 1, 1))
        b.xfer(src=0, dst=1, span=(0, 2, 1))  # a bad span, raised in the builder's thread
        return b.build()

    s = Stream(broken, min_ops=1)
    assert next(s)[1].num_ops == 1
    with pytest.raises(ValueError, match="bad span"):
        list(s)


def test_an_algorithm_with_two_builders_cannot_stream():
    def two():
        ScheduleBuilder(Layout(1, 2), "allreduce", "one")
        return ScheduleBuilder(Layout(1, 2), "allreduce", "two").build()

    with pytest.raises(RuntimeError, match="two schedules at once"):
        list(Stream(two))


@pytest.mark.parametrize("algo", ["hfreduce", "ring", "hier"])  # transfers, reduces, multicasts; repeated steps
def test_route_table_numbers_routes_as_build_routes(cluster, algo):
    graph, layout, search = cluster
    whole = collectives.build(algo, layout, nbytes=186 * MiB)
    expected = build_routes(graph, whole)
    table = RouteTable(graph, layout, algo)
    found = np.concatenate([table.add(batch, first) for first, batch in stream(algo, layout, nbytes=186 * MiB)])
    fields, renumber = table.routes()
    assert fields[0] == expected.names and np.array_equal(renumber[found], expected.op_route)
    for got, want in zip(fields[2:], (expected.capacity, expected.rptr, expected.rres, expected.rw, expected.rlat)):
        assert np.array_equal(got, want)


def test_a_batch_shaped_like_a_recent_one_takes_its_routes_and_only_then():
    graph = topologies.load("fireflyer2", gpus=16)
    table = RouteTable(graph, layout_of(graph), "demo")
    b = ScheduleBuilder(layout_of(graph), "allreduce", "demo", buffers=("data", "recv"))
    b.xfer(src=[0, 1], dst=[1, 2], span=(0, 1, 2))
    b.xfer(src=[0, 1], dst=[1, 2], span=(1, 2, 2), dst_buf="recv")   # same shapes, other bytes and buffers
    b.xfer(src=[1, 0], dst=[2, 1], span=(1, 2, 2))                   # the same pairs, in another order
    b.xfer(src=[0, 1], dst=[1, 2], span=(1, 2, 2), engine="cpu")     # copied by the CPU: another route
    s = b.build()
    routes = [table.add(_rows(s, i, i + 2), i) for i in range(0, 8, 2)]
    assert routes[1] is routes[0]
    assert routes[2].tolist() == routes[0].tolist()[::-1] and routes[3][0] not in routes[0]


def _rows(s, lo, hi):
    """Ops ``lo..hi-1`` of a schedule whose ops have one input each and no dependencies, as a schedule."""
    from dataclasses import replace
    cols = {k: getattr(s, k)[lo:hi] for k in ("kind", "src", "dst", "out", "lo", "hi", "den", "in_buf", "in_loc",
                                               "group", "engine")}
    return replace(s, in_ptr=np.arange(hi - lo + 1), dep_ptr=np.zeros(hi - lo + 1, np.int64), **cols)


def test_a_window_that_outgrows_the_memory_limit_stops_the_run_with_one_line(cluster):
    from flyersim.sim.budget import BASE_BYTES, BYTES_PER_ELEMENT

    graph, layout, _ = cluster
    limit = BASE_BYTES + BYTES_PER_ELEMENT * (graph.number_of_nodes() + graph.number_of_edges()) + 10_000
    with pytest.raises(ValueError, match=r"^ring on 32 GPUs holds .* of ops in flight .* above the limit"):
        engine.simulate_stream(lambda: stream("ring", layout), graph, MiB, max_memory=limit)


def test_the_size_check_counts_a_streamed_ring_by_its_window():
    from flyersim.sim.budget import check_ops

    big = dict(ops=201_302_016, elements=140_000, limit=2 * 10**9)  # the 8,192-GPU ring
    check_ops("ring on 8192 GPUs", window=64 * 8192, **big)
    with pytest.raises(ValueError, match="needs about 201M ops"):
        check_ops("ring on 8192 GPUs", **big)  # whole, or with its timeline
    with pytest.raises(ValueError, match="needs about 201M ops"):
        check_ops("ring on 8192 GPUs", window=64 * 8192, timeline=True, **big)
