"""Stragglers: what one slow GPU, one slow NIC or one late rank costs each allreduce, from 16 to 1,024 GPUs.

Every case degrades one part of server n0 of a fireflyer2 cluster (``flyersim run`` options in brackets):

- slow GPU: GPU0 at half rate, its PCIe link both ways, HBM and reduce engine (``--slow n0/gpu0=0.5``);
- slow NIC: the NIC's cable trained at 100 Gb/s instead of HDR's 200 (``--slow n0/nic0<->z0/leaf0=100Gb/s``);
- late rank: rank 0 starts ``--late`` (default 2 ms) after the others (``--late 0=2ms``).

``slowdown_pct`` is the time over the same algorithm's undisturbed run at the same scale, minus 1, in
percent. Ring and double binary tree stop at 256 GPUs by default (``--max-gpus``: their 2(n-1) steps
make 1,024 GPUs slow to simulate).

CSV columns: case, the keys of ``flyersim run --format csv`` with ``requested_algo``, then slowdown_pct.

    python experiments/stragglers.py --jobs 2 --out docs/gallery
"""

import argparse
import sys

from flyersim.experiments import plots, sweep
from flyersim.experiments.scaling import algo_cap
from flyersim.topologies.units import parse_time

NAME = "stragglers"
COLUMNS = ["case", *sweep.RECORD_COLUMNS, "slowdown_pct"]
BASE = "none"


def cases(late):
    """``{case: Stragglers keyword arguments}``, the undisturbed run first."""
    return {BASE: {}, "slow GPU": {"slow": (("n0/gpu0", 0.5),)},
            "slow NIC": {"slow": (("n0/nic0<->z0/leaf0", "100Gb/s"),)}, "late rank": {"late": ((0, late),)}}


def points(args):
    gpus, size = ([16, 32], 1 << 20) if args.quick else (args.gpus, args.size)
    cap = {"ring": 256, "dbtree": 256, **dict(args.max_gpus)}
    return [{**sweep.point(args.preset, n, [algo], [size], overrides=dict(args.overrides), model=args.model,
                           case=case), "stragglers": what}
            for n in gpus for algo in args.algos if n <= cap.get(algo, n)
            for case, what in cases(args.late).items()]


def slowdowns(rows):
    """Each row with ``slowdown_pct``: its time over the undisturbed run of its algorithm and scale."""
    base = {(r["requested_algo"], r["gpus"]): r["time_s"] for r in rows if r["case"] == BASE}
    return [{**r, "slowdown_pct": 100 * (r["time_s"] / base[r["requested_algo"], r["gpus"]] - 1)} for r in rows]


def plot(rows, png):
    hit = [r for r in rows if r["case"] != BASE]
    panels = plots.groups(hit, "case")
    fig, axes = plots.figure(ncols=len(panels), width=3.9)
    colors = {}
    for ax, (case, part) in zip(axes, panels.items()):
        colors = plots.lines(ax, part, "gpus", "slowdown_pct", "requested_algo", colors=colors)
        plots.gpus_axis(ax, [r["gpus"] for r in part])
        ax.set_title(case, fontsize=9)
        ax.set_xlabel("GPUs")
        ax.set_ylabel("time over undisturbed (%)", fontsize=8)
        ax.axhline(0, color="k", lw=0.6)
    axes[0].legend(fontsize=7)
    r = rows[0]
    plots.save(fig, png, f"one straggler in n0: {r['model']} model, allreduce of {sweep.nice_bytes(r['bytes'])} "
                         f"per GPU")


def late_time(text):
    try:
        seconds = parse_time(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive time such as 2ms, got {text!r}")
    return seconds


def main(argv=None):
    p = sweep.parser(NAME, __doc__.split("\n\n")[0])
    sweep.add_topology_args(p, gpus=[16, 64, 256, 1024])
    p.add_argument("--algos", type=sweep.names, default=["hfreduce", "nccl", "ring", "dbtree"],
                   help="comma-separated algorithms (default hfreduce,nccl,ring,dbtree)")
    p.add_argument("--late", type=late_time, default=2e-3, help="how late the late rank starts (default 2ms)")
    p.add_argument("--max-gpus", type=algo_cap, action="append", default=[], metavar="ALGO=GPUS",
                   help="run ALGO only up to GPUS (repeatable; default ring=256 and dbtree=256)")
    return sweep.main(NAME, p.parse_args(argv), COLUMNS, plot, points=points, finish=slowdowns)


if __name__ == "__main__":
    sys.exit(main())
