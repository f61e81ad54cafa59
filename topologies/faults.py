"""Name the parts of a cluster a what-if degrades, and fail network switches and links.

A *target* is written as resource names are: a component (``n3/gpu0``,
``n3/nic0``, ``z0/spine2``), one direction of a link (``n3/gpu0->n3/rp0``) or
both directions (``n3/gpu0<->n3/rp0``). :func:`target` checks it against a
graph; an unknown one is one error line saying what exists nearby.

:func:`fail` removes failed switches and cables (both directions) from a copy
of the graph, so routes avoid them; inside a server nothing fails (slow it
down instead). :func:`check_reachable` then names the ranks a failure cuts
off, when there are any.

>>> from flyersim.topologies import load
>>> g = load("fireflyer2", gpus=16)
>>> target(g, "n0/gpu0<->n0/rp0").links
(('n0/gpu0', 'n0/rp0'), ('n0/rp0', 'n0/gpu0'))
>>> target(g, "n1/nic0->z0/spine0")
Traceback (most recent call last):
...
flyersim.topologies.errors.TopologyError: no link n1/nic0->z0/spine0 (n1/nic0 links to n1/rp7, z0/leaf0)
>>> check_reachable(fail(g, ["n1/nic0<->z0/leaf0"]))
Traceback (most recent call last):
...
flyersim.topologies.errors.TopologyError: the collective cannot complete: ranks 8-15 (server n1) are cut off from the other 8 ranks by the failure of n1/nic0<->z0/leaf0
"""

from dataclasses import dataclass

import networkx as nx

from .errors import TopologyError

NETWORK_KINDS = ("switch", "nic")  # what --fail may name: switches, and the cables between network ports


@dataclass(frozen=True)
class Target:
    """A component (``node``, None for a link) and the directed links it names (a component: every link
    into or out of it)."""

    text: str
    node: str
    links: tuple


def target(graph, text):
    """The :class:`Target` ``text`` names in ``graph``; an unknown one is a :class:`TopologyError`.

    >>> from flyersim.topologies import load
    >>> t = target(load("fireflyer2", gpus=8), "n0/nic0")
    >>> t.node, t.links[:2]
    ('n0/nic0', (('n0/nic0', 'n0/rp7'), ('n0/nic0', 'z0/leaf0')))
    """
    text = str(text).strip()
    for sep in ("<->", "->"):
        if sep in text:
            a, _, b = text.partition(sep)
            a, b = a.strip(), b.strip()
            for node in (a, b):
                _known(graph, node)
            if not graph.has_edge(a, b):
                raise TopologyError(f"no link {a}{sep}{b} ({a} links to {', '.join(_neighbours(graph, a))})")
            return Target(text, None, ((a, b), (b, a)) if sep == "<->" else ((a, b),))
    _known(graph, text)
    links = [(text, v) for v in graph.successors(text)] + [(u, text) for u in graph.predecessors(text)]
    return Target(text, text, tuple(sorted(set(links), key=lambda e: (e[0] != text, e))))


def fail(graph, texts, keys=None):
    """A copy of ``graph`` without the failed switches and cables ``texts`` name (a NIC: its network cables).

    A cable fails in both directions, so ``a->b`` and ``a<->b`` name the same failure. An error names the
    text's entry of ``keys`` (a scenario's key), default ``--fail TEXT``.
    """
    out = graph.copy()
    for text, key in zip(texts, keys or [f"--fail {t}" for t in texts]):
        try:
            t = target(graph, text)
        except TopologyError as err:
            raise TopologyError(f"{key}: {err}") from None
        where = [t.node] if t.node else [v for link in t.links for v in link]
        inside = [v for v in where if graph.nodes[v]["kind"] not in NETWORK_KINDS]
        if inside:
            raise TopologyError(f"{key}: only network switches and cables fail ({inside[0]} is inside "
                                f"a server; slow it down with --slow instead)")
        if t.node and graph.nodes[t.node]["kind"] == "switch":
            out.remove_nodes_from([t.node])
            continue
        cables = t.links if not t.node else [(u, v) for u, v in t.links if _network(graph, u) and _network(graph, v)]
        for u, v in cables:
            for edge in ((u, v), (v, u)):
                if out.has_edge(*edge):
                    out.remove_edge(*edge)
    out.graph["failed"] = tuple(graph.graph.get("failed", ())) + tuple(texts)
    return out


def check_reachable(graph, servers=None, who=None, count_ranks=True):
    """Raise a :class:`TopologyError` naming the ranks cut off when the servers no longer all reach each other.

    The servers (``servers``, default all) are grouped by the piece of the
    network their NICs still reach; the piece with most of them (the first
    server's on a tie) runs the collective, and every other rank is cut off.
    With ``who`` (a job's name) the error names it and numbers the ranks in
    the order of ``servers``, as that job does; with ``count_ranks=False`` (flows
    between servers, no ranks) it names the servers only. Returns ``graph``.
    """
    nodes, per = graph.graph["nodes"], graph.graph["gpus_per_node"]
    used = sorted(set(range(nodes) if servers is None else servers))
    if len(used) < 2:
        return graph
    network = [n for n, kind in graph.nodes(data="kind") if kind in NETWORK_KINDS]
    piece = {}
    for k, members in enumerate(nx.connected_components(graph.subgraph(network).to_undirected(as_view=True))):
        for n in members:
            piece[n] = k
    reach = {}  # server -> the pieces its linked NICs are in
    for n in network:
        server = graph.nodes[n].get("server")
        if server is not None and any(_network(graph, m) for m in graph.successors(n)):
            reach.setdefault(server, set()).add(piece[n])
    reach = {s: reach.get(s, set()) for s in used}
    sizes = {}
    for pieces in reach.values():
        for k in pieces:
            sizes[k] = sizes.get(k, 0) + 1
    main = max(sorted(sizes), key=lambda k: (sizes[k], -min(s for s, p in reach.items() if k in p)), default=None)
    cut = [s for s in used if main not in reach[s]]
    if cut:
        order = list(servers) if who is not None else list(range(nodes))
        ranks = sorted(order.index(s) * per + j for s in cut for j in range(per))
        why = ", ".join(graph.graph.get("failed", ())) or "the topology"
        if not count_ranks:
            left = len(used) - len(cut)
            rest = f"its other {left} server{'s' * (left != 1)}" if left else "each other"
            raise TopologyError(f"{who} cannot complete: its {'server' if len(cut) == 1 else 'servers'} "
                                f"{spans(cut, 'n')} {'is' if len(cut) == 1 else 'are'} cut off from {rest} by the "
                                f"failure of {why}")
        rest = f"the other {(len(used) - len(cut)) * per} ranks" if len(cut) < len(used) else "each other"
        raise TopologyError(f"{'the collective' if who is None else who} cannot complete: "
                            f"{'its ' * (who is not None)}ranks {spans(ranks)} "
                            f"({'server' if len(cut) == 1 else 'servers'} {spans(cut, 'n')}) are cut off from "
                            f"{rest} by the failure of {why}")
    return graph


def spans(values, prefix="", sep=", "):
    """Sorted integers as ranges: ``spans([0, 1, 2, 5]) == '0-2, 5'``.

    >>> spans([0, 1, 2, 5, 7, 8], "n"), spans([0, 1, 2, 3, 7, 9, 10], "n", ",")
    ('n0-n2, n5, n7-n8', 'n0-n3,n7,n9-n10')
    """
    values, out, start = sorted(values), [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            out.append(f"{prefix}{start}" if start == v else f"{prefix}{start}-{prefix}{v}")
            start = None
    return sep.join(out)


def _network(graph, node):
    return graph.nodes[node]["kind"] in NETWORK_KINDS


def _known(graph, node):
    if node not in graph:
        g = graph.graph
        example = next((n for n, kind in graph.nodes(data="kind") if kind == "nic"), next(iter(graph), "?"))
        raise TopologyError(f"no component {node!r} in {g.get('name', 'the topology')} with {g.get('nodes')} "
                            f"servers (names as in --explain, e.g. n0/gpu0, {example}, n0/gpu0<->n0/rp0)")


def _neighbours(graph, node, shown=6):
    names = sorted(set(graph.successors(node)) | set(graph.predecessors(node)))
    return names if len(names) <= shown else names[:shown] + [f"... {len(names)} in all"]
