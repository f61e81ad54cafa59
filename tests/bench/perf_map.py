"""Profile the numba solver with ``perf``: run one case, then write ``/tmp/perf-PID.map`` naming its machine code.

``perf`` cannot name JIT-compiled code by itself; this writes the map it
reads, from the addresses numba's code libraries report (each function's
extent taken as up to the next one's start). Inspection is off for cached
code, so compile afresh into an empty cache directory::

    NUMBA_CACHE_DIR=$(mktemp -d) perf record -F 4000 -o perf.data python tests/bench/perf_map.py hfreduce 1024
    perf report -i perf.data --no-children --sort symbol | grep -E "fluid|NRT_"

Functions inlined into ``_advance`` (the per-event kernels) count as ``_advance``.
"""

import os
import sys
import time


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    algo, gpus = argv[0], int(argv[1])
    from flyersim import topologies
    from flyersim.sim import fluid
    from flyersim.sim.app.runner import run_sizes

    graph = topologies.load("fireflyer2", gpus=gpus)
    start = time.process_time()
    run_sizes(graph, [algo], [186 * 2**20])
    print(f"{algo} {gpus} GPUs: {time.process_time() - start:.2f} s CPU (compilation included)", file=sys.stderr)
    symbols = set()
    for dispatcher in vars(fluid).values():
        for cres in getattr(dispatcher, "overloads", {}).values():
            for fn in cres.library.get_defined_functions():
                address = cres.library.get_pointer_to_function(fn.name)
                if address:
                    symbols.add((address, fn.name))
    symbols = sorted(symbols)
    with open(f"/tmp/perf-{os.getpid()}.map", "w") as out:
        for (address, name), (following, _) in zip(symbols, symbols[1:] + [(symbols[-1][0] + (1 << 16), "")]):
            out.write(f"{address:x} {following - address:x} {name}\n")
    print(f"{len(symbols)} symbols mapped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
