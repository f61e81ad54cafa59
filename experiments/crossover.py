"""Which allreduce algorithm is fastest at which message size: busbw vs size, with the crossovers marked.

Every registered allreduce algorithm (or ``--algos``) on one preset and scale, message sizes from
``--min`` to ``--max`` by ``--factor``.  An algorithm that cannot serve the GPU count is reported and
left out.  The ``best`` column is true for the highest-busbw algorithm at each size; the figure draws a
dotted line where the best algorithm changes and names the new winner.

CSV columns: best, then the keys of ``flyersim run --format csv`` with ``requested_algo``.

    python experiments/crossover.py --preset fireflyer2 --gpus 128
"""

import sys

from flyersim.experiments import loading

with loading(__file__):  # Ctrl-C while the modules load: one line, exit 130
    from flyersim import collectives
    from flyersim.experiments import plots, sweep
    from flyersim.sim.app.sizes import sweep as size_sweep

NAME = "crossover"
COLUMNS = ["best", *sweep.RECORD_COLUMNS]


def points(args):
    sizes = size_sweep("1KiB", "1MiB", factor=32) if args.quick else \
        size_sweep(args.min, args.max, factor=args.factor)
    gpus = 16 if args.quick else args.gpus
    algos = args.algos or collectives.names("allreduce")
    return [sweep.point(args.preset, gpus, [algo], sizes, zones=args.zones, overrides=dict(args.overrides),
                        model=args.model, skip_unsupported=True) for algo in algos]


def mark_best(rows):
    """Flag the highest-busbw row of each size (ties: the first algorithm listed)."""
    best = {}
    for row in rows:
        if row["bytes"] not in best or row["busbw_GBps"] > best[row["bytes"]]["busbw_GBps"]:
            best[row["bytes"]] = row
    return [{**row, "best": best[row["bytes"]] is row} for row in rows]


def crossovers(rows):
    """[(size, best algorithm)] at the smallest size and wherever the best algorithm changes."""
    winners = sorted((r["bytes"], r["requested_algo"]) for r in rows if r["best"])
    return [(b, a) for i, (b, a) in enumerate(winners) if i == 0 or a != winners[i - 1][1]]


def plot(rows, png):
    fig, (ax,) = plots.figure(width=8, height=4.4)
    plots.lines(ax, rows, "bytes", "busbw_GBps", "requested_algo")
    plots.bytes_axis(ax, [r["bytes"] for r in rows])
    ax.set_yscale("log")
    top = max(r["busbw_GBps"] for r in rows)
    for i, (size, algo) in enumerate(crossovers(rows)):
        if i:
            ax.axvline(size, color="grey", linestyle=":", linewidth=1)
        ax.text(size, top * 1.3 ** (1 - i % 3), f" {algo}", fontsize=7, va="bottom")
    ax.set_xlabel("message size per GPU")
    ax.set_ylabel("busbw (GB/s, log)")
    ax.set_ylim(top=top * 3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    r = rows[0]
    plots.save(fig, png, f"{r['gpus']} GPUs ({r['nodes']} servers): allreduce busbw by size; dotted: the best algorithm changes")


def main(argv=None):
    p = sweep.parser(NAME, __doc__.split("\n\n")[0])
    sweep.add_topology_args(p, size_default=None)
    p.add_argument("--algos", type=sweep.names, help="comma-separated algorithms (default: every allreduce)")
    p.add_argument("--min", default="1KiB", help="smallest size (default 1KiB)")
    p.add_argument("--max", default="1GiB", help="largest size (default 1GiB)")
    p.add_argument("--factor", type=float, default=2, help="size step factor (default 2)")
    return sweep.main(NAME, p.parse_args(argv), COLUMNS, plot, points=points, finish=mark_best)


if __name__ == "__main__":
    sys.exit(main())
