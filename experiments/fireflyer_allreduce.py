"""The Fire-Flyer 2 paper's comparison: HFReduce vs NCCL allreduce, and HFReduce with NVLink across zones.

Left panel: allreduce of 186 MiB from 16 to 1,440 GPUs on the fireflyer2 preset, busbw (solid) and
algbw (dashed) of HFReduce and NCCL, with the busbw ranges the paper published (arXiv:2408.14158
section IV: HFReduce 6.3-8.1 GB/s, NCCL 1.6-4.8 GB/s) shaded.  Right panel: HFReduce with NVLink bridges on GPU pairs
(0,1),(2,3),(4,5),(6,7), all servers in one fat-tree zone vs spread over two, 128 to 1,024 GPUs.

CSV columns: series, zones, then the keys of ``flyersim run --format csv`` with ``requested_algo``.

    python experiments/fireflyer_allreduce.py --jobs 4
"""

import sys

from flyersim.experiments import loading

with loading(__file__):  # Ctrl-C while the modules load: one line, exit 130
    from flyersim.experiments import plots, sweep

NAME = "fireflyer_allreduce"
COLUMNS = ["series", "zones", *sweep.RECORD_COLUMNS]
NVLINK = {"server.nvlink_pairs": [[0, 1], [2, 3], [4, 5], [6, 7]]}
QUICK = {"gpus": [16, 32], "nvlink_gpus": [16, 32], "size": 4 << 20}
PAPER = {"HFReduce": (6.3, 8.1), "NCCL": (1.6, 4.8)}  # busbw GB/s, 186 MiB, 16-1,440 GPUs: arXiv:2408.14158 IV


def points(args):
    gpus, nvlink_gpus, size = (QUICK["gpus"], QUICK["nvlink_gpus"], QUICK["size"]) if args.quick else \
        (args.gpus, args.nvlink_gpus, args.size)
    out = [sweep.point(args.preset, n, [algo], [size], model=args.model, series=series)
           for n in gpus for algo, series in ((args.hfreduce, "HFReduce"), (args.nccl, "NCCL"))]
    out += [sweep.point(args.preset, n, [args.hfreduce_nvlink], [size], zones=zones, overrides=NVLINK,
                        model=args.model, series=f"HFReduce+NVLink ({zones} zone{'s' * (zones > 1)})")
            for zones in (1, 2) for n in nvlink_gpus]
    return out


def plot(rows, png):
    fig, (left, right) = plots.figure(ncols=2)
    paper = [r for r in rows if not r["series"].startswith("HFReduce+NVLink")]
    colors = plots.lines(left, paper, "gpus", "busbw_GBps", "series", label_suffix=" busbw")
    for name, (low, high) in PAPER.items():  # the paper's measured busbw, as published: the judge, never an input
        left.axhspan(low, high, facecolor=colors.get(name, "grey"), alpha=0.12, hatch="//",
                     edgecolor=colors.get(name, "grey"), linewidth=0, label=f"{name}: paper, {low}-{high} GB/s")
    plots.lines(left, paper, "gpus", "algbw_GBps", "series", linestyle="--", marker="s", label_suffix=" algbw",
                colors=colors)
    # right: busbw only; HFReduce without NVLink at the same GPU counts for reference, and the two-zone
    # series dotted with hollow markers so it stays visible where it lies on the one-zone series
    nvl = [r for r in rows if r["series"].startswith("HFReduce+NVLink")]
    counts = {r["gpus"] for r in nvl}
    ref = [r for r in paper if r["series"] == "HFReduce" and r["gpus"] in counts]
    plots.lines(right, ref, "gpus", "busbw_GBps", "series", label_suffix=" (no NVLink) busbw",
                colors={"HFReduce": "grey"})
    for k, (name, part) in enumerate(plots.groups(nvl, "series").items()):
        part = sorted(part, key=lambda r: r["gpus"])
        right.plot([r["gpus"] for r in part], [r["busbw_GBps"] for r in part], color=f"C{k + 2}",
                   linestyle=":" if k else "-", marker="s" if k else "o", markersize=7 if k else 3.5,
                   markerfacecolor="none" if k else None, label=f"{name} busbw")
    for ax, part, title in ((left, paper, "HFReduce vs NCCL"), (right, nvl, "HFReduce with NVLink bridges")):
        if part:
            plots.gpus_axis(ax, [r["gpus"] for r in part])
        ax.set_xlabel("GPUs")
        ax.set_ylabel("GB/s")
        top = max([r["busbw_GBps"] for r in part] or [1])
        ax.set_ylim(0, top * 1.45)  # head room for the legend above the lines
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="upper right", ncol=2 if ax is left else 1)
    size = sweep.nice_bytes(rows[0]["bytes"])
    plots.save(fig, png, f"fireflyer2 allreduce of {size}: bus and algorithm bandwidth")


def main(argv=None):
    p = sweep.parser(NAME, __doc__.split("\n\n")[0])
    sweep.add_topology_args(p, gpus=[16, 32, 64, 128, 256, 512, 1024, 1440])
    p.add_argument("--nvlink-gpus", type=sweep.int_list, default=[128, 256, 512, 1024],
                   help="GPU counts of the NVLink panel (default 128..1024)")
    p.add_argument("--hfreduce", default="hfreduce", help="algorithm of the HFReduce series")
    p.add_argument("--nccl", default="nccl", help="algorithm of the NCCL series")
    p.add_argument("--hfreduce-nvlink", default="hfreduce-nvlink", help="algorithm of the NVLink series")
    return sweep.main(NAME, p.parse_args(argv), COLUMNS, plot, points=points)


if __name__ == "__main__":
    sys.exit(main())
