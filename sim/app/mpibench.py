"""``flyersim mpi``: time schedules on real MPI ranks, OSU micro-benchmark style.

``mpiexec -n 4 flyersim mpi --algos ring,rabenseifner,mpi --sizes 4KiB,1MiB``
runs each algorithm's schedule with :mod:`collectives.mpi_executor` (``mpi``
is the MPI library's own ``Allreduce``, the baseline). Per algorithm and size:
one run checked against ``comm.Allreduce``, ``--warmup`` untimed runs, then
``--iters`` timed runs, each between barriers, its time the maximum over ranks.
An algorithm that picks by size (``nccl``) runs the schedule
``collectives.schedule_key`` names per size, from NCCL's search in
``args.search`` when a caller gives one (``validate`` does, with
``args.layout``, the layout it simulates), else from the layout alone.
Rows report avg/min/max/p50/p99 of those times in us plus nccl-tests
``algbw = S/t`` and ``busbw`` (t = the average), with the keys of ``flyersim
run``'s records, ``model: "mpi"`` and ``source: "measured"``. Only rank 0
prints. A mistake every rank sees alike (unknown algorithm, size below one
element, wrong result) gives one ``flyersim: error:`` line from rank 0 and exit
code 2 on every rank; anything else a rank raises is printed by that rank,
which then aborts the job (exit code 2), so no rank hangs.
"""

import sys

import numpy as np

from flyersim import collectives
from flyersim.collectives.costs import busbw_factor
from flyersim.sim.app.report import to_csv, to_json
from flyersim.sim.app.runner import DTYPES
from flyersim.sim.app.sizes import size_list

BASELINE = "mpi"


class _Agreed(Exception):
    """An error every rank raises at the same point: rank 0 reports it, all exit 2."""


def add_parser(sub, positive_int):
    """Register ``flyersim mpi`` on the CLI's subparsers."""
    p = sub.add_parser("mpi", help="run algorithms on real MPI ranks (under mpiexec) and time them, OSU style")
    p.add_argument("--algos", default=f"ring,{BASELINE}",
                   help=f"comma-separated: {', '.join(collectives.names())}, or {BASELINE} (the library's Allreduce)")
    p.add_argument("--sizes", default="4KiB,1MiB,16MiB", help="comma-separated message sizes")
    p.add_argument("--iters", type=positive_int, default=20, help="timed iterations per size (default 20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations first (default 5)")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--gpus-per-node", type=positive_int,
                   help="ranks per layout node (default: ranks per physical node)")
    p.add_argument("--no-shared-memory", action="store_true",
                   help="keep host buffers at each node's first rank instead of a shared-memory window")
    p.add_argument("--format", default="table", choices=("table", "csv", "json"))
    p.set_defaults(func=command)


def command(args):
    """Entry point of ``flyersim mpi`` (every rank runs it)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    records = collect(args, comm)
    if comm.rank == 0:
        print(_render(records, args.format))


def collect(args, comm):
    """Measure every (algorithm, size) of ``args`` on ``comm``; the records, on every rank."""
    from flyersim.collectives.reference import ResultMismatch

    if comm.size == 1:
        print("flyersim: note: 1 MPI rank (start with mpiexec -n N for a real measurement)", file=sys.stderr)
    try:
        try:
            plan = _prepare(args, comm)
            return [_measure(comm, plan, algo, size, args) for algo in plan["algos"] for size in plan["sizes"]]
        except (ValueError, ResultMismatch) as err:
            raise _Agreed(str(err)) from None
    except _Agreed as err:
        if comm.rank == 0:
            print(f"flyersim: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    except Exception as err:  # one rank failed: report it and take the job down rather than hang
        print(f"flyersim: error: rank {comm.rank}: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        comm.Abort(2)
        raise SystemExit(2)  # MPICH's Abort can return before the process manager kills this rank


def _prepare(args, comm):
    """Everything that can fail identically on every rank: sizes, placement, schedules."""
    from flyersim.collectives.mpi_executor import place

    if args.warmup < 0:
        raise ValueError(f"--warmup must be 0 or more, got {args.warmup}")
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    if not algos:
        raise ValueError(f"no algorithms in {args.algos!r}")
    itemsize = np.dtype(args.dtype).itemsize
    sizes = size_list(args.sizes)
    for size in sizes:
        if size < itemsize:
            raise ValueError(f"size {size} B is smaller than one {args.dtype} element")
    placement = place(comm, args.gpus_per_node, shared_memory=not args.no_shared_memory)
    layout, search = getattr(args, "layout", None) or placement.layout(), getattr(args, "search", None)
    # (algo, size) -> schedule key (concrete algorithm, size if it is built per size, else None)
    concrete = {(a, s): collectives.schedule_key(a, layout, s, search=search) for a in algos if a != BASELINE
                for s in sizes}
    schedules = {k: collectives.build(k[0], layout, nbytes=k[1], search=search)
                 for k in sorted(set(concrete.values()), key=lambda k: (k[0], k[1] or 0))}
    return {"algos": algos, "sizes": sizes, "placement": placement, "schedules": schedules, "concrete": concrete}


def _measure(comm, plan, algo, size, args):
    """One record: check once, warm up, time ``args.iters`` runs (max over ranks per run)."""
    from mpi4py import MPI

    from flyersim.collectives.mpi_executor import Execution

    dtype = np.dtype(args.dtype)
    count = size // dtype.itemsize
    x = ((np.arange(count) % 251) + comm.rank).astype(dtype)
    if algo == BASELINE:
        data = x.copy()

        def once():
            comm.Allreduce(MPI.IN_PLACE, [data, _mpi_type(dtype)])

        def reset():
            np.copyto(data, x)
        free = None
    else:
        run = Execution(plan["schedules"][plan["concrete"][algo, size]], plan["placement"], count, dtype)
        run.load(x)
        run.execute()
        run.check(x)
        once, free = run.execute, run.free

        def reset():
            run.load(x, poison=False)
    times = np.empty(args.iters)
    for k in range(args.warmup + args.iters):
        reset()
        comm.Barrier()
        start = MPI.Wtime()
        once()
        if k >= args.warmup:
            times[k - args.warmup] = MPI.Wtime() - start
    if free:
        free()
    comm.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
    return _record(comm, plan["placement"], algo, count, dtype, times)


def _mpi_type(dtype):
    from mpi4py import MPI

    return {"float16": MPI.FLOAT16_T, "float32": MPI.FLOAT, "float64": MPI.DOUBLE, "int32": MPI.INT32_T}[dtype.name]


def _record(comm, placement, algo, count, dtype, times):
    nbytes = count * dtype.itemsize
    avg = float(times.mean())
    algbw = nbytes / avg if avg > 0 else 0.0
    us = times * 1e6
    return {
        "collective": "allreduce", "algo": algo, "model": "mpi", "topology": "", "gpus": comm.size,
        "nodes": comm.size // placement.gpus_per_node, "bytes": nbytes, "count": count, "type": dtype.name,
        "time_s": avg, "algbw_GBps": algbw / 1e9, "busbw_GBps": algbw * busbw_factor("allreduce", comm.size) / 1e9,
        "bottleneck": "", "bottleneck_class": "", "bottleneck_util": 0.0,
        "source": "measured", "iters": int(times.size), "avg_us": float(us.mean()), "min_us": float(us.min()),
        "max_us": float(us.max()), "p50_us": float(np.percentile(us, 50)), "p99_us": float(np.percentile(us, 99)),
        "host_memory": placement.host_memory,
    }


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
