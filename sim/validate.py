"""``flyersim validate``: simulate and measure the same algorithms and sizes, report the error.

``mpiexec -n 4 flyersim validate --topology measured.toml --algos ring --sizes 4KiB,1MiB,16MiB``
measures each (algorithm, size) as ``flyersim mpi`` does (its average time)
and simulates it on the topology (which must describe this job: nodes x GPUs
= ranks), then prints per row ``error % = 100 (predicted - measured) /
measured`` and per algorithm the geometric-mean error ``exp(mean |ln(predicted
/ measured)|) - 1``.

>>> round(geomean_error([2.0, 0.5], [1.0, 1.0]), 6)
1.0
"""

import sys
from argparse import Namespace

import numpy as np

from sim import mpibench
from sim.report import to_csv, to_json


def add_parser(sub, positive_int):
    """Register ``flyersim validate``."""
    p = sub.add_parser("validate", help="simulate vs measure on MPI ranks: per-size and geometric-mean error")
    p.add_argument("--topology", required=True, metavar="FILE.toml", help="cluster of this job (see calibrate)")
    p.add_argument("--algos", default="ring", help="comma-separated algorithms")
    p.add_argument("--sizes", default="4KiB,1MiB,16MiB", help="comma-separated message sizes")
    p.add_argument("--iters", type=positive_int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64", "float16", "int32"))
    p.add_argument("--model", default="flow", choices=("flow", "analytic"))
    p.add_argument("--format", default="table", choices=("table", "csv", "json"))
    p.set_defaults(func=command)


def geomean_error(predicted, measured):
    """exp(mean |ln(p/m)|) - 1: 0 for perfect, 1.0 for a factor of two either way."""
    ratio = np.asarray(predicted, float) / np.asarray(measured, float)
    return float(np.exp(np.mean(np.abs(np.log(ratio)))) - 1)


def command(args):
    from mpi4py import MPI

    import topologies
    from sim.runner import run_sizes
    from sim.sizes import size_list

    comm = MPI.COMM_WORLD
    try:
        graph = topologies.load(args.topology)
        g = graph.graph
        if g["nodes"] * g["gpus_per_node"] != comm.size:
            raise ValueError(f"{args.topology} has {g['nodes']} x {g['gpus_per_node']} GPUs but the job runs "
                             f"{comm.size} MPI ranks")
        algos = [a.strip() for a in args.algos.split(",") if a.strip()]
        predicted = run_sizes(graph, algos, size_list(args.sizes), args.dtype, args.model)
    except (ValueError, OSError) as err:
        if comm.rank == 0:
            print(f"flyersim: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    bench = Namespace(algos=args.algos, sizes=args.sizes, iters=args.iters, warmup=args.warmup, dtype=args.dtype,
                      gpus_per_node=g["gpus_per_node"], no_shared_memory=False, format="json")
    measured = mpibench.collect(bench, comm)
    if comm.rank:
        return
    rows = [{"algo": m["algo"], "bytes": m["bytes"], "measured_us": m["time_s"] * 1e6,
             "predicted_us": p["time_s"] * 1e6, "error_pct": 100 * (p["time_s"] - m["time_s"]) / m["time_s"],
             "model": args.model, "host_memory": m["host_memory"]} for p, m in zip(predicted, measured)]
    summary = {a: geomean_error([r["predicted_us"] for r in rows if r["algo"] == a],
                                [r["measured_us"] for r in rows if r["algo"] == a]) for a in algos}
    if args.format == "csv":
        print(to_csv(rows))
    elif args.format == "json":
        print(to_json({"rows": rows, "geomean_error": summary}))
    else:
        print(f"# flyersim validate: {args.topology} ({args.model} model) vs {comm.size} MPI ranks")
        print(f"{'size':>12}  {'algo':<14}{'measured(us)':>14}{'predicted(us)':>15}{'error(%)':>10}")
        for r in rows:
            print(f"{r['bytes']:>12d}  {r['algo']:<14}{r['measured_us']:>14.2f}{r['predicted_us']:>15.2f}"
                  f"{r['error_pct']:>10.1f}")
        for a, e in summary.items():
            print(f"# {a}: geometric-mean error {100 * e:.1f}%")
