"""What one server of a topology is made of, as plain data: sockets, NVLink, PCIe path classes, CPU and GPU.

Every server of a topology is a copy of one template, so server 0 speaks for
all. The facts know no algorithm; collective algorithms read them through
``collectives.schedule.Layout`` (filled from :func:`server_facts` in one place,
``sim.app.runner.layout_of``) and NCCL's search rates the links of
:func:`server_routes`.

- **Socket** of a GPU or NIC: the CPU it reaches in fewest hops (the lowest
  numbered on a tie); socket s owns memory ``host{s}``.
- **Path class** of two devices, in NCCL's vocabulary (``src/graph/topo.h``
  ``PATH_*``): ``LOC`` the device itself; ``NVL`` over NVLink only (a bridge or
  NVSwitches; GPUs joined by NVLink talk over it); ``PIX`` through at most one
  PCIe bridge; ``PXB`` through several bridges without the CPU; ``PHB``
  through one CPU's host bridge; ``SYS`` across the inter-socket link. A root
  port shared by two devices counts as a bridge (they meet below the CPU).
- A GPU's **NIC**: the one its traffic to the next server leaves through (the
  route to ``n1/gpu0``; the first NIC on a one-server topology).
- **CPU and GPU model**: ``[server] cpu_model`` / ``gpu_model`` of the TOML,
  one of :data:`CPU_MODELS` / :data:`GPU_MODELS`; ``None`` when the topology
  does not say (then the layout's defaults apply).

>>> from flyersim.topologies import load
>>> f = server_facts(load("fireflyer2", gpus=16))
>>> f.gpu_sockets, f.nic_sockets, f.cpu_vendor, f.gpu_arch
((0, 0, 0, 0, 1, 1, 1, 1), (1,), 'amd', 80)
>>> f.gpu_paths[5][6], f.gpu_paths[0][1], f.gpu_paths[0][7], f.nic_paths[7], f.nic_paths[0]
('PIX', 'PHB', 'SYS', 'PHB', 'SYS')
>>> server_facts(load("dgx-a100", nodes=1)).gpu_paths[0][5]
'NVL'
"""

from collections.abc import Mapping
from dataclasses import dataclass

import networkx as nx

from .routing import Router, ordered_subgraph

PATH_CLASSES = ("LOC", "NVL", "PIX", "PXB", "PHB", "SYS")  # NCCL topo.h PATH_LOC .. PATH_SYS, nearest first
CPU_MODELS = {  # model -> vendor
    "amd-rome": "amd",         # EPYC 7002 (Fire-Flyer 2: 7502; DGX A100: 7742)
    "amd-milan": "amd",        # EPYC 7003
    "intel-icelake": "intel",  # Xeon Scalable 3rd gen
    "intel-sapphirerapids": "intel",  # Xeon Scalable 4th gen
}
GPU_MODELS = {  # model -> CUDA compute capability x 10 (NVIDIA CUDA C Programming Guide, compute capabilities)
    "v100-sxm2": 70,
    "a100-pcie": 80,
    "a100-sxm4": 80,
    "h100-pcie": 90,
    "h100-sxm5": 90,
}


@dataclass(frozen=True)
class ServerFacts:
    """Facts of one server (local GPU j is ``gpu{j}``; NICs in name order). See the module docstring."""

    gpus: int
    sockets: int
    gpu_sockets: tuple   # socket of each GPU
    nic_sockets: tuple   # socket of each NIC
    nvlink_pairs: tuple  # bridged GPU pairs as the topology lists them
    gpu_paths: tuple     # gpu_paths[i][j]: path class from GPU i to GPU j
    gpu_nics: tuple      # local name of each GPU's NIC
    nic_paths: tuple     # path class from each GPU to its NIC
    cpu_model: str = None
    gpu_model: str = None

    @property
    def cpu_vendor(self):
        return CPU_MODELS.get(self.cpu_model)

    @property
    def gpu_arch(self):
        return GPU_MODELS.get(self.gpu_model)


@dataclass(frozen=True)
class Link:
    """One directed link of a route: graph edge ``name`` (``u->v``), its ``kind`` and ``bandwidth``.

    ``network`` is true for a link with an end outside every server (a NIC's port, a switch).
    """

    name: str
    kind: str
    bandwidth: float
    network: bool


def path_class(graph, path):
    """NCCL path class of a route (graph node names) inside one server.

    >>> from flyersim.topologies import load
    >>> g = load("fireflyer2", nodes=1)
    >>> path_class(g, ["n0/gpu5", "n0/rp5", "n0/gpu6"]), path_class(g, ["n0/gpu0"])
    ('PIX', 'LOC')
    """
    if len(path) == 1:
        return "LOC"
    kinds = [graph.nodes[v]["kind"] for v in path]
    edges = [graph.edges[u, v].get("kind") for u, v in zip(path, path[1:])]
    if all(k == "nvlink" for k in edges):
        return "NVL"
    cpus = sum(k == "cpu" for k in kinds)
    if cpus >= 2 or "xgmi" in edges:
        return "SYS"
    if cpus == 1:
        return "PHB"
    bridges = sum(k in ("pcieswitch", "rootport") for k in kinds[1:-1])
    return "PIX" if bridges <= 1 else "PXB"


def server_facts(graph):
    """The :class:`ServerFacts` of server 0 of a topology graph."""
    return _Server(graph).facts()


def server_routes(graph):
    """Routes NCCL's search rates, as a mapping ``{(src, dst): (Link, ...)}`` over graph node names.

    Between the GPUs of server 0 (over NVLink when joined by it, as
    :func:`server_facts`'s ``gpu_paths``), each GPU to and from each host
    memory of server 0, and, with more than one server, every GPU and host
    memory of server 0 to every GPU of server 1. A route is found when first
    looked up: the search reads a few per GPU of the GPUs^2 listed.
    """
    return _Routes(_Server(graph))


class _Routes(Mapping):
    """:func:`server_routes`' mapping: its keys in a fixed order, each route found (and kept) when looked up."""

    def __init__(self, server):
        self.server, self.found = server, {}
        self.hosts = [f"n0/host{s}" for s in range(server.sockets)]
        self.remote = [f"n1/gpu{j}" for j in range(server.g)] if server.graph.graph["nodes"] > 1 else []
        self.sets = [set(x) for x in (server.gpus, self.hosts, self.remote)]

    def __getitem__(self, key):
        route = self.found.get(key)
        if route is None:
            if key not in self:
                raise KeyError(key)
            a, b = key
            gpus = self.sets[0]
            path = self.server.gpu_path(a, b) if a in gpus and b in gpus else self.server.router.path(a, b)
            route = self.found[key] = self.server.links(path)
        return route

    def __contains__(self, key):
        if not (isinstance(key, tuple) and len(key) == 2):
            return False
        a, b = key
        gpus, hosts, remote = self.sets
        return (a in gpus and (b in gpus or b in hosts)) or (a in hosts and b in gpus) or \
            ((a in gpus or a in hosts) and b in remote)

    def __iter__(self):
        gpus, hosts = self.server.gpus, self.hosts
        yield from ((a, b) for a in gpus for b in gpus)
        yield from ((a, h) for a in gpus for h in hosts)
        yield from ((h, a) for a in gpus for h in hosts)
        yield from ((a, b) for a in gpus + hosts for b in self.remote)

    def __len__(self):
        g, h = len(self.server.gpus), len(self.hosts)
        return g * g + 2 * g * h + (g + h) * len(self.remote)


class _Server:
    def __init__(self, graph):
        self.graph = graph
        self.router = Router(graph)
        self.g = graph.graph["gpus_per_node"]
        self.sockets = graph.graph["sockets_per_node"]
        self.local = ordered_subgraph(graph, (n for n, s in graph.nodes(data="server") if s == 0))
        self.gpus = [f"n0/gpu{j}" for j in range(self.g)]
        self.nics = sorted(n for n in self.local if graph.nodes[n]["kind"] == "nic")
        self.cpus = sorted(n for n in self.local if graph.nodes[n]["kind"] == "cpu")
        self.nvl = nx.DiGraph((u, v) for u, v, k in self.local.edges(data="kind") if k == "nvlink")

    def gpu_path(self, a, b):
        """Over NVLink alone when the two GPUs are joined by it, else the router's route."""
        if a in self.nvl and b in self.nvl and nx.has_path(self.nvl, a, b):
            return nx.shortest_path(self.nvl, a, b)
        return self.router.path(a, b)

    def socket(self, node):
        if not self.cpus:
            return 0
        hops = nx.single_source_shortest_path_length(self.local.to_undirected(as_view=True), node)
        return min(range(len(self.cpus)), key=lambda c: (hops.get(self.cpus[c], 1 << 30), c))

    def nic_of(self, gpu):
        if self.graph.graph["nodes"] > 1:
            return next(v for v in self.router.path(gpu, "n1/gpu0") if self.graph.nodes[v]["kind"] == "nic")
        return self.nics[0]

    def facts(self):
        g, graph = self.g, self.graph
        paths = tuple(tuple(path_class(graph, self.gpu_path(a, b)) for b in self.gpus) for a in self.gpus)
        gpu_nics = [self.nic_of(gpu) for gpu in self.gpus]
        return ServerFacts(
            gpus=g, sockets=self.sockets,
            gpu_sockets=tuple(self.socket(gpu) for gpu in self.gpus),
            nic_sockets=tuple(self.socket(nic) for nic in self.nics),
            nvlink_pairs=tuple(tuple(p) for p in graph.graph.get("nvlink_pairs", ())),
            gpu_paths=paths,
            gpu_nics=tuple(nic.split("/", 1)[1] for nic in gpu_nics),
            nic_paths=tuple(path_class(graph, self.router.path(gpu, nic)) for gpu, nic in zip(self.gpus, gpu_nics)),
            cpu_model=graph.graph.get("cpu_model"), gpu_model=graph.graph.get("gpu_model"),
        )

    def links(self, path):
        graph = self.graph
        return tuple(Link(f"{u}->{v}", graph.edges[u, v].get("kind"), graph.edges[u, v]["bandwidth"],
                          graph.nodes[u].get("server") is None or graph.nodes[v].get("server") is None)
                     for u, v in zip(path, path[1:]))

