"""What NCCL does on a server, one stage per module as NCCL's own ``src/graph``:

- :mod:`.paths`: NCCL's path rules (P2P level, GDR level, local GPU order) on
  the layout's path classes (``paths.cc``);
- :mod:`.search`: channels and speeds of the ring and tree graphs, rated over
  the routes of a topology (``search.cc``);
- :mod:`.tuning`: the tuning model that picks ring or tree per size
  (``tuning.cc``), and the ``nccl`` algorithm that runs its pick;
- :mod:`.transports`: P2P, SHM and NET hops (``src/transport/``);
- :mod:`.ring` and :mod:`.tree`: the two allreduce algorithms.

The builders are pure: every topology-dependent input arrives in the layout
(path classes, sockets) or in a :class:`.search.Search`; ``sim`` computes the
routes a search needs from the hardware graph (``topologies.facts``).

>>> from flyersim.collectives.schedule import Layout
>>> pick(Layout(16, 8), 1 << 20), pick(Layout(16, 8), 1 << 30)
('nccl-tree', 'nccl-ring')
"""

from flyersim.collectives.nccl.ring import nccl_ring
from flyersim.collectives.nccl.search import Search, search
from flyersim.collectives.nccl.tree import nccl_tree
from flyersim.collectives.nccl.tuning import nccl_allreduce, pick

__all__ = ["nccl_ring", "nccl_tree", "nccl_allreduce", "pick", "search", "Search"]
