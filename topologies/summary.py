"""What a topology holds: counts, capacities, bisection bandwidth, and a drawing.

>>> from flyersim.topologies import load
>>> s = summary(load("single-switch", nodes=2))
>>> s["gpus"], s["nodes_by_kind"]["switch"], s["bisection_bandwidth"]
(8, 1, 25000000000.0)
"""

import math

import networkx as nx

from .units import GB

POOLS = ("bandwidth", "reduce_bandwidth", "p2p_bandwidth", "latency", "reduce_latency",
              "reduce_stream_bandwidth", "store_bandwidth", "p2p_gpu_bandwidth")


def summary(graph):
    """A dict of counts by kind, distinct capacities per class, and bisection bandwidth.

    Bisection bandwidth is a max-flow (bytes/s, one direction) over the
    network links from the NICs of servers ``0 .. n/2-1`` to those of the
    rest: the cut between the two halves in server order (for a multi-zone
    fat-tree, the inter-zone links), not the minimum over all bisections.
    """
    kinds, pools = {}, {}
    for _, attrs in graph.nodes(data=True):
        kinds[attrs["kind"]] = kinds.get(attrs["kind"], 0) + 1
        for pool in POOLS:
            if pool in attrs:
                pools.setdefault(attrs["kind"], {}).setdefault(pool, set()).add(attrs[pool])
    links = {}
    for a, b, attrs in graph.edges(data=True):
        if a < b:
            entry = links.setdefault(attrs["kind"], {"count": 0, "bandwidth": set(), "latency": set()})
            entry["count"] += 1
            entry["bandwidth"].add(attrs["bandwidth"])
            entry["latency"].add(attrs["latency"])
    return {
        "name": graph.graph["name"], "shape": graph.graph.get("shape"),
        "servers": graph.graph["nodes"], "gpus": kinds.get("gpu", 0),
        "zones": graph.graph.get("zones", 1),
        "nodes_by_kind": dict(sorted(kinds.items())),
        "links": sum(entry["count"] for entry in links.values()),
        "links_by_kind": {k: {"count": v["count"], "bandwidth": sorted(v["bandwidth"]),
                              "latency": sorted(v["latency"])} for k, v in sorted(links.items())},
        "pools": {k: {p: sorted(v) for p, v in sorted(d.items())} for k, d in sorted(pools.items())},
        "bisection_bandwidth": bisection_bandwidth(graph),
    }


def bisection_bandwidth(graph):
    """Max-flow in bytes/s from the first half of the servers to the second (0 for one server)."""
    servers = graph.graph["nodes"]
    if servers < 2:
        return 0.0
    network = nx.DiGraph()
    for a, b, bandwidth in graph.edges(data="bandwidth"):
        if graph.nodes[a]["kind"] in ("nic", "switch") and graph.nodes[b]["kind"] in ("nic", "switch"):
            network.add_edge(a, b, capacity=bandwidth)
    for nic in [n for n in network if graph.nodes[n]["kind"] == "nic"]:
        if graph.nodes[nic]["server"] < servers // 2:
            network.add_edge("_source", nic)
        else:
            network.add_edge(nic, "_sink")
    return float(nx.maximum_flow_value(network, "_source", "_sink"))


def format_summary(info):
    """A printable form of :func:`summary`; bandwidths in GB/s, latencies in us.

    >>> from flyersim.topologies import load
    >>> print(format_summary(summary(load("ring", nodes=2))).splitlines()[0])
    ring (ring): 2 servers, 8 GPUs, 1 zone, 13 links, bisection 25 GB/s
    """
    def bw(values):
        return "/".join(f"{v / GB:g}" for v in values)

    def lat(values):
        return "/".join(f"{v * 1e6:g}" for v in values)

    def count(n, word):
        return f"{n} {word}{'s' * (n != 1)}"

    lines = [f"{info['name']} ({info['shape']}): {count(info['servers'], 'server')}, {count(info['gpus'], 'GPU')}, "
             f"{count(info['zones'], 'zone')}, {count(info['links'], 'link')}, "
             f"bisection {info['bisection_bandwidth'] / GB:g} GB/s",
             "nodes: " + ", ".join(f"{k} {v}" for k, v in info["nodes_by_kind"].items())]
    for kind, entry in info["links_by_kind"].items():
        lines.append(f"  link {kind}: {entry['count']} x {bw(entry['bandwidth'])} GB/s, "
                     f"{lat(entry['latency'])} us")
    for kind, pools in info["pools"].items():
        parts = [f"{p} {lat(v) + ' us' if p.endswith('latency') else bw(v) + ' GB/s'}"
                 for p, v in pools.items()]
        lines.append(f"  {kind}: " + ", ".join(parts))
    return "\n".join(lines)


def draw(graph, path_png, label_up_to=32):
    """Save a drawing: servers with their GPUs below, switches in tiers above, network links between.

    Servers and switches are named when there are at most ``label_up_to`` of them; the GPUs of each
    server hang below it (around it on a switchless ring or torus) while there are at most 1,024 GPUs.
    Returns the artists' counts ``{"servers", "gpus", "switches"}``.

    >>> import os, tempfile
    >>> from flyersim.topologies import load
    >>> draw(load("fireflyer2", gpus=16), os.path.join(tempfile.mkdtemp(), "t.png"))
    {'servers': 2, 'gpus': 16, 'switches': 21}
    """
    import matplotlib  # only here: drawing is rare and matplotlib takes half a second to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    servers, g = graph.graph["nodes"], graph.graph["gpus_per_node"]
    collapsed = nx.Graph()
    for i in range(servers):
        collapsed.add_node(f"n{i}", tier=0)
    for a, b in graph.edges():
        ka, kb = graph.nodes[a]["kind"], graph.nodes[b]["kind"]
        if a < b and {ka, kb} <= {"nic", "switch"}:
            collapsed.add_edge(_dot(graph, a), _dot(graph, b))
    switches = [n for n in collapsed if n in graph and graph.nodes[n]["kind"] == "switch"]
    if switches:
        tiers = nx.multi_source_dijkstra_path_length(collapsed, [n for n in collapsed if n not in switches])
        rows = {}
        for n in collapsed:
            rows.setdefault(tiers.get(n, 0), []).append(n)
        pos = {n: ((k + 0.5) / len(row), tier) for tier, row in rows.items() for k, n in enumerate(row)}
        spread = 0.8 / max(servers, 1)  # a server's GPUs share its slot, in a row below it

        def gpu_at(x, y, j):
            return x + spread * ((j + 0.5) / g - 0.5), y - 0.45
    else:
        pos = nx.circular_layout(collapsed)
        radius = 0.9 * math.sin(math.pi / max(servers, 2)) / 2  # a ring of GPUs around each server

        def gpu_at(x, y, j):
            return x + radius * math.cos(2 * math.pi * j / g), y + radius * math.sin(2 * math.pi * j / g)
    fig, ax = plt.subplots(figsize=(12, 6 if switches else 8))
    ax.add_collection(LineCollection([(pos[a], pos[b]) for a, b in collapsed.edges()],
                                     linewidths=0.3, colors="0.6", alpha=0.6))
    show_gpus = servers * g <= 1024
    if show_gpus:
        gpus = [(pos[f"n{i}"], gpu_at(*pos[f"n{i}"], j)) for i in range(servers) for j in range(g)]
        ax.add_collection(LineCollection(gpus, linewidths=0.3, colors="tab:green", alpha=0.5))
        ax.scatter([b[0] for _, b in gpus], [b[1] for _, b in gpus], s=6, c="tab:green", zorder=2,
                   label=f"GPU ({g} per server)")
    pad = 6  # points between the title and the top row's labels
    for is_switch, color, size, what in ((False, "tab:blue", 14, "server"), (True, "tab:red", 20, "switch")):
        nodes = [n for n in collapsed if (n in switches) == is_switch]
        if not nodes:
            continue
        ax.scatter([pos[n][0] for n in nodes], [pos[n][1] for n in nodes], s=size, c=color,
                   label=f"{what} ({len(nodes)})", zorder=3)
        if len(nodes) <= label_up_to:
            crowded = {n for n in nodes if sum(abs(pos[m][1] - pos[n][1]) < 1e-9 for m in nodes) > 10}
            pad = max(pad, 60 if crowded else 16)
            for n in nodes:
                ax.annotate(n, pos[n], textcoords="offset points", xytext=(0, 6), ha="center", va="bottom",
                            fontsize=7, rotation=90 if n in crowded else 0)
    ax.set_title(f"{graph.graph['name']} ({graph.graph.get('shape')}): {servers} server{'s' * (servers != 1)}, "
                 f"{servers * g} GPUs, {len(switches)} switch{'es' * (len(switches) != 1)}"
                 + ("" if show_gpus else " (GPUs not drawn above 1,024)"), pad=pad)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    ax.set_axis_off()
    ax.autoscale_view()
    fig.savefig(path_png, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return {"servers": servers, "gpus": servers * g if show_gpus else 0, "switches": len(switches)}


def _dot(graph, node):
    server = graph.nodes[node]["server"]
    return node if server is None else f"n{server}"
