"""The scenario file: several jobs, background traffic and traffic classes on one cluster (TOML).

``flyersim run --scenario FILE.toml`` reads a file of these tables (commented
examples in ``experiments/scenarios/``):

- ``[topology]``: ``preset`` or ``file`` (a path relative to the scenario),
  ``gpus`` or ``nodes``, ``zones``, ``set`` (dotted overrides, as ``--set``).
- ``[classes]``: traffic classes, ``name = { weight = W, sl = N }``: an
  InfiniBand service level ``sl`` (0-15; one virtual lane) and its
  arbitration weight: InfiniBand links share between service levels by
  weight, and inside one max-min between its flows (see
  :mod:`sim.composite`, :mod:`sim.classes`). Without the table there is
  one class, ``default``, of weight 1.
- ``[[jobs]]``: ``name``; where it runs: ``servers = [0, 1, ...]``, or
  ``gpus`` (or ``nodes``) with ``placement = "packed" | "spread" | "random"``
  (``seed`` for random; :mod:`sim.placement`); what it runs: ``collective``
  (default allreduce), ``algo``, ``params`` (as ``--param``), ``size``,
  ``dtype``; when: ``repeat`` (collectives back to back, default 1),
  ``period`` (repeat k starts no earlier than ``start + k * period``),
  ``start``; ranks that start late, ``late = { 3 = "200us" }`` (rank 3 of
  the job, as ``flyersim run --late 3=200us``, in each of its collectives:
  its first ops are released that long after the collective's start); and
  its ``class``.
- ``[[background]]``: ordinary flows beside the jobs, ``kind =
  "storage-read"`` (each chosen server reads ``rate`` from storage nodes,
  ``storage_nodes`` of them on each leaf of ``storage_leaves``) or
  ``"all-to-all"`` (each chosen server sends ``rate`` spread evenly over the
  others); the servers are ``servers = [...]``, ``leaves = ["z0/leaf0"]``
  or ``jobs = ["name"]``; ``start``, ``duration`` and ``class``.
- ``[routing]``, ``[[faults]]``, ``[[stragglers]]``: ``policy = "ecmp"``
  (static routing by a stable hash, the default) or ``"adaptive"`` (every
  flow, background ones too, takes the least loaded of its equal-cost paths
  when it starts); failed switches and cables
  (``fail = "z0/spine3"``, as ``--fail``); slow parts (``slow = TARGET`` with
  ``factor`` or ``bandwidth``, as ``--slow``) and OS noise (``noise = MEAN``,
  ``seed``, as ``--noise``), read by :func:`sim.stragglers.read_tables` and
  applied by :func:`apply_faults`. (A rank that starts late is its job's
  ``late``; a whole job that starts late is its ``start``.)

Every key is checked: an unknown key, a bad number or a name used twice is
one ``ValueError`` naming the file and the key. Placement and the sizes
that need the cluster are checked when the scenario is run
(:mod:`sim.placement`).

>>> s = loads('''
... [topology]
... preset = "fireflyer2"
... gpus = 32
... [[jobs]]
... name = "a"
... gpus = 16
... algo = "hfreduce"
... size = "16MiB"
... repeat = 2
... late = { 3 = "200us" }
... ''')
>>> s.jobs[0].algo, s.jobs[0].size, s.jobs[0].repeat, s.jobs[0].placement, s.jobs[0].late, s.classes["default"].weight
('hfreduce', 16777216, 2, 'packed', ((3, 0.0002),), 1.0)
>>> loads('[topology]\\npreset = "fireflyer2"\\n[[jobs]]\\nname = "a"\\ngpus = 16\\nsize = "1MB"\\nrepeats = 2')
Traceback (most recent call last):
ValueError: <text>: unknown key 'jobs.a.repeats' (jobs keys: algo, class, collective, dtype, gpus, late, name, nodes, params, period, placement, repeat, seed, servers, size, start)
"""

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from flyersim.collectives.schedule import COLLECTIVES
from flyersim.sim.routes import ROUTING
from flyersim.sim.stragglers import check_time, read_tables
from flyersim.topologies.faults import check_reachable, fail
from flyersim.topologies.units import parse_bandwidth, parse_size, parse_time

PLACEMENTS = ("packed", "spread", "random")
BACKGROUND_KINDS = ("storage-read", "all-to-all")
DTYPES = ("float32", "float64", "float16", "int32")
DEFAULT_CLASS = "default"
MAX_SERVICE_LEVEL = 15  # InfiniBand has 16 service levels, SL0-SL15 (IBTA spec, vol. 1, 7.6.5)
MAX_REPEAT = 10**6
# Class weights: InfiniBand VL arbitration weights are 0..255 (IBTA spec, vol. 1, 7.6.9), so real ratios
# between classes stay within ~1e-3..1e3; beyond it the weighted max-min shares differ by more than float64
# keeps (1e308 never finished, 1e-300 gave a 3.5e300 us makespan).
MIN_WEIGHT, MAX_WEIGHT = 1e-3, 1e3

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # entry names: no '/', ',' or spaces (they name nodes)
_NODE_LIKE = re.compile(r"[nz][0-9]+")  # servers' and zones' names, the prefixes of their nodes (n3/gpu0, z0/leaf1)
_TOP = {"name", "description", "topology", "classes", "jobs", "background", "routing", "faults", "stragglers"}
_TOPOLOGY = {"preset", "file", "gpus", "nodes", "zones", "set"}
_CLASS = {"weight", "sl"}
_JOB = {"name", "servers", "gpus", "nodes", "placement", "seed", "collective", "algo", "params", "size", "dtype",
        "repeat", "period", "start", "late", "class"}
_BACKGROUND = {"name", "kind", "servers", "leaves", "jobs", "rate", "start", "duration", "class",
               "storage_leaves", "storage_nodes"}


@dataclass(frozen=True)
class Topology:
    """The cluster: a preset name or a topology file, its size and overrides."""

    ref: str
    gpus: int = None
    nodes: int = None
    zones: int = None
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrafficClass:
    name: str
    weight: float = 1.0
    sl: int = 0


@dataclass(frozen=True)
class Job:
    """One job: where (``servers``, or a count placed by ``placement``), what, when and in which class."""

    name: str
    algo: str
    size: int
    servers: tuple = None
    gpus: int = None
    nodes: int = None
    placement: str = "packed"
    seed: int = 0
    collective: str = "allreduce"
    params: dict = field(default_factory=dict)
    dtype: str = "float32"
    repeat: int = 1
    period: float = None
    start: float = 0.0
    cls: str = DEFAULT_CLASS
    late: tuple = ()  # ((rank, seconds), ...) by rank: as flyersim run --late, in each of its collectives


@dataclass(frozen=True)
class Background:
    """Background flows: ``kind`` on the servers chosen by ``servers``, ``leaves`` or ``jobs`` (one of them)."""

    name: str
    kind: str
    rate: float
    duration: float
    servers: tuple = None
    leaves: tuple = None
    jobs: tuple = None
    start: float = 0.0
    cls: str = DEFAULT_CLASS
    storage_leaves: tuple = ()
    storage_nodes: int = 1


@dataclass(frozen=True)
class Scenario:
    where: str
    name: str
    topology: Topology
    jobs: tuple
    background: tuple = ()
    classes: dict = field(default_factory=lambda: {DEFAULT_CLASS: TrafficClass(DEFAULT_CLASS)})
    routing: dict = field(default_factory=dict)
    faults: tuple = ()
    stragglers: tuple = ()


def load(path):
    """The :class:`Scenario` of a TOML file; a bad file is one ValueError naming it and the key."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--scenario: {str(path)!r} is a folder; give one of its .toml files")
    if not path.is_file():
        raise ValueError(f"--scenario: no such file {str(path)!r}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a TOML text file (not UTF-8)") from None
    return loads(text, str(path), base=path.parent)


def loads(text, where="<text>", base=None):
    """The :class:`Scenario` of TOML ``text``; ``base`` is the folder a topology ``file`` is relative to."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{where}: malformed TOML: {err}") from None
    except RecursionError:
        raise ValueError(f"{where}: arrays or tables nested hundreds deep") from None
    try:
        return _parse(raw, where, Path(base) if base is not None else Path("."))
    except _KeyError as err:
        raise ValueError(f"{where}: {err}") from None


class _KeyError(ValueError):
    """A bad value, already prefixed with its key."""


def _parse(raw, where, base):
    _keys(raw, _TOP, "", "top-level")
    topo = _table(raw.get("topology"), "topology")
    _keys(topo, _TOPOLOGY, "topology.", "topology")
    if ("preset" in topo) == ("file" in topo):
        raise _KeyError("topology: give one of preset or file")
    ref = _string(topo["preset"], "topology.preset") if "preset" in topo else \
        str(base / _string(topo["file"], "topology.file"))
    if "gpus" in topo and "nodes" in topo:
        raise _KeyError("topology: give gpus or nodes, not both")
    overrides = _table(topo.get("set", {}), "topology.set")
    topology = Topology(ref, _opt(topo, "gpus", _whole, "topology."), _opt(topo, "nodes", _whole, "topology."),
                        _opt(topo, "zones", _whole, "topology."), dict(overrides))
    classes = _classes(_table(raw.get("classes", {}), "classes"))
    jobs = _list(raw.get("jobs"), "jobs", "[[jobs]]")
    if not jobs:
        raise _KeyError("jobs: a scenario needs at least one [[jobs]] table")
    jobs = tuple(_job(t, i, classes) for i, t in enumerate(jobs))
    background = tuple(_background(t, i, classes) for i, t in enumerate(_list(raw.get("background", []),
                                                                               "background", "[[background]]")))
    names = [x.name for x in jobs + background]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise _KeyError(f"name {twice!r} is used twice (every job and background entry needs its own)")
    for bg in background:
        for name in bg.jobs or ():
            if name not in {j.name for j in jobs}:
                raise _KeyError(f"background.{bg.name}.jobs: no job named {name!r}")
    routing = _table(raw.get("routing", {}), "routing")
    faults = _list(raw.get("faults", []), "faults", "[[faults]]")
    stragglers = _list(raw.get("stragglers", []), "stragglers", "[[stragglers]]")
    try:
        read_tables(routing, faults, stragglers)
    except ValueError as err:
        raise _KeyError(str(err)) from None
    title = _string(raw["name"], "name") if "name" in raw else Path(where).stem
    if "description" in raw:
        _string(raw["description"], "description")
    return Scenario(where, title, topology, jobs, background, classes,
                    dict(routing), tuple(faults), tuple(stragglers))


def apply_faults(graph, scenario, router_class, groups=(), flows=()):
    """``(graph, router, routing policy, stragglers)`` under the scenario's ``[routing]``, ``[[faults]]`` and
    ``[[stragglers]]``: the graph without its failed parts, its router, the policy for
    :func:`sim.routes.build_routes` and the :class:`sim.stragglers.Stragglers` whose ``routes`` every part's
    routes go through. ``groups`` are ``(name, servers)`` pairs, one per job, and ``flows`` one per background
    entry: each must still reach its own servers (an error names it and its own ranks, or servers, cut off).
    No tables: ``graph`` itself, ``ecmp`` and no stragglers.
    """
    policy, failed, stragglers = read_tables(scenario.routing, scenario.faults, scenario.stragglers)
    if failed:
        graph = fail(graph, failed, [f"faults[{i}].fail ({t})" for i, t in enumerate(failed)])
        for name, servers in groups:
            check_reachable(graph, servers, name)
        for name, servers in flows:
            check_reachable(graph, servers, name, count_ranks=False)
    stragglers.check(graph)
    return graph, router_class(graph), policy, stragglers


# ---------------------------------------------------------------- tables

def _classes(table):
    out = {DEFAULT_CLASS: TrafficClass(DEFAULT_CLASS)}
    for name, spec in table.items():
        spec = _table(spec, f"classes.{name}")
        _keys(spec, _CLASS, f"classes.{name}.", "classes")
        weight = _opt(spec, "weight", _weight, f"classes.{name}.")
        sl = _opt(spec, "sl", _whole0, f"classes.{name}.")
        if sl is not None and sl > MAX_SERVICE_LEVEL:
            raise _KeyError(f"classes.{name}.sl: a service level is 0..{MAX_SERVICE_LEVEL}, got {sl}")
        out[name] = TrafficClass(name, 1.0 if weight is None else weight, sl or 0)
    by_sl = {}
    for c in out.values():  # one SL, one arbitration weight: two weights on one SL contradict each other
        other = by_sl.setdefault(c.sl, c)
        if other.weight != c.weight:
            raise _KeyError(f"classes.{c.name}: SL{c.sl} already has weight {other.weight:g} (class {other.name}"
                            f"{', SL0 weight 1 without a table' * (other.name == DEFAULT_CLASS)}); give it "
                            f"weight {other.weight:g} or another sl")
    return out


def _entry_name(table, i, what):
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _KeyError(f"{what}[{i}].name: every entry needs a name of letters, digits, '_', '-' and '.', "
                        f"starting with a letter or digit, got {name!r}")
    if _NODE_LIKE.fullmatch(name):
        raise _KeyError(f"{what}[{i}].name: {name!r} is a server's or zone's name (n0, z1, ...), the prefix of "
                        f"its nodes, and storage nodes are named after their entry; choose another")
    return name


def _cls(table, where, classes):
    name = table.get("class", DEFAULT_CLASS)
    if name not in classes:
        raise _KeyError(f"{where}class: unknown class {name!r} (classes: {', '.join(classes)})")
    return name


def _job(table, i, classes):
    table = _table(table, f"jobs[{i}]")
    name = _entry_name(table, i, "jobs")
    at = f"jobs.{name}."
    _keys(table, _JOB, at, "jobs")
    where = [k for k in ("servers", "gpus", "nodes") if k in table]
    if len(where) != 1:
        raise _KeyError(f"jobs.{name}: give one of servers, gpus or nodes (where it runs), got "
                        f"{', '.join(where) or 'none'}")
    if "servers" in table and ("placement" in table or "seed" in table):
        raise _KeyError(f"jobs.{name}: explicit servers take no placement or seed")
    placement = table.get("placement", "packed")
    if placement not in PLACEMENTS:
        raise _KeyError(f"{at}placement: unknown policy {placement!r} (choose from {', '.join(PLACEMENTS)})")
    if "seed" in table and placement != "random":
        raise _KeyError(f"{at}seed: only a random placement takes a seed")
    collective = table.get("collective", "allreduce")
    if collective not in COLLECTIVES:
        raise _KeyError(f"{at}collective: unknown collective {collective!r} (choose from {', '.join(COLLECTIVES)})")
    if "algo" not in table:
        raise _KeyError(f"{at}algo: every job names its algorithm")
    dtype = table.get("dtype", "float32")
    if dtype not in DTYPES:
        raise _KeyError(f"{at}dtype: unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    if "size" not in table:
        raise _KeyError(f"{at}size: every job gives its message size per GPU, e.g. \"186MiB\"")
    size = _value(table["size"], parse_size, f"{at}size")
    if size <= 0:
        raise _KeyError(f"{at}size: must be positive, got {table['size']!r}")
    repeat = _opt(table, "repeat", _whole, at)
    if repeat is not None and repeat > MAX_REPEAT:
        raise _KeyError(f"{at}repeat: at most {MAX_REPEAT}, got {repeat}")
    period = _opt(table, "period", _time, at)
    if period is not None and period <= 0:
        raise _KeyError(f"{at}period: must be positive, got {table['period']!r}")
    if period is not None and (repeat or 1) == 1:
        raise _KeyError(f"{at}period: spaces repeats, and the job runs once (give repeat > 1 or drop period)")
    return Job(name=name, algo=_string(table["algo"], f"{at}algo"), size=size,
               servers=_servers(table["servers"], f"{at}servers") if "servers" in table else None,
               gpus=_opt(table, "gpus", _whole, at), nodes=_opt(table, "nodes", _whole, at), placement=placement,
               seed=_opt(table, "seed", _whole0, at) or 0, collective=collective,
               params=dict(_table(table.get("params", {}), f"{at}params")), dtype=dtype, repeat=repeat or 1,
               period=period, start=_opt(table, "start", _time, at) or 0.0, cls=_cls(table, at, classes),
               late=_late(table["late"], f"{at}late") if "late" in table else ())


def _background(table, i, classes):
    table = _table(table, f"background[{i}]")
    name = _entry_name(table, i, "background")
    at = f"background.{name}."
    _keys(table, _BACKGROUND, at, "background")
    kind = table.get("kind")
    if kind not in BACKGROUND_KINDS:
        raise _KeyError(f"{at}kind: unknown kind {kind!r} (choose from {', '.join(BACKGROUND_KINDS)})")
    where = [k for k in ("servers", "leaves", "jobs") if k in table]
    if len(where) != 1:
        raise _KeyError(f"background.{name}: give one of servers, leaves or jobs (which servers), got "
                        f"{', '.join(where) or 'none'}")
    for key in ("rate", "duration"):
        if key not in table:
            raise _KeyError(f"{at}{key}: required")
    rate = _value(table["rate"], parse_bandwidth, f"{at}rate")
    if rate <= 0:
        raise _KeyError(f"{at}rate: must be positive, got {table['rate']!r}")
    duration = _time(table["duration"], f"{at}duration")
    if duration <= 0:
        raise _KeyError(f"{at}duration: must be positive, got {table['duration']!r}")
    storage = kind == "storage-read"
    for key in ("storage_leaves", "storage_nodes"):
        if key in table and not storage:
            raise _KeyError(f"{at}{key}: only a storage-read has storage nodes")
    if storage and "storage_leaves" not in table:
        raise _KeyError(f"{at}storage_leaves: name the leaves the storage nodes hang off, e.g. [\"z0/leaf2\"]")
    return Background(name=name, kind=kind, rate=rate, duration=duration,
                      servers=_servers(table["servers"], f"{at}servers") if "servers" in table else None,
                      leaves=_names(table["leaves"], f"{at}leaves") if "leaves" in table else None,
                      jobs=_names(table["jobs"], f"{at}jobs") if "jobs" in table else None,
                      start=_opt(table, "start", _time, at) or 0.0, cls=_cls(table, at, classes),
                      storage_leaves=_unique(_names(table["storage_leaves"], f"{at}storage_leaves"),
                                             f"{at}storage_leaves") if storage else (),
                      storage_nodes=_opt(table, "storage_nodes", _whole, at) or 1)


# ---------------------------------------------------------------- values

def _keys(table, allowed, where, what):
    for key in table:
        if key not in allowed:
            raise _KeyError(f"unknown key '{where}{key}' ({what} keys: {', '.join(sorted(allowed))})")


def _table(value, where):
    if value is None:
        raise _KeyError(f"missing [{where}] table")
    if not isinstance(value, dict):
        raise _KeyError(f"{where}: must be a table, got {value!r}")
    return value


def _list(value, where, form):
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _KeyError(f"{where}: must be a list of tables ({form}), got {value!r}")
    return value


def _opt(table, key, parse, where):
    return parse(table[key], f"{where}{key}") if key in table else None


def _value(value, parser, where):
    try:
        return parser(value)
    except (ValueError, TypeError) as err:
        raise _KeyError(f"{where}: {err}") from None


def _whole(value, where):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _KeyError(f"{where}: must be a whole number >= 1, got {value!r}")
    return value


def _whole0(value, where):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _KeyError(f"{where}: must be a whole number >= 0, got {value!r}")
    return value


def _weight(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not MIN_WEIGHT <= value <= MAX_WEIGHT:
        raise _KeyError(f"{where}: a weight is a number in {MIN_WEIGHT:g}..{MAX_WEIGHT:g} (InfiniBand VL "
                        f"arbitration weights are 0..255), got {value!r}")
    return float(value)


def _time(value, where):
    t = _value(value, parse_time, where)
    if t < 0:
        raise _KeyError(f"{where}: must not be negative, got {value!r}")
    try:
        return check_time(t, where)
    except ValueError as err:
        raise _KeyError(str(err)) from None


def _late(value, where):
    """``((rank, seconds), ...)`` by rank of ``late = { 3 = "200us" }`` (``--late 3=200us``); the ranks' range
    is the job's, checked once it is placed (:mod:`sim.app.scenario_runner`)."""
    if not isinstance(value, dict) or not value:
        raise _KeyError(f'{where}: must be a table of RANK = TIME, e.g. late = {{ 3 = "200us" }}, got {value!r}')
    out = []
    for key, seconds in value.items():
        if not (key.isascii() and key.isdigit()):
            raise _KeyError(f"unknown key '{where}.{key}' (late keys are ranks of the job, 0, 1, ...: "
                            f'late = {{ 3 = "200us" }})')
        out.append((int(key), _time(seconds, f"{where}.{key}")))
    twice = next((r for r, _ in out if [q for q, _ in out].count(r) > 1), None)
    if twice is not None:  # 3 and 03 are one rank
        raise _KeyError(f"{where}: rank {twice} is given twice")
    return tuple(sorted(out))


def _string(value, where):
    if not isinstance(value, str) or not value:
        raise _KeyError(f"{where}: must be a non-empty string, got {value!r}")
    return value


def _servers(value, where):
    if not isinstance(value, list) or not value:
        raise _KeyError(f"{where}: must be a list of server indices, e.g. [0, 1, 2, 3], got {value!r}")
    servers = tuple(_whole0(v, where) for v in value)
    twice = next((s for s in servers if servers.count(s) > 1), None)
    if twice is not None:
        raise _KeyError(f"{where}: server {twice} is listed twice")
    return servers


def _unique(names, where):
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise _KeyError(f"{where}: {twice!r} is listed twice")
    return names


def _names(value, where):
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _KeyError(f"{where}: must be a list of names, got {value!r}")
    return tuple(value)
