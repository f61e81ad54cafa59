"""Old vs new solver on one case, alternating in one process: ``simulate()`` CPU seconds and bitwise end times.

The machine is shared, so only a ratio measured in one run means anything.
The old solver is a copy of ``sim/fluid.py`` from another revision::

    git show REV:sim/fluid.py > /tmp/fluid_old.py
    python tests/bench/compare_solver.py /tmp/fluid_old.py hfreduce 10000 --rounds 2

Both solvers are loaded and compiled (or their caches loaded) on a 16-GPU
run first, outside the timing. Prints each round and the best of each; exits
1 if any op's end time differs in any bit.
"""

import argparse
import importlib.util
import sys
import time

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old", help="path of the old fluid.py")
    p.add_argument("algo")
    p.add_argument("gpus", type=int)
    p.add_argument("--size", default="186MiB")
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    from flyersim import topologies
    from flyersim.sim import engine, fluid
    from flyersim.sim.app import runner
    from flyersim.topologies.units import parse_size

    spec = importlib.util.spec_from_file_location("fluid_old", args.old)
    old = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old  # numba's cache finds the module of cached code by name
    spec.loader.exec_module(old)
    size, real = parse_size(args.size), engine.simulate

    def run(module, graph, algo, nbytes):
        engine.Network, times = module.Network, []

        def timed(*a, **k):
            start = time.process_time()
            out = real(*a, **k)
            times.append(time.process_time() - start)
            return out

        runner.simulate = timed
        try:
            _, (r,) = runner.run_sizes(graph, [algo], [nbytes], keep_runs=True)
        finally:
            runner.simulate, engine.Network = real, fluid.Network
        return times[0], r.end_at

    small = topologies.load("fireflyer2", gpus=16)
    for module in (old, fluid):
        run(module, small, "hfreduce", 1 << 20)
    graph = topologies.load("fireflyer2", gpus=args.gpus)
    best, same = {"old": np.inf, "new": np.inf}, True
    for _ in range(args.rounds):
        t_old, end_old = run(old, graph, args.algo, size)
        t_new, end_new = run(fluid, graph, args.algo, size)
        best["old"], best["new"] = min(best["old"], t_old), min(best["new"], t_new)
        same &= end_old.tobytes() == end_new.tobytes()
        print(f"{args.algo} {args.gpus} GPUs: old {t_old:.2f} s, new {t_new:.2f} s CPU; end times bitwise "
              f"{'identical' if end_old.tobytes() == end_new.tobytes() else 'DIFFERENT'}", flush=True)
    print(f"best: old {best['old']:.2f} s, new {best['new']:.2f} s CPU, {best['old'] / best['new']:.2f}x")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
