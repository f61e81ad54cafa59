"""Hardware descriptions of GPU clusters as ``networkx.DiGraph`` topologies.

>>> g = load("fireflyer2", gpus=16)
>>> g.graph["nodes"], g.graph["zones"], g.nodes["n0/host1"]["engine"]
(2, 1, 'n0/cpu1')
>>> Router(g).path("n0/gpu0", "n0/host1")
['n0/gpu0', 'n0/rp0', 'n0/cpu0', 'n0/cpu1', 'n0/host1']
"""

from .build import build, element_bound
from .config import preset_names, read, read_text
from .errors import TopologyError
from .routing import Router
from .summary import draw, format_summary, summary
from .validate import validate

__all__ = ["load", "loads", "preset_names", "validate", "Router", "summary", "format_summary", "draw",
           "TopologyError"]


def load(preset_or_path, *, gpus=None, nodes=None, zones=None, overrides=None, check_size=None):
    """The validated topology of a preset name or ``.toml`` path.

    ``gpus`` (a multiple of the GPUs per server) or ``nodes`` sets the size,
    ``zones`` forces the number of fat-tree zones, and ``overrides`` maps dotted
    TOML keys to values, e.g. ``{"parameters.xgmi_bandwidth": "96GB/s"}``.
    ``check_size(what, elements)``, if given, is called before anything is built
    with an upper bound on the graph's nodes plus links, and raises to refuse it.

    >>> load("ring", gpus=10)
    Traceback (most recent call last):
    ...
    flyersim.topologies.errors.TopologyError: gpus=10 is not a multiple of the 4 GPUs per server of ring
    """
    spec = read(preset_or_path, overrides)
    if gpus is not None:
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1 or gpus % spec.gpus:
            raise TopologyError(f"gpus={gpus} is not a multiple of the {spec.gpus} GPUs per server of {spec.name}")
        if nodes is not None and nodes != gpus // spec.gpus:
            raise TopologyError(f"gpus={gpus} and nodes={nodes} disagree ({spec.gpus} GPUs per server)")
        nodes = gpus // spec.gpus
    if nodes is not None and (isinstance(nodes, bool) or not isinstance(nodes, int)):
        raise TopologyError(f"nodes must be a whole number, got {nodes!r}")
    try:
        if check_size is not None:
            servers = spec.nodes if nodes is None else nodes
            where = spec.name if str(preset_or_path) == spec.name else f"{preset_or_path}: {spec.name}"
            check_size(f"{where} with {servers} server{'s' * (servers != 1)}", element_bound(spec, max(servers, 1)))
        return validate(build(spec, nodes=nodes, zones=zones))
    except TopologyError as err:  # name the file or preset, as read() does
        raise TopologyError(f"{preset_or_path}: {err}") from None


def loads(text, *, where="<text>"):
    """The validated topology of TOML text, e.g. what ``flyersim calibrate`` writes (no file needed)."""
    return validate(build(read_text(text, where)))
