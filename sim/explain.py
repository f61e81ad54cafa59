"""Why a run took its time: the bytes each resource class carried per byte of message, and the bottleneck.

For every class of resource (``pcie up (gpu)``, ``dram``, ``xgmi``, ``ib``,
``cpu reduce``, ...; see :mod:`sim.routes`) the bytes all its resources
carried, weights applied, divided by the message size S times the GPUs
(*per GPU byte*) and times the servers (*per server byte*). HFReduce's
PCIe traffic is about 1 per GPU byte each way, a ring's about 2(n-1)/n; the
Fire-Flyer 2 paper counts host memory traffic per server, 24 S for 8 GPUs
(../shared/reference/fireflyer2.md); the model counts 22.5 at 16 GPUs, the
difference being the 2-server tree's smaller send/receive share
(tests/test_explain.py). Each class also shows the peak
utilisation of its busiest resource over the run, against its capacity as
:mod:`sim.routes` defines it (a link per direction, a node's pool such as a
full-duplex NIC both directions together), which the output repeats.

>>> from flyersim.sim.app.runner import run_sizes
>>> from flyersim.topologies import load
>>> _, runs = run_sizes(load("fireflyer2", gpus=8), ["hfreduce"], [1 << 20], keep_runs=True)
>>> ratios = per_byte(runs[0])
>>> round(ratios["pcie up (gpu)"][0], 6), round(ratios["pcie down (gpu)"][0], 6)
(1.0, 1.0)
>>> print(explain(runs[0]).splitlines()[0])
# hfreduce: 8 GPUs on 1 server, 1048576 B; bytes carried per message byte
"""

import numpy as np

from flyersim.sim.metrics import bottleneck, utilisation


def per_byte(run):
    """``{class: (per GPU byte, per server byte, peak utilisation)}`` of a run, classes sorted by name."""
    classes = np.asarray(run.routes.classes)
    carried, util = run.carried(), utilisation(run)
    layout = run.schedule.layout
    out = {}
    for cls in sorted(set(classes.tolist())):
        mine = classes == cls
        total = float(carried[mine].sum())
        out[cls] = (total / (run.nbytes * layout.ranks) if run.nbytes else 0.0,
                    total / (run.nbytes * layout.nodes) if run.nbytes else 0.0,
                    float(util[mine].max(initial=0.0)))
    return out


def explain(run):
    """Text block: a header, one line per resource class, and the bottleneck."""
    layout = run.schedule.layout
    lines = [f"# {run.schedule.algo}: {layout.ranks} GPUs on {layout.nodes} server{'s' * (layout.nodes != 1)}, {run.nbytes} B; "
             "bytes carried per message byte",
             f"  {'class':<22}{'per GPU byte':>14}{'per server byte':>17}{'peak util':>11}"]
    for cls, (gpu, server, peak) in per_byte(run).items():
        lines.append(f"  {cls:<22}{gpu:>14.3f}{server:>17.3f}{peak:>10.0%}")
    lines.append("  (capacities: a link's per direction, a node pool's (dram, hbm, nic, rootport, switch) and an mpi pair's "
                 "both directions together; see sim/routes.py)")
    neck = bottleneck(run)
    lines.append(f"  bottleneck: {neck[0]} ({neck[1]}), {neck[2]:.0%} busy" if neck else "  bottleneck: none")
    return "\n".join(lines)
