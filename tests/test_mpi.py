"""MPI executor and ``flyersim mpi`` at any process count (run under ``mpiexec -n 2`` and ``-n 4`` in CI).

Expected values come from rank and size, as mpi4py's own tests do: rank r's
input is ``i % 13 + r``, so the sum is ``size * (i % 13) + size (size - 1) / 2``.
Under plain ``pytest`` everything runs on one rank; a check that needs two is
skipped. Every assertion follows the test's last collective call, so a failure
on one rank cannot leave the others waiting.
"""

import json

import numpy as np
import pytest
from mpi4py import MPI

from flyersim import collectives
from flyersim.collectives.mpi_executor import Execution, _implied, _notifications, owners, place
from flyersim.collectives.reference import ResultMismatch
from flyersim.collectives.schedule import Layout, ScheduleBuilder, span_bounds
from flyersim.collectives.verify import verify
from flyersim.sim.app import cli

COMM = MPI.COMM_WORLD
SIZE, RANK = COMM.size, COMM.rank
GROUPS = [g for g in range(1, SIZE + 1) if SIZE % g == 0]  # every gpus-per-node that tiles the ranks
COUNTS = (1, 7, 1001)  # 7 and 1001 are not multiples of 2 or 4 ranks


def _input(count, dtype):
    return (np.arange(count) % 13 + RANK).astype(dtype)


def _expected(count):
    return SIZE * (np.arange(count) % 13) + SIZE * (SIZE - 1) // 2


def _run(schedule, placement, count, dtype):
    x = _input(count, dtype)
    run = Execution(schedule, placement, count, dtype)
    try:
        run.load(x)
        run.execute()
        run.check(x)
        return run.result("data").copy()
    finally:
        run.free()


def host_staged(layout, chunks=2):
    """HFReduce-shaped test schedule: D2H copies, host reduce, host all-to-all across nodes, host reduce, H2D."""
    g, nodes = layout.gpus_per_node, layout.nodes
    shifts = range(1, nodes)
    b = ScheduleBuilder(layout, "allreduce", "host-staged",
                        buffers=("data", "sum", "tot", *(f"s{j}" for j in range(g)), *(f"x{k}" for k in shifts)))
    node = np.arange(nodes)
    host = layout.host(node)
    for c in range(chunks):
        span = (c, c + 1, chunks)
        d2h = [b.xfer(node * g + j, host, span, "data", f"s{j}") for j in range(g)]
        node_sum, ready = ("sum", b.reduce(host, [f"s{j}" for j in range(g)], "sum", span, deps=d2h)) if g > 1 \
            else ("s0", d2h[0])
        got = [b.xfer(host, layout.host((node + k) % nodes), span, node_sum, f"x{k}", deps=[ready]) for k in shifts]
        final, done = ("tot", b.reduce(host, [node_sum, *(f"x{k}" for k in shifts)], "tot", span,
                                       deps=[ready, *(op[(node - k) % nodes] for op, k in zip(got, shifts))])) \
            if nodes > 1 else (node_sum, ready)
        for j in range(g):
            b.xfer(host, node * g + j, span, final, "data", deps=[done, d2h[j]])
    for r in range(layout.ranks):
        b.expect(r, "data", (0, 1, 1))
    return b.build()


@pytest.mark.parametrize("g", GROUPS)
@pytest.mark.parametrize("dtype", ["float32", "int32"])
@pytest.mark.parametrize("algo", collectives.names("allreduce"))
def test_registered_allreduce_sums(algo, dtype, g):
    placement = place(COMM, g)
    try:
        schedule = collectives.build(algo, placement.layout())
    except ValueError as err:
        pytest.skip(f"{algo} at {SIZE} ranks: {err}")
    results = [_run(schedule, placement, n, dtype) for n in COUNTS]
    for n, got in zip(COUNTS, results):
        assert got.tolist() == _expected(n).astype(dtype).tolist()


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("g", GROUPS)
def test_host_staged_schedule(g, shared):
    placement = place(COMM, g, shared_memory=shared)
    schedule = host_staged(placement.layout())
    verify(schedule)
    got = _run(schedule, placement, 1001, "float32")
    assert placement.shared == shared  # all test ranks share this machine
    assert got.tolist() == _expected(1001).astype("float32").tolist()


@pytest.mark.parametrize("h2d", ["gdrcopy", "memcpy"])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("g", GROUPS)
def test_hfreduce_two_sockets_remote_reads_and_multicast(g, shared, h2d):
    """The NIC socket's CPU (the designated rank) reads the far socket's staging buffers in place; H2D multicasts."""
    from flyersim.collectives.hfreduce import hfreduce_allreduce
    placement = place(COMM, g, shared_memory=shared)
    schedule = hfreduce_allreduce(placement.layout(sockets=2), chunks=3, h2d=h2d)
    verify(schedule)
    results = [_run(schedule, placement, n, "int32") for n in COUNTS]
    for n, got in zip(COUNTS, results):
        assert got.tolist() == _expected(n).astype("int32").tolist()


def _plan_notes(algo, layout, count):
    s = collectives.build(algo, layout, nbytes=4 * count)
    snd, rcv = owners(s, True)
    moves = span_bounds(count, s.lo, s.den) != span_bounds(count, s.hi, s.den)
    return s, snd, rcv, _notifications(s, snd, rcv, _implied(s, snd, rcv, moves))


def test_a_message_tells_its_receiver_what_its_sender_has_done():
    """A ring's data carries its progress: the only notifications left tell each sender that its
    receiver has read the buffer the next message overwrites (one per rank), none crosses the other way."""
    s, snd, rcv, notes = _plan_notes("ring", Layout(4, 2), 1 << 20)
    assert sorted((int(f), int(t)) for _, f, t in notes) == sorted((r, (r - 1) % 8) for r in range(8))


def test_a_rank_hears_of_another_node_s_message_from_its_own_node():
    """HFReduce's H2D copies wait for the tree message into their node's ``sum``: the receiving node
    leader tells them, not the sender on the far node, whose notification would queue behind data."""
    s, snd, rcv, notes = _plan_notes("hfreduce", Layout(4, 2), 1 << 20)
    node = s.layout.node_of
    across = [(j, f, t) for j, f, t in notes if node(snd[j]) != node(rcv[j]) and node(t) == node(rcv[j])]
    assert across and all(f == rcv[j] for j, f, t in across)


@pytest.mark.skipif(SIZE < 2, reason="needs a second GPU to read from")
def test_unreachable_reduce_input_is_refused_on_every_rank():
    layout = Layout(1, SIZE)
    b = ScheduleBuilder(layout, "allreduce", "gpu-reads-gpu")
    b.reduce(0, (("data", 1), "data"), "data", (0, 1, 1))  # GPU 0 reading GPU 1's memory: no rank can
    with pytest.raises(ValueError, match="reads n0/gpu1, which its executing rank cannot reach"):
        Execution(b.build(), place(COMM, SIZE), 7, np.int32)


@pytest.mark.skipif(SIZE < 2, reason="one rank's input is already the sum")
def test_wrong_schedule_is_caught_on_every_rank():
    layout = Layout(1, SIZE)
    b = ScheduleBuilder(layout, "allreduce", "copy-only")
    b.xfer(np.arange(SIZE), (np.arange(SIZE) + 1) % SIZE, (0, 1, 1))  # a copy where a sum is due
    for r in range(SIZE):
        b.expect(r, "data", (0, 1, 1))
    with pytest.raises(ResultMismatch, match="copy-only: n0/gpu0:data"):
        _run(b.build(), place(COMM, SIZE), 7, "int32")


def test_bench_json_shares_run_keys(capsys):
    cli.main(["mpi", "--algos", "ring,mpi", "--sizes", "4KiB,1001B", "--iters", "3", "--warmup", "1",
              "--format", "json"])
    out = capsys.readouterr().out
    if RANK:
        assert out == ""
        return
    cli.main(["run", "--preset", "single-switch", "--algo", "ring", "--sizes", "4KiB", "--format", "json"])
    run_keys = set(json.loads(capsys.readouterr().out)[0])
    rows = json.loads(out)
    assert [(r["algo"], r["bytes"]) for r in rows] == [("ring", 4096), ("ring", 1000), ("mpi", 4096), ("mpi", 1000)]
    for r in rows:
        assert run_keys <= set(r)
        assert (r["source"], r["model"], r["gpus"]) == ("measured", "mpi", SIZE)
        assert 0 < r["min_us"] <= r["p50_us"] <= r["max_us"] and r["time_s"] > 0


def test_bench_error_is_one_line_from_rank_zero(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["mpi", "--algos", "ring,nope", "--sizes", "4KiB"])
    err = capsys.readouterr().err.splitlines()
    assert stop.value.code == 2
    errors = [line for line in err if "error" in line]
    assert errors == (["flyersim: error: unknown allreduce algorithm 'nope' (choose from "
                       f"{', '.join(collectives.names())})"] if RANK == 0 else [])


@pytest.mark.parametrize("command", ["mpi", "validate"])
def test_mpi_commands_take_both_spellings_of_algos_and_sizes(command):
    for algo, size in (("--algo", "--size"), ("--algos", "--sizes")):
        args = cli.parser().parse_args([command, algo, "ring, mpi", size, "4KiB,1MiB"])
        assert (args.algos, args.sizes) == (["ring", "mpi"], [4096, 1 << 20])
    calibrate = [cli.parser().parse_args(["calibrate", "--out", "x.toml", flag, "64KiB"]).size
                 for flag in ("--size", "--sizes")]
    assert calibrate == [65536, 65536]


def test_a_bad_size_or_empty_algorithm_list_is_a_usage_error(capsys):
    for argv in (["mpi", "--sizes", "1e400"], ["validate", "--algos", ","],
                 ["calibrate", "--out", "x", "--size", "1,2"]):
        with pytest.raises(SystemExit) as stop:
            cli.parser().parse_args(argv)
        assert stop.value.code == 2
        assert capsys.readouterr().err.startswith(f"flyersim {argv[0]}: error: argument")


def test_a_block_whose_median_moved_widens_the_spread_the_pooled_iqr_hides():
    from types import SimpleNamespace

    from flyersim.sim.app.mpibench import _record

    times = np.array([1.0] * 10 + [1.3] * 3)  # blocks of 5, 5 and 3 rounds: the third block's buffers ran slower
    row = _record(COMM, SimpleNamespace(gpus_per_node=1, host_memory=""), "ring", 4, np.dtype("float32"), times,
                  [1.0, 1.0, 1.3])
    assert row["iqr_pct"] == 0.0 and row["blocks"] == 3
    assert row["blocks_pct"] == pytest.approx(30.0) and row["spread_pct"] == row["blocks_pct"]
