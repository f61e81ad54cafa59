"""Does placement matter? Two to eight 128-GPU allreduce jobs packed by leaf vs spread over leaves.

Every job runs the same allreduce (default 186 MiB) at the same time on a
``fireflyer2`` fabric just big enough for the most jobs (whole leaves).
``packed``: each job on as few leaves as possible, so jobs that fit in a leaf
never share a link; ``spread``: each job's servers dealt round robin over
the leaves, so every job crosses the spines and meets the others there
(:mod:`sim.placement`). ``--oversubscription 1,3`` compares the preset's
non-blocking leaves (20 servers, 20 uplinks) with leaves of fewer uplinks
(``network.oversubscription``: 3 gives 30 servers and 10 uplinks). Routing: static ECMP by a stable hash (collisions
included); adaptive routing (each flow on the least-loaded equal-cost path
when it starts) is drawn when the scenario format offers it
(``sim.scenario.ROUTING_POLICIES``).

CSV columns: one row per job of every (algorithm, job count, placement, routing) point.

    python experiments/placement.py --oversubscription 1,3 --jobs 2 --out docs/gallery
"""

import json
import math
import sys

from flyersim.experiments import loading

with loading(__file__):  # Ctrl-C while the modules load: one line, exit 130
    import numpy as np
    from flyersim.experiments import plots, sweep
    from flyersim.sim.app.args import number_list
    from flyersim.sim.app import scenario_report
    from flyersim.sim.app.scenario_runner import run_scenario
    from flyersim.sim.scenario import ROUTING_POLICIES, loads
    from flyersim.topologies.build import fat_tree_shape
    from flyersim.topologies.config import read
    from flyersim.topologies.units import format_size

NAME = "placement"
COLUMNS = ["algo", "requested_algo", "oversubscription", "placement", "routing", "jobs", "job", "servers", "leaves", "gpus", "bytes",
           "time_s", "busbw_GBps", "alone_time_s", "alone_busbw_GBps", "slowdown", "wall_s"]
QUICK = {"gpus": 32, "size": 4 << 20, "counts": [2], "algos": ["hfreduce"], "oversubscription": [1]}
PLACEMENTS = ("packed", "spread")


def cluster_nodes(preset, overrides, gpus, jobs):
    """Whole leaves, at least two, holding ``jobs`` jobs of ``gpus`` GPUs."""
    spec = read(preset, overrides)
    nics = [d for d in spec.devices if d["kind"] == "nic"]
    per_leaf = fat_tree_shape(spec.network, nics)[0] // len(nics)
    servers = jobs * gpus // spec.gpus
    return max(2, math.ceil(servers / per_leaf)) * per_leaf


def scenario_text(preset, overrides, nodes, algo, gpus, size, count, placement, routing):
    lines = ["[topology]", f"preset = {json.dumps(preset)}", f"nodes = {nodes}",
             f"set = {{ {', '.join(f'{json.dumps(k)} = {json.dumps(v)}' for k, v in overrides.items())} }}",
             "[routing]", f"policy = {json.dumps(routing)}"]
    for i in range(count):
        lines += ["[[jobs]]", f'name = "job{i}"', f"gpus = {gpus}", f"placement = {json.dumps(placement)}",
                  f"algo = {json.dumps(algo)}", f"size = {size}"]
    return "\n".join(lines) + "\n"


def points(args):
    q = args.quick
    gpus, size = (QUICK["gpus"], QUICK["size"]) if q else (args.gpus, args.size)
    counts, algos = (QUICK["counts"], QUICK["algos"]) if q else (args.counts, args.algos)
    out = []
    for over in QUICK["oversubscription"] if q else args.oversubscription:
        overrides = {**dict(args.overrides), "network.oversubscription": over}
        nodes = cluster_nodes(args.preset, overrides, gpus, max(counts))
        out += [{"text": scenario_text(args.preset, overrides, nodes, algo, gpus, size, count, placement, routing),
                 "labels": {"requested_algo": algo, "oversubscription": over, "placement": placement,
                            "routing": routing, "jobs": count}}
                for algo in algos for routing in args.routing for count in counts for placement in PLACEMENTS]
    return out


def run(pt):
    """One point's rows, one per job (a module-level function, so worker processes can run it)."""
    import time

    start = time.perf_counter()
    out = run_scenario(loads(pt["text"], "placement point"), pt.get("max_memory"))
    wall = time.perf_counter() - start
    from flyersim.sim.placement import server_leaves

    leaves = server_leaves(out.graph)
    return [{**pt["labels"], **row, "leaves": len({leaves[s] for s in j.servers}), "wall_s": wall}
            for row, j in zip(scenario_report.summary(out), out.jobs)]


def rows(args):
    return sweep.run_points(points(args), sweep.capped_jobs(args.jobs), desc=NAME, func=run)


def plot(rows_, png):
    fabrics = plots.groups(rows_, "oversubscription")
    fig, axes = plots.figure(ncols=len(fabrics), nrows=2, width=4.6, height=3.2)
    styles = {("packed", "ecmp"): "-", ("spread", "ecmp"): "--", ("packed", "adaptive"): "-.",
              ("spread", "adaptive"): ":"}
    for col, (over, fabric) in enumerate(fabrics.items()):
        top, bottom = axes[col], axes[len(fabrics) + col]
        for k, (algo, part) in enumerate(plots.groups(fabric, "requested_algo").items()):
            for (placement, routing), series in _by(part, ("placement", "routing")).items():
                counts = sorted({r["jobs"] for r in series})
                busbw = [np.mean([r["busbw_GBps"] for r in series if r["jobs"] == n]) for n in counts]
                worst = [max(r["slowdown"] for r in series if r["jobs"] == n) for n in counts]
                kw = {"color": f"C{k}", "marker": "o" if placement == "packed" else "s", "ms": 3.5,
                      "label": f"{algo}, {placement}, {routing}"}
                top.plot(counts, worst, styles.get((placement, routing), "-"), **kw)
                bottom.plot(counts, busbw, styles.get((placement, routing), "-"), **kw)
        name = "non-blocking leaves" if over == 1 else f"leaves {over:g}:1 oversubscribed"
        top.set_title(name, fontsize=9)
        top.set_ylabel("worst job's slowdown")
        bottom.set_ylabel("mean busbw per job (GB/s)")
        bottom.set_ylim(bottom=0)
        for ax in (top, bottom):
            ax.set_xlabel("concurrent jobs")
            ax.set_xticks(sorted({r["jobs"] for r in rows_}))
            ax.legend(fontsize=6)
    r = rows_[0]
    plots.save(fig, png, f"{r['gpus']}-GPU allreduce jobs of {format_size(r['bytes'])} at once: packed by leaf "
                         f"vs spread over leaves")


def _by(rows_, keys):
    out = {}
    for r in rows_:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def main(argv=None):
    p = sweep.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--preset", default="fireflyer2", help="fat-tree preset or topology .toml (default fireflyer2)")
    p.add_argument("--gpus", type=sweep.positive_int, default=128, help="GPUs of each job (default 128)")
    p.add_argument("--size", type=sweep.size, default=186 << 20, help="message size per GPU (default 186MiB)")
    p.add_argument("--set", dest="overrides", action="append", type=sweep.override, default=[], metavar="KEY=VALUE",
                   help="override a topology parameter (repeatable), as in flyersim run")
    p.add_argument("--algos", type=sweep.names, default=["hfreduce", "nccl"],
                   help="comma-separated algorithms (default hfreduce,nccl)")
    p.add_argument("--counts", type=sweep.int_list, default=[2, 4, 6, 8],
                   help="numbers of concurrent jobs (default 2,4,6,8)")
    p.add_argument("--oversubscription", type=number_list("oversubscriptions", 1, 39), default=[1],
                   help="leaf oversubscriptions down:up to compare, e.g. 1,3 (default 1, the preset's)")
    p.add_argument("--routing", type=sweep.names, default=list(ROUTING_POLICIES),
                   help=f"routing policies ({', '.join(ROUTING_POLICIES)}; default all)")
    args = p.parse_args(argv)
    unknown = [r for r in args.routing if r not in ROUTING_POLICIES]
    if unknown:
        p.error(f"--routing: unknown policy {unknown[0]!r} (choose from {', '.join(ROUTING_POLICIES)})")
    return sweep.main(NAME, args, COLUMNS, plot, rows=rows)


if __name__ == "__main__":
    sys.exit(main())
