"""The what-if options of ``flyersim run``: routing policy, slow parts, late ranks, OS noise over seeds, failed
switches and cables.

>>> slow("n3/gpu0<->n3/rp0=0.5"), slow("n0/nic0<->z0/leaf0=100Gb/s"), late("5=200us"), late("0=0.001")
(('n3/gpu0<->n3/rp0', 0.5), ('n0/nic0<->z0/leaf0', '100Gb/s'), (5, 0.0002), (0, 0.001))
>>> late("x=1us")
Traceback (most recent call last):
argparse.ArgumentTypeError: expected RANK=TIME with a rank 0, 1, ..., e.g. 3=200us, got 'x=1us'
"""

import argparse
import statistics

from flyersim.sim.app.args import literal
from flyersim.sim.routes import ROUTING
from flyersim.sim.stragglers import Stragglers
from flyersim.topologies.faults import check_reachable, fail
from flyersim.topologies.units import parse_time

MAX_SEEDS = 1000  # --seeds: each seed reruns every point; a spread needs tens, not millions


def slow(text):
    """argparse type: ``TARGET=VALUE``, VALUE a factor (``0.5``) or a link bandwidth (``100Gb/s``)."""
    where, sep, value = text.rpartition("=")
    if not sep or not where.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected TARGET=FACTOR or LINK=BANDWIDTH, e.g. n3/gpu0<->n3/rp0=0.5, "
                                         f"got {text!r}")
    return where.strip(), literal(value.strip())


def late(text):
    """argparse type: ``RANK=TIME`` (``3=200us``; a bare number is seconds)."""
    rank, sep, value = text.partition("=")
    if not sep or not rank.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected RANK=TIME with a rank 0, 1, ..., e.g. 3=200us, got {text!r}")
    try:
        seconds = parse_time(literal(value.strip()))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None
    return int(rank), seconds  # the value is checked with the rest (Stragglers.check)


def attach_values(argv):
    """``argv`` with ``--late -1=1ms`` joined as ``--late=-1=1ms``, so a value starting with ``-`` reaches the
    option's own check (argparse takes it for an option and says only "expected one argument").

    >>> attach_values(["run", "--late", "-1=1ms", "--gpus", "16"])
    ['run', '--late=-1=1ms', '--gpus', '16']
    """
    out, argv = [], list(argv)
    while argv:
        arg = argv.pop(0)
        if arg in ("--late", "--slow") and argv and argv[0].startswith("-") and "=" in argv[0]:
            arg = f"{arg}={argv.pop(0)}"
        out.append(arg)
    return out


def noise(text):
    """argparse type: the mean of the per-server slowdown X (0.05: 5 % on average; its range is checked with
    the rest, :meth:`sim.stragglers.Stragglers.check`)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a mean slowdown >= 0 such as 0.05, got {text!r}") from None


def add_arguments(parser, positive_int):
    """The what-if options, on ``parser`` (``flyersim run``)."""
    group = parser.add_argument_group("what-ifs (routing, stragglers and faults)")
    group.add_argument("--routing", default="ecmp", choices=ROUTING,
                       help="ecmp: each transfer on the path a stable hash picks among its equal-cost ones "
                            "(collisions included; default); adaptive: each flow takes the least loaded of them "
                            "when it starts")
    group.add_argument("--slow", action="append", type=slow, default=[], metavar="TARGET=VALUE",
                       help="slow one component (its pools and links: n3/nic0=0.5) or link (n3/gpu0<->n3/rp0=0.5 "
                            "both directions, a->b one; or a bandwidth: n3/nic0<->z0/leaf0=100Gb/s); repeatable")
    group.add_argument("--late", action="append", type=late, default=[], metavar="RANK=TIME",
                       help="rank RANK starts TIME after the others, e.g. 5=200us (repeatable)")
    group.add_argument("--noise", type=noise, default=0.0, metavar="MEAN",
                       help="OS noise: each server's CPU-driven engines run at 1/(1+X) of their rate, X exponential "
                            "with this mean, drawn per server and seed (e.g. 0.05)")
    group.add_argument("--seed", type=int, default=0, help="first noise seed (default 0)")
    group.add_argument("--seeds", type=positive_int, default=1,
                       help="run every point with this many noise seeds and report their spread (default 1)")
    group.add_argument("--fail", action="append", default=[], metavar="SWITCH|LINK",
                       help="a failed switch (z0/spine3) or network link, a cable (n3/nic0<->z0/leaf0; failing a "
                            "NIC, n3/nic0, fails its cables); routes avoid it (repeatable)")


def stragglers(args):
    """The :class:`Stragglers` of ``args``, one per seed."""
    if args.seeds > MAX_SEEDS:
        raise ValueError(f"--seeds {args.seeds}: at most {MAX_SEEDS} (each seed is a whole run of every point)")
    if args.seeds > 1 and not args.noise:
        raise ValueError("--seeds needs --noise (without noise every seed gives the same answer)")
    base = Stragglers(slow=tuple(args.slow), late=tuple(args.late), noise=args.noise, seed=args.seed)
    return [Stragglers(base.slow, base.late, base.noise, args.seed + k) for k in range(args.seeds)]


def failed(graph, args):
    """``graph`` without the ``--fail`` switches and cables; an error names the ranks cut off, if any."""
    return check_reachable(fail(graph, args.fail)) if args.fail else graph


def seed_spread(rows):
    """Lines giving, per algorithm and size run over several seeds, the min / median / max time and busbw.

    >>> rows = [{"algo": "ring", "bytes": 1024, "seed": s, "time_s": t, "busbw_GBps": 1e-6 / t}
    ...         for s, t in enumerate([1e-3, 2e-3, 4e-3])]
    >>> print(seed_spread(rows))
    # ring 1024 B over 3 seeds: time(us) 1000.00 / 2000.00 / 4000.00, busbw(GB/s) 0.000 / 0.001 / 0.001 (min / median / max)
    """
    groups = {}
    for r in rows:
        if "seed" in r:
            groups.setdefault((r["algo"], r["bytes"]), []).append(r)
    lines = []
    for (algo, nbytes), group in groups.items():
        if len(group) < 2:
            continue
        times = sorted(r["time_s"] * 1e6 for r in group)
        bus = sorted(r["busbw_GBps"] for r in group)
        lines.append(f"# {algo} {nbytes} B over {len(group)} seeds: time(us) {times[0]:.2f} / "
                     f"{statistics.median(times):.2f} / {times[-1]:.2f}, busbw(GB/s) {bus[0]:.3f} / "
                     f"{statistics.median(bus):.3f} / {bus[-1]:.3f} (min / median / max)")
    return "\n".join(lines)
