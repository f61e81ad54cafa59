"""``flyersim mpi``: time schedules on real MPI ranks, OSU micro-benchmark style.

``mpiexec -n 4 flyersim mpi --algos ring,rabenseifner,mpi --sizes 4KiB,1MiB``
runs each algorithm's schedule with :mod:`collectives.mpi_executor` (``mpi``
is the MPI library's own ``Allreduce``, the baseline). Per size: each
algorithm's run checked once against ``comm.Allreduce``, then ``--warmup``
untimed and ``--iters`` timed rounds, a round running every algorithm once in
turn (interleaved, so a busy spell of the machine hits all alike), each run
between barriers, its time the maximum over ranks. The rounds run in
``--blocks`` blocks, each on freshly allocated buffers with its share of the
warm-up, so that what one allocation fixes for a whole run (page placement,
huge pages, cache colouring) varies within a run and shows in its spread.
What to measure travels as a :class:`Plan`; an algorithm that picks by size
(``nccl``) runs the schedule
``collectives.schedule_key`` names per size, from the plan's NCCL ``search``
(``validate`` gives it, with the ``layout`` it simulates), else from the
layout alone.
Rows report avg/min/max/p50/p99 of those times in us, the quartiles
(``p25_us``, ``p75_us``), ``iqr_pct = 100 (p75 - p25) / p50``, ``blocks_pct``
(the range of the blocks' medians over p50) and the spread ``spread_pct``, the
larger of the two, plus nccl-tests ``algbw = S/t`` and ``busbw`` (t = the
average), with the keys of ``flyersim
run``'s records, ``model: "mpi"`` and ``source: "measured"``. Only rank 0
prints. A mistake every rank sees alike (unknown algorithm, size below one
element, wrong result) gives one ``flyersim: error:`` line from rank 0 and exit
code 2 on every rank; anything else a rank raises is printed by that rank,
which then aborts the job (exit code 2), so no rank hangs.
"""

import sys
import time
from dataclasses import dataclass

import numpy as np

from flyersim import collectives
from flyersim.collectives.costs import busbw_factor
from flyersim.collectives.schedule import Layout
from flyersim.sim.app.report import to_csv, to_json
from flyersim.sim.app.runner import DTYPES
from flyersim.sim.app.args import names, sizes

BASELINE = "mpi"


class _Agreed(Exception):
    """An error every rank raises at the same point: rank 0 reports it, all exit 2."""


def add_parser(sub, positive_int):
    """Register ``flyersim mpi`` on the CLI's subparsers."""
    p = sub.add_parser("mpi", help="run algorithms on real MPI ranks (under mpiexec) and time them, OSU style")
    p.add_argument("--algos", "--algo", dest="algos", type=names, default=f"ring,{BASELINE}",
                   help=f"comma-separated: {', '.join(collectives.names())}, or {BASELINE} (the library's Allreduce)")
    p.add_argument("--sizes", "--size", dest="sizes", type=sizes, default="4KiB,1MiB,16MiB",
                   help="comma-separated message sizes")
    p.add_argument("--iters", type=positive_int, default=20, help="timed iterations per size (default 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations first (default 5)")
    p.add_argument("--blocks", type=positive_int, default=4,
                   help="split the iterations into this many blocks, each on freshly allocated buffers (default 4)")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--gpus-per-node", type=positive_int,
                   help="ranks per layout node (default: ranks per physical node)")
    p.add_argument("--no-shared-memory", action="store_true",
                   help="keep host buffers at each node's first rank instead of a shared-memory window")
    p.add_argument("--format", default="table", choices=("table", "csv", "json"))
    p.set_defaults(func=command)


@dataclass(frozen=True)
class Plan:
    """What ``collect`` measures; filled by the CLI (:func:`plan_of`) or by ``validate``.

    ``layout`` and ``search``: the layout a caller simulates and NCCL's search
    on its topology, which choose an NCCL algorithm's schedule (default: the
    placement's layout, searched alone).

    >>> Plan(("ring",), (1024,)).iters
    20
    """

    algos: tuple
    sizes: tuple
    iters: int = 20
    warmup: int = 5
    dtype: str = "float32"
    gpus_per_node: int | None = None
    shared_memory: bool = True
    layout: Layout | None = None
    search: object = None
    blocks: int = 4


def plan_of(args):
    """The :class:`Plan` of ``flyersim mpi``'s arguments; ValueError on a bad value."""
    if args.warmup < 0:
        raise ValueError(f"--warmup must be 0 or more, got {args.warmup}")
    return Plan(tuple(args.algos), tuple(args.sizes), args.iters, args.warmup, args.dtype, args.gpus_per_node,
                not args.no_shared_memory, blocks=args.blocks)


def command(args):
    """Entry point of ``flyersim mpi`` (every rank runs it)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    try:
        plan = plan_of(args)
    except ValueError as err:  # the same on every rank
        if comm.rank == 0:
            print(f"flyersim: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    records = collect(plan, comm)
    if comm.rank == 0:
        print(_render(records, args.format))


def collect(plan, comm):
    """Measure every (algorithm, size) of ``plan`` on ``comm``; the records (algorithm-major), on every rank."""
    from flyersim.collectives.reference import ResultMismatch

    if comm.size == 1:
        print("flyersim: note: 1 MPI rank (start with mpiexec -n N for a real measurement)", file=sys.stderr)
    try:
        try:
            ready = _prepare(plan, comm)
            by_size = {size: _measure(comm, ready, size, plan) for size in plan.sizes}
            return [by_size[size][algo] for algo in plan.algos for size in plan.sizes]
        except (ValueError, ResultMismatch) as err:
            raise _Agreed(str(err)) from None
    except _Agreed as err:
        if comm.rank == 0:
            print(f"flyersim: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    except Exception as err:  # one rank failed: report it and take the job down rather than hang
        print(f"flyersim: error: rank {comm.rank}: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        time.sleep(0.5)  # let the process manager forward that line from a remote node before Abort kills it
        comm.Abort(2)
        raise SystemExit(2)  # MPICH's Abort can return before the process manager kills this rank


def _prepare(plan, comm):
    """Everything that can fail identically on every rank: sizes, placement, schedules."""
    from flyersim.collectives.mpi_executor import place

    itemsize = np.dtype(plan.dtype).itemsize
    for size in plan.sizes:
        if size < itemsize:
            raise ValueError(f"size {size} B is smaller than one {plan.dtype} element")
    placement = place(comm, plan.gpus_per_node, shared_memory=plan.shared_memory)
    layout, search = plan.layout or placement.layout(), plan.search
    # (algo, size) -> schedule key (concrete algorithm, size if it is built per size, else None)
    concrete = {(a, s): collectives.schedule_key(a, layout, s, search=search)
                for a in plan.algos if a != BASELINE for s in plan.sizes}
    schedules = {k: collectives.build(k[0], layout, nbytes=k[1], search=search)
                 for k in sorted(set(concrete.values()), key=lambda k: (k[0], k[1] or 0))}
    return {"placement": placement, "schedules": schedules, "concrete": concrete}


def blocks_of(iters, warmup, blocks):
    """``[(warm-up rounds, timed rounds)]`` of each block: ``iters`` split as evenly as possible over at most
    ``blocks`` blocks, each with ``ceil(warmup / blocks)`` warm-up rounds.

    >>> blocks_of(20, 5, 4), blocks_of(3, 0, 4)
    ([(2, 5), (2, 5), (2, 5), (2, 5)], [(0, 1), (0, 1), (0, 1)])
    """
    b = max(1, min(blocks, iters))
    warm = -(-warmup // b)
    return [(warm, iters // b + (k < iters % b)) for k in range(b)]


def _measure(comm, ready, size, plan):
    """One record per algorithm at ``size``: check each once, then warm-up and timed rounds interleaved.

    Round k runs every algorithm once, in turn, each between barriers (its time the maximum over
    ranks), so a slow spell of a busy machine hits every algorithm alike instead of one of them. The
    rounds run in ``plan.blocks`` blocks, each with freshly allocated buffers: where the pages land
    (huge pages or not, cache colouring) is fixed for a whole run of one allocation, so a single
    allocation hides from the spread what differs between runs; blocks expose it.
    """
    from mpi4py import MPI

    dtype = np.dtype(plan.dtype)
    count = size // dtype.itemsize
    x = ((np.arange(count) % 251) + comm.rank).astype(dtype)
    times = {algo: [] for algo in plan.algos}
    medians = {algo: [] for algo in plan.algos}
    for b, (warm, timed) in enumerate(blocks_of(plan.iters, plan.warmup, plan.blocks)):
        block = _block(comm, ready, size, plan, x, count, dtype, warm, timed, check=b == 0)
        for algo, t in block.items():
            comm.Allreduce(MPI.IN_PLACE, t, op=MPI.MAX)
            times[algo].append(t)
            medians[algo].append(float(np.median(t)))
    return {algo: _record(comm, ready["placement"], algo, count, dtype, np.concatenate(times[algo]), medians[algo])
            for algo in plan.algos}


def _block(comm, ready, size, plan, x, count, dtype, warm, timed, check):
    """Times of ``timed`` rounds after ``warm`` untimed ones, on buffers allocated for this block alone."""
    from mpi4py import MPI

    from flyersim.collectives.mpi_executor import Execution

    steps, held = {}, []  # algorithm -> (run once, reset its input); executions to free
    try:
        for algo in plan.algos:
            if algo == BASELINE:
                data = x.copy()
                steps[algo] = (lambda d=data: comm.Allreduce(MPI.IN_PLACE, [d, _mpi_type(dtype)]),
                               lambda d=data: np.copyto(d, x))
                continue
            run = Execution(ready["schedules"][ready["concrete"][algo, size]], ready["placement"], count, dtype)
            held.append(run)
            run.load(x)  # touches every buffer: no first-touch page faults in the timed rounds
            run.execute()
            if check:
                run.check(x)
            steps[algo] = (run.execute, lambda r=run: r.load(x, poison=False))
        times = {algo: np.empty(timed) for algo in plan.algos}
        for k in range(warm + timed):
            for algo, (once, reset) in steps.items():
                reset()
                comm.Barrier()
                start = MPI.Wtime()
                once()
                if k >= warm:
                    times[algo][k - warm] = MPI.Wtime() - start
    finally:
        for run in held:
            run.free()
    return times


def _mpi_type(dtype):
    from mpi4py import MPI

    return {"float16": MPI.FLOAT16_T, "float32": MPI.FLOAT, "float64": MPI.DOUBLE, "int32": MPI.INT32_T}[dtype.name]


def _record(comm, placement, algo, count, dtype, times, medians=()):
    """The row of one (algorithm, size); ``medians``: each block's median time (s)."""
    nbytes = count * dtype.itemsize
    avg = float(times.mean())
    algbw = nbytes / avg if avg > 0 else 0.0
    us = times * 1e6
    row = {
        "collective": "allreduce", "algo": algo, "model": "mpi", "topology": "", "gpus": comm.size,
        "nodes": comm.size // placement.gpus_per_node, "bytes": nbytes, "count": count, "type": dtype.name,
        "time_s": avg, "algbw_GBps": algbw / 1e9, "busbw_GBps": algbw * busbw_factor("allreduce", comm.size) / 1e9,
        "bottleneck": "", "bottleneck_class": "", "bottleneck_util": 0.0,
        "source": "measured", "iters": int(times.size), "avg_us": float(us.mean()), "min_us": float(us.min()),
        "max_us": float(us.max()), "p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
        "p25_us": float(np.percentile(us, 25)), "p75_us": float(np.percentile(us, 75)),
        "iqr_pct": float(100 * (np.percentile(us, 75) - np.percentile(us, 25)) / np.percentile(us, 50)),
        "blocks": len(medians) or 1,
        "blocks_pct": float(100 * (max(medians) - min(medians)) / np.median(times)) if medians else 0.0,
        "host_memory": placement.host_memory,
    }
    row["spread_pct"] = max(row["iqr_pct"], row["blocks_pct"])
    return row


def table(rows):
    """OSU-style latency columns plus nccl-tests bandwidths.

    >>> print(table([{"bytes": 4096, "count": 1024, "type": "float32", "algo": "ring", "avg_us": 12.5,
    ...               "min_us": 10.0, "max_us": 20.0, "p50_us": 12.0, "p99_us": 19.9, "algbw_GBps": 0.3277,
    ...               "busbw_GBps": 0.4916}]))
            size     count     type  algo              avg(us)    min(us)    max(us)    p50(us)    p99(us)  algbw(GB/s)  busbw(GB/s)
            4096      1024  float32  ring                12.50      10.00      20.00      12.00      19.90        0.328        0.492
    """
    cols = ("avg", "min", "max", "p50", "p99")
    lines = [f"{'size':>12}{'count':>10}{'type':>9}  {'algo':<14}" + "".join(f"{c + '(us)':>11}" for c in cols)
             + f"{'algbw(GB/s)':>13}{'busbw(GB/s)':>13}"]
    for r in rows:
        lines.append(f"{r['bytes']:>12d}{r['count']:>10d}{r['type']:>9}  {r['algo']:<14}"
                     + "".join(f"{r[c + '_us']:>11.2f}" for c in cols)
                     + f"{r['algbw_GBps']:>13.3f}{r['busbw_GBps']:>13.3f}")
    return "\n".join(lines)


def _render(records, fmt):
    if fmt == "csv":
        return to_csv(records)
    if fmt == "json":
        return to_json(records)
    r = records[0]
    head = (f"# flyersim mpi: {r['gpus']} ranks as {r['nodes']} nodes x {r['gpus'] // r['nodes']}, allreduce, "
            f"host buffers: {r['host_memory']}; time per iteration = max over ranks")
    return head + "\n" + table(records)
