"""Render result records as an nccl-tests style table, CSV or JSON.

The table's bottleneck column says ``latency`` when no resource was busy for
at least half the run (latencies and dependencies, not bandwidth, set the
time), naming the busiest one; CSV and JSON keep the raw
``bottleneck``/``bottleneck_util``. Columns stay apart up to 1 PiB messages.

>>> rows = [{"bytes": 1048576, "count": 262144, "type": "float32", "algo": "ring", "time_s": 1e-3,
...          "algbw_GBps": 1.048576, "busbw_GBps": 1.9, "bottleneck": "n0/nic0->z0/leaf0", "bottleneck_util": 0.9},
...         {"bytes": 1 << 40, "count": 1 << 38, "type": "float32", "algo": "hfreduce-nvlink", "time_s": 912.5,
...          "algbw_GBps": 1.205, "busbw_GBps": 2.1, "bottleneck": "n0/host0 bandwidth", "bottleneck_util": 0.2}]
>>> print(table(rows))
            size          count     type  algo                  time(us)  algbw(GB/s)  busbw(GB/s)  bottleneck
         1048576         262144  float32  ring                   1000.00        1.049        1.900  n0/nic0->z0/leaf0
   1099511627776   274877906944  float32  hfreduce-nvlink   912500000.00        1.205        2.100  latency (busiest n0/host0 bandwidth 20%)
>>> print(footer(rows))
# Avg bus bandwidth    : 1.900 GB/s (ring)
# Avg bus bandwidth    : 2.100 GB/s (hfreduce-nvlink)
"""

import csv
import io
import json

FORMATS = ("table", "csv", "json")
LATENCY_BOUND_BELOW = 0.5  # busiest resource's utilisation over the run below this: the run is latency-bound


def plural(n, word):
    """``1 server``, ``2 servers``.

    >>> plural(1, "node"), plural(16, "node")
    ('1 node', '16 nodes')
    """
    return f"{n} {word}{'s' * (n != 1)}"


def bottleneck_label(row):
    """The bottleneck resource, or ``latency (busiest NAME U%)`` when nothing was near saturation."""
    util = row.get("bottleneck_util", 1.0)
    if not row["bottleneck"]:
        return "latency (nothing moved)"
    if util < LATENCY_BOUND_BELOW:
        return f"latency (busiest {row['bottleneck']} {util:.0%})"
    return row["bottleneck"]


def table(rows):
    """Fixed-width table, one line per record; a ``seed`` column when records carry one (``--seeds``)."""
    seeds = any("seed" in r for r in rows)
    head = (f"{'size':>16}{'count':>15}{'type':>9}  {'algo':<16}{'seed' if seeds else '':>{6 * seeds}}{'time(us)':>14}"
            f"{'algbw(GB/s)':>13}{'busbw(GB/s)':>13}  bottleneck")
    lines = [head]
    for r in rows:
        seed = f"{r.get('seed', ''):>6}" if seeds else ""
        lines.append(f"{r['bytes']:>16d}{r['count']:>15d}{r['type']:>9}  {r['algo']:<16}{seed}"
                     f"{r['time_s'] * 1e6:>14.2f}{r['algbw_GBps']:>13.3f}{r['busbw_GBps']:>13.3f}  "
                     f"{bottleneck_label(r)}")
    return "\n".join(lines)


def footer(rows):
    """nccl-tests' closing line: the bus bandwidth averaged over the sizes, per algorithm."""
    by_algo = {}
    for r in rows:
        by_algo.setdefault(r["algo"], []).append(r["busbw_GBps"])
    return "\n".join(f"# Avg bus bandwidth    : {sum(v) / len(v):.3f} GB/s ({algo})" for algo, v in by_algo.items())


def to_csv(rows):
    """CSV with a header of every key of the first record."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().rstrip("\n")


def to_json(rows):
    """A JSON list of the records."""
    return json.dumps(rows, indent=1)


def render(rows, fmt):
    return {"table": table, "csv": to_csv, "json": to_json}[fmt](rows)
