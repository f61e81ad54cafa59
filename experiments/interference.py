"""How much storage traffic slows an allreduce job: HFReduce vs NCCL, with and without separate service levels.

One job (default 128 GPUs, 186 MiB allreduce) spread over two leaves of a
``fireflyer2`` fabric (half its servers on each, so its traffic crosses the
leaves' uplinks), every server of those two leaves reading from 3FS-style
storage nodes on two leaves of their own (:mod:`sim.background`). The
storage load is the fraction of a leaf's uplink capacity it asks for: at
100 % every server reads ``uplink capacity / servers per leaf`` (its NIC's
whole line rate on a non-blocking leaf). "one class": job and storage share
every resource max-min fairly flow by flow; "separate SLs": the job's class
weighs ``--compute-weight`` times the storage class, and each InfiniBand link
splits between the two classes by weight, then between a class's flows
max-min (:mod:`sim.classes`; the weight is an input, the paper publishes
none). Static ECMP routing, so storage flows may collide on spine links and
arrive slower than asked (``storage_GBps``: what one server's read achieved).

CSV columns: one row per algorithm, load and class setting.

    python experiments/interference.py --jobs 2 --out docs/gallery
"""

import argparse
import json
import sys

from flyersim.experiments import loading

with loading(__file__):  # Ctrl-C while the modules load: one line, exit 130
    from flyersim.experiments import plots, sweep
    from flyersim.sim.app.args import number_list, positive_number
    from flyersim.sim.app import scenario_report
    from flyersim.sim.app.scenario_runner import run_scenario
    from flyersim.sim.scenario import MAX_WEIGHT, MIN_WEIGHT, loads
    from flyersim.topologies.build import fat_tree_shape
    from flyersim.topologies.config import read
    from flyersim.topologies.units import format_size

NAME = "interference"
COLUMNS = ["algo", "requested_algo", "classes", "load_pct", "gpus", "bytes", "offered_GBps", "storage_GBps",
           "time_s", "busbw_GBps", "alone_time_s", "alone_busbw_GBps", "slowdown", "bottleneck", "wall_s"]
QUICK = {"gpus": 32, "size": 4 << 20, "loads": [0, 100]}
SETTINGS = ("one class", "separate SLs")


def leaf_facts(preset, overrides):
    """(servers per leaf, uplink capacity of a leaf in B/s) of a fat-tree preset."""
    spec = read(preset, overrides)
    nics = [d for d in spec.devices if d["kind"] == "nic"]
    down, up, _ = fat_tree_shape(spec.network, nics)
    return down // len(nics), up * spec.network["link_bandwidth"]


def weight(text):
    """argparse type: a class weight in the range a scenario accepts (:data:`sim.scenario.MAX_WEIGHT`)."""
    value = positive_number(text)
    if not MIN_WEIGHT <= value <= MAX_WEIGHT:
        raise argparse.ArgumentTypeError(f"a weight is {MIN_WEIGHT:g}..{MAX_WEIGHT:g} (InfiniBand VL arbitration "
                                         f"weights are 0..255), got {text!r}")
    return value


def scenario_text(preset, overrides, algo, gpus, size, rate, weight, duration, sl):
    """The scenario of one point: two leaves of servers, the job spread over them, storage on two more leaves;
    the job's class on service level ``sl`` (storage's is 0)."""
    per_leaf, _ = leaf_facts(preset, overrides)
    lines = ["[topology]", f"preset = {json.dumps(preset)}", f"nodes = {2 * per_leaf}",
             f"set = {{ {', '.join(f'{json.dumps(k)} = {json.dumps(v)}' for k, v in overrides.items())} }}",
             "[classes]", f"compute = {{ weight = {weight}, sl = {sl} }}",
             "[[jobs]]", 'name = "job"', f"gpus = {gpus}", 'placement = "spread"', f"algo = {json.dumps(algo)}",
             f'size = {size}', 'class = "compute"']
    if rate > 0:
        lines += ["[[background]]", 'name = "storage"', 'kind = "storage-read"', 'leaves = ["z0/leaf0", "z0/leaf1"]',
                  f'rate = {rate}', 'storage_leaves = ["z0/leaf2", "z0/leaf3"]', f"storage_nodes = {per_leaf}",
                  f'duration = {json.dumps(duration)}']
    return "\n".join(lines) + "\n"


def points(args):
    gpus, size, loads_ = (QUICK["gpus"], QUICK["size"], QUICK["loads"]) if args.quick else \
        (args.gpus, args.size, args.loads)
    overrides = dict(args.overrides)
    per_leaf, uplink = leaf_facts(args.preset, overrides)
    out = []
    for algo in args.algos:
        for load in loads_:
            for setting in SETTINGS if load else SETTINGS[:1]:
                separate = setting == "separate SLs"
                rate = load / 100 * uplink / per_leaf
                out.append({"text": scenario_text(args.preset, overrides, algo, gpus, size, rate,
                                                  args.compute_weight if separate else 1, args.duration,
                                                  sl=1 if separate else 0),
                            "labels": {"requested_algo": algo, "classes": setting, "load_pct": load,
                                       "offered_GBps": rate / 1e9}})
    return out


def run(pt):
    """One point's row (a module-level function, so worker processes can run it)."""
    import time

    start = time.perf_counter()
    out = run_scenario(loads(pt["text"], "interference point"), pt.get("max_memory"))
    job = scenario_report.summary(out)[0]
    row = {**pt["labels"], **job, "gpus": job["gpus"], "wall_s": time.perf_counter() - start,
           "bottleneck": scenario_report.job_records(out)[0]["bottleneck"], "storage_GBps": 0.0}
    if out.background:
        f = out.background[0]
        if f.end_at.min() < out.jobs[0].starts[0] + out.jobs[0].runs[0].time:
            raise ValueError("a storage read ended before the job: raise --duration")
        row["storage_GBps"] = float((f.flows.nbytes / (f.end_at - f.start_at)).mean() / 1e9)
    return [row]


def rows(args):
    pts = points(args)
    return sweep.run_points(pts, sweep.capped_jobs(args.jobs), desc=NAME, func=run)


def plot(rows_, png):
    fig, (left, middle, right) = plots.figure(ncols=3, width=4.2)
    for k, (algo, part) in enumerate(plots.groups(rows_, "requested_algo").items()):
        base = [r for r in part if r["load_pct"] == 0]
        for setting, style in zip(SETTINGS, ("-", "--")):
            series = sorted(base + [r for r in part if r["classes"] == setting and r["load_pct"] > 0],
                            key=lambda r: r["load_pct"])
            x = [r["load_pct"] for r in series]
            kw = {"color": f"C{k}", "marker": "o", "ms": 3.5, "label": f"{algo}, {setting}"}
            left.plot(x, [r["busbw_GBps"] for r in series], style, **kw)
            middle.plot(x, [r["slowdown"] for r in series], style, **kw)
            right.plot(x, [r["storage_GBps"] for r in series], style, **kw)
    loads_ = sorted({r["load_pct"] for r in rows_})
    offered = {r["load_pct"]: r["offered_GBps"] for r in rows_}
    right.plot(loads_, [offered[x] for x in loads_], ":", color="grey", label="asked")
    left.set_ylabel("busbw in the scenario (GB/s)")
    middle.set_ylabel("slowdown (time / time alone)")
    right.set_ylabel("storage read per server (GB/s)")
    for ax in (left, middle, right):
        ax.set_xlabel("storage load (% of leaf uplinks)")
        ax.legend(fontsize=6)
    left.set_ylim(bottom=0)
    r = rows_[0]
    plots.save(fig, png, f"{r['gpus']}-GPU allreduce of {format_size(r['bytes'])} beside storage reads "
                         f"(solid: one class; dashed: the job in its own SL)")


def main(argv=None):
    p = sweep.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--preset", default="fireflyer2", help="fat-tree preset or topology .toml (default fireflyer2)")
    p.add_argument("--gpus", type=sweep.positive_int, default=128, help="GPUs of the job (default 128)")
    p.add_argument("--size", type=sweep.size, default=186 << 20, help="message size per GPU (default 186MiB)")
    p.add_argument("--set", dest="overrides", action="append", type=sweep.override, default=[], metavar="KEY=VALUE",
                   help="override a topology parameter (repeatable), as in flyersim run")
    p.add_argument("--algos", type=sweep.names, default=["hfreduce", "nccl"],
                   help="comma-separated algorithms (default hfreduce,nccl)")
    p.add_argument("--loads", type=number_list("loads in %", 0, 1000), default=[0, 20, 40, 60, 80, 100],
                   help="storage loads in %% of leaf uplink capacity (default 0,20,40,60,80,100)")
    p.add_argument("--compute-weight", type=weight, default=4.0,
                   help=f"the job's class weight against the storage class's 1 with separate SLs, "
                        f"{MIN_WEIGHT:g}..{MAX_WEIGHT:g} as a scenario's class weights (default 4)")
    p.add_argument("--duration", default="1s",
                   help="how long the storage reads last, longer than the job (default 1s)")
    return sweep.main(NAME, p.parse_args(argv), COLUMNS, plot, rows=rows)


if __name__ == "__main__":
    sys.exit(main())
