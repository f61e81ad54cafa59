"""NCCL's path rules (``src/graph/paths.cc``) applied to a layout's server facts.

The path class of every GPU pair and GPU->NIC path comes with the layout
(``Layout.gpu_paths``, ``Layout.nic_paths``, found on the hardware graph by
``topologies.facts``); here are NCCL's decisions on them (NCCL 2.7-2.18):

- **NCCL release** (``version``; the cluster's ``[nccl] version``, else
  2.23, :data:`DEFAULT_VERSION`): selects the P2P rule. Releases before 2.7.8
  are not transcribed.
- **P2P** (``ncclTopoCheckP2p``): from 2.23 (NVIDIA/nccl PR #1331) a GPU pair
  talks directly when its path class is at most ``P2P_LEVEL`` = PXB; on AMD
  CPUs with at most two GPUs in the server, up to SYS. In 2.7.8 to 2.22.3 the
  default level is SYS ("use P2P whenever we can"), lowered to PXB on ARM and
  Intel CPUs only, so on AMD every GPU pair uses P2P [I: those releases' Intel
  rule, PHB on some CPU models, is taken as PXB]. Otherwise NCCL diverts the
  pair through the receiving GPU's CPU (``ncclTopoComputePaths``
  ``addInterStep``): the SHM transport. A layout without path classes allows
  P2P everywhere.
- **GPUDirect RDMA** (``ncclTopoCheckGdr``): used when the GPU-NIC path class
  is at most ``NCCL_NET_GDR_LEVEL`` (default PXB: GPU and NIC under one PCIe
  switch; a cluster sets it in its ``[nccl] net_gdr_level``). A100 enables GDR
  reads too, so one flag covers both directions. Judged for the GPUs that talk
  to the network (``talkers``). A layout without NIC path classes has no GDR.
- **Local order** (the outcome of ``search.cc`` on PCIe servers, also what
  the Fire-Flyer paper tuned NCCL to do, arXiv:2408.14158 VI-A3): enter and
  leave a server through GPUs on the NIC's socket, crossing sockets as few
  times as possible: a NIC-socket GPU first, the other sockets' GPUs, then the
  rest of the NIC socket's.

>>> from flyersim.collectives.schedule import Layout
>>> lay = Layout(1, 4, 2, gpu_paths=(("LOC", "PIX", "SYS", "SYS"), ("PIX", "LOC", "SYS", "SYS"),
...                                  ("SYS", "SYS", "LOC", "PHB"), ("SYS", "SYS", "PHB", "LOC")))
>>> p2p_pairs(lay), local_order(lay)
(((0, 1),), [2, 0, 1, 3])
>>> p2p_pairs(Layout(1, 4)), gdr(Layout(2, 4), talkers=(0,))
(True, False)
>>> p2p_pairs(lay, version="2.10")  # NCCL 2.10 on AMD: every pair
True
"""

import numpy as np

PATH_CLASSES = ("LOC", "NVL", "PIX", "PXB", "PHB", "SYS")  # topo.h PATH_LOC .. PATH_SYS, nearest first
P2P_LEVEL = "PXB"       # paths.cc ncclTopoCheckP2p default level
P2P_LEVEL_AMD_2GPU = "SYS"  # paths.cc: AMD CPUs with <= 2 GPUs in the server
GDR_LEVEL = "PXB"       # NCCL_NET_GDR_LEVEL default (paths.cc ncclTopoCheckGdr)
DEFAULT_VERSION = (2, 23)  # when a cluster declares no [nccl] version: the newest rules transcribed here


def release(version):
    """A release as a tuple: ``"2.10.3"`` -> ``(2, 10, 3)``; a tuple passes through; None is the default.

    >>> release("2.10"), release((2, 23)), release(None)
    ((2, 10), (2, 23), (2, 23))
    >>> release("2.7.3")
    Traceback (most recent call last):
    ValueError: nccl_version 2.7.3: releases before 2.7.8 are not transcribed
    """
    if version is None:
        return DEFAULT_VERSION
    if isinstance(version, float):
        raise ValueError(f"nccl_version: give the release as text, e.g. 2.10.3 or \"2.10\" (the number {version!r} "
                         "cannot tell 2.1 from 2.10)")
    parts = tuple(version) if isinstance(version, tuple) else tuple(
        int(p) if p.isdigit() else -1 for p in str(version).split("."))
    if len(parts) < 2 or min(parts) < 0:
        raise ValueError(f"nccl_version: expected a release such as 2.10.3, got {version!r}")
    if parts < (2, 7, 8):
        raise ValueError(f"nccl_version {'.'.join(map(str, parts))}: releases before 2.7.8 are not transcribed")
    return parts


def p2p_level(version, vendor, gpus):
    """NCCL's default P2P path level (``ncclTopoCheckP2p``) for a release, CPU vendor and GPUs per server.

    >>> p2p_level("2.10", "amd", 8), p2p_level("2.23", "amd", 8), p2p_level("2.23", "amd", 2)
    ('SYS', 'PXB', 'SYS')
    """
    amd = vendor == "amd"
    if release(version) < (2, 23):
        return "SYS" if amd else P2P_LEVEL
    return P2P_LEVEL_AMD_2GPU if amd and gpus <= 2 else P2P_LEVEL


def rank(path_class):
    """Position of a path class in NCCL's order (LOC 0 .. SYS 5)."""
    return PATH_CLASSES.index(path_class)


def p2p_allowed(layout, version=None):
    """``(g, g)`` bool: which local GPU pairs NCCL ``version`` connects with P2P (NVLink bridges always)."""
    g = layout.gpus_per_node
    if not layout.gpu_paths:
        allowed = np.ones((g, g), bool)
    else:
        level = p2p_level(version, layout.cpu_vendor, g)
        allowed = np.array([[rank(c) <= rank(level) for c in row] for row in layout.gpu_paths], bool)
    for i, j in layout.nvlink_pairs:
        allowed[i, j] = allowed[j, i] = True
    return allowed


def p2p_pairs(layout, version=None):
    """NCCL's P2P as a transport parameter: True (every pair), the allowed pairs ``((i, j), ...)``, or False."""
    allowed = p2p_allowed(layout, version)
    if allowed.all():
        return True
    g = layout.gpus_per_node
    return tuple((i, j) for i in range(g) for j in range(i + 1, g) if allowed[i, j]) or False


def gdr(layout, talkers, level=GDR_LEVEL):
    """True when every local GPU of ``talkers`` reaches its NIC within ``level`` (``NCCL_NET_GDR_LEVEL``)."""
    return bool(layout.nic_paths) and all(rank(layout.nic_paths[j]) <= rank(level) for j in talkers)


def local_order(layout):
    """Local GPU order inside a server (see the module docstring)."""
    g, nic = layout.gpus_per_node, layout.nic_socket
    near = [j for j in range(g) if layout.gpu_sockets[j] == nic]
    far = [j for j in range(g) if layout.gpu_sockets[j] != nic]
    return near[:1] + far + near[1:] if near else list(range(g))
