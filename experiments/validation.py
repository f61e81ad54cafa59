"""Do the predictions hold on real hardware? Predicted vs measured allreduce time, and the error per size.

Reads the CSV or JSON that ``flyersim validate --format csv|json`` printed (``--input FILE``), or runs
it here: under ``mpiexec -n RANKS`` on this machine (``--ranks``), or on emulated nodes
(``--emulated 4x2``: 4 nodes x 2 ranks, network namespaces joined by ``--rate``-shaped links, an
optional ``--spine`` between the two halves of the nodes, which validate's calibration then models as
two leaves, ``--leaf-size NODES/2``; needs root and this repository's ``tests/cluster``). ``--algos``, ``--sizes``,
``--topology``, ``--iters``, ``--warmup``, ``--blocks`` are passed on; without ``--topology`` validate
calibrates a model of the job per size. ``--runs N`` runs validate N times in a row and prints how far
the runs agree (:func:`repeatability`); ``sh experiments/accuracy.sh`` runs the README's three-run
measurements.

CSV columns: algo, schedule, bytes, measured_us (median), measured_p25_us, measured_p75_us,
measured_iqr_pct, measured_blocks_pct, measured_spread_pct (the larger of the two), measured_min_us,
measured_max_us, predicted_us, predicted_fast_us and predicted_slow_us (the calibration's quartiles),
log_error (ln predicted/measured), error_pct (100 sign(x)(e^|x| - 1) of it; see
``flyersim.sim.app.validate``).

    mpiexec -n 4 flyersim validate --algos ring,hfreduce --sizes 64KiB,1MiB,16MiB --format json > v.json
    python experiments/validation.py --input v.json
    python experiments/validation.py --ranks 2 --algos ring,hfreduce,rabenseifner
    python experiments/validation.py --emulated 4x2 --rate 1gbit --sizes 1MiB,4MiB,16MiB,64MiB
"""

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

from flyersim.experiments import loading

with loading(__file__):  # Ctrl-C while the modules load: one line, exit 130
    from flyersim.experiments import plots, sweep
    from flyersim.sim.outputs import atomic_path

NAME = "validation"
COLUMNS = ["algo", "schedule", "bytes", "measured_us", "measured_p25_us", "measured_p75_us", "measured_iqr_pct",
           "measured_blocks_pct", "measured_spread_pct", "measured_min_us", "measured_max_us", "predicted_us",
           "predicted_fast_us", "predicted_slow_us", "log_error", "error_pct"]
TEXT = ("algo", "schedule")
REQUIRED = ("algo", "bytes", "measured_us", "predicted_us")  # files of older versions lack the rest


def read_validate(path):
    """Rows of a ``flyersim validate`` CSV or JSON file."""
    text = Path(path).read_text()
    if text.lstrip().startswith("{"):
        try:
            rows = json.loads(text)["rows"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{path}: not the JSON of flyersim validate --format json") from None
    else:
        import csv
        import io

        rows = list(csv.DictReader(io.StringIO(text)))
    missing = [c for c in REQUIRED if rows and c not in rows[0]]
    if not rows or missing:
        raise ValueError(f"{path}: no flyersim validate rows" + (f" (missing {', '.join(missing)})" if missing else ""))
    return [{c: _number(row.get(c)) if c not in TEXT else (row.get(c) or "") for c in COLUMNS} for row in rows]


def _number(value):
    if value in (None, ""):
        return ""
    try:
        return int(value) if str(value).isdigit() else float(value)
    except ValueError:
        raise ValueError(f"not a number: {value!r}") from None


def _validate_args(args):
    algos, sizes, iters = ("ring,hfreduce", "64KiB", 3) if args.quick else (args.algos, args.sizes, args.iters)
    out = ["-m", "flyersim", "validate", "--format", "json", "--algos", algos, "--sizes", sizes,
           "--iters", str(iters), "--tolerance", str(args.tolerance), "--blocks", str(args.blocks)]
    if args.quick:
        out += ["--warmup", "1", "--repeats", "3"]
    elif args.warmup is not None:
        out += ["--warmup", str(args.warmup)]
    if args.topology:
        out += ["--topology", str(args.topology)]
    return out


def emulated_shape(text):
    """``NODESxRANKS`` -> (nodes, ranks per node).

    >>> emulated_shape("4x2")
    (4, 2)
    """
    m = re.fullmatch(r"(\d+)x(\d+)", text or "")
    if not m or int(m[1]) < 2 or int(m[2]) < 1:
        raise ValueError(f"--emulated: expected NODESxRANKS with at least 2 nodes, e.g. 4x2, got {text!r}")
    return int(m[1]), int(m[2])


def run_validate(args):
    """Run ``flyersim validate --format json`` ``--runs`` times in a row (here, or on emulated nodes); each
    run's JSON kept as <out>/validate-K.json, the last also as <out>/validate.json (the figure's), and with
    more than one run the repeatability table (:func:`repeatability`) printed."""
    reports = []
    for k in range(args.runs):
        if args.runs > 1:
            print(f"# run {k + 1} of {args.runs}", file=sys.stderr)
        out = _validate_once(args)
        report = json.loads(out)
        reports.append(report)
        _summary(report)
        args.out.mkdir(parents=True, exist_ok=True)
        for name in ([f"validate-{k + 1}.json"] if args.runs > 1 else []) + ["validate.json"]:
            with atomic_path(args.out / name) as tmp:
                tmp.write_text(out)
    if args.runs > 1:
        print(repeatability(reports, args.tolerance))
    return args.out / "validate.json"


def _validate_once(args):
    """One ``flyersim validate --format json`` run; its standard output."""
    if args.emulated:
        nodes, ppn = emulated_shape(args.emulated)
        root = Path(__file__).resolve().parents[1]
        if not (root / "tests" / "cluster").is_dir():
            raise ValueError("--emulated needs the flyersim repository (tests/cluster), not an installed copy")
        sys.path.insert(0, str(root))
        from tests.cluster import Cluster, why_not

        reason = why_not()
        if reason:
            raise ValueError(f"--emulated: {reason}")
        print(f"# {nodes} emulated nodes x {ppn} ranks, {args.rate} links"
              + (f", spine {args.spine}" if args.spine else "") + ": " + " ".join(_validate_args(args)),
              file=sys.stderr)
        leaves = ["--leaf-size", str(nodes // 2)] if args.spine else []  # the emulation's two halves
        with Cluster(nodes, args.rate, args.spine) as cluster:
            code, out, err = cluster.mpiexec([sys.executable, *_validate_args(args), *leaves], ppn,
                                             timeout=args.timeout)
    else:
        mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
        if mpiexec is None:
            raise ValueError("mpiexec not found (pip install mpich, or give --input FILE)")
        cmd = [mpiexec, "-n", str(2 if args.quick else args.ranks), sys.executable, *_validate_args(args)]
        print("# " + " ".join(cmd[1:]), file=sys.stderr)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            raise ValueError(f"flyersim validate did not finish in {args.timeout:g} s") from None
        code, out, err = done.returncode, done.stdout, done.stderr
    if code:
        last = (err.strip().splitlines() or ["(no message)"])[-1]
        raise ValueError(f"flyersim validate failed: {last}")
    return out


def _summary(report):
    for algo, why in report.get("too_noisy", {}).items():
        print(f"# {algo}: too noisy to validate: {why}", file=sys.stderr)
    for algo, e in report.get("geomean_error", {}).items():
        if e is not None:
            print(f"# {algo}: geometric-mean error {100 * e:.1f}%, bias {100 * report['bias'][algo]:+.1f}%",
                  file=sys.stderr)


LARGE = 16 << 20  # sizes from here on: where a shaped 1 Gbit/s network is the bottleneck (README)


def _geomean(rows, tolerance):
    """``exp(mean |log_error|) - 1`` in %, or "noisy" when a row's spread exceeds ``tolerance``."""
    if not rows:
        return "-"
    if any(_spread(r) > 100 * tolerance for r in rows):
        return "noisy"
    return f"{100 * math.expm1(sum(abs(r['log_error']) for r in rows) / len(rows)):.1f}%"


def repeatability(reports, tolerance=0.10):
    """Consecutive validate runs side by side: per row each run's median and spread, the medians' range
    (% of their median) and whether it lies within the largest spread a run reported; then each
    algorithm's geometric-mean error per run, over all sizes and over sizes of 16 MiB and up (if any).

    >>> row = lambda t, s: {"algo": "ring", "bytes": 1 << 20, "measured_us": t, "measured_spread_pct": s,
    ...                     "log_error": 0.1}
    >>> print(repeatability([{"rows": [row(100.0, 2.0)]}, {"rows": [row(103.0, 4.0)]}]))
    # 2 runs of flyersim validate: median (spread %) per run; range = (max - min) / median of the medians; agree = range <= the largest spread
            size  algo                       run 1             run 2   range  agree
           1 MiB  ring               100.0us (2.0)     103.0us (4.0)    2.9%  yes
    # geometric-mean error per run, all sizes: ring 10.5% / 10.5%
    """
    n = len(reports)
    lines = [f"# {n} runs of flyersim validate: median (spread %) per run; range = (max - min) / median of the "
             "medians; agree = range <= the largest spread",
             f"{'size':>12}  {'algo':<14}" + "".join(f"{f'run {k + 1}':>18}" for k in range(n))
             + f"{'range':>8}  agree"]
    keys = list(dict.fromkeys((r["algo"], r["bytes"]) for r in reports[0]["rows"]))
    for algo, nbytes in keys:
        mine = [next((r for r in rep["rows"] if (r["algo"], r["bytes"]) == (algo, nbytes)), None) for rep in reports]
        if any(r is None for r in mine):
            continue
        t = [r["measured_us"] for r in mine]
        spread = [_spread(r) for r in mine]
        rng = 100 * (max(t) - min(t)) / sorted(t)[len(t) // 2]
        cells = "".join(f" {_time(v) + f' ({s:.1f})':>17}" for v, s in zip(t, spread))
        lines.append(f"{sweep.nice_bytes(nbytes):>12}  {algo:<14}{cells}{rng:>7.1f}%  "
                     f"{'yes' if rng <= max(spread) else 'no'}")
    algos = list(dict.fromkeys(a for a, _ in keys))
    for label, keep in (("all sizes", lambda b: True), ("16 MiB and up", lambda b: b >= LARGE)):
        if not any(keep(b) for _, b in keys):
            continue
        per = [f"{a} " + " / ".join(_geomean([r for r in rep["rows"] if r["algo"] == a and keep(r["bytes"])],
                                             tolerance) for rep in reports) for a in algos]
        lines.append(f"# geometric-mean error per run, {label}: " + ", ".join(per))
    return "\n".join(lines)


def _time(us):
    return f"{us / 1e3:.2f}ms" if us >= 1e4 else f"{us:.1f}us"


def rows_of(args):
    return read_validate(args.input if args.input else run_validate(args))


def _spread(row):
    """A row's spread in %: ``measured_spread_pct``, else (older files) its IQR/median, else 0."""
    for key in ("measured_spread_pct", "measured_iqr_pct"):
        if row.get(key, "") != "":
            return row[key]
    return 0.0


def plot(rows, png, tolerance=0.10):
    """Left: measured (quartile bars) and predicted time; right: error per size (bars: measured spread).

    An algorithm with a size measured with more spread than ``tolerance`` says "too noisy" beside its
    geometric mean, as ``flyersim validate`` refuses to print one.
    """
    fig, (left, right) = plots.figure(ncols=2, width=5.0)
    algos = list(plots.groups(rows, "algo"))
    predicted = [r for r in rows if r["predicted_us"] != ""]
    for k, (algo, part) in enumerate(plots.groups(rows, "algo").items()):
        part = sorted(part, key=lambda r: r["bytes"])
        x = [r["bytes"] for r in part]
        y = [r["measured_us"] for r in part]
        low = [r["measured_p25_us"] if r["measured_p25_us"] != "" else r["measured_min_us"] for r in part]
        high = [r["measured_p75_us"] if r["measured_p75_us"] != "" else r["measured_max_us"] for r in part]
        left.errorbar(x, y, yerr=[[m - a for m, a in zip(y, low)], [b - m for m, b in zip(y, high)]], fmt="o-",
                      color=f"C{k}", markersize=3.5, capsize=2, elinewidth=0.7, label=f"{algo} measured")
        mine = [r for r in part if r["predicted_us"] != ""]
        if mine:
            left.plot([r["bytes"] for r in mine], [r["predicted_us"] for r in mine], "s--", color=f"C{k}",
                      markersize=3.5, label=f"{algo} predicted")
            band = [r for r in mine if r["predicted_fast_us"] != "" and r["predicted_slow_us"] != ""]
            if band:
                left.fill_between([r["bytes"] for r in band], [r["predicted_fast_us"] for r in band],
                                  [r["predicted_slow_us"] for r in band], color=f"C{k}", alpha=0.12, linewidth=0)
            logs = [math.log(r["predicted_us"] / r["measured_us"]) for r in mine]
            geo = math.expm1(sum(map(abs, logs)) / len(logs))
            spread = [_spread(r) for r in mine]
            noisy = any(v > 100 * tolerance for v in spread)
            width = 0.8 / len(algos)
            right.bar([math.log2(r["bytes"]) + (k - (len(algos) - 1) / 2) * width for r in mine],
                      [math.copysign(100 * math.expm1(abs(v)), v) for v in logs], width, yerr=spread,
                      color=f"C{k}", ecolor="0.3", capsize=1.5, label=f"{algo} (geo-mean {100 * geo:.0f}%"
                      + (f"; too noisy for {100 * tolerance:g}%)" if noisy else ")"))
    plots.bytes_axis(left, [r["bytes"] for r in rows])
    left.set_yscale("log")
    left.set_ylabel("time (us); bars = measured quartiles,\nshade = predicted from the calibration's quartiles",
                    fontsize=7)
    left.legend(fontsize=7)
    sizes = sorted({r["bytes"] for r in predicted})
    right.set_xticks([math.log2(s) for s in sizes], [sweep.nice_bytes(s) for s in sizes])
    right.axhline(0, color="black", linewidth=0.8)
    right.set_ylabel("error (%) = 100 sign(x)(e^|x| - 1), x = ln(pred/meas)\nbars: measured spread (%)",
                     fontsize=7)
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.set_xlabel("message size per rank")
    plots.save(fig, png, "flyersim validate: predicted vs measured allreduce")


def main(argv=None):
    p = sweep.parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--input", type=Path, help="CSV or JSON printed by flyersim validate (else run it here)")
    p.add_argument("--ranks", type=sweep.positive_int, default=4, help="MPI ranks when running validate (default 4)")
    p.add_argument("--algos", default="ring,hfreduce,rabenseifner,mpi", help="algorithms passed to validate")
    p.add_argument("--sizes", default="64KiB,1MiB,16MiB", help="sizes passed to validate")
    p.add_argument("--iters", type=sweep.positive_int, default=10, help="timed runs per size (median kept)")
    p.add_argument("--warmup", type=int, help="untimed runs first (default: validate's)")
    p.add_argument("--blocks", type=sweep.positive_int, default=4,
                   help="blocks of runs, each on fresh buffers (default 4; see flyersim mpi)")
    p.add_argument("--topology", type=Path, help="topology of this job (default: validate calibrates one)")
    p.add_argument("--tolerance", type=float, default=0.10, help="accuracy asked for (see flyersim validate)")
    p.add_argument("--emulated", metavar="NODESxRANKS", help="run on emulated nodes on this machine, e.g. 4x2")
    p.add_argument("--rate", default="1gbit", help="with --emulated: per-direction rate of every node link")
    p.add_argument("--spine", help="with --emulated: rate of a link between the two halves of the nodes")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before the measurement is abandoned")
    p.add_argument("--runs", type=sweep.positive_int, default=1,
                   help="run validate this many times in a row and print how far the runs agree (default 1); "
                        "the figure shows the last")
    args = p.parse_args(argv)
    return sweep.main(NAME, args, COLUMNS, lambda rows, png: plot(rows, png, args.tolerance), rows=rows_of)


if __name__ == "__main__":
    sys.exit(main())
