"""How allreduce time and busbw change with scale, and how the simulator's own cost grows.

HFReduce, NCCL, ring and double binary tree (or ``--algos``) at one message size from 16 to 10,000 GPUs
(``--gpus``).  ``wall_s`` is the simulator's wall-clock seconds for the point (schedule, routes and
simulation; not numba's one-off loading of its machine code, paid by whichever point a process runs
first), so the third panel shows what a sweep at that scale costs.  A GPU count an algorithm
cannot serve is reported and left out; ``--max-gpus ring=1024`` stops one algorithm early.

CSV columns: the keys of ``flyersim run --format csv`` with ``requested_algo``, then zones and wall_s.

    python experiments/scaling.py --size 186MiB --jobs 4
    mpiexec -n 4 python -m mpi4py.futures experiments/scaling.py --size 186MiB
"""

import argparse
import sys

from flyersim.experiments import loading

with loading(__file__):  # Ctrl-C while the modules load: one line, exit 130
    from flyersim.experiments import plots, sweep

NAME = "scaling"
COLUMNS = [*sweep.RECORD_COLUMNS, "zones", "wall_s"]


def points(args):
    gpus, size = ([16, 32], 1 << 20) if args.quick else (args.gpus, args.size)
    cap = dict(args.max_gpus)
    return [sweep.point(args.preset, n, [algo], [size], zones=args.zones, overrides=dict(args.overrides),
                        model=args.model, skip_unsupported=True)
            for n in gpus for algo in args.algos if n <= cap.get(algo, n)]


def algo_cap(text):
    algo, sep, gpus = text.partition("=")
    if not sep or not algo:
        raise argparse.ArgumentTypeError(f"expected ALGO=GPUS, got {text!r}")
    return algo.strip(), sweep.positive_int(gpus)


def plot(rows, png):
    fig, axes = plots.figure(ncols=3, width=4.2)
    for ax, y, label in zip(axes, ("time_s", "busbw_GBps", "wall_s"),
                            ("allreduce time (s)", "busbw (GB/s)", "simulator wall time per point (s)")):
        plots.lines(ax, rows, "gpus", y, "requested_algo")
        plots.gpus_axis(ax, [r["gpus"] for r in rows])
        ax.set_xlabel("GPUs")
        ax.set_ylabel(label, fontsize=8)
        if y != "busbw_GBps":
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.tick_params(axis="x", labelrotation=45)
    axes[1].legend(fontsize=7)
    r = rows[0]
    plots.save(fig, png, f"{r['model']} model, allreduce of {sweep.nice_bytes(r['bytes'])} per GPU")


def main(argv=None):
    p = sweep.parser(NAME, __doc__.split("\n\n")[0])
    sweep.add_topology_args(p, gpus=[16, 64, 256, 1024, 2048, 4096, 10000])
    p.add_argument("--algos", type=sweep.names, default=["hfreduce", "nccl", "ring", "dbtree"],
                   help="comma-separated algorithms (default hfreduce,nccl,ring,dbtree)")
    p.add_argument("--max-gpus", type=algo_cap, action="append", default=[], metavar="ALGO=GPUS",
                   help="run ALGO only up to GPUS (repeatable), e.g. ring=1024: its 2(n-1) steps make large "
                        "scales slow to simulate")
    return sweep.main(NAME, p.parse_args(argv), COLUMNS, plot, points=points)


if __name__ == "__main__":
    sys.exit(main())
