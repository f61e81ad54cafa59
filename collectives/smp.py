"""MPICH's node-aware allreduce: reduce inside each node, allreduce among the nodes' leaders, broadcast inside.

MPICH 5 runs this for a commutative ``MPI_Allreduce`` on a communicator that
spans several nodes with several ranks on one (ch4's "composition alpha",
``MPIDI_Allreduce_intra_composition_alpha``, chosen by
``maint/tuning/coll/ch4/generic.json``; the classic ``MPIR_Allreduce_intra_smp``
is the same): each node reduces into its first rank, the first ranks run an
allreduce among themselves, and each node broadcasts the result from its first
rank. Inside a node the reduce and the broadcast are binomial trees: under
mpi4py's ``MPI_THREAD_MULTIPLE`` MPICH's shared-memory path falls back to its
generic algorithms, binomial for the broadcast and, above 2 KiB,
reduce-scatter + gather for the reduce, which moves the same bytes as a
binomial tree with two ranks a node and fewer with more (an approximation
there); among the leaders MPICH picks as for any
communicator (``outer``): ``"rabenseifner"``, or ``"rd"`` for tiny messages
(:func:`flyersim.sim.app.validate.mpich_choice`).

>>> from flyersim.collectives.schedule import Layout
>>> from flyersim.collectives.verify import verify
>>> s = smp_allreduce(Layout(nodes=3, gpus_per_node=2))
>>> verify(s); s.algo, s.describe(0)
('smp-rabenseifner', 'xfer n0/gpu1:data -> n0/gpu0:recv [0/1, 1/1)')
>>> smp_allreduce(Layout(2, 2), outer="ring")
Traceback (most recent call last):
ValueError: smp: unknown outer algorithm 'ring' (choose from rabenseifner, rd)
"""

import numpy as np

from flyersim.collectives import rabenseifner, recursive_doubling, tree
from flyersim.collectives.params import Param, Params
from flyersim.collectives.schedule import ScheduleBuilder

OUTER = {"rabenseifner": rabenseifner.allreduce_among, "rd": recursive_doubling.allreduce_among}
PARAMS = Params("smp", Param("outer", str, "rabenseifner", f"allreduce among the nodes' first ranks "
                                                            f"({', '.join(OUTER)})"))


def smp_allreduce(layout, outer="rabenseifner"):
    """Allreduce of buffer ``data`` on every rank of ``layout``: node reduce, leaders' allreduce, node broadcast."""
    if outer not in OUTER:
        raise ValueError(f"smp: unknown outer algorithm {outer!r} (choose from {', '.join(OUTER)})")
    g, p = layout.gpus_per_node, layout.ranks
    b = ScheduleBuilder(layout, "allreduce", f"smp-{outer}", buffers=("data", "recv"))
    local = np.arange(p).reshape(-1, g)  # local[node, j]: the rank of GPU j of a node
    wrote, sent = tree.reduce_steps(b, local)
    leaders = local[:, 0]
    read = np.full(p, -1)  # a leader's last op reading its result
    wrote[leaders], read[leaders] = OUTER[outer](b, leaders, wrote[leaders])
    tree.broadcast_steps(b, local, wrote, sent, read)
    for r in range(p):
        b.expect(r, "data", tree.WHOLE)
    return b.build()
