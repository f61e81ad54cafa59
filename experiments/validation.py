"""Do the predictions hold on real hardware? Predicted vs measured allreduce time, and the error per size.

Reads the CSV or JSON that ``flyersim validate --format csv|json`` printed (``--input FILE``), or runs
it here under ``mpiexec -n RANKS`` (``--ranks``; ``--algos``, ``--sizes``, ``--topology``, ``--iters``
are passed on; without ``--topology`` validate calibrates a model of this machine per size).  Rows
without a prediction (``mpi``, the library's own Allreduce) are plotted as measured only.

CSV columns: algo, schedule, bytes, measured_us (median), measured_min_us, measured_max_us,
predicted_us, error_pct (= 100 (predicted - measured) / measured; empty when nothing was predicted).

    mpiexec -n 4 flyersim validate --algos ring,hfreduce --sizes 64KiB,1MiB,16MiB --format json > v.json
    python experiments/validation.py --input v.json
    python experiments/validation.py --ranks 2 --algos ring,hfreduce,rabenseifner
"""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

from flyersim.experiments import plots, sweep
from flyersim.sim.app.validate import geomean_error

NAME = "validation"
COLUMNS = ["algo", "schedule", "bytes", "measured_us", "measured_min_us", "measured_max_us", "predicted_us",
           "error_pct"]


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
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise ValueError(f"{path}: no flyersim validate rows" + (f" (missing {', '.join(missing)})" if missing else ""))
    return [{c: _number(row[c]) if c not in ("algo", "schedule") else (row[c] or "") for c in COLUMNS}
            for row in rows]


def _number(value):
    if value in (None, ""):
        return ""
    return int(value) if str(value).isdigit() else float(value)


def run_validate(args):
    """Run ``flyersim validate --format json`` under mpiexec; its JSON is kept as <out>/validate.json."""
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    if mpiexec is None:
        raise ValueError("mpiexec not found (pip install mpich, or give --input FILE)")
    ranks, algos, sizes, iters = (2, "ring,hfreduce", "64KiB", 3) if args.quick else \
        (args.ranks, args.algos, args.sizes, args.iters)
    cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", "flyersim", "validate", "--format", "json",
           "--algos", algos, "--sizes", sizes, "--iters", str(iters)]
    if args.quick:
        cmd += ["--warmup", "1", "--repeats", "3"]
    if args.topology:
        cmd += ["--topology", str(args.topology)]
    print("# " + " ".join(cmd[1:]), file=sys.stderr)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise ValueError(f"flyersim validate failed: {last}")
    raw = args.out / "validate.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(done.stdout)
    return raw


def rows_of(args):
    return read_validate(args.input if args.input else run_validate(args))


def plot(rows, png):
    fig, (left, right) = plots.figure(ncols=2, width=5.0)
    algos = list(plots.groups(rows, "algo"))
    predicted = [r for r in rows if r["predicted_us"] != ""]
    for k, (algo, part) in enumerate(plots.groups(rows, "algo").items()):
        part = sorted(part, key=lambda r: r["bytes"])
        x = [r["bytes"] for r in part]
        y = [r["measured_us"] for r in part]
        spread = [[m - r["measured_min_us"] for m, r in zip(y, part)], [r["measured_max_us"] - m for m, r in zip(y, part)]]
        left.errorbar(x, y, yerr=spread, fmt="o-", color=f"C{k}", markersize=3.5, capsize=2, elinewidth=0.7,
                      label=f"{algo} measured")
        mine = [r for r in part if r["predicted_us"] != ""]
        if mine:
            left.plot([r["bytes"] for r in mine], [r["predicted_us"] for r in mine], "s--", color=f"C{k}",
                      markersize=3.5, label=f"{algo} predicted")
            geo = geomean_error([r["predicted_us"] for r in mine], [r["measured_us"] for r in mine])
            width = 0.8 / len(algos)
            right.bar([math.log2(r["bytes"]) + (k - (len(algos) - 1) / 2) * width for r in mine],
                      [r["error_pct"] for r in mine], width, color=f"C{k}", label=f"{algo} (geo-mean {100 * geo:.0f}%)")
    plots.bytes_axis(left, [r["bytes"] for r in rows])
    left.set_yscale("log")
    left.set_ylabel("time (us); bars = min..max measured", fontsize=8)
    left.legend(fontsize=7)
    sizes = sorted({r["bytes"] for r in predicted})
    right.set_xticks([math.log2(s) for s in sizes], [sweep.nice_bytes(s) for s in sizes])
    right.axhline(0, color="black", linewidth=0.8)
    right.set_ylabel("error (%) = (predicted - measured) / measured", fontsize=8)
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
    p.add_argument("--topology", type=Path, help="topology of this job (default: validate calibrates one)")
    args = p.parse_args(argv)
    return sweep.main(NAME, args, COLUMNS, plot, rows=rows_of)


if __name__ == "__main__":
    sys.exit(main())
