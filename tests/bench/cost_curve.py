"""What a simulation costs as GPUs grow: wall and CPU seconds, peak memory, ops, flows and bytes per op.

Each point runs in a fresh process (so its peak RSS is its own), with warm
numba caches (one untimed 16-GPU run first), flow model, ``fireflyer2``:

    python tests/bench/cost_curve.py --algos hfreduce,nccl --gpus 16,128,1024,4096,10000 --size 186MiB

Columns: ``build_s`` (topology, schedule and routes), ``sim_s`` (wall) and
``sim_cpu_s`` (process CPU time, steadier on a shared machine) of
:func:`sim.engine.simulate`, ``rss_MB`` (peak resident memory of the
process), ``ops``, ``routes``, ``events`` (distinct event times), ``peak_flows``
(most flows active at once), ``sched_B_op`` (bytes of the schedule's arrays per
op), ``net_B_op`` (bytes of the solver's per-op arrays per op: :class:`sim.fluid.Dag`,
``Demand`` and the waiting heap) and ``net_B_slot`` (bytes of its per-flow arrays
per slot, a slot holding one active flow: ``Variables``, ``Members``, the
finishing heap and the per-flow work lists) with ``slots`` (slots allocated).
"""

import argparse
import json
import resource
import subprocess
import sys
import time


def _nbytes(obj):
    """Bytes of the numpy arrays held by ``obj``'s attributes or fields."""
    import numpy as np

    items = obj._asdict().values() if hasattr(obj, "_asdict") else vars(obj).values()
    return sum(v.nbytes for v in items if isinstance(v, np.ndarray))


def point(algo, gpus, size):
    """One measurement (run in its own process by :func:`main`)."""
    import numpy as np

    from flyersim import topologies
    from flyersim.sim import engine
    from flyersim.sim.app.runner import run_sizes

    run_sizes(topologies.load("fireflyer2", gpus=16), ["ring"], [1 << 20])  # load the numba caches, untimed
    start = time.perf_counter()
    graph = topologies.load("fireflyer2", gpus=gpus)
    nets, times = [], []
    real_simulate = engine.simulate
    real_network = engine.Network

    def network(*args, **kwargs):
        nets.append(real_network(*args, **kwargs))
        return nets[-1]

    def simulate(*args, **kwargs):
        times.append((time.perf_counter(), time.process_time()))
        out = real_simulate(*args, **kwargs)
        times.append((time.perf_counter(), time.process_time()))
        return out

    engine.Network, engine_simulate = network, engine.simulate
    import flyersim.sim.app.runner as runner
    runner.simulate = simulate
    _, (run,) = run_sizes(graph, [algo], [size], keep_runs=True)
    runner.simulate = engine_simulate
    end = time.perf_counter()
    (w0, c0), (w1, c1) = times
    net, s = nets[0], run.schedule
    ends = np.concatenate([run.start_at, run.end_at])
    events = np.unique(ends[~np.isnan(ends)]).size
    order = np.argsort(np.concatenate([run.start_at, run.end_at]), kind="stable")
    active = np.cumsum(np.where(order < s.num_ops, 1, -1))
    return {"algo": s.algo, "gpus": gpus, "bytes": size, "time_s": run.time, "build_s": round(end - start - (w1 - w0), 2),
            "sim_s": round(w1 - w0, 2), "sim_cpu_s": round(c1 - c0, 2),
            "rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "ops": s.num_ops, "routes": int(run.routes.rlat.size), "events": int(events),
            "peak_flows": int(active.max()),
            "sched_B_op": round(_nbytes(s) / s.num_ops, 1),
            "net_B_op": round(sum(_nbytes(g) for g in (net.dag, net.dem, net.waiting)) / s.num_ops, 1),
            "net_B_slot": round((sum(_nbytes(g) for g in (net.var, net.mem, net.finishing))
                                 + sum(getattr(net.work, f).nbytes for f in ("modified", "unfrozen", "frozen")))
                                / net.var.op.size, 1),
            "slots": int(net.var.op.size)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--algos", default="hfreduce,nccl")
    p.add_argument("--gpus", default="16,128,1024,4096,10000")
    p.add_argument("--size", default="186MiB")
    p.add_argument("--point", nargs=3, metavar=("ALGO", "GPUS", "BYTES"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.point:
        print(json.dumps(point(args.point[0], int(args.point[1]), int(args.point[2]))))
        return 0
    from flyersim.topologies.units import parse_size

    size = parse_size(args.size)
    subprocess.run([sys.executable, __file__, "--point", "ring", "16", str(size)], check=True,
                   stdout=subprocess.DEVNULL)  # warm the numba caches
    cols = None
    for algo in args.algos.split(","):
        for gpus in map(int, args.gpus.split(",")):
            out = subprocess.run([sys.executable, __file__, "--point", algo, str(gpus), str(size)], check=True,
                                 capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            if cols is None:
                cols = list(row)
                print(",".join(cols))
            print(",".join(str(row[c]) for c in cols), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
