"""What-if on the Fire-Flyer 2 node: which server change buys allreduce bandwidth for HFReduce and NCCL.

One knob at a time, the rest as in the fireflyer2 preset (whose variant is marked "*"):

- GPU5/GPU6: sharing root port rp5 (preset) or each on its own (variants/fireflyer2-own-rootports.toml);
- DRAM bandwidth per socket 66 / 133* / 266 GB/s (half, the preset's sustained figure, double);
- NICs per node 1* / 2 (one per socket) / 8 (one per GPU): variants/fireflyer2-{2,8}nic.toml;
- PCIe Gen4* (27 GB/s per x16 link, 37.5 GB/s per root port, each direction and both together) vs Gen5 (all doubled);
- NVLink bridges off* / on (GPU pairs 0-1, 2-3, 4-5, 6-7; adds the hfreduce-nvlink series).

CSV columns: knob, variant, then the keys of ``flyersim run --format csv`` with ``requested_algo``.

    python experiments/node_design.py --gpus 128 --size 186MiB --jobs 4
"""

import sys
from pathlib import Path

from flyersim.experiments import loading

with loading(__file__):  # Ctrl-C while the modules load: one line, exit 130
    from flyersim.experiments import plots, sweep

NAME = "node_design"
COLUMNS = ["knob", "variant", *sweep.RECORD_COLUMNS]
HERE = Path(__file__).resolve().parent / "variants"
PRESET = "fireflyer2"
NVLINK = [[0, 1], [2, 3], [4, 5], [6, 7]]


def dram(gbps):
    return {"parameters.memory_bandwidth": f"{gbps}GB/s"}


# knob -> [(variant, preset or toml, overrides, extra algorithms)]
VARIANTS = {
    "GPU5/GPU6 root port": [("shared*", PRESET, {}, []),
                            ("own", HERE / "fireflyer2-own-rootports.toml", {}, [])],
    "DRAM per socket": [(f"{g} GB/s{'*' * (g == 133)}", PRESET, dram(g), []) for g in (66, 133, 266)],
    "NICs per node": [("1 NIC*", PRESET, {}, []), ("2 NICs", HERE / "fireflyer2-2nic.toml", {}, []),
                      ("8 NICs", HERE / "fireflyer2-8nic.toml", {}, [])],
    "PCIe generation": [("Gen4*", PRESET, {}, []),
                        ("Gen5", PRESET, {"parameters.pcie_bandwidth": "54GB/s",
                                          "parameters.rootport_bandwidth": "75GB/s",
                                          "parameters.rootport_duplex_bandwidth": "75GB/s"}, [])],
    "NVLink bridges": [("off*", PRESET, {}, []),
                       ("on", PRESET, {"server.nvlink_pairs": NVLINK}, ["hfreduce-nvlink"])],
}


def points(args):
    gpus, size = (16, 1 << 20) if args.quick else (args.gpus, args.size)
    return [sweep.point(preset, gpus, [algo], [size], overrides=overrides, model=args.model,
                        knob=knob, variant=variant)
            for knob, variants in VARIANTS.items() for variant, preset, overrides, extra in variants
            for algo in [*args.algos, *extra]]


def plot(rows, png):
    from matplotlib.patches import Patch

    knobs = plots.groups(rows, "knob")
    fig, axes = plots.figure(ncols=3, nrows=2, width=3.8, height=3.0)
    colors = {algo: f"C{k}" for k, algo in enumerate(plots.groups(rows, "requested_algo"))}
    for ax, (knob, part) in zip(axes, knobs.items()):
        for i, (variant, bars) in enumerate(plots.groups(part, "variant").items()):
            width = 0.8 / len(bars)
            for k, r in enumerate(bars):
                ax.bar(i + (k - (len(bars) - 1) / 2) * width, r["busbw_GBps"], width,
                       color=colors[r["requested_algo"]])
        ax.set_xticks(range(len(plots.groups(part, "variant"))), list(plots.groups(part, "variant")), fontsize=8)
        ax.set_title(knob, fontsize=9)
        ax.set_ylabel("busbw (GB/s)", fontsize=8)
    for ax in axes[len(knobs):]:
        ax.axis("off")
    axes[-1].legend([Patch(color=c) for c in colors.values()], list(colors), loc="center", fontsize=9,
                    title="* = preset")
    r = rows[0]
    plots.save(fig, png, f"Fire-Flyer 2 node what-ifs: {r['gpus']} GPUs, {sweep.nice_bytes(r['bytes'])} allreduce")


def main(argv=None):
    p = sweep.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--gpus", type=sweep.positive_int, default=128, help="GPUs (default 128)")
    p.add_argument("--size", "--sizes", dest="size", type=sweep.size, default=186 << 20, help="message size per GPU (default 186MiB)")
    p.add_argument("--model", default="flow", choices=("flow", "analytic"))
    p.add_argument("--algos", type=sweep.names, default=["hfreduce", "nccl"],
                   help="algorithms compared on every variant (default hfreduce,nccl)")
    return sweep.main(NAME, p.parse_args(argv), COLUMNS, plot, points=points)


if __name__ == "__main__":
    sys.exit(main())
