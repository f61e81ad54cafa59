"""Read a cluster description (TOML) into a checked, unit-parsed :class:`Spec`.

A file may name a ``base`` (preset or path) whose tables it deep-merges over;
``overrides`` (dotted keys) apply last.  Unit strings are parsed here, named
``[parameters]`` are substituted where a value reads ``"$name"``, and every
key is checked so a typo is an error, never silently ignored.

An uncertain parameter carries its plausible range beside its value,
``xgmi_bandwidth = { value = "96GB/s", range = ["64GB/s", "128GB/s"] }``; the
range is parsed with the value's units and must hold the value.
:attr:`Spec.ranges` lists the ranges of the parameters the description uses
(``flyersim sensitivity`` sweeps them).

>>> spec = read("ring", overrides={"network.link_bandwidth": "100Gb/s"})
>>> spec.network["shape"], spec.network["link_bandwidth"]
('ring', 12500000000.0)
>>> read("fireflyer2").ranges["xgmi_bandwidth"]
(64000000000.0, 108000000000.0)
>>> read("ring", overrides={"network.link_bandwith": "1GB/s"})
Traceback (most recent call last):
...
flyersim.topologies.errors.TopologyError: ring: unknown key 'network.link_bandwith' (ring network keys: link_bandwidth, link_latency, shape)
"""

import copy
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import TopologyError
from .facts import CPU_MODELS, GPU_MODELS
from .units import parse_bandwidth, parse_time

def parse_count(value):
    """A whole number >= 1 (threads, buffers), as a float like every other parsed value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise ValueError(f"expected a whole number >= 1, got {value!r}")
    return float(value)


POOLS = {
    "bandwidth": parse_bandwidth, "reduce_bandwidth": parse_bandwidth,
    "p2p_bandwidth": parse_bandwidth, "latency": parse_time, "reduce_latency": parse_time,
}
# CPU socket engines given as threads x per-thread rate (see sim.routes): key -> (threads, rate)
THREAD_POOLS = {
    "store_bandwidth": ("store_threads", "store_thread_bandwidth"),
    "reduce_stream_bandwidth": ("reduce_threads", "reduce_thread_bandwidth"),
}
CPU_KEYS = {"p2p_gpu_bandwidth": parse_bandwidth, "store_threads": parse_count,
            "store_thread_bandwidth": parse_bandwidth, "reduce_threads": parse_count,
            "reduce_thread_bandwidth": parse_bandwidth}
DEVICE_PREFIX = {  # kind -> name prefix of a server.device entry
    "memory": "host", "cpu": "cpu", "rootport": "rp", "nic": "nic",
    "pcieswitch": "pciesw", "nvswitch": "nvswitch",
}
_TOP_KEYS = {"name", "description", "base", "nodes", "parameters", "server", "network", "nccl", "mpi"}
MPI_KEYS = {"message_latency": "time", "copy_latency": "time", "pair_bandwidth": "bandwidth"}  # [mpi] (sim.routes)
NCCL_KEYS = {"version", "net_gdr_level"}  # the NCCL a cluster runs: release, NCCL_NET_GDR_LEVEL
NCCL_PATH_LEVELS = ("LOC", "NVL", "PIX", "PXB", "PHB", "SYS")  # NCCL src/graph/topo.h PATH_* names
_SERVER_KEYS = {"gpus", "sockets", "nvlink_pairs", "nvlink_bandwidth", "nvlink_latency",
                "gpu", "device", "link", "cpu_model", "gpu_model"}
_GPU_KEYS = {"bandwidth", "reduce_bandwidth", "latency", "reduce_latency"}
_DEVICE_KEYS = {"name", "kind", "engine", *POOLS, *CPU_KEYS}
_LINK_KEYS = {"ends", "bandwidth", "latency", "kind"}
_NET_COMMON = {"shape", "link_bandwidth", "link_latency"}
NETWORK_KEYS = {  # shape -> allowed keys
    "single-switch": _NET_COMMON | {"switch_latency", "switch_bandwidth", "radix"},
    "fat-tree": _NET_COMMON | {"switch_latency", "switch_bandwidth", "uplink_bandwidth", "radix", "levels",
                               "oversubscription", "rails", "zones", "interzone_switches"},
    "ring": _NET_COMMON,
    "torus": _NET_COMMON | {"dims"},
}


@dataclass
class Spec:
    """A parsed description: SI floats everywhere, devices as plain dicts."""
    name: str
    nodes: int
    gpus: int
    sockets: int
    nvlink_pairs: tuple
    nvlink: dict      # {"bandwidth", "latency"} or {} when unset
    gpu: dict         # pool attributes shared by every GPU
    devices: list     # [{"name", "kind", **pools, "engine"?}]
    links: list       # [{"ends", "bandwidth", "latency", "kind"}]
    network: dict     # shape-specific keys, parsed
    cpu_model: str = None  # a key of facts.CPU_MODELS, None when not stated
    gpu_model: str = None  # a key of facts.GPU_MODELS, None when not stated
    nccl: dict = None   # {"version": (2, 10), "net_gdr_level": "PHB"}, the keys given in [nccl]
    mpi: dict = None    # {"message_latency": s, "copy_latency": s}, the keys given in [mpi]
    ranges: dict = None  # parameter -> (low, high), parsed, for the parameters used that declare a range


def preset_names():
    """Names of the shipped presets.

    >>> "fireflyer2" in preset_names() and "ring" in preset_names()
    True
    """
    folder = resources.files("flyersim.topologies.presets")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def read(preset_or_path, overrides=None):
    """The :class:`Spec` of a preset name or ``.toml`` path, with ``overrides`` applied.

    An error names the file (or preset) and the key or rule broken.
    """
    ref = str(preset_or_path)
    raw = _load_raw(ref, seen=())
    for key, value in (overrides or {}).items():
        _override(raw, key, value)
    try:
        return _parse(raw)
    except TopologyError as err:
        raise TopologyError(f"{ref}: {err}") from None


MAX_DEPTH = 6  # tables and arrays nested deeper than this are no topology (the deepest real key: 4)


def _loads(text, where):
    """TOML text as a dict; malformed, binary or absurdly nested text is one TopologyError naming ``where``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise TopologyError(f"{where}: malformed TOML: {err}") from None
    except RecursionError:
        raise TopologyError(f"{where}: arrays or tables nested hundreds deep (at most {MAX_DEPTH} make sense)") from None
    depth = _depth(raw)
    if depth > MAX_DEPTH:
        raise TopologyError(f"{where}: arrays or tables nested {depth} deep (at most {MAX_DEPTH} make sense)")
    return raw


def _depth(value):
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def read_text(text, where="<text>"):
    """The :class:`Spec` of TOML ``text`` (no ``base``), e.g. a topology a program wrote.

    >>> text = '[server]\\ngpus = 1\\n[network]\\nshape = "ring"\\nlink_bandwidth = "1GB/s"\\nlink_latency = "1us"'
    >>> read_text(text).network["link_bandwidth"]
    1000000000.0
    """
    raw = _loads(text, where)
    if "base" in raw:
        raise TopologyError(f"{where}: 'base' needs a file or preset to resolve from")
    try:
        return _parse(raw)
    except TopologyError as err:
        raise TopologyError(f"{where}: {err}") from None


def _load_raw(ref, seen):
    if ref.endswith(".toml") or "/" in ref:
        path = Path(ref)
        if not path.is_file():
            raise TopologyError(f"no such topology file {ref!r}")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise TopologyError(f"{ref}: not a TOML text file (not UTF-8)") from None
    elif ref in preset_names():
        path = None
        text = resources.files("flyersim.topologies.presets").joinpath(ref + ".toml").read_text()
    else:
        raise TopologyError(f"unknown preset {ref!r} (choices: {', '.join(preset_names())})")
    if ref in seen:
        raise TopologyError(f"'base' cycle: {' -> '.join((*seen, ref))}")
    raw = _loads(text, ref)
    if "base" not in raw:
        return raw
    base_ref = raw["base"]
    if not isinstance(base_ref, str):
        raise TopologyError(f"{ref}: base: must be a preset name or .toml path, got {base_ref!r}")
    if path is not None and (base_ref.endswith(".toml") or "/" in base_ref):
        base_ref = str(path.parent / base_ref)
    return _merge(_load_raw(base_ref, (*seen, ref)), raw)


def _merge(base, top):
    """``top`` deep-merged over ``base``; a network of another shape replaces the base's."""
    out = copy.deepcopy(base)
    out.pop("base", None)
    for key, value in top.items():
        if key == "network" and value.get("shape", out.get("network", {}).get("shape")) \
                != out.get("network", {}).get("shape"):
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _override(raw, dotted, value):
    """Set ``raw[a][b]... = value``; a list of named tables is indexed by name."""
    *parents, last = dotted.split(".")
    node = raw
    for part in parents:
        if isinstance(node, list):
            named = [item for item in node if isinstance(item, dict) and item.get("name") == part]
            if not named:
                raise TopologyError(f"override {dotted!r}: no entry named {part!r}")
            node = named[0]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise TopologyError(f"override {dotted!r}: {part!r} is not a table")
    if not isinstance(node, dict):
        raise TopologyError(f"override {dotted!r}: {parents[-1]!r} is not a table")
    if parents == ["parameters"] and last not in node:
        raise TopologyError(f"override {dotted!r}: no such parameter "
                            f"(known: {', '.join(sorted(node)) or 'none'})")
    node[last] = value


def _check_keys(table, allowed, where, what):
    for key in table:
        if key not in allowed:
            raise TopologyError(f"unknown key '{where}{key}' ({what} keys: {', '.join(sorted(allowed))})")


class _Values:
    """Resolves ``$parameter`` references and parses units, naming the key on error."""

    def __init__(self, parameters):
        self.parameters = parameters
        self.ranges = {}

    def get(self, value, parser, where, optional=False):
        if isinstance(value, str) and value.startswith("$"):
            name = value[1:]
            if name not in self.parameters:
                raise TopologyError(f"{where}: unknown parameter {value!r} "
                                    f"(known: {', '.join(sorted(self.parameters)) or 'none'})")
            value = self.parameters[name]
            if isinstance(value, dict):
                return self._ranged(name, value, parser, where, optional)
        return self._parse(value, parser, where, optional)

    def _ranged(self, name, table, parser, where, optional):
        """The value of ``{ value = ..., range = [low, high] }``; records the parsed range."""
        _check_keys(table, {"value", "range"}, f"parameters.{name}.", "ranged parameter")
        bounds = table.get("range")
        if not (isinstance(bounds, list) and len(bounds) == 2):
            raise TopologyError(f"parameters.{name}.range: must be [low, high], got {bounds!r}")
        value = self._parse(table.get("value"), parser, f"parameters.{name}.value", optional)
        low, high = (self._parse(b, parser, f"parameters.{name}.range", False) for b in bounds)
        if value is not None and not low <= value <= high:
            raise TopologyError(f"parameters.{name}: value {table['value']!r} is outside its range {bounds}")
        self.ranges[name] = (low, high)
        return value

    def _parse(self, value, parser, where, optional):
        if value is None or value == "none":
            if optional:
                return None
            raise TopologyError(f"{where}: a value is required, got {value!r}")
        try:
            parsed = parser(value)
        except (ValueError, TypeError) as err:
            raise TopologyError(f"{where}: {err}") from None
        if parsed < 0 or (parsed == 0 and parser is parse_bandwidth):
            raise TopologyError(f"{where}: must be positive, got {value!r}")
        return parsed

    def pools(self, table, keys, where):
        out = {}
        for key in keys & table.keys():
            value = self.get(table[key], POOLS[key], f"{where}.{key}", optional=True)
            if value is not None:
                out[key] = value
        return out


MAX_SERVER_GPUS = 1024  # an NVL72 rack has 72; a bigger "server" is a typo for nodes


def _integer(value, where, minimum):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise TopologyError(f"{where}: must be a whole number >= {minimum}, got {value!r}")
    return value


def _parse(raw):
    _check_keys(raw, _TOP_KEYS, "", "top-level")
    for table in ("server", "network"):
        if not isinstance(raw.get(table), dict):
            raise TopologyError(f"missing [{table}] table")
    values = _Values(raw.get("parameters", {}))
    server, net = raw["server"], raw["network"]
    _check_keys(server, _SERVER_KEYS, "server.", "server")
    _check_keys(server.get("gpu", {}), _GPU_KEYS, "server.gpu.", "server.gpu")
    gpus = _integer(server.get("gpus"), "server.gpus", 1)
    if gpus > MAX_SERVER_GPUS:
        raise TopologyError(f"server.gpus: {gpus} GPUs in one server (at most {MAX_SERVER_GPUS}; describe more "
                            f"servers with 'nodes' instead)")
    devices = [_device(d, values) for d in server.get("device", [])]
    links = [_link(link, values) for link in server.get("link", [])]
    pairs = tuple(tuple(p) for p in server.get("nvlink_pairs", []))
    for k, pair in enumerate(pairs):
        if len(pair) != 2 or not all(isinstance(g, int) and not isinstance(g, bool) and 0 <= g < gpus for g in pair):
            raise TopologyError(f"server.nvlink_pairs: {list(pair)} is not a pair of GPU indices 0..{gpus - 1}")
        if pair[0] == pair[1]:
            raise TopologyError(f"server.nvlink_pairs: {list(pair)} links a GPU to itself")
        if any(set(pair) == set(other) for other in pairs[:k]):
            raise TopologyError(f"server.nvlink_pairs: {list(pair)} appears twice (each bridge once)")
    nvlink = {}
    if pairs:
        nvlink = {"bandwidth": values.get(server.get("nvlink_bandwidth"), parse_bandwidth,
                                          "server.nvlink_bandwidth"),
                  "latency": values.get(server.get("nvlink_latency", 0), parse_time,
                                        "server.nvlink_latency")}
    return Spec(
        name=str(raw.get("name", "custom")),
        nodes=_integer(raw.get("nodes", 1), "nodes", 1),
        gpus=gpus,
        sockets=_integer(server.get("sockets", 1), "server.sockets", 1),
        nvlink_pairs=pairs, nvlink=nvlink,
        gpu=values.pools(server.get("gpu", {}), _GPU_KEYS, "server.gpu"),
        devices=devices, links=links, network=_network(net, values),
        cpu_model=_model(server, "cpu_model", CPU_MODELS), gpu_model=_model(server, "gpu_model", GPU_MODELS),
        nccl=_nccl(raw.get("nccl", {})), mpi=_mpi(raw.get("mpi", {}), values), ranges=values.ranges,
    )


def _mpi(table, values):
    """The ``[mpi]`` platform table, the message-passing library that runs the schedules (``sim.routes``):
    software cost per op by kind, ``message_latency`` per message and ``copy_latency`` per local copy;
    ``pair_bandwidth``, what it carries between two servers, both directions together.

    >>> _mpi({"message_latency": "10us"}, _Values({}))
    {'message_latency': 1e-05}
    """
    if not isinstance(table, dict):
        raise TopologyError("mpi: must be a table ([mpi])")
    _check_keys(table, MPI_KEYS, "mpi.", "mpi")
    parsers = {"time": parse_time, "bandwidth": parse_bandwidth}
    return {key: values.get(table[key], parsers[kind], f"mpi.{key}") for key, kind in MPI_KEYS.items()
            if key in table}


def _nccl(table):
    """The ``[nccl]`` platform table: ``version = "2.10"`` (a release, as a tuple) and ``net_gdr_level``.

    >>> _nccl({"version": "2.10.3", "net_gdr_level": "PHB"})
    {'version': (2, 10, 3), 'net_gdr_level': 'PHB'}
    """
    if not isinstance(table, dict):
        raise TopologyError("nccl: must be a table ([nccl])")
    _check_keys(table, NCCL_KEYS, "nccl.", "nccl")
    out = {}
    if "version" in table:
        text = table["version"]
        parts = text.split(".") if isinstance(text, str) else []
        if not (2 <= len(parts) <= 3 and all(p.isdigit() for p in parts)):  # 2.10 as a number would read 2.1
            raise TopologyError(f"nccl.version: expected a release as a string, \"2.10\" or 2.10.3, got {table['version']!r}")
        out["version"] = tuple(int(p) for p in parts)
    if "net_gdr_level" in table:
        if table["net_gdr_level"] not in NCCL_PATH_LEVELS:
            raise TopologyError(f"nccl.net_gdr_level: expected one of {', '.join(NCCL_PATH_LEVELS)}, "
                                f"got {table['net_gdr_level']!r}")
        out["net_gdr_level"] = table["net_gdr_level"]
    return out


def _model(server, key, known):
    value = server.get(key)
    if value is not None and value not in known:
        raise TopologyError(f"server.{key}: unknown model {value!r} (choices: {', '.join(known)})")
    return value


def _device(table, values):
    name = table.get("name", "?")
    where = f"server.device {name}"
    _check_keys(table, _DEVICE_KEYS, f"server.device.{name}.", "device")
    kind = table.get("kind")
    if kind not in DEVICE_PREFIX:
        raise TopologyError(f"{where}: unknown device kind {kind!r} "
                            f"(choices: {', '.join(DEVICE_PREFIX)}; GPUs come from server.gpus)")
    prefix = DEVICE_PREFIX[kind]
    if not (name.startswith(prefix) and name[len(prefix):].isdigit()):
        raise TopologyError(f"{where}: a {kind} must be named {prefix}<number>")
    device = {"name": name, "kind": kind, **values.pools(table, POOLS.keys(), where)}
    extra = CPU_KEYS.keys() & table.keys()
    if extra and kind != "cpu":
        raise TopologyError(f"{where}: {sorted(extra)[0]} applies to cpu devices only")
    for key in extra:
        parsed = values.get(table[key], CPU_KEYS[key], f"{where}.{key}", optional=True)
        if parsed is not None:
            device[key] = parsed
    for pool, (threads, rate) in THREAD_POOLS.items():
        if (threads in device) != (rate in device):
            raise TopologyError(f"{where}: {threads} and {rate} go together")
        if threads in device:
            device[pool] = device[threads] * device[rate]
    if "reduce_bandwidth" in device and "reduce_stream_bandwidth" in device:
        raise TopologyError(f"{where}: give reduce_bandwidth or reduce_threads x reduce_thread_bandwidth, not both")
    if "engine" in table:
        if kind != "memory":
            raise TopologyError(f"{where}: only memory devices have an engine")
        device["engine"] = table["engine"]
    return device


def _link(table, values):
    ends = table.get("ends")
    where = f"server.link {ends}"
    _check_keys(table, _LINK_KEYS, "server.link.", "link")
    if not (isinstance(ends, list) and len(ends) == 2 and all(isinstance(e, str) for e in ends)):
        raise TopologyError(f"{where}: ends must be two device names")
    if not isinstance(table.get("kind"), str):
        raise TopologyError(f"{where}: kind (pcie, xgmi, fabric, memory, ...) is required")
    return {"ends": tuple(ends), "kind": table["kind"],
            "bandwidth": values.get(table.get("bandwidth"), parse_bandwidth, f"{where}.bandwidth"),
            "latency": values.get(table.get("latency", 0), parse_time, f"{where}.latency")}


def _network(table, values):
    shape = table.get("shape")
    if shape not in NETWORK_KEYS:
        raise TopologyError(f"network.shape: unknown shape {shape!r} (choices: {', '.join(NETWORK_KEYS)})")
    _check_keys(table, NETWORK_KEYS[shape], "network.", f"{shape} network")
    out = {
        "shape": shape,
        "link_bandwidth": values.get(table.get("link_bandwidth"), parse_bandwidth, "network.link_bandwidth"),
        "link_latency": values.get(table.get("link_latency", 0), parse_time, "network.link_latency"),
        "switch_latency": values.get(table.get("switch_latency", 0), parse_time, "network.switch_latency"),
    }
    if "switch_bandwidth" in table:  # a switch's forwarding capacity, every port and direction together
        out["switch_bandwidth"] = values.get(table["switch_bandwidth"], parse_bandwidth, "network.switch_bandwidth")
    if "uplink_bandwidth" in table:  # a fat tree's links above the leaves, per direction
        out["uplink_bandwidth"] = values.get(table["uplink_bandwidth"], parse_bandwidth, "network.uplink_bandwidth")
    if shape == "single-switch":
        out["radix"] = _integer(table.get("radix", 1 << 30), "network.radix", 1)
    elif shape == "fat-tree":
        out["radix"] = _integer(table.get("radix"), "network.radix", 2)
        out["levels"] = table.get("levels", 2)
        if out["levels"] not in (2, 3):
            raise TopologyError(f"network.levels: must be 2 or 3, got {out['levels']!r}")
        over = table.get("oversubscription", 1)
        if isinstance(over, bool) or not isinstance(over, (int, float)) or not 0 < over < math.inf:
            raise TopologyError(f"network.oversubscription: must be a positive number, got {over!r}")
        out["oversubscription"] = float(over)
        out["rails"] = bool(table.get("rails", False))
        zones = table.get("zones", "auto")
        out["zones"] = zones if zones == "auto" else _integer(zones, "network.zones", 1)
        out["interzone_switches"] = _integer(table.get("interzone_switches", 2),
                                             "network.interzone_switches", 1)
    elif shape == "torus" and "dims" in table:
        dims = table["dims"]
        if not (isinstance(dims, list) and dims and all(isinstance(d, int) and d >= 1 for d in dims)):
            raise TopologyError(f"network.dims: must be a list of positive whole numbers, got {dims!r}")
        out["dims"] = tuple(dims)
    return out
