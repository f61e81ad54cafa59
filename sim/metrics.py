"""What a run reports: nccl-tests bandwidths, resource utilisation, bottleneck.

algbw = S / t and busbw = algbw x factor (nccl-tests doc/PERFORMANCE.md;
factor 2(n-1)/n for allreduce, n = ranks).
"""

import numpy as np

from flyersim.collectives.costs import busbw_factor


def utilisation(run):
    """Fraction of each resource's capacity used over the run's whole time."""
    if run.time <= 0:
        return np.zeros(run.routes.capacity.size)
    return run.carried() / (run.routes.capacity * run.time)


def bottleneck(run):
    """(name, class, utilisation) of the most used resource, or None when nothing moved."""
    util = utilisation(run)
    if util.size == 0 or util.max() <= 0:
        return None
    i = int(np.argmax(util))
    return run.routes.names[i], run.routes.classes[i], float(util[i])


def record(run, dtype, nodes, topology_name=""):
    """One result row with the keys shared by ``flyersim run``'s table, CSV and JSON."""
    s = run.schedule
    ranks = s.layout.ranks
    algbw = run.nbytes / run.time if run.time > 0 else 0.0
    neck = bottleneck(run)
    return {
        "collective": s.collective,
        "algo": s.algo,
        "model": run.model,
        "topology": topology_name,
        "gpus": ranks,
        "nodes": nodes,
        "bytes": run.nbytes,
        "count": run.count,
        "type": dtype,
        "time_s": run.time,
        "algbw_GBps": algbw / 1e9,
        "busbw_GBps": algbw * busbw_factor(s.collective, ranks) / 1e9,
        "bottleneck": neck[0] if neck else "",
        "bottleneck_class": neck[1] if neck else "",
        "bottleneck_util": neck[2] if neck else 0.0,
    }
