"""The sweep machinery every experiment shares: points -> parallel map -> tidy CSV -> figure.

A *point* is a plain dict (so it pickles to any worker) naming one simulation:

``preset``     preset name or ``.toml`` path; ``gpus``, ``zones`` (optional); ``overrides``: dotted TOML keys;
``algos``      algorithms to run on that topology; ``sizes``: message sizes in bytes; ``model``: flow|analytic;
``measure``    ``"records"`` (one row per algorithm and size: the keys of ``flyersim run --format csv``) or
               ``"classes"`` (one row per algorithm and resource class: peak utilisation in that class);
``params``     algorithm parameters (``--param``), given to every algorithm of the point;
``labels``     extra columns copied into every row (series name, variant, ...);
``skip_unsupported``  when true, an algorithm that raises ValueError (cannot serve the rank count) is
               reported on stderr and left out instead of failing the sweep;
``stragglers`` (optional) the keyword arguments of a :class:`sim.stragglers.Stragglers` (slow parts, late
               ranks, noise) applied to every run of the point;
``max_memory`` (optional) bytes a point may take (default: what the machine has available; with
               ``--jobs N`` local workers, 1/N of it each), checked before anything is built.

:func:`run_points` maps :func:`run_point` over the points, in order, serially (``jobs=1``), on local
processes (``jobs>1``, at most one per CPU) or, when the script was started as ``mpiexec -n N python -m
mpi4py.futures script.py``, on the MPI workers; every way gives the same rows in the same order.  Ctrl-C
stops the workers at once.  :func:`main` is the whole life of a script: parse, check the output folder,
build points, run, write ``<out>/<name>.csv``, plot ``<out>/<name>.png`` (each file whole or not at all).

>>> rows = run_point({"preset": "ring", "gpus": 8, "algos": ["ring"], "sizes": [1 << 20], "labels": {"series": "x"}})
>>> rows[0]["series"], rows[0]["requested_algo"], rows[0]["gpus"], rows[0]["busbw_GBps"] > 0
('x', 'ring', 8, True)
"""

import csv
import math
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
from numba.core.event import install_timer

from flyersim import collectives
from flyersim import topologies
from flyersim.sim.metrics import utilisation
from flyersim.sim.stragglers import Stragglers
from flyersim.sim.app.runner import run_sizes
from flyersim.sim.app.args import Parser, int_list, names, override, positive_int, size, sizes  # noqa: F401 (scripts use sweep.X)
from flyersim.sim.budget import check_topology, machine_memory
from flyersim.sim.outputs import atomic_path, check_writable
from flyersim.topologies.units import parse_size

RECORD_COLUMNS = ["requested_algo", "algo", "model", "gpus", "nodes", "bytes", "time_s", "algbw_GBps",
                  "busbw_GBps", "bottleneck", "bottleneck_class", "bottleneck_util"]


def parser(name, description):
    """The options every experiment has: --out, --quick, --jobs, --no-plot, --replot."""
    p = Parser(prog=f"{name}.py", description=description)
    p.add_argument("--out", type=Path, default=Path("results") / name, help=f"output folder (default results/{name}/)")
    p.add_argument("--quick", action="store_true", help="smoke mode: tiny scales, seconds (CI)")
    p.add_argument("--jobs", type=positive_int, default=1,
                   help="simulate points on N local processes (under `mpiexec ... python -m mpi4py.futures` "
                        "the MPI workers are used instead)")
    p.add_argument("--no-plot", action="store_true", help="write the CSV only")
    p.add_argument("--replot", action="store_true", help=f"redraw the figure from an existing <out>/{name}.csv")
    return p


def add_topology_args(p, gpus=128, size_default="186MiB"):
    """--preset/--gpus/--zones/--set/--size/--model; ``gpus`` a list makes --gpus a list, no ``size_default`` no --size."""
    p.add_argument("--preset", default="fireflyer2", help="preset name or topology .toml (default fireflyer2)")
    many = isinstance(gpus, list)
    p.add_argument("--gpus", type=int_list if many else positive_int, default=gpus,
                   help=f"GPU count{'s' * many} (default {','.join(map(str, gpus)) if many else gpus})")
    p.add_argument("--zones", type=positive_int, help="force this many fat-tree zones")
    p.add_argument("--set", dest="overrides", action="append", type=override, default=[], metavar="KEY=VALUE",
                   help="override a topology parameter (repeatable), as in flyersim run")
    if size_default:
        p.add_argument("--size", "--sizes", dest="size", type=size, default=parse_size(size_default),
                       help=f"message size per GPU (default {size_default})")
    p.add_argument("--model", default="flow", choices=("flow", "analytic"))


# ---------------------------------------------------------------- one point

def point(preset, gpus, algos, sizes_, *, zones=None, overrides=None, model="flow", measure="records",
          skip_unsupported=False, params=None, **labels):
    """A point dict (see the module docstring); ``params`` are algorithm parameters; keyword ``labels`` become columns."""
    return {"preset": str(preset), "gpus": gpus, "zones": zones, "overrides": dict(overrides or {}),
            "algos": list(algos), "sizes": list(sizes_), "model": model, "measure": measure,
            "skip_unsupported": skip_unsupported, "params": dict(params or {}), "labels": labels}


def load(pt):
    """The topology graph of a point (refused before it is built if it cannot fit in memory)."""
    limit = pt.get("max_memory") or machine_memory()
    return topologies.load(pt["preset"], gpus=pt["gpus"], zones=pt.get("zones"), overrides=pt.get("overrides"),
                           check_size=lambda what, elements: check_topology(what, elements, limit))


def run_point(pt):
    """Simulate one point; its rows (labels first), with ``wall_s``: the simulator's own seconds per algorithm.

    ``wall_s`` leaves out the time numba spends loading (or compiling) machine code: once per process
    and kernel, whichever point comes first, not a cost of that point.
    """
    graph = load(pt)
    classes = pt.get("measure", "records") == "classes"
    rows = []
    for algo in pt["algos"]:
        one_off = []  # seconds holding numba's compiler lock: every cache load and compilation takes it
        start = time.perf_counter()
        try:
            with install_timer("numba:compiler_lock", one_off.append):
                out = run_sizes(graph, [algo], pt["sizes"], model=pt.get("model", "flow"), keep_runs=classes,
                                params=pt.get("params"), max_memory=pt.get("max_memory"), timeline=False,
                                stragglers=Stragglers(**pt["stragglers"]) if pt.get("stragglers") else None)
        except ValueError as err:  # e.g. an algorithm that cannot serve this rank count
            if not pt.get("skip_unsupported"):
                raise
            print(f"# skipped {algo} on {pt['gpus']} GPUs: {err}", file=sys.stderr)
            continue
        records, runs = out if classes else (out, None)
        wall = (time.perf_counter() - start - sum(one_off)) / len(records)
        base = {**pt.get("labels", {}), "zones": graph.graph.get("zones", 1), "requested_algo": algo}
        if classes:  # the runs hold every op's timeline: summarise them here, ship only the rows
            rows += [{**base, **rec, **cls} for rec, run in zip(records, runs) for cls in class_rows(run)]
        else:
            rows += [{**base, **rec, "wall_s": wall} for rec in records]
    return rows


def resource_class(run, i):
    """The class of resource ``i``; network links split into NIC-leaf, leaf-spine and inter-zone hops."""
    cls = run.routes.classes[i]
    if cls != "ib":
        return cls
    ends = run.routes.names[i].split("->")
    if any("/nic" in end for end in ends):
        return "ib nic-leaf"
    return "ib inter-zone" if any(end.startswith("iz/") for end in ends) else "ib leaf-spine"


def class_rows(run):
    """Per resource class of ``run``: peak and mean utilisation and the busiest resource of the class."""
    util = utilisation(run)
    by_class = {}
    for i, u in enumerate(util):
        by_class.setdefault(resource_class(run, i), []).append(i)
    top = int(np.argmax(util)) if util.size else -1
    out = []
    for cls in sorted(by_class):
        idx = by_class[cls]
        busiest = max(idx, key=lambda i: util[i])
        out.append({"resource_class": cls, "peak_util": float(util[busiest]),
                    "mean_util": float(np.mean(util[idx])), "busiest": run.routes.names[busiest],
                    "resources": len(idx), "is_bottleneck": busiest == top})
    return out


# ---------------------------------------------------------------- many points

def _mpi_executor():
    """An MPIPoolExecutor when this process is the master of ``python -m mpi4py.futures``, else None."""
    if "mpi4py.futures" not in sys.modules:
        return None
    from mpi4py import MPI
    from mpi4py.futures import MPIPoolExecutor

    return MPIPoolExecutor() if MPI.COMM_WORLD.Get_size() > 1 else None


def cpus():
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def capped_jobs(jobs):
    """``jobs`` capped at the CPU count, with a note on stderr when capped (more processes only add memory)."""
    if jobs > cpus():
        print(f"# --jobs {jobs} capped at {cpus()}, the CPUs of this machine", file=sys.stderr)
    return min(jobs, cpus())


def _ignore_sigint():
    """Worker initialiser: Ctrl-C reaches the whole process group; only the parent handles it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_points(points, jobs=1, desc="points", progress=None, func=None):
    """The rows of every point, in point order; ``jobs`` local processes or the MPI workers.

    ``func`` (a module-level function, default :func:`run_point`) turns one point into its rows.
    """
    func = func or run_point
    if progress is None:
        progress = sys.stderr.isatty()
    mpi = _mpi_executor()
    pool = None if mpi or jobs <= 1 else multiprocessing.Pool(jobs, initializer=_ignore_sigint)
    if pool:  # the workers share this machine's memory
        share = machine_memory() // jobs
        points = [{"max_memory": share, **pt} for pt in points]
    results = mpi.map(func, points) if mpi else pool.imap(func, points) if pool else map(func, points)
    if progress:
        from tqdm import tqdm

        results = tqdm(results, total=len(points), desc=desc, unit="pt")
    try:
        return [row for rows in results for row in rows]
    finally:  # an error or Ctrl-C stops the local workers now, not after the points they hold
        if pool:
            pool.terminate()
            pool.join()
        if mpi:
            mpi.shutdown(wait=False, cancel_futures=True)


def check(points):
    """Fail fast, in one line, on an unknown algorithm or a topology that does not load."""
    known = collectives.names("allreduce")
    seen = set()
    for pt in points:
        for algo in pt["algos"]:
            if algo not in known:
                raise ValueError(f"unknown allreduce algorithm {algo!r} (choose from {', '.join(known)})")
        key = repr((pt["preset"], pt["zones"], sorted(pt["overrides"].items())))
        if key not in seen:  # loading the smallest scale of a configuration checks its description
            seen.add(key)
            topologies.load(pt["preset"], nodes=1 if pt["zones"] is None else pt["zones"], zones=pt["zones"],
                            overrides=pt["overrides"])


# ---------------------------------------------------------------- CSV

def write_csv(rows, path, columns):
    """Write ``rows`` (dicts) with exactly ``columns``; floats with 9 significant digits; whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        for row in rows:
            w.writerow([f"{row[c]:.9g}" if isinstance(row[c], float) else row[c] for c in columns])


def read_csv(path):
    """Rows of a CSV as dicts, numbers parsed (int, then float), True/False as bools."""
    def parse(text):
        if text is None:  # a short row: read_results says which line
            return None
        if text in ("True", "False"):
            return text == "True"
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text

    with open(path, newline="") as f:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def read_results(path, columns):
    """:func:`read_csv` of an experiment's CSV, refusing in one line a file that lacks ``columns`` or is cut short."""
    if not path.is_file():
        raise ValueError(f"--replot: no {path} to redraw (run without --replot first)")
    try:
        rows = read_csv(path)
    except (csv.Error, UnicodeDecodeError) as err:
        raise ValueError(f"--replot: {path} is not a CSV ({err})") from None
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"--replot: {path} is not this experiment's CSV (no column {', '.join(missing)})")
    for line, row in enumerate(rows, start=2):  # DictReader marks missing fields None, extra ones under key None
        if None in row.values() or None in row:
            raise ValueError(f"--replot: {path} line {line} does not have the header's {len(header)} fields "
                             f"(a truncated file?)")
    if not rows:
        raise ValueError(f"--replot: {path} has no rows")
    return rows


def nice_bytes(n):
    """``186 MiB`` style label of a byte count."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.0f} {unit}" if math.isclose(v, round(v)) else f"{v:.1f} {unit}"
    return f"{n} B"


def main(name, args, columns, plot, *, points=None, rows=None, finish=None):
    """Run an experiment and write ``<out>/<name>.csv`` and ``<out>/<name>.png``; bad input ends in one line.

    ``points(args)`` gives the points to simulate (checked, then mapped by :func:`run_points`), or
    ``rows(args)`` gives the rows directly; ``finish(rows)`` may add columns before the CSV is written.
    Output paths are checked before any work; Ctrl-C ends with one line and exit code 130.
    """
    csv_path, png = args.out / f"{name}.csv", args.out / f"{name}.png"
    try:
        if args.replot:
            table = read_results(csv_path, columns)
        else:
            check_writable(csv_path, "--out", make_folder=True)
        if not args.no_plot:
            check_writable(png, "--out")
        if not args.replot:
            if points is not None:
                pts = points(args)
                check(pts)
                table = run_points(pts, capped_jobs(args.jobs), desc=name)
            else:
                table = rows(args)
            table = finish(table) if finish else table
            if not table:
                raise ValueError("no results (every point was empty)")
            write_csv(table, csv_path, columns)
            print(f"# {len(table)} rows written to {csv_path}", file=sys.stderr)
            table = read_csv(csv_path)  # plot what the CSV holds, as --replot would
        if not args.no_plot:
            import matplotlib

            matplotlib.use("Agg")
            with atomic_path(png) as tmp:
                plot(table, tmp)
            print(f"# figure written to {png}", file=sys.stderr)
    except (ValueError, OSError) as err:
        print(f"{name}.py: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}.py: interrupted", file=sys.stderr)
        return 130
    return 0
