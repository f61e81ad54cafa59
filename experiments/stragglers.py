"""Stragglers: what one slow GPU, one slow NIC, one late rank or OS noise costs each allreduce, 16-1,024 GPUs.

The first three cases degrade one part of server n0 of a fireflyer2 cluster, mildly and severely; the
last slows every server a little at random (``flyersim run`` options in brackets):

- slow GPU: GPU0 at half or a quarter of its rate (a PCIe link trained at x8 or x4): its PCIe link both
  ways, HBM and reduce engine (``--slow n0/gpu0=0.5``);
- slow NIC: the NIC's cable at 100 or 50 Gb/s instead of HDR's 200 (an HDR link trained at half or a
  quarter of its width: ``--slow n0/nic0<->z0/leaf0=100Gb/s``);
- late rank: rank 0 starts 1 or 4 ms after the others (``--late 0=1ms``);
- OS noise: every server's CPU-driven engines slowed by 1 + X, X exponential of mean 5 %, over 4 seeds
  (``--noise 0.05 --seeds 4``).

``slowdown_pct`` is the time over the same algorithm's undisturbed run at the same scale, minus 1, in
percent. Ring and double binary tree stop at 256 GPUs by default (``--max-gpus``: their 2(n-1) steps
make 1,024 GPUs slow to simulate).

CSV columns: case, severity, the keys of ``flyersim run --format csv`` with ``requested_algo``, then
slowdown_pct.

    python experiments/stragglers.py --jobs 2 --out docs/gallery
"""

import sys

from flyersim.experiments import loading

with loading(__file__):  # Ctrl-C while the modules load: one line, exit 130
    from flyersim.experiments import plots, sweep
    from flyersim.experiments.scaling import algo_cap

NAME = "stragglers"
COLUMNS = ["case", "severity", *sweep.RECORD_COLUMNS, "slowdown_pct"]
BASE = "none"
# (case, severity, Stragglers keyword arguments), the undisturbed run first
CASES = [(BASE, "", {}),
         ("slow GPU", "x0.5", {"slow": (("n0/gpu0", 0.5),)}),
         ("slow GPU", "x0.25", {"slow": (("n0/gpu0", 0.25),)}),
         ("slow NIC", "100 Gb/s", {"slow": (("n0/nic0<->z0/leaf0", "100Gb/s"),)}),
         ("slow NIC", "50 Gb/s", {"slow": (("n0/nic0<->z0/leaf0", "50Gb/s"),)}),
         ("late rank", "1 ms", {"late": ((0, 1e-3),)}),
         ("late rank", "4 ms", {"late": ((0, 4e-3),)})]
NOISE, SEEDS = 0.05, 4  # OS noise: mean per-server slowdown of the CPU-driven engines, and the seeds drawn
CASES += [("OS noise", f"seed {k}", {"noise": NOISE, "seed": k}) for k in range(SEEDS)]


def points(args):
    gpus, size = ([16, 32], 1 << 20) if args.quick else (args.gpus, args.size)
    cap = {"ring": 256, "dbtree": 256, **dict(args.max_gpus)}
    return [{**sweep.point(args.preset, n, [algo], [size], overrides=dict(args.overrides), model=args.model,
                           case=case, severity=severity), "stragglers": what}
            for n in gpus for algo in args.algos if n <= cap.get(algo, n)
            for case, severity, what in CASES]


def slowdowns(rows):
    """Each row with ``slowdown_pct``: its time over the undisturbed run of its algorithm and scale."""
    base = {(r["requested_algo"], r["gpus"]): r["time_s"] for r in rows if r["case"] == BASE}
    return [{**r, "slowdown_pct": 100 * (r["time_s"] / base[r["requested_algo"], r["gpus"]] - 1)} for r in rows]


def _spread(ax, rows, colors):
    """Median over the seeds per algorithm and scale, the min-max range shaded."""
    import statistics

    for algo, part in plots.groups(rows, "requested_algo").items():
        by_gpus = plots.groups(sorted(part, key=lambda r: r["gpus"]), "gpus")
        x = list(by_gpus)
        values = [[r["slowdown_pct"] for r in group] for group in by_gpus.values()]
        color = colors.setdefault(algo, f"C{len(colors) % 10}")
        ax.plot(x, [statistics.median(v) for v in values], marker="o", markersize=3.5, color=color)
        ax.fill_between(x, [min(v) for v in values], [max(v) for v in values], color=color, alpha=0.2)
    seeds = len(next(iter(plots.groups(rows, "requested_algo").values()))) // len(plots.groups(rows, "gpus"))
    ax.set_title(f"OS noise, mean {NOISE:.0%} per server: median, min-max of {seeds} seeds", fontsize=9)


def plot(rows, png):
    from matplotlib.lines import Line2D

    hit = [r for r in rows if r["case"] != BASE]
    panels = plots.groups(hit, "case")
    fig, axes = plots.figure(ncols=2, nrows=(len(panels) + 1) // 2, width=4.6, height=3.2)
    colors = {}
    for ax, (case, part) in zip(axes, panels.items()):
        ax.set_xlabel("GPUs")
        ax.set_ylabel("time over undisturbed (%)", fontsize=8)
        ax.axhline(0, color="k", lw=0.6)
        plots.gpus_axis(ax, [r["gpus"] for r in part])
        if case == "OS noise":
            _spread(ax, part, colors)
            continue
        (s_mild, mild), (s_severe, severe) = plots.groups(part, "severity").items()
        colors = plots.lines(ax, mild, "gpus", "slowdown_pct", "requested_algo", colors=colors, marker="o",
                             linestyle=":")
        plots.lines(ax, severe, "gpus", "slowdown_pct", "requested_algo", colors=colors, marker="s")
        ax.set_title(f"{case}: {s_mild} (dotted), {s_severe} (solid)", fontsize=9)
    handles = [Line2D([], [], color=c, label=a) for a, c in colors.items()]
    axes[0].legend(handles=handles, fontsize=7)
    r = rows[0]
    plots.save(fig, png, f"one straggler in server n0, or OS noise on every server: {r['model']} model, "
                         f"allreduce of {sweep.nice_bytes(r['bytes'])} per GPU")


def main(argv=None):
    p = sweep.parser(NAME, __doc__.split("\n\n")[0])
    sweep.add_topology_args(p, gpus=[16, 64, 256, 1024])
    p.add_argument("--algos", type=sweep.names, default=["hfreduce", "nccl", "ring", "dbtree"],
                   help="comma-separated algorithms (default hfreduce,nccl,ring,dbtree)")
    p.add_argument("--max-gpus", type=algo_cap, action="append", default=[], metavar="ALGO=GPUS",
                   help="run ALGO only up to GPUS (repeatable; default ring=256 and dbtree=256)")
    return sweep.main(NAME, p.parse_args(argv), COLUMNS, plot, points=points, finish=slowdowns)


if __name__ == "__main__":
    sys.exit(main())
