"""Chrome / Perfetto trace of simulated runs (open in chrome://tracing or ui.perfetto.dev).

Each run is a trace process named by algorithm and size; each location (GPU
or host memory) is a thread; each op is a complete event from the moment it
became ready to its end, so its latency shows as part of it.
"""

import json

from flyersim.collectives.schedule import KIND_NAMES, XFER
from flyersim.sim.outputs import atomic_path
from flyersim.topologies.units import format_size


def write_trace(runs, path):
    """Write every op of every run in ``runs`` to the JSON file ``path`` (whole, or not at all)."""
    with atomic_path(path) as tmp, open(tmp, "w") as out:
        out.write('{"displayTimeUnit": "ns", "traceEvents": [\n')
        first = True
        for pid, run in enumerate(runs):
            for event in _events(pid, run):
                out.write(("" if first else ",\n") + json.dumps(event, separators=(",", ":")))
                first = False
        out.write("\n]}\n")


def _events(pid, run):
    s = run.schedule
    names = s.layout.location_names()
    yield {"ph": "M", "name": "process_name", "pid": pid,
           "args": {"name": f"{s.algo} {s.collective} {format_size(run.nbytes)} ({run.model})"}}
    for tid, name in enumerate(names):
        yield {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}
    ready, end = run.ready_at * 1e6, run.end_at * 1e6
    for op in range(s.num_ops):
        where = int(s.src[op])
        label = f"{KIND_NAMES[s.kind[op]]} -> {names[s.dst[op]]}" if s.kind[op] == XFER else "reduce"
        yield {"ph": "X", "name": label, "pid": pid, "tid": where, "ts": float(ready[op]),
               "dur": float(end[op] - ready[op]), "args": {"op": op, "bytes": int(run.op_bytes[op])}}
