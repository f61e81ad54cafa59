"""Chrome / Perfetto trace of simulated runs (open in chrome://tracing or ui.perfetto.dev).

Each run is a trace process named by algorithm and size; each location (GPU
or host memory) is a thread; each op is a complete event from the moment it
became ready to its end, so its latency shows as part of it. A scenario
(:mod:`sim.app.scenario_report`) names one process per job, its repeats
shifted to when they ran.
"""

import json

from flyersim.collectives.schedule import KIND_NAMES, XFER
from flyersim.sim.outputs import atomic_path
from flyersim.topologies.units import format_size


def write_trace(runs, path):
    """Write every op of every run in ``runs`` to the JSON file ``path`` (whole, or not at all)."""
    write_events((events(pid, run) for pid, run in enumerate(runs)), path)


def write_events(groups, path):
    """Write the trace events of every iterable in ``groups`` to ``path`` (whole, or not at all)."""
    with atomic_path(path) as tmp, open(tmp, "w") as out:
        out.write('{"displayTimeUnit": "ns", "traceEvents": [\n')
        first = True
        for group in groups:
            for event in group:
                out.write(("" if first else ",\n") + json.dumps(event, separators=(",", ":")))
                first = False
        out.write("\n]}\n")


def events(pid, run, name=None, shift=0.0, meta=True):
    """Trace events of ``run`` as process ``pid`` (named ``name``, default its algorithm and size), its ops
    ``shift`` seconds later; ``meta=False`` leaves out the process and thread names (already written)."""
    s = run.schedule
    names = s.layout.location_names()
    if meta:
        yield {"ph": "M", "name": "process_name", "pid": pid,
               "args": {"name": name or f"{s.algo} {s.collective} {format_size(run.nbytes)} ({run.model})"}}
        for tid, location in enumerate(names):
            yield {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": location}}
    ready, end = (run.ready_at + shift) * 1e6, (run.end_at + shift) * 1e6
    for op in range(s.num_ops):
        where = int(s.src[op])
        label = f"{KIND_NAMES[s.kind[op]]} -> {names[s.dst[op]]}" if s.kind[op] == XFER else "reduce"
        yield {"ph": "X", "name": label, "pid": pid, "tid": where, "ts": float(ready[op]),
               "dur": float(end[op] - ready[op]), "args": {"op": op, "bytes": int(run.op_bytes[op])}}
