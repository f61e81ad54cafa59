"""HFReduce (Fire-Flyer 2, SC24 section IV): host-staged allreduce; no GPU kernel runs.

Per chunk, pipelined (chunk c depends only on its own data):

1. D2H: every GPU j copies its chunk into host buffer ``g<j>`` on socket
   ``staging[j]`` (default ``j % sockets``: interleaved over the NUMA nodes).
2. Cross-socket: buffers staged away from the NIC's socket are copied to it
   (``host(n, s) -> host(n, nic_socket)``); the schedule format needs a
   reduce's inputs at its location, and this is the inter-socket traffic the
   CPU would cause by reading them remotely.
3. The NIC socket's CPU adds the g chunks into ``sum`` (one g-way reduce).
   With one contributing GPU there is nothing to add: it copies straight into
   ``sum``.
4. Across nodes: allreduce of ``sum`` between the NIC sockets' memories over
   NCCL's double binary tree (reduce up into ``recv0``/``recv1``, broadcast
   down), :func:`collectives.compose.dbtree_allreduce`. None with one node.
5. H2D of the final chunk into every GPU's ``data``. ``gdrcopy=False``: each
   GPU's copy reads ``sum`` on the NIC socket. ``gdrcopy=True``: the paper's
   CPU reads the chunk once per NUMA node and stores it into that node's GPUs;
   modelled as one copy of ``sum`` into ``out`` on every other socket that
   hosts GPUs, from which its GPUs read locally. The format has no
   one-read-many-writes op, so each GPU's H2D still appears as its own read
   of host memory; what the option changes is that the inter-socket link
   carries the chunk once per socket instead of once per remote GPU.

Not published, so exposed: ``chunks`` (chunk count; the default 4 is a
placeholder, not a measurement), the staging placement, and the GPUs'
sockets (``gpu_sockets``, default contiguous blocks: GPU0-3 on socket 0 and
GPU4-7 on socket 1 as in the paper's Fig. 4). ``nic_socket`` defaults to the
last socket (socket 1 in Fig. 4).

>>> from collectives.schedule import Layout
>>> from collectives.verify import verify
>>> s = hfreduce_allreduce(Layout(nodes=2, gpus_per_node=4, sockets=2), chunks=2)
>>> verify(s); s.describe(0)
'xfer n0/gpu0:data -> n0/host0:g0 [0/2, 1/2)'
>>> hfreduce_allreduce(Layout(1, 8, 2), nic_socket=2)
Traceback (most recent call last):
ValueError: hfreduce: nic_socket must be a socket 0..1, got 2
"""

import numpy as np

from collectives import compose
from collectives.schedule import ScheduleBuilder

DEFAULT_CHUNKS = 4


def check_positive(name, value, algo):
    """Raise ValueError unless ``value`` is a positive integer (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{algo}: {name} must be a positive integer, got {value!r}")


def host_options(layout, nic_socket, staging, gpu_sockets, algo):
    """Validated ``(nic_socket, staging, gpu_sockets)`` with the defaults filled in."""
    g, sockets = layout.gpus_per_node, layout.sockets
    nic = sockets - 1 if nic_socket is None else nic_socket
    if isinstance(nic, bool) or not isinstance(nic, (int, np.integer)) or not 0 <= nic < sockets:
        raise ValueError(f"{algo}: nic_socket must be a socket 0..{sockets - 1}, got {nic_socket!r}")
    placed = {"staging": np.arange(g) % sockets, "gpu_sockets": np.arange(g) * sockets // g}
    for name, given in (("staging", staging), ("gpu_sockets", gpu_sockets)):
        if given is None:
            continue
        arr = np.asarray(given)
        if arr.shape != (g,) or arr.dtype.kind not in "iu" or np.any((arr < 0) | (arr >= sockets)):
            raise ValueError(f"{algo}: {name} must give a socket 0..{sockets - 1} for each of the {g} GPUs, "
                             f"got {given!r}")
        placed[name] = arr
    return int(nic), placed["staging"], placed["gpu_sockets"]


def host_allreduce(b, layout, span, owners, ready, nic, staging, gpu_sockets, gdrcopy):
    """Append steps 1-5 for one part of every chunk; returns the H2D op ids ``(nodes, chunks, len(owners))``.

    ``span`` is ``(lo, hi, den)``, arrays over chunks; ``owners`` are the local
    GPUs whose ``data`` holds the part (each a partial sum; together, the
    node's); ``ready`` op ids broadcast to ``(nodes, chunks, len(owners))``.
    """
    nodes, g = layout.nodes, layout.gpus_per_node
    n = np.arange(nodes)[:, None]
    chunks = len(span[0])
    ready = np.broadcast_to(ready, (nodes, chunks, len(owners)))
    nic_mem = layout.host(n, nic)
    shape = (nodes, chunks)
    staged = []
    for i, j in enumerate(owners):
        if len(owners) == 1:
            x = b.xfer(n * g + j, nic_mem, span, "data", "sum", deps=[ready[:, :, i]]).reshape(shape)
        else:
            x = b.xfer(n * g + j, layout.host(n, staging[j]), span, "data", f"g{j}", deps=[ready[:, :, i]])
            if staging[j] != nic:
                x = b.xfer(layout.host(n, staging[j]), nic_mem, span, f"g{j}", f"g{j}", deps=[x.reshape(shape)])
        staged.append(x.reshape(shape))
    summed = staged[0]
    if len(owners) > 1:
        summed = b.reduce(nic_mem, tuple(f"g{j}" for j in owners), "sum", span, deps=staged).reshape(shape)
    hosts = np.broadcast_to(layout.host(np.arange(nodes), nic), (chunks, nodes))
    final = compose.dbtree_allreduce(b, hosts, span, summed.T, buf="sum").transpose(1, 0, 2)
    waits = [final[:, :, c] for c in range(final.shape[2])]
    local = {}  # socket -> op copying the final chunk into its "out" (gdrcopy)
    h2d = []
    for j in owners:
        s = gpu_sockets[j]
        if gdrcopy and s != nic:
            if s not in local:
                local[s] = b.xfer(nic_mem, layout.host(n, s), span, "sum", "out", deps=waits).reshape(shape)
            x = b.xfer(layout.host(n, s), n * g + j, span, "out", "data", deps=[local[s]])
        else:
            x = b.xfer(nic_mem, n * g + j, span, "sum", "data", deps=waits)
        h2d.append(x.reshape(shape))
    return np.stack(h2d, axis=-1)


def host_buffers(layout):
    """Buffers HFReduce schedules use besides ``data``."""
    return tuple(f"g{j}" for j in range(layout.gpus_per_node)) + ("sum", "recv0", "recv1", "out")


def hfreduce_allreduce(layout, chunks=DEFAULT_CHUNKS, nic_socket=None, staging=None, gpu_sockets=None,
                       gdrcopy=True):
    """HFReduce allreduce of ``data`` on every GPU (steps in the module docstring).

    ``chunks``: pipeline chunks (positive int). ``nic_socket``: socket of the
    node's NIC, where reduce and receive buffers live (default: last socket).
    ``staging[j]``: socket of GPU j's D2H buffer (default ``j % sockets``).
    ``gpu_sockets[j]``: socket GPU j attaches to (default contiguous blocks).
    ``gdrcopy``: H2D via one read per NUMA node (True) or per GPU (False).
    """
    check_positive("chunks", chunks, "hfreduce")
    nic, staging, gpu_sockets = host_options(layout, nic_socket, staging, gpu_sockets, "hfreduce")
    b = ScheduleBuilder(layout, "allreduce", "hfreduce", buffers=("data",) + host_buffers(layout))
    c = np.arange(chunks)
    host_allreduce(b, layout, (c, c + 1, np.full(chunks, chunks)), np.arange(layout.gpus_per_node), -1,
                   nic, staging, gpu_sockets, bool(gdrcopy))
    for r in range(layout.ranks):
        b.expect(r, "data", (0, 1, 1))
    return b.build()
