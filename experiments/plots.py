"""Plot helpers shared by the experiments: small, readable PNGs from tidy rows."""

import io

import matplotlib.pyplot as plt
from PIL import Image

from flyersim.experiments.sweep import nice_bytes


def figure(ncols=1, nrows=1, width=5.2, height=3.6):
    """A figure of ``nrows x ncols`` panels (axes always a flat list)."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, list(axes.flat)


def groups(rows, key):
    """``{value of key: rows}`` in first-seen order."""
    out = {}
    for row in rows:
        out.setdefault(row[key], []).append(row)
    return out


MARKERS = "osD^vPX*<>"


def lines(ax, rows, x, y, by, linestyle="-", marker=None, label_suffix="", colors=None):
    """One line per value of ``by``: ``y`` against ``x`` (rows sorted by x); returns {series: color}.

    Series get colours C0, C1, ... and, unless ``marker`` is given, a marker each, so more than ten
    series stay distinguishable.
    """
    colors = dict(colors or {})
    for k, (name, part) in enumerate(groups(rows, by).items()):
        part = sorted(part, key=lambda r: r[x])
        ax.plot([r[x] for r in part], [r[y] for r in part], linestyle=linestyle,
                marker=marker or MARKERS[k % len(MARKERS)], markersize=3.5, label=f"{name}{label_suffix}",
                color=colors.setdefault(name, f"C{k % 10}"))
    return colors


def bytes_axis(ax, values):
    """Log2 x axis labelled in KiB/MiB/GiB at a few of ``values``."""
    ticks = sorted(set(values))
    step = max(1, len(ticks) // 6)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks[::step], [nice_bytes(v) for v in ticks[::step]])
    ax.minorticks_off()


def gpus_axis(ax, values):
    """Log x axis labelled with the GPU counts."""
    ax.set_xscale("log", base=2)
    ticks = sorted(set(values))
    ax.set_xticks(ticks, [str(v) for v in ticks])
    ax.minorticks_off()


def save(fig, png, title=None, dpi=90):
    """Tight layout, small file (gallery PNGs stay under 150 KB)."""
    if title:
        fig.suptitle(title, fontsize=10)
    for ax in fig.axes:
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    plt.close(fig)
    # a 256-colour palette keeps line art readable at a third of the size
    Image.open(buffer).convert("RGB").quantize(256).save(png, optimize=True)
