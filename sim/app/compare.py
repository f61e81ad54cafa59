"""``flyersim compare``: algorithms x GPU counts x sizes on one cluster, as one tidy table and a figure.

Rows are :func:`sim.metrics.record` rows (the keys of ``flyersim run``) plus
``requested_algo``, the name asked for (``nccl`` runs as ``nccl-ring`` or
``nccl-tree`` by size). The figure has busbw and algbw panels, one line per
requested algorithm against GPUs, or against size when there is one GPU count
and several sizes.

>>> from flyersim.topologies import load
>>> rows = grid(lambda n: load("fireflyer2", gpus=n), [8, 16], ["hfreduce", "ring"], [1 << 20])
>>> [(r["requested_algo"], r["gpus"]) for r in rows]
[('hfreduce', 8), ('ring', 8), ('hfreduce', 16), ('ring', 16)]
>>> print(table(rows[:1]).splitlines()[0])
    gpus            size  algo              runs as                 time(us)  algbw(GB/s)  busbw(GB/s)  bottleneck
>>> gpu_counts("16,x")
Traceback (most recent call last):
ValueError: --gpus: expected comma-separated positive integers, got '16,x'
"""

from flyersim.sim.app.report import bottleneck_label
from flyersim.sim.app.runner import run_sizes


def gpu_counts(text):
    """Parse ``16,128,1024`` into a list of positive ints."""
    try:
        counts = [int(x) for x in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise ValueError(f"--gpus: expected comma-separated positive integers, got {text!r}")
    return counts


def grid(load, gpus, algos, sizes, dtype="float32", model="flow", collective="allreduce", params=None,
         max_memory=None):
    """Simulate every algorithm at every size on ``load(n)`` for each GPU count n; return tidy rows.

    Every GPU count is checked (algorithms, parameters, ``max_memory`` bytes, default this machine's)
    before any is simulated.
    """
    graphs = {n: load(n) for n in gpus}
    for n in gpus:
        run_sizes(graphs[n], algos, sizes, dtype, model, collective, params=params, max_memory=max_memory,
                  check_only=True)
    rows = []
    for n in gpus:
        records = run_sizes(graphs.pop(n), algos, sizes, dtype, model, collective, params=params,
                            max_memory=max_memory)
        requested = [a for a in algos for _ in sizes]  # run_sizes: algorithm-major, then size
        rows += [{"requested_algo": name, **rec} for name, rec in zip(requested, records)]
    return rows


def table(rows):
    """Fixed-width table, one line per row."""
    lines = [f"{'gpus':>8}{'size':>16}  {'algo':<18}{'runs as':<18}{'time(us)':>14}{'algbw(GB/s)':>13}"
             f"{'busbw(GB/s)':>13}  bottleneck"]
    for r in rows:
        lines.append(f"{r['gpus']:>8d}{r['bytes']:>16d}  {r['requested_algo']:<18}{r['algo']:<18}"
                     f"{r['time_s'] * 1e6:>14.1f}{r['algbw_GBps']:>13.3f}{r['busbw_GBps']:>13.3f}  "
                     f"{bottleneck_label(r)}")
    return "\n".join(lines)


def plot(rows, path):
    """Write busbw and algbw per requested algorithm vs GPUs (or vs size for one GPU count) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_size = len({r["gpus"] for r in rows}) == 1 and len({r["bytes"] for r in rows}) > 1
    x_key, x_label = ("bytes", "message size (bytes)") if by_size else ("gpus", "GPUs")
    series = {}
    for r in rows:
        label = r["requested_algo"] if by_size or len({q["bytes"] for q in rows}) == 1 \
            else f"{r['requested_algo']} {r['bytes']} B"
        series.setdefault(label, []).append(r)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, key, name in zip(axes, ("busbw_GBps", "algbw_GBps"), ("busbw", "algbw")):
        for label, part in series.items():
            part = sorted(part, key=lambda r: r[x_key])
            ax.plot([r[x_key] for r in part], [r[key] for r in part], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(x_label)
        ax.set_ylabel(f"{name} (GB/s)")
        ax.grid(True, alpha=0.3)
    first = rows[0]
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{first['collective']} on {first['topology']}, model {first['model']}")
    fig.savefig(path, dpi=120)
    plt.close(fig)
