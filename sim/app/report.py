"""Render result records as an nccl-tests style table, CSV or JSON.

>>> rows = [{"bytes": 1048576, "count": 262144, "type": "float32", "algo": "ring",
...          "time_s": 1e-3, "algbw_GBps": 1.048576, "busbw_GBps": 1.9, "bottleneck": "n0/nic0->z0/leaf0"}]
>>> print(table(rows))
        size     count     type  algo              time(us)  algbw(GB/s)  busbw(GB/s)  bottleneck
     1048576    262144  float32  ring               1000.00        1.049        1.900  n0/nic0->z0/leaf0
"""

import csv
import io
import json

FORMATS = ("table", "csv", "json")
def table(rows):
    """Fixed-width table, one line per record."""
    head = f"{'size':>12}{'count':>10}{'type':>9}  {'algo':<14}{'time(us)':>12}{'algbw(GB/s)':>13}{'busbw(GB/s)':>13}  bottleneck"
    lines = [head]
    for r in rows:
        lines.append(f"{r['bytes']:>12d}{r['count']:>10d}{r['type']:>9}  {r['algo']:<14}{r['time_s'] * 1e6:>12.2f}"
                     f"{r['algbw_GBps']:>13.3f}{r['busbw_GBps']:>13.3f}  {r['bottleneck']}")
    return "\n".join(lines)


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
