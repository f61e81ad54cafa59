"""What limits each allreduce algorithm: utilisation of every resource class, naming the bottleneck.

For each algorithm (default: every registered allreduce) at one size and scale, the utilisation of a
resource is the bytes it carried over (capacity x run time); a class's bar is its busiest resource
(PCIe links, root ports, CPU fabric, xGMI, DRAM per socket, CPU/GPU reduce engines, NIC, InfiniBand
NIC-leaf, leaf-spine and inter-zone links).  The class holding the run's bottleneck is drawn dark.

CSV columns: one row per algorithm and resource class (``is_bottleneck`` marks the class of the run's
busiest resource).

    python experiments/bottlenecks.py --gpus 128 --size 186MiB
"""

import sys

from flyersim.experiments import loading

with loading(__file__):  # Ctrl-C while the modules load: one line, exit 130
    from flyersim import collectives
    from flyersim.experiments import plots, sweep

NAME = "bottlenecks"
COLUMNS = ["requested_algo", "algo", "model", "gpus", "nodes", "bytes", "time_s", "busbw_GBps", "bottleneck",
           "resource_class", "peak_util", "mean_util", "busiest", "resources", "is_bottleneck"]


def points(args):
    gpus, size = (16, 1 << 20) if args.quick else (args.gpus, args.size)
    return [sweep.point(args.preset, gpus, [algo], [size], zones=args.zones, overrides=dict(args.overrides),
                        model=args.model, measure="classes", skip_unsupported=True)
            for algo in args.algos or collectives.names("allreduce")]


def plot(rows, png):
    by_algo = plots.groups(rows, "requested_algo")
    classes = sorted({r["resource_class"] for r in rows})
    ncols = min(4, len(by_algo))
    nrows = -(-len(by_algo) // ncols)
    fig, axes = plots.figure(ncols=ncols, nrows=nrows, width=3.0, height=2.5)
    for ax, (algo, part) in zip(axes, by_algo.items()):
        util = {r["resource_class"]: r for r in part}
        ax.barh(classes, [100 * util[c]["peak_util"] if c in util else 0 for c in classes],
                color=["#b2182b" if c in util and util[c]["is_bottleneck"] else "#8fb3d9" for c in classes])
        r = part[0]
        ax.set_title(f"{algo}: {r['busbw_GBps']:.2f} GB/s busbw\nneck: {r['bottleneck']}", fontsize=7)
        ax.set_xlim(0, 105)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("peak utilisation (%)", fontsize=7)
    for ax in axes[len(by_algo):]:
        ax.set_visible(False)
    r = rows[0]
    plots.save(fig, png, f"{r['gpus']} GPUs, {sweep.nice_bytes(r['bytes'])} allreduce: busiest resource per class")


def main(argv=None):
    p = sweep.parser(NAME, __doc__.split("\n\n")[0])
    sweep.add_topology_args(p)
    p.add_argument("--algos", type=sweep.names, help="comma-separated algorithms (default: every allreduce)")
    return sweep.main(NAME, p.parse_args(argv), COLUMNS, plot, points=points)


if __name__ == "__main__":
    sys.exit(main())
