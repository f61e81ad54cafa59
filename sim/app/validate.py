"""``flyersim validate``: measure and simulate the same schedules, report per-size and geometric-mean error.

``mpiexec -n 2 flyersim validate --algos ring,rabenseifner --sizes 1MiB,64MiB``
measures each (algorithm, size) as ``flyersim mpi`` does (every algorithm once
per round, rounds interleaved, so a busy spell hits all alike) and simulates
the very same schedule (same layout, same per-size choice of a size-dependent
algorithm) on a model of this job. Without ``--topology`` the model is
calibrated per message size S: :mod:`flyersim.sim.app.calibrate` measures with
messages of S / ranks, the chunk a ring step sends, so copies are costed in the
cache regime the collective runs in (one-way network streams at 4 MiB or
more), and, per schedule, the exchanges between two nodes (``[mpi]
pair_bandwidth``) at that schedule's own message sizes and rank pairs
(:func:`exchanges`, :func:`pair_figure`): on the emulated nodes MPICH carries exchanges of
messages up to 2 MiB at the NIC's duplex rate and larger ones at two thirds
of it, and Rabenseifner's steps between nodes differ in size (see
calibrate). A schedule that exchanges nothing between nodes (a ring on three
nodes or more sends one way per pair) gets no pair pool.
``--leaf-size`` is passed on. ``mpi``, the library's own
Allreduce, is predicted by modelling MPICH's choice (:func:`mpich_choice`) on
the same model with the library's own per-message cost (``library_latency``)
in place of the executor's.

What to run travels as a :class:`Plan` (the CLI fills it; a program can too).

**How far the calibration's own noise moves a prediction.** Calibrated per
size, each row also carries ``predicted_fast_us`` and ``predicted_slow_us``:
the same schedule on the model with every calibrated figure at the quartile
that makes it fast (bandwidths' upper, latencies' lower) or slow (the
reverse), a deliberately wide band (every figure at its end at once).

**One error definition.** Per row, ``log_error = ln(predicted / measured)``;
``error_pct`` is derived from it, symmetric in the two directions:
``100 sign(x) (e^|x| - 1)``, so a prediction half the measured time is -100 %
and twice it +100 %. Per algorithm, the geometric-mean error
``exp(mean |x|) - 1`` and the bias ``exp(mean x) - 1`` (negative: too fast).

**Spread and noise.** Each measured figure is the median of ``--iters`` runs
with its quartiles and ``iqr_pct = 100 (p75 - p25) / median``; the runs come in
``--blocks`` blocks on freshly allocated buffers (see ``flyersim mpi``) and
``blocks_pct`` is the range of the blocks' medians over the median. The
spread, ``spread_pct``, is the larger of the two: a run whose blocks disagree
would disagree with the next run too. When a row's
spread exceeds ``--tolerance`` (the accuracy asked for, default 10 %), its
error cannot be told from noise: the algorithm's geometric mean is replaced by
a note saying which size was too noisy, instead of a figure.

>>> round(geomean_error([2.0, 0.5], [1.0, 1.0]), 6)
1.0
>>> [round(error_pct(x), 6) for x in (log_error(2.0, 1.0), log_error(0.5, 1.0), log_error(1.1, 1.0))]
[100.0, -100.0, 10.0]
"""

import math
import sys
from dataclasses import dataclass

import numpy as np

from flyersim import collectives
from flyersim.sim.app import calibrate, mpibench
from flyersim.sim.app.args import names, sizes
from flyersim.sim.outputs import atomic_path, check_writable
from flyersim.sim.app.report import to_csv, to_json
from flyersim.sim.app.runner import DTYPES
from flyersim.topologies.units import format_size

# MPICH 5's Allreduce (MPIR_Allreduce_impl's selection, maint/tuning/coll/mpir/generic.json): recursive doubling
# up to this many bytes or for fewer elements than the largest power of two of ranks, else Rabenseifner
SHORT_MSG_SIZE = 8


@dataclass(frozen=True)
class Plan:
    """What ``validate`` runs; see the module docstring for each field's meaning.

    ``topology``: a path or preset for the model of this job, or None to calibrate per size.
    """

    algos: tuple
    sizes: tuple
    topology: str | None = None
    iters: int = 20
    warmup: int = 5
    repeats: int = 15
    gpus_per_node: int | None = None
    dtype: str = "float32"
    model: str = "flow"
    tolerance: float = 0.10
    leaf_size: int | None = None
    blocks: int = 4


def add_parser(sub, positive_int):
    """Register ``flyersim validate``."""
    p = sub.add_parser("validate", help="simulate vs measure on MPI ranks: per-size and geometric-mean error")
    p.add_argument("--topology", metavar="FILE.toml",
                   help="cluster of this job (default: calibrate per message size, see flyersim calibrate)")
    p.add_argument("--algos", "--algo", dest="algos", type=names, default="ring",
                   help=f"comma-separated algorithms, or {mpibench.BASELINE}")
    p.add_argument("--sizes", "--size", dest="sizes", type=sizes, default="1MiB,16MiB",
                   help="comma-separated message sizes")
    p.add_argument("--iters", type=positive_int, default=20, help="timed rounds per size; the median is kept")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--blocks", type=positive_int, default=4,
                   help="split the rounds into this many blocks, each on freshly allocated buffers (default 4; "
                        "see flyersim mpi)")
    p.add_argument("--repeats", type=positive_int, default=15, help="repeats per calibration benchmark")
    p.add_argument("--gpus-per-node", type=positive_int, help="when calibrating: ranks per node (default: physical)")
    p.add_argument("--leaf-size", type=positive_int, metavar="K",
                   help="when calibrating: nodes per leaf switch behind shared uplinks (see flyersim calibrate)")
    p.add_argument("--tolerance", type=float, default=0.10,
                   help="accuracy asked for (default 0.10): a size whose measured spread (IQR/median) exceeds "
                        "it is too noisy to judge the model")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--model", default="flow", choices=("flow", "analytic"))
    p.add_argument("--format", default="table", choices=("table", "csv", "json"))
    p.add_argument("--plot", metavar="OUT.png", help="also plot predicted and measured time against size")
    p.set_defaults(func=command)


def log_error(predicted, measured):
    """The signed error of one row, ``ln(predicted / measured)``: negative when the model is too fast."""
    return math.log(predicted / measured)


def error_pct(x):
    """A log error as a percentage, the same scale both ways: ``100 sign(x) (e^|x| - 1)``."""
    return math.copysign(100 * math.expm1(abs(x)), x)


def geomean_error(predicted, measured):
    """exp(mean |ln(p/m)|) - 1: 0 for perfect, 1.0 for a factor of two either way."""
    ratio = np.asarray(predicted, float) / np.asarray(measured, float)
    return float(np.exp(np.mean(np.abs(np.log(ratio)))) - 1)


def mpich_choice(nbytes, itemsize, nodes, per_node):
    """``(algorithm, parameters)`` of the schedule MPICH 5's ``MPI_Allreduce`` (a commutative built-in op) runs
    on ``nodes`` nodes of ``per_node`` ranks each.

    Across nodes with several ranks on a node, ch4 composes it (``generic.json``'s "composition alpha"):
    reduce inside each node, allreduce among the nodes' first ranks, broadcast inside (``smp``). Otherwise,
    and among those first ranks, ``MPIR_Allreduce_impl`` picks recursive doubling for tiny messages
    (:data:`SHORT_MSG_SIZE`) or fewer elements than the largest power of two of ranks, else Rabenseifner.
    On one node MPICH runs composition gamma, whose shared-memory collectives fall back to that same flat
    choice under mpi4py's ``MPI_THREAD_MULTIPLE`` (``posix_generic.json`` picks its release_gather
    algorithms only single-threaded). ``per_node`` is what MPICH sees (the ranks sharing memory: 1 under
    ``MPIR_CVAR_NOLOCAL``). Predicted with ``library_latency`` per message when calibrated: the library
    does not run through flyersim's executor.

    >>> mpich_choice(1 << 20, 4, 4, 2), mpich_choice(8, 4, 4, 2)
    (('smp', {'outer': 'rabenseifner'}), ('smp', {'outer': 'rd'}))
    >>> mpich_choice(1 << 20, 4, 4, 1), mpich_choice(1 << 20, 4, 1, 8), mpich_choice(12, 4, 4, 1)
    (('rabenseifner', {}), ('rabenseifner', {}), ('rd', {}))
    """
    def flat(ranks):
        pof2 = 1 << (ranks.bit_length() - 1)
        return "rd" if nbytes <= SHORT_MSG_SIZE or nbytes // itemsize < pof2 else "rabenseifner"
    if nodes > 1 and per_node > 1:
        return "smp", {"outer": flat(nodes)}
    return flat(nodes * per_node), {}


def plan_of(args):
    """The :class:`Plan` of the command line; ValueError on a bad value."""
    if not 0 < args.tolerance < math.inf:
        raise ValueError(f"--tolerance must be a fraction above 0 (0.1 = 10 %), got {args.tolerance}")
    if args.warmup < 0:
        raise ValueError(f"--warmup must be 0 or more, got {args.warmup}")
    return Plan(tuple(args.algos), tuple(args.sizes), args.topology, args.iters, args.warmup, args.repeats,
                args.gpus_per_node, args.dtype, args.model, args.tolerance, args.leaf_size, args.blocks)


def command(args):
    """Entry point (every rank runs it); rank 0 simulates and prints."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    try:
        plan = plan_of(args)
        if args.plot:
            check_writable(args.plot, "--plot")
    except ValueError as err:
        if comm.rank == 0:
            print(f"flyersim: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    report = run(plan, comm)
    if comm.rank:
        return
    title = f"{plan.topology or 'calibrated per size'} ({plan.model} model) vs {comm.size} MPI ranks"
    print(render(report, args.format, title))
    if args.plot:
        with atomic_path(args.plot) as tmp:
            plot(report["rows"], tmp)
        print(f"# plot written to {args.plot}", file=sys.stderr)


def run(plan, comm):
    """Measure and predict every (algorithm, size) of ``plan``; the report on rank 0, None elsewhere.

    The report: ``rows`` (algorithm-major), per algorithm ``geomean_error`` and ``bias`` (None when
    too noisy), ``too_noisy`` (algorithm -> why), ``notes``, and ``calibrations`` (size -> parameter ->
    [median, p25, p75] in SI units) when calibrated; each row carries its schedule's ``pair_bandwidth``
    (median and quartiles, None without a pair pool).
    """
    from mpi4py import MPI

    from flyersim import topologies

    try:
        if comm.size < 2:
            raise ValueError("validate needs at least 2 MPI ranks: one rank's allreduce moves nothing "
                             "(start with mpiexec -n N)")
        if plan.topology:
            graph = topologies.load(plan.topology)
            g = graph.graph
            if g["nodes"] * g["gpus_per_node"] != comm.size:
                raise ValueError(f"{plan.topology} has {g['nodes']} x {g['gpus_per_node']} GPUs but the job runs "
                                 f"{comm.size} MPI ranks")
        else:
            gpn = calibrate.gpus_per_node(comm, plan.gpus_per_node)
    except (ValueError, OSError) as err:
        if comm.rank == 0:
            print(f"flyersim: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    shared = comm.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks MPICH sees on a node, for its Allreduce's choice
    per_node = comm.allreduce(shared.size, op=MPI.MAX)
    shared.Free()
    itemsize = np.dtype(plan.dtype).itemsize
    try:
        models = {s: {a: graph for a in plan.algos} if plan.topology else
                  calibrated(comm, s, plan.algos, gpn, per_node, itemsize, plan.repeats, plan.leaf_size)
                  for s in plan.sizes}
    except ValueError as err:  # the same on every rank (a --leaf-size that does not fit, a bad algorithm)
        if comm.rank == 0:
            print(f"flyersim: error: {err}", file=sys.stderr)
        raise SystemExit(2)
    rows = [row for s in plan.sizes for row in _size_rows(comm, plan, s, models[s], per_node)]
    if comm.rank:
        return None
    rows.sort(key=lambda r: plan.algos.index(r["algo"]))  # algorithm-major, sizes in the given order
    report = summarise(rows, plan.algos, plan.tolerance)
    report["calibrations"] = {s: {k: v for k, v in models[s][plan.algos[0]].graph["calibration"].items()
                                  if k != "pair_bandwidth"} for s in plan.sizes if not plan.topology}
    return report


def summarise(rows, algos, tolerance):
    """Per-algorithm geometric-mean error and bias, or why the rows are too noisy to give them.

    >>> rows = [{"algo": "ring", "bytes": 1024, "log_error": 0.1, "measured_spread_pct": 2.0},
    ...         {"algo": "ring", "bytes": 2048, "log_error": -0.1, "measured_spread_pct": 3.0}]
    >>> s = summarise(rows, ["ring"], 0.1)
    >>> round(s["geomean_error"]["ring"], 6), round(s["bias"]["ring"], 6), s["too_noisy"]
    (0.105171, 0.0, {})
    >>> summarise(rows, ["ring"], 0.02)["too_noisy"]["ring"]
    'spread 3.0 % at 2048 B exceeds the 2 % asked for'
    """
    report = {"rows": rows, "geomean_error": {}, "bias": {}, "too_noisy": {}, "notes": []}
    for algo in algos:
        mine = [r for r in rows if r["algo"] == algo and r["log_error"] is not None]
        if not mine:
            continue
        worst = max(mine, key=lambda r: r["measured_spread_pct"])
        if worst["measured_spread_pct"] > 100 * tolerance:
            report["too_noisy"][algo] = (f"spread {worst['measured_spread_pct']:.1f} % at "
                                         f"{worst['bytes']} B exceeds the {100 * tolerance:g} % asked for")
            report["geomean_error"][algo] = report["bias"][algo] = None
            continue
        x = np.array([r["log_error"] for r in mine])
        report["geomean_error"][algo] = float(np.expm1(np.mean(np.abs(x))))
        report["bias"][algo] = float(np.expm1(np.mean(x)))
    if mpibench.BASELINE in algos:
        report["notes"].append(f"{mpibench.BASELINE}: the library's Allreduce, predicted as MPICH's default choice "
                               f"(smp across nodes with several ranks on one, else rd up to {SHORT_MSG_SIZE} B or fewer "
                               f"elements than ranks' power of two, rabenseifner beyond), at library_latency when calibrated")
    return report


def calibrated(comm, nbytes, algos, gpus, per_node, itemsize, repeats, leaf_size=None):
    """``{algo: topology graph}`` of this job for ``nbytes`` allreduces: ``flyersim calibrate --size`` at
    ``nbytes / ranks`` (every rank builds the same), with ``pair_bandwidth`` measured per algorithm at the
    messages its schedule exchanges between nodes (:func:`pair_figure`). The model charges that pool to
    every message between the two nodes, one-way ones too, while the figure weighs only the exchanged
    bytes, and a schedule that exchanges nothing between nodes gets no pool."""
    from flyersim import topologies
    from flyersim.sim.app import microbench as mb
    from flyersim.sim.app.runner import layout_of, search_of

    size = max(nbytes // comm.size, 4)
    params, notes = calibrate.measure(comm, size, repeats, leaf_size, pair_size=0, chain=False)

    def load(figures):
        text = calibrate.toml(figures, comm.size // gpus, gpus, f"flyersim validate (calibrate --size {size})",
                              notes, leaf_size)
        return topologies.loads(text, where=f"calibration at {size} B")

    def model(figures):
        graph = load(figures)
        graph.graph["ends"] = {end: load(quartile_end(figures, end)) for end in ("fast", "slow")}
        return graph
    base = load(params)
    layout = layout_of(base)
    search = search_of(base, layout)
    of, _ = mb.nodes(comm)
    profiles = {}
    for algo in algos:
        name, extra = (mpich_choice(nbytes, itemsize, comm.size // per_node, per_node)
                       if algo == mpibench.BASELINE else (algo, {}))
        concrete, _ = collectives.schedule_key(name, layout, nbytes, search=search)  # the one run at nbytes
        schedule = collectives.build(concrete, layout, nbytes=nbytes, search=search, **extra)
        profiles[algo] = exchanges(schedule, nbytes // itemsize, itemsize)
    rates = {key: calibrate.exchange_rate(comm, of, *key, repeats)
             for key in sorted(set().union(*profiles.values()))} if of[-1] > 0 else {}
    graphs = {}
    for algo, profile in profiles.items():
        mine = dict(params)  # measured without a pair figure: each schedule gets its own
        if profile and rates:
            mine["pair_bandwidth"] = pair_figure(profile, rates)
        graph = model(mine)
        graph.graph["calibrated_at"] = size
        graph.graph["calibration"] = {name: [fig.value, fig.low, fig.high] for name, (fig, _, _) in mine.items()}
        graph.graph["library"] = model(library(mine))
        graphs[algo] = graph
    return graphs


def exchanges(schedule, count, itemsize):
    """``{(message bytes, streams): bytes}`` that ``schedule`` (on ``count`` elements of ``itemsize``) exchanges
    between nodes: a message between two nodes whose receiving rank sends one of the same size back to the
    sending rank somewhere in the schedule (a host memory's messages are its node's first rank's, as the MPI
    executor runs them). Sizes are rounded to the nearest power of two (log scale: 3 MiB counts as 4);
    ``streams`` is the most rank pairs exchanging messages of a size between one pair of nodes, at most the
    ranks of a node.

    >>> from flyersim.collectives import build
    >>> from flyersim.collectives.schedule import Layout
    >>> exchanges(build("rabenseifner", Layout(4, 2)), 1 << 22, 4)
    {(2097152, 2): 33554432, (4194304, 2): 67108864}
    >>> exchanges(build("ring", Layout(4, 2)), 1 << 22, 4)
    {}
    """
    from flyersim.collectives.mpi_executor import owners
    from flyersim.collectives.schedule import XFER

    lay = schedule.layout
    m = schedule.span_elements(count) * itemsize
    src_node, dst_node = lay.node_of_location(schedule.src), lay.node_of_location(schedule.dst)
    cross = (schedule.kind == XFER) & (src_node != dst_node) & (m > 0)
    x, y = (r[cross] for r in owners(schedule, shared=False))  # the ranks that send and receive
    a, b, m = src_node[cross], dst_node[cross], m[cross]
    k = np.round(np.log2(m)).astype(np.int64)
    p = lay.ranks
    sent = (x * p + y) * 64 + k
    back = np.isin((y * p + x) * 64 + k, sent)
    if not back.any():
        return {}
    x, y, a, b, k, m = (v[back] for v in (x, y, a, b, k, m))
    ends = np.unique(np.stack([k, np.minimum(a, b), np.maximum(a, b), np.minimum(x, y), np.maximum(x, y)]), axis=1)
    per_nodes, pairs = np.unique(ends[:3], axis=1, return_counts=True)  # rank pairs per (size, node pair)
    out = {}
    for size in np.unique(k).tolist():
        streams = min(int(pairs[per_nodes[0] == size].max()), lay.gpus_per_node)
        out[(1 << size, streams)] = int(m[k == size].sum())
    return out


def pair_figure(profile, rates):
    """``(Figure, "B/s", how)`` of ``pair_bandwidth`` for a schedule exchanging ``profile`` (see :func:`exchanges`):
    the rate that moves its bytes in the time the measured ``rates`` (key -> (Figure, how)) take, per quartile.

    >>> from flyersim.sim.app.microbench import Figure
    >>> f, unit, how = pair_figure({(1, 2): 30, (2, 2): 10}, {(1, 2): (Figure(3.0, 2.0, 4.0), ""), (2, 2): (Figure(1.0, 1.0, 1.0), "")})
    >>> round(f.value, 6), round(f.low, 6), how.split(":")[0]
    (2.0, 1.6, '[mpi] both directions together, per schedule')
    """
    from flyersim.sim.app.microbench import Figure

    total = sum(profile.values())
    fig = Figure(*(total / sum(b / getattr(rates[k][0], q) for k, b in profile.items())
                   for q in ("value", "low", "high")))
    parts = "; ".join(f"{100 * b / total:.0f} % of its bytes in messages of {format_size(k[0])}: "
                      f"{rates[k][1].removeprefix('[mpi] both directions together: ')}" for k, b in profile.items())
    return fig, "B/s", (f"[mpi] both directions together, per schedule: the rate that moves the bytes it "
                        f"exchanges between nodes in the time measured for them ({parts})")


def library(params):
    """``params`` for the MPI library's own collectives: a message costs ``library_latency``, not the
    executor's ``message_latency`` (the library does not run through flyersim's executor).

    >>> from flyersim.sim.app.microbench import Figure
    >>> p = {"message_latency": (Figure(5.0, 4.0, 6.0), "s", ""), "library_latency": (Figure(1.0, 1.0, 2.0), "s", "")}
    >>> library(p)["message_latency"][0].value
    1.0
    """
    own = dict(params)
    fig, unit, how = params["library_latency"]
    own["message_latency"] = (fig, unit, f"library_latency: {how}")
    return own


def quartile_end(params, end):
    """``params`` with every figure at the quartile that makes the model ``end`` ("fast" or "slow"):
    fast takes each bandwidth's upper and each latency's lower quartile, slow the reverse.

    >>> from flyersim.sim.app.microbench import Figure
    >>> p = {"link_bandwidth": (Figure(2.0, 1.0, 3.0), "B/s", ""), "message_latency": (Figure(2.0, 1.0, 3.0), "s", "")}
    >>> {k: f.value for k, (f, _, _) in quartile_end(p, "slow").items()}
    {'link_bandwidth': 1.0, 'message_latency': 3.0}
    """
    from flyersim.sim.app.microbench import Figure

    def pick(fig, unit):
        high = (unit == "B/s") == (end == "fast")
        return Figure(fig.high if high else fig.low, fig.low, fig.high)
    return {name: (pick(fig, unit), unit, how) for name, (fig, unit, how) in params.items()}


def _size_rows(comm, plan, size, graphs, per_node):
    """Measure every algorithm at ``size`` on this job and (rank 0) simulate it on its graph in ``graphs``;
    MPICH's own Allreduce as it runs with ``per_node`` ranks sharing memory (:func:`mpich_choice`)."""
    from flyersim.sim.app.runner import layout_of, run_sizes, search_of

    graph = graphs[plan.algos[0]]  # the algorithms' graphs differ only in their pair pool
    layout = layout_of(graph)
    bench = mpibench.Plan(plan.algos, (size,), plan.iters, plan.warmup, plan.dtype,
                          graph.graph["gpus_per_node"], True, layout, search_of(graph, layout), plan.blocks)
    measured = mpibench.collect(bench, comm)
    if comm.rank:
        return []
    itemsize = np.dtype(plan.dtype).itemsize
    rows = []
    for m in measured:
        native = m["algo"] == mpibench.BASELINE
        model = graphs[m["algo"]].graph.get("library", graphs[m["algo"]]) if native else graphs[m["algo"]]
        algo, params = mpich_choice(size, itemsize, comm.size // per_node, per_node) if native else (m["algo"], {})
        (p,) = run_sizes(model, [algo], [size], plan.dtype, plan.model, params=params)
        band = [run_sizes(model.graph["ends"][e], [algo], [size], plan.dtype, plan.model, params=params)[0]["time_s"]
                * 1e6 if "ends" in model.graph else None for e in ("fast", "slow")]
        t, guess = m["p50_us"], p["time_s"] * 1e6
        x = log_error(guess, t)
        rows.append({"algo": m["algo"], "bytes": m["bytes"], "measured_us": t,
                     "measured_p25_us": m["p25_us"], "measured_p75_us": m["p75_us"],
                     "measured_iqr_pct": m["iqr_pct"], "measured_blocks_pct": m["blocks_pct"],
                     "measured_spread_pct": m["spread_pct"], "measured_min_us": m["min_us"],
                     "measured_max_us": m["max_us"], "predicted_us": guess, "predicted_fast_us": band[0],
                     "predicted_slow_us": band[1], "log_error": x, "error_pct": error_pct(x),
                     "noisy": m["spread_pct"] > 100 * plan.tolerance, "schedule": p["algo"], "model": plan.model,
                     "calibrated_at": graph.graph.get("calibrated_at", ""), "host_memory": m["host_memory"],
                     **dict(zip(("pair_bandwidth", "pair_bandwidth_p25", "pair_bandwidth_p75"),
                                graphs[m["algo"]].graph.get("calibration", {}).get("pair_bandwidth", [None] * 3)))})
    return rows


def render(report, fmt, title):
    """The report as a table, CSV (the rows) or JSON."""
    rows = report["rows"]
    if fmt == "csv":
        return to_csv(rows)
    if fmt == "json":
        return to_json(report)
    lines = [f"# flyersim validate: {title}; measured = median time, spread = the larger of IQR/median and "
             "the range of the blocks' medians over the median; "
             "error % = 100 sign(x)(e^|x| - 1), x = ln(predicted/measured)",
             f"{'size':>12}  {'algo':<14}{'measured(us)':>14}{'spread(%)':>11}{'predicted(us)':>15}{'error(%)':>10}"]
    for r in rows:
        flag = "  noisy" if r["noisy"] else ""
        lines.append(f"{r['bytes']:>12d}  {r['algo']:<14}{r['measured_us']:>14.2f}{r['measured_spread_pct']:>11.1f}"
                     f"{r['predicted_us']:>15.2f}{r['error_pct']:>10.1f}{flag}")
    for algo, e in report["geomean_error"].items():
        if e is None:
            lines.append(f"# {algo}: too noisy to validate: {report['too_noisy'][algo]}; rerun with more --iters "
                         "on a quieter machine, or ask for less (--tolerance)")
        else:
            lines.append(f"# {algo}: geometric-mean error {100 * e:.1f}%, bias {100 * report['bias'][algo]:+.1f}%")
    lines += [f"# note: {n}" for n in report["notes"]]
    return "\n".join(lines)


def plot(rows, path):
    """Measured (solid, quartile bars) and predicted (dashed) time against size, one colour per algorithm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for k, algo in enumerate(dict.fromkeys(r["algo"] for r in rows)):
        mine = [r for r in rows if r["algo"] == algo]
        x = [r["bytes"] for r in mine]
        y = [r["measured_us"] for r in mine]
        spread = [[m - r["measured_p25_us"] for m, r in zip(y, mine)],
                  [r["measured_p75_us"] - m for m, r in zip(y, mine)]]
        ax.errorbar(x, y, yerr=spread, fmt="o-", color=f"C{k}", capsize=2, label=f"{algo} measured")
        ax.plot(x, [r["predicted_us"] for r in mine], "s--", color=f"C{k}", label=f"{algo} predicted")
    ax.set(xscale="log", yscale="log", xlabel="message size (bytes)", ylabel="time (us)",
           title="flyersim validate: predicted vs measured")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
