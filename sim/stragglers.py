"""Stragglers: one slow component or link, ranks that start late, random OS noise on CPU-driven stages.

A :class:`Stragglers` holds what a what-if changes and applies it to what the
simulator already takes, so the simulator special-cases none of it:

- ``slow``: ``(target, value)`` pairs. A target is a component (``n3/nic0``:
  its own pools and every link into or out of it) or a link (``a->b`` one
  direction, ``a<->b`` both; :mod:`topologies.faults`). A value is a factor
  on capacity (``0.5``: half rate) or, for a link, its new bandwidth
  (``"100Gb/s"``). Applied to the capacities of :class:`sim.routes.Routes`.
- ``late``: ``(rank, seconds)`` pairs; the rank's first ops are released
  that late (:func:`collectives.transforms.late_start`).
- ``noise``: OS noise. Each server's CPU-driven engines (CPU reduce, reduce
  threads, GDRCopy store threads; classes in ``NOISY_CLASSES``) run at
  ``1 / (1 + X)`` of their rate, X drawn once per server and run from an
  exponential distribution of mean ``noise`` with seed ``seed``. The
  exponential is a modelling choice, not a fit: most servers lose little, a
  few lose much, the shape OS-noise studies report (Petrini et al., "The Case
  of the Missing Supercomputer Performance", SC03: rare long interruptions
  on a few nodes dominate). ``noise=0`` draws nothing.

>>> from flyersim import topologies
>>> g = topologies.load("fireflyer2", gpus=16)
>>> s = Stragglers(slow=(("n1/gpu0<->n1/rp0", 0.5), ("n0/nic0<->z0/leaf0", "100Gb/s")), late=((3, 1e-4),))
>>> s.check(g) is s, Stragglers().active, s.active
(True, False, True)
>>> Stragglers(slow=(("n0/nic0", "100Gb/s"),)).check(g)
Traceback (most recent call last):
...
ValueError: --slow n0/nic0=100Gb/s: a component takes a factor (e.g. 0.5); give a bandwidth to a link, e.g. n0/nic0<->n0/rp7=100Gb/s
"""

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from flyersim.collectives.transforms import late_start
from flyersim.sim.routes import ROUTING
from flyersim.topologies.errors import TopologyError
from flyersim.topologies.faults import target
from flyersim.topologies.units import parse_bandwidth

NOISY_CLASSES = ("cpu reduce", "cpu reduce threads", "cpu stores (gdrcopy)")  # CPU-driven engines (sim.routes)
# The longest start, lateness, period or duration a what-if takes: one hour. Simulated times are float64
# seconds and every event time carries the offset's rounding: a 630 us ring starting at 1 s, 60 s, 1 h and
# 1 day came out 6e-12, 4e-11, 1.5e-8 and 1.5e-4 off relative to its time alone (measured), and at 1e12 s
# the microseconds are gone (0.000x slowdown).
MAX_TIME = 3600.0
# The smallest --slow factor: 1e-6 of a 400 Gb/s link is 400 kb/s, far below any part that still works
# (a dead part is --fail); smaller factors only push finish times past MAX_TIME.
MIN_FACTOR = 1e-6


def check_time(seconds, where):
    """``seconds`` if a finite time in 0..MAX_TIME, else one ``ValueError`` naming ``where``.

    >>> check_time(1e-3, "late"), check_time(3600, "start")
    (0.001, 3600.0)
    >>> check_time(1e12, "start")
    Traceback (most recent call last):
    ValueError: start: at most 1 hour (3600 s; float64 event times lose precision beyond it), got 1e+12 s
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
            or seconds < 0:
        raise ValueError(f"{where}: must be a finite time >= 0, got {seconds!r}")
    if seconds > MAX_TIME:
        raise ValueError(f"{where}: at most 1 hour ({MAX_TIME:.0f} s; float64 event times lose precision beyond "
                         f"it), got {seconds:g} s")
    return float(seconds)


@dataclass(frozen=True)
class Stragglers:
    """What a what-if slows down or delays (see the module docstring); the default changes nothing."""

    slow: tuple = ()   # ((target, factor or bandwidth), ...)
    late: tuple = ()   # ((rank, seconds), ...)
    noise: float = 0.0  # mean of the exponential per-server slowdown X of CPU-driven engines
    seed: int = 0
    # what an error names: a scenario's keys ({slow index | "noise" | "seed": key}); default the options
    keys: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def active(self):
        return bool(self.slow or self.late or self.noise)

    def check(self, graph):
        """Raise ``ValueError`` (one line) on a target ``graph`` lacks, a bad value, or a rank it lacks."""
        for i, (text, value) in enumerate(self.slow):
            _capacity(graph, text, value, self.keys.get(i))
            before = next((k for k in range(i) if self.slow[k][0] == text), None)
            if before is not None:
                raise ValueError(f"{self.keys.get(i, f'--slow {text}={value}')}: {text} is already slowed by "
                                 f"{self.keys.get(before, f'--slow {text}={self.slow[before][1]}')} (give each "
                                 f"part once)")
        ranks = graph.graph["nodes"] * graph.graph["gpus_per_node"]
        late = [rank for rank, _ in self.late]
        twice = next((rank for rank in late if late.count(rank) > 1), None)
        if twice is not None:
            raise ValueError(f"--late {twice}: given twice (give each rank one lateness)")
        for rank, seconds in self.late:
            if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < ranks:
                raise ValueError(f"--late {rank}: no such rank (this cluster has ranks 0..{ranks - 1})")
            check_time(seconds, f"--late {rank}={seconds!r}")
        noise, seed = self.keys.get("noise", f"--noise {self.noise!r}"), self.keys.get("seed", f"--seed {self.seed!r}")
        if isinstance(self.noise, bool) or not isinstance(self.noise, (int, float)) or \
                not (math.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"{noise}: must be a finite mean slowdown >= 0 such as 0.05, got {self.noise!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"{seed}: must be a whole number >= 0, got {self.seed!r}")
        return self

    def routes(self, graph, routes):
        """``routes`` with the capacities of slowed and noisy resources changed (the same object if none)."""
        if not (self.slow or self.noise):
            return routes
        capacity = routes.capacity.copy()
        for i, (text, value) in enumerate(self.slow):
            links, pools, change = _capacity(graph, text, value, self.keys.get(i))
            for i, name in enumerate(routes.names):
                if name in links or (pools and name.startswith(pools)):
                    capacity[i] = change(capacity[i])
        if self.noise:
            capacity /= 1.0 + self.slowdowns(graph.graph["nodes"], routes)
        return dataclasses.replace(routes, capacity=capacity)

    def slowdowns(self, nodes, routes):
        """Per resource of ``routes``: the noise X of its server if it is CPU-driven, else 0."""
        draws = np.random.default_rng(self.seed).exponential(self.noise, nodes)
        out = np.zeros(len(routes.names))
        for i, (name, cls) in enumerate(zip(routes.names, routes.classes)):
            if cls in NOISY_CLASSES:
                out[i] = draws[int(name.split("/", 1)[0][1:])]
        return out

    def schedule(self, schedule):
        """``schedule`` with the late ranks' first ops released late (the same object if none)."""
        return late_start(schedule, dict(self.late)) if self.late else schedule


def _capacity(graph, text, value, key=None):
    """For ``--slow text=value``: the link resource names, the name prefix of the component's pools (its
    resources are named ``"<node> <pool>"`` in :mod:`sim.routes`; None for a link) and capacity -> new capacity.
    An error names ``key`` (default the option)."""
    key = key or f"--slow {text}={value}"
    try:
        t = target(graph, text)
    except TopologyError as err:
        raise ValueError(f"{key}: {err}") from None
    if isinstance(value, str):
        try:
            bandwidth = parse_bandwidth(value)
        except ValueError:
            bandwidth = math.nan
        if not (math.isfinite(bandwidth) and bandwidth > 0):
            raise ValueError(f"{key}: expected a factor > 0 (0.5: half rate) or a positive link "
                             f"bandwidth such as 100Gb/s")
        if t.node is not None:
            example = f"{t.node}<->{t.links[0][1]}"
            raise ValueError(f"{key}: a component takes a factor (e.g. 0.5); give a bandwidth to "
                             f"a link, e.g. {example}={value}")
        return {f"{u}->{v}" for u, v in t.links}, None, lambda _: bandwidth
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{key}: expected a factor > 0 (0.5: half rate) or a link bandwidth "
                         f"such as 100Gb/s")
    if not MIN_FACTOR <= value <= 1:
        raise ValueError(f"{key}: a factor slows, {MIN_FACTOR:g} <= factor <= 1 (0.5: half rate); "
                         f"give a link a new bandwidth with its unit, e.g. 400Gb/s")
    return {f"{u}->{v}" for u, v in t.links}, None if t.node is None else f"{t.node} ", lambda c: c * value


def read_tables(routing, faults, stragglers):
    """``(routing policy, failed parts, Stragglers)`` of a scenario's ``[routing]``, ``[[faults]]`` and
    ``[[stragglers]]`` tables (parsed TOML); a mistake is one ``ValueError`` naming the key.

    ``[routing] policy = "ecmp" | "adaptive"``; each ``[[faults]]`` entry is ``fail = "z0/spine3"`` (a switch
    or cable, as ``--fail``); each ``[[stragglers]]`` entry is ``slow = TARGET`` with ``factor = 0.5`` or
    ``bandwidth = "100Gb/s"`` (as ``--slow``), or ``noise = MEAN`` with an optional ``seed`` (as ``--noise``).

    >>> read_tables({"policy": "adaptive"}, [{"fail": "z0/spine3"}],
    ...             [{"slow": "n0/gpu0", "factor": 0.5}, {"noise": 0.05, "seed": 2}])
    ('adaptive', ('z0/spine3',), Stragglers(slow=(('n0/gpu0', 0.5),), late=(), noise=0.05, seed=2))
    >>> read_tables({}, [], [{"slow": "n0/gpu0", "factor": 0.5, "bandwidth": "1GB/s"}])
    Traceback (most recent call last):
    ValueError: stragglers[0]: give factor or bandwidth, not both
    """
    def keys(table, allowed, at):
        if not isinstance(table, dict):
            raise ValueError(f"{at}: must be a table")
        unknown = sorted(set(table) - allowed)
        if unknown:
            hint = '; a late rank is its job\'s late = { RANK = TIME }' * (at.startswith("stragglers") and
                                                                          unknown[0] in ("late", "rank"))
            raise ValueError(f"unknown key '{at}.{unknown[0]}' ({at.split('[')[0]} keys: {', '.join(sorted(allowed))}"
                             f"{hint})")

    keys(routing, {"policy"}, "routing")
    policy = routing.get("policy", "ecmp")
    if policy not in ROUTING:
        raise ValueError(f"routing.policy: unknown policy {policy!r} (choose from {', '.join(ROUTING)})")
    failed = []
    for i, entry in enumerate(faults):
        keys(entry, {"fail"}, f"faults[{i}]")
        if not isinstance(entry.get("fail"), str):
            raise ValueError(f'faults[{i}].fail: name a switch or cable, e.g. "z0/spine3"')
        failed.append(entry["fail"])
    slow, keys_of, noise = [], {}, None
    for i, entry in enumerate(stragglers):
        at = f"stragglers[{i}]"
        keys(entry, {"slow", "factor", "bandwidth", "noise", "seed"}, at)
        if "slow" in entry and "noise" in entry:
            raise ValueError(f"{at}: give slow or noise, not both (one [[stragglers]] table each)")
        if "slow" in entry:
            if "seed" in entry:
                raise ValueError(f"{at}.seed: only a noise table takes a seed")
            if "factor" in entry and "bandwidth" in entry:
                raise ValueError(f"{at}: give factor or bandwidth, not both")
            if "factor" not in entry and "bandwidth" not in entry:
                raise ValueError(f'{at}: give factor = 0.5 or bandwidth = "100Gb/s" with slow')
            if not isinstance(entry["slow"], str):
                raise ValueError(f'{at}.slow: name a component or link, e.g. "n3/gpu0<->n3/rp0"')
            key = "factor" if "factor" in entry else "bandwidth"
            value = entry[key]
            if key == "factor" and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f'{at}.factor: a number such as 0.5 (a new bandwidth goes in bandwidth = '
                                 f'"100Gb/s"), got {value!r}')
            if key == "bandwidth" and not isinstance(value, str):
                raise ValueError(f'{at}.bandwidth: a bandwidth with its unit such as "100Gb/s" (a number is a '
                                 f'factor = 0.5), got {value!r}')
            keys_of[len(slow)] = f"{at}.{key} ({entry['slow']}={value})"
            slow.append((entry["slow"], value))
        elif "noise" in entry:
            if noise is not None:
                raise ValueError(f"{at}.noise: stragglers[{noise}] already gives the noise (one noise table per "
                                 f"scenario)")
            noise = i
            keys_of["noise"], keys_of["seed"] = f"{at}.noise", f"{at}.seed"
        else:
            if "seed" in entry:
                raise ValueError(f"{at}.seed: only a noise table takes a seed")
            raise ValueError(f"{at}: give slow = TARGET (with factor or bandwidth) or noise = MEAN")
    entry = stragglers[noise] if noise is not None else {}
    return policy, tuple(failed), Stragglers(slow=tuple(slow), noise=entry.get("noise", 0.0), seed=entry.get("seed", 0),
                                             keys=keys_of)
