"""``flyersim validate``: measure and simulate the same schedules, report per-size and geometric-mean error.

``mpiexec -n 2 flyersim validate --algos ring,rabenseifner --sizes 1MiB,64MiB``
measures each (algorithm, size) as ``flyersim mpi`` does and simulates the
very same schedule (same layout, same per-size choice of a size-dependent
algorithm) on a model of this job. Without ``--topology`` the model is
calibrated per message size S: :mod:`flyersim.sim.app.calibrate` measures with messages of
S / ranks, the chunk a ring step sends, so copies are costed in the cache
regime the collective runs in. The measured time is the median over
``--iters`` (these machines are noisy). ``mpi``, the library's own Allreduce,
has no schedule to simulate: it is measured and listed, with no prediction.

Per row ``error % = 100 (predicted - measured) / measured``; per algorithm the
geometric-mean absolute error ``exp(mean |ln(predicted / measured)|) - 1``.

>>> round(geomean_error([2.0, 0.5], [1.0, 1.0]), 6)
1.0
"""

import os
import sys
import tempfile
from argparse import Namespace

import numpy as np

from flyersim.sim.app import calibrate, mpibench
from flyersim.sim.app.report import to_csv, to_json
from flyersim.sim.app.runner import DTYPES

NO_SCHEDULE = f"{mpibench.BASELINE}: the MPI library's own Allreduce has no schedule to simulate (measured only)"


def add_parser(sub, positive_int):
    """Register ``flyersim validate``."""
    p = sub.add_parser("validate", help="simulate vs measure on MPI ranks: per-size and geometric-mean error")
    p.add_argument("--topology", metavar="FILE.toml",
                   help="cluster of this job (default: calibrate per message size, see flyersim calibrate)")
    p.add_argument("--algos", default="ring", help=f"comma-separated algorithms, or {mpibench.BASELINE}")
    p.add_argument("--sizes", default="1MiB,16MiB", help="comma-separated message sizes")
    p.add_argument("--iters", type=positive_int, default=20, help="timed runs per size; the median is kept")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=positive_int, default=15, help="repeats per calibration benchmark")
    p.add_argument("--gpus-per-node", type=positive_int, help="when calibrating: ranks per node (default: physical)")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--model", default="flow", choices=("flow", "analytic"))
    p.add_argument("--format", default="table", choices=("table", "csv", "json"))
    p.add_argument("--plot", metavar="OUT.png", help="also plot predicted and measured time against size")
    p.set_defaults(func=command)


def geomean_error(predicted, measured):
    """exp(mean |ln(p/m)|) - 1: 0 for perfect, 1.0 for a factor of two either way."""
    ratio = np.asarray(predicted, float) / np.asarray(measured, float)
    return float(np.exp(np.mean(np.abs(np.log(ratio)))) - 1)


def command(args):
    """Entry point (every rank runs it); rank 0 simulates and prints."""
    from mpi4py import MPI

    from flyersim import topologies
    from flyersim.sim.app.sizes import size_list

    comm = MPI.COMM_WORLD
    try:
        if comm.size < 2:
            raise ValueError("validate needs at least 2 MPI ranks: one rank's allreduce moves nothing "
                             "(start with mpiexec -n N)")
        algos = [a.strip() for a in args.algos.split(",") if a.strip()]
        sizes = size_list(args.sizes)
        if args.topology:
            graph = topologies.load(args.topology)
            g = graph.graph
            if g["nodes"] * g["gpus_per_node"] != comm.size:
                raise ValueError(f"{args.topology} has {g['nodes']} x {g['gpus_per_node']} GPUs but the job runs "
                                 f"{comm.size} MPI ranks")
        else:
            gpn = calibrate.gpus_per_node(comm, args.gpus_per_node)
    except (ValueError, OSError) as err:
        if comm.rank == 0:
            print(f"flyersim: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    graphs = {s: graph if args.topology else calibrated(comm, max(s // comm.size, 4), gpn, args.repeats)
              for s in sizes}
    rows = [row for s in sizes for row in _size_rows(comm, args, algos, s, graphs[s])]
    if comm.rank:
        return
    rows.sort(key=lambda r: algos.index(r["algo"]))  # algorithm-major, sizes in the given order
    summary = {a: geomean_error([r["predicted_us"] for r in rows if r["algo"] == a],
                                [r["measured_us"] for r in rows if r["algo"] == a])
               for a in algos if a != mpibench.BASELINE}
    notes = [NO_SCHEDULE] if mpibench.BASELINE in algos else []
    print(render(rows, summary, notes, args.format, f"{args.topology or 'calibrated per size'} ({args.model} model) "
                 f"vs {comm.size} MPI ranks"))
    if args.plot:
        plot(rows, args.plot)
        print(f"# plot written to {args.plot}", file=sys.stderr)


def calibrated(comm, nbytes, gpus, repeats):
    """The topology graph ``flyersim calibrate --size nbytes`` would write (every rank builds the same one)."""
    from flyersim import topologies

    text = calibrate.toml(calibrate.measure(comm, nbytes, repeats), comm.size // gpus, gpus,
                          f"flyersim validate (calibrate --size {nbytes})")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "calibrated.toml")
        with open(path, "w") as f:
            f.write(text)
        graph = topologies.load(path)
    graph.graph["calibrated_at"] = nbytes
    return graph


def _size_rows(comm, args, algos, size, graph):
    """Measure every algorithm at ``size`` on this job and (rank 0) simulate it on ``graph``."""
    from flyersim.sim.app.runner import layout_of, run_sizes, search_of

    layout = layout_of(graph)
    bench = Namespace(algos=",".join(algos), sizes=str(size), iters=args.iters, warmup=args.warmup,
                      dtype=args.dtype, gpus_per_node=graph.graph["gpus_per_node"], no_shared_memory=False,
                      layout=layout, search=search_of(graph, layout))
    measured = mpibench.collect(bench, comm)
    if comm.rank:
        return []
    simulated = [a for a in algos if a != mpibench.BASELINE]
    predicted = dict(zip(simulated, run_sizes(graph, simulated, [size], args.dtype, args.model)))
    rows = []
    for m in measured:
        p = predicted.get(m["algo"])
        t = m["p50_us"]
        rows.append({"algo": m["algo"], "bytes": m["bytes"], "measured_us": t,
                     "measured_min_us": m["min_us"], "measured_max_us": m["max_us"],
                     "predicted_us": p and p["time_s"] * 1e6,
                     "error_pct": p and 100 * (p["time_s"] * 1e6 - t) / t,
                     "schedule": p and p["algo"], "model": args.model,
                     "calibrated_at": graph.graph.get("calibrated_at", ""), "host_memory": m["host_memory"]})
    return rows


def render(rows, summary, notes, fmt, title):
    """Rows and per-algorithm geometric-mean errors as a table, CSV or JSON."""
    if fmt == "csv":
        return to_csv(rows)
    if fmt == "json":
        return to_json({"rows": rows, "geomean_error": summary, "notes": notes})
    lines = [f"# flyersim validate: {title}; measured = median time",
             f"{'size':>12}  {'algo':<14}{'measured(us)':>14}{'predicted(us)':>15}{'error(%)':>10}"]
    for r in rows:
        pred = "-" if r["predicted_us"] is None else f"{r['predicted_us']:.2f}"
        err = "-" if r["error_pct"] is None else f"{r['error_pct']:.1f}"
        lines.append(f"{r['bytes']:>12d}  {r['algo']:<14}{r['measured_us']:>14.2f}{pred:>15}{err:>10}")
    lines += [f"# {a}: geometric-mean error {100 * e:.1f}%" for a, e in summary.items()]
    lines += [f"# note: {n}" for n in notes]
    return "\n".join(lines)


def plot(rows, path):
    """Measured (solid) and predicted (dashed) time against size, one colour per algorithm, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for k, algo in enumerate(dict.fromkeys(r["algo"] for r in rows)):
        mine = [r for r in rows if r["algo"] == algo]
        x = [r["bytes"] for r in mine]
        ax.plot(x, [r["measured_us"] for r in mine], "o-", color=f"C{k}", label=f"{algo} measured")
        if mine[0]["predicted_us"] is not None:
            ax.plot(x, [r["predicted_us"] for r in mine], "s--", color=f"C{k}", label=f"{algo} predicted")
    ax.set(xscale="log", yscale="log", xlabel="message size (bytes)", ylabel="time (us)",
           title="flyersim validate: predicted vs measured")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
