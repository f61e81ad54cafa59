"""How sure is a prediction: sweep every uncertain preset parameter over its declared range.

Every ``[I]``/``[?]`` parameter of a preset declares a plausible range beside its value
(``{ value = ..., range = [low, high] }``, :mod:`topologies.config`), and an algorithm's unpublished
parameters declare theirs beside their defaults (``Param.range``, :mod:`collectives.params`, e.g. HFReduce's
``chunk_bytes`` and ``buffers``; they show as ``hfreduce.buffers``). Two sweeps:

- *one at a time* (tornado): each parameter at its low and at its high end, the others at their
  values; the swing ``|busbw(high) - busbw(low)|`` ranks which unknown moves the answer most;
- *joint*: ``samples`` draws of every parameter at once, each uniform over its range (whole numbers
  for counts such as threads), seeded per parameter by its name (:func:`draws`: a parameter's values
  do not depend on which others are swept), the same draws for every algorithm; the band is the
  min / median / max busbw of the draws.

``flyersim sensitivity`` prints both for one configuration. This script draws a tornado chart
(``--gpus-tornado`` GPUs, HFReduce and NCCL) and HFReduce vs NCCL busbw with their joint bands from
16 to 1,024 GPUs, with the paper's published ranges (arXiv:2408.14158, section IV: HFReduce 6.3-8.1
GB/s, NCCL 1.6-4.8 GB/s busbw) shaded for comparison, never used to choose a value.

CSV columns: kind (base / low / high / sample), parameter, value, sample, then the keys of
``flyersim run --format csv`` with ``requested_algo``.

    python experiments/uncertainty.py --jobs 2
"""

import sys
import zlib

from flyersim.experiments import loading

with loading(__file__):  # Ctrl-C while the modules load: one line, exit 130
    import numpy as np
    from flyersim import collectives
    from flyersim.experiments import plots, sweep
    from flyersim.topologies.config import read

NAME = "uncertainty"
COLUMNS = ["kind", "parameter", "value", "sample", *sweep.RECORD_COLUMNS]
PAPER = {"HFReduce": (6.3, 8.1), "NCCL": (1.6, 4.8)}  # busbw GB/s, arXiv:2408.14158 section IV (Fig. 7 text)
QUICK = {"gpus": [16], "tornado": 16, "size": 1 << 20, "samples": 2}


def ranges(preset, overrides=None):
    """``{parameter: (low, high)}`` of the uncertain parameters a description uses (those ``overrides`` leave ranged).

    >>> r = ranges("fireflyer2")
    >>> r["reduce_threads"], "pcie_bandwidth" in r
    ((2.0, 16.0), False)
    """
    return dict(sorted(read(preset, overrides).ranges.items()))


def _value(low, high, x):
    """The value a fraction ``x`` of the way from low to high; whole-numbered ranges give whole numbers."""
    whole = isinstance(low, int) and isinstance(high, int)  # an algorithm's counts and byte sizes
    if whole or (float(low).is_integer() and float(high).is_integer() and high - low < 1e6):  # parsed counts
        return int(round(low + x * (high - low)))
    return low + x * (high - low)


def algorithm_ranges(algo, collective="allreduce"):
    """``{parameter: (low, high)}`` an algorithm declares for its unpublished parameters (``Param.range``).

    >>> algorithm_ranges("hfreduce")["buffers"], algorithm_ranges("ring")
    ((2, 64), {})
    """
    record = collectives.ALGORITHMS.get((collective, algo))
    return {} if record is None else record.params.ranges()


def draws(seed, name, samples):
    """``samples`` uniform draws in [0, 1) for parameter ``name``, seeded by ``seed`` and the name alone.

    >>> bool((draws(0, "buffers", 3) == draws(0, "buffers", 5)[:3]).all()), draws(0, "a", 1) != draws(0, "b", 1)
    (True, array([ True]))
    """
    return np.random.default_rng([seed % 2**63, zlib.crc32(name.encode())]).random(samples)


def points(preset, gpus, algos, sizes, *, samples=16, seed=0, overrides=None, zones=None, model="flow",
           one_at_a_time=True):
    """Sweep points, per algorithm: the base, each parameter at its low and high end, and ``samples`` joint draws.

    >>> pts = points("fireflyer2", 16, ["hfreduce"], [1 << 20], samples=2)
    >>> [p["labels"]["kind"] for p in pts][:3], pts[-3]["labels"]["parameter"]
    (['base', 'low', 'high'], 'hfreduce.chunk_bytes')
    >>> len(pts) == 1 + 2 * (len(ranges("fireflyer2")) + len(algorithm_ranges("hfreduce"))) + 2
    True
    """
    overrides = dict(overrides or {})
    span = ranges(preset, overrides)
    tuned = {algo: algorithm_ranges(algo) for algo in algos}
    x = {name: draws(seed, name, samples) for name in span}
    x.update({f"{algo}.{name}": draws(seed, f"{algo}.{name}", samples) for algo in algos for name in tuned[algo]})

    def pt(algo, kind, values, params=None, parameter="", value="", sample=-1):
        over = {**overrides, **{f"parameters.{k}": v for k, v in values.items()}}
        return sweep.point(preset, gpus, [algo], sizes, zones=zones, overrides=over, model=model, params=params,
                           kind=kind, parameter=parameter, value=value, sample=sample)

    out = []
    for algo in algos:
        out.append(pt(algo, "base", {}))
        for name, (low, high) in span.items() if one_at_a_time else ():
            out += [pt(algo, kind, {name: _value(low, high, x)}, parameter=name, value=_value(low, high, x))
                    for kind, x in (("low", 0.0), ("high", 1.0))]
        for name, (low, high) in tuned[algo].items() if one_at_a_time else ():
            out += [pt(algo, kind, {}, {name: _value(low, high, x)}, f"{algo}.{name}", _value(low, high, x))
                    for kind, x in (("low", 0.0), ("high", 1.0))]
    for algo in algos:
        for k in range(samples):
            values = {n: _value(lo, hi, x[n][k]) for n, (lo, hi) in span.items()}
            params = {n: _value(lo, hi, x[f"{algo}.{n}"][k]) for n, (lo, hi) in tuned[algo].items()}
            out.append(pt(algo, "sample", values, params, sample=k))
    return out


def summarise(rows):
    """Per (GPUs, algorithm, size): base busbw, the tornado (parameters by swing) and the joint band.

    Returns ``{(gpus, requested_algo, bytes): {"base", "tornado": [(parameter, low, high)], "band": (min, median,
    max) or None}}``; busbw in GB/s.
    """
    out = {}
    for row in rows:
        key = (row["gpus"], row["requested_algo"], row["bytes"])
        entry = out.setdefault(key, {"base": None, "ends": {}, "samples": []})
        if row["kind"] == "base":
            entry["base"] = row["busbw_GBps"]
        elif row["kind"] == "sample":
            entry["samples"].append(row["busbw_GBps"])
        else:
            entry["ends"].setdefault(row["parameter"], {})[row["kind"]] = row["busbw_GBps"]
    for entry in out.values():
        ends = entry.pop("ends")
        entry["tornado"] = sorted(((p, e["low"], e["high"]) for p, e in ends.items()),
                                  key=lambda t: -abs(t[2] - t[1]))
        s = entry.pop("samples")
        entry["band"] = (min(s), float(np.median(s)), max(s)) if s else None
    return out


def report(summary, top=None):
    """Text: per configuration the base, the joint band and the tornado (largest swing first)."""
    lines = []
    for (gpus, algo, nbytes), entry in sorted(summary.items()):
        lines.append(f"# {algo}, {gpus} GPUs, {sweep.nice_bytes(nbytes)}: busbw {entry['base']:.3f} GB/s")
        if entry["band"]:
            lo, med, hi = entry["band"]
            lines.append(f"  joint band: min {lo:.3f}  median {med:.3f}  max {hi:.3f} GB/s")
        if entry["tornado"]:
            lines.append(f"  {'parameter':<28}{'busbw at low':>14}{'at high':>10}{'swing':>9}")
            for name, low, high in entry["tornado"][:top]:
                lines.append(f"  {name:<28}{low:>14.3f}{high:>10.3f}{abs(high - low):>9.3f}")
    return "\n".join(lines)


def tidy(summary):
    """One row per (configuration, parameter) of the tornado plus one per band, for CSV/JSON output."""
    rows = []
    for (gpus, algo, nbytes), e in sorted(summary.items()):
        common = {"gpus": gpus, "algo": algo, "bytes": nbytes, "base_busbw_GBps": e["base"]}
        if e["band"]:
            rows.append({**common, "parameter": "(joint)", "low_busbw_GBps": e["band"][0],
                         "median_busbw_GBps": e["band"][1], "high_busbw_GBps": e["band"][2]})
        rows += [{**common, "parameter": p, "low_busbw_GBps": lo, "median_busbw_GBps": "", "high_busbw_GBps": hi}
                 for p, lo, hi in e["tornado"]]
    return rows


SERIES = {"hfreduce": "HFReduce", "nccl": "NCCL"}


def plot(rows, png):
    summary = summarise(rows)
    fig, (tornado, bands) = plots.figure(ncols=2, width=5.6, height=4.2)
    # left: tornado at the largest one-at-a-time configuration, HFReduce and NCCL side by side
    oat = [k for k, e in summary.items() if e["tornado"]]
    if oat:
        gpus = max(k[0] for k in oat)
        keys = sorted(k for k in oat if k[0] == gpus)
        swing = {}
        for key in keys:
            for p, lo, hi in summary[key]["tornado"]:
                swing[p] = max(swing.get(p, 0.0), abs(hi - lo))
        names = sorted(swing, key=lambda p: -swing[p])[:10]  # the largest swings of any algorithm
        y = np.arange(len(names))
        for j, key in enumerate(keys):
            e = summary[key]
            ends = {p: (lo, hi) for p, lo, hi in e["tornado"]}
            off = (j - (len(keys) - 1) / 2) * 0.38
            for i, name in enumerate(n for n in names if n in ends):
                lo, hi = ends[name]
                i = names.index(name)
                tornado.barh(y[i] + off, hi - lo, left=lo, height=0.36, color=f"C{j}",
                             label=f"{SERIES.get(key[1], key[1])} (low->high)" if i == 0 else None)
            tornado.axvline(e["base"], color=f"C{j}", linewidth=0.8, linestyle="--")
        tornado.set_yticks(y, names, fontsize=7)
        tornado.invert_yaxis()
        tornado.set_xlabel("busbw (GB/s) with the parameter at its low / high end")
        tornado.set_title(f"one at a time, {gpus} GPUs (dashed: preset values)", fontsize=9)
        tornado.legend(fontsize=7, loc="lower right")
    # right: busbw vs GPUs with the joint band, and the paper's ranges
    for j, algo in enumerate(sorted({k[1] for k in summary})):
        keys = sorted(k for k in summary if k[1] == algo and summary[k]["band"])
        if not keys:
            continue
        x = [k[0] for k in keys]
        lo, med, hi = (np.array([summary[k]["band"][i] for k in keys]) for i in range(3))
        name = SERIES.get(algo, algo)
        bands.fill_between(x, lo, hi, color=f"C{j}", alpha=0.25, label=f"{name}: joint band (min-max)")
        bands.plot(x, [summary[k]["base"] for k in keys], color=f"C{j}", marker="o", markersize=3.5,
                   label=f"{name}: preset values")
        bands.plot(x, med, color=f"C{j}", linestyle=":", label=f"{name}: median of draws")
        if name in PAPER:
            bands.axhspan(*PAPER[name], facecolor=f"C{j}", alpha=0.08, hatch="//", edgecolor=f"C{j}",
                          label=f"{name}: paper's range (arXiv:2408.14158 IV)")
        plots.gpus_axis(bands, sorted({k[0] for k in summary if summary[k]["band"]}))
    bands.set_xlabel("GPUs")
    bands.set_ylabel("busbw (GB/s)")
    top = max([e["band"][2] for e in summary.values() if e["band"]] + [hi for _, hi in PAPER.values()])
    bands.set_ylim(0, top * 1.6)  # head room for the legend
    bands.set_title("HFReduce vs NCCL with every uncertain parameter drawn jointly", fontsize=9)
    bands.legend(fontsize=5.5, loc="upper center", ncol=2)
    plots.save(fig, png, f"{rows[0].get('topology') or 'fireflyer2'} allreduce of "
                         f"{sweep.nice_bytes(rows[0]['bytes'])}: uncertainty from the preset's ranges")


def all_points(args):
    q = args.quick
    gpus, tornado, size, samples = (QUICK["gpus"], QUICK["tornado"], QUICK["size"], QUICK["samples"]) if q else \
        (args.gpus, args.gpus_tornado, args.size, args.samples)
    over = dict(args.overrides)
    out = points(args.preset, tornado, args.algos, [size], samples=0, overrides=over, model=args.model)
    for n in gpus:
        pts = points(args.preset, n, args.algos, [size], samples=samples, seed=args.seed, overrides=over,
                     model=args.model, one_at_a_time=False)
        out += [q for q in pts if n != tornado or q["labels"]["kind"] != "base"]  # the tornado's bases serve
    return out


def main(argv=None):
    p = sweep.parser(NAME, __doc__.split("\n\n")[0])
    sweep.add_topology_args(p, gpus=[16, 64, 256, 1024])
    p.add_argument("--gpus-tornado", type=sweep.positive_int, default=128,
                   help="GPU count of the one-at-a-time sweep (default 128)")
    p.add_argument("--algos", type=sweep.names, default=["hfreduce", "nccl"], help="default hfreduce,nccl")
    p.add_argument("--samples", type=sweep.positive_int, default=8, help="joint draws per GPU count (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the joint draws (default 0)")
    return sweep.main(NAME, p.parse_args(argv), COLUMNS, plot, points=all_points)


if __name__ == "__main__":
    sys.exit(main())
