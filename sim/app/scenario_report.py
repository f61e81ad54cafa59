"""What ``flyersim run --scenario`` prints and draws: per job alone vs together, where jobs met, timelines, traces.

- **Jobs**: per job its collective time and busbw alone (the same servers,
  nothing else running: what ``flyersim run`` gives) and in the scenario
  (mean and worst over its repeats), and the *slowdown*, mean time in the
  scenario over time alone. ``--format csv|json`` gives one row per repeat
  with the keys of ``flyersim run --format csv`` plus ``job``, ``repeat``,
  ``start_s``, ``class``, ``servers``, ``late`` (its late ranks, ``3=200us
  5=1000us``; empty if none), ``alone_time_s``, ``alone_busbw_GBps`` and
  ``slowdown``. A job's late ranks are listed under the jobs (its times
  alone and in the scenario both include them).
- **Background**: per entry its flows, rate, nominal and actual end, bytes.
- **Where jobs met**: every resource that carried bytes of more than one job
  or background entry, busiest first: its utilisation over the whole
  scenario (bytes carried / capacity x makespan) and each part's share of
  its bytes.
- **Timeline** (``--plot``): each repeat's busbw as a segment over the time
  it ran, beside the job's busbw alone; below, the bytes each job and
  background entry put on InfiniBand links per second (each op's bytes
  spread evenly over its active time).
- **Trace** (``--trace``): one Perfetto process per job (threads: its GPUs
  and host memories, repeats where they ran) and one per background entry
  (a thread per flow).
"""

import sys

import numpy as np

from flyersim.sim.metrics import record
from flyersim.sim.trace import events, write_events
from flyersim.topologies.faults import spans
from flyersim.topologies.units import format_size

MET_ROWS = 12  # resources listed under "where jobs met"


def servers_label(servers):
    """Compact server list: ``n0-n15,n20`` (:func:`topologies.faults.spans`)."""
    return spans(servers, "n", ",")


def late_label(late):
    """``3=200us 5=1000us`` of a job's ``late`` pairs (:class:`sim.scenario.Job`).

    >>> late_label(((3, 2e-4), (5, 1e-3))), late_label(())
    ('3=200us 5=1000us', '')
    """
    return " ".join(f"{rank}={seconds * 1e6:g}us" for rank, seconds in late)


def job_records(outcome):
    """One row per job and repeat (see the module docstring)."""
    topo = outcome.graph.graph.get("name", "")
    rows = []
    for j in outcome.jobs:
        alone = record(j.alone, j.job.dtype, len(j.servers), topo)
        for k, run in enumerate(j.runs):
            rec = record(run, j.job.dtype, len(j.servers), topo)
            rows.append({"job": j.job.name, "repeat": k, "start_s": float(j.starts[k]), "class": j.job.cls,
                         "servers": servers_label(j.servers), "late": late_label(j.job.late), **rec,
                         "alone_time_s": alone["time_s"], "alone_busbw_GBps": alone["busbw_GBps"],
                         "slowdown": rec["time_s"] / alone["time_s"] if alone["time_s"] > 0 else 1.0})
    return rows


def summary(outcome):
    """Per job: name, algo, gpus, servers, repeats, size, alone and scenario times and busbw, slowdown (mean over alone), class."""
    out = []
    rows = job_records(outcome)
    for j in outcome.jobs:
        mine = [r for r in rows if r["job"] == j.job.name]
        times = np.array([r["time_s"] for r in mine])
        alone = mine[0]["alone_time_s"]
        out.append({"job": j.job.name, "algo": mine[0]["algo"], "gpus": mine[0]["gpus"],
                    "servers": mine[0]["servers"], "repeats": len(mine), "bytes": mine[0]["bytes"],
                    "alone_time_s": alone, "time_s": float(times.mean()), "worst_time_s": float(times.max()),
                    "alone_busbw_GBps": mine[0]["alone_busbw_GBps"],
                    "busbw_GBps": float(np.mean([r["busbw_GBps"] for r in mine])),
                    "slowdown": float(times.mean() / alone) if alone > 0 else 1.0, "class": j.job.cls})
    return out


def met(outcome, limit=MET_ROWS):
    """Resources that carried bytes of more than one part, busiest first (the first ``limit``, None: all):
    ``(name, class, util, shares)``."""
    c = outcome.composite
    carried = outcome.carried
    total = carried.sum(axis=0)
    shared = np.flatnonzero((carried > 0).sum(axis=0) > 1)
    span = outcome.makespan
    util = total[shared] / (c.capacity[shared] * span) if span > 0 else np.zeros(shared.size)
    order = shared[np.argsort(-util, kind="stable")][:limit]
    util = dict(zip(shared.tolist(), util.tolist()))
    return [(c.names[i], c.classes[i], util[i], carried[:, i] / total[i]) for i in order]


def part_names(outcome):
    return [j.job.name for j in outcome.jobs] + [f.entry.name for f in outcome.background]


def text(outcome):
    """The scenario report as text: jobs, background, where jobs met."""
    g, s = outcome.graph.graph, outcome.scenario
    classes = ", ".join(f"{c.name} (weight {c.weight:g}, SL{c.sl})" for c in s.classes.values())
    lines = [f"# flyersim scenario {s.name}: {g['name']}, {g['nodes'] * g['gpus_per_node']} GPUs on {g['nodes']} "
             f"servers; {len(outcome.jobs)} job{'s' * (len(outcome.jobs) != 1)}, {len(outcome.background)} "
             f"background; classes {classes}; makespan {outcome.makespan * 1e6:.2f} us"]
    rows = summary(outcome)
    jw = max(max(len(r["job"]) for r in rows), len("job")) + 2
    sw = max(max(len(r["servers"]) for r in rows), 7) + 2
    lines.append(f"{'job':<{jw}}{'algo':<16}{'gpus':>6}  {'servers':<{sw}}{'repeats':>8}{'size':>9}{'alone(us)':>13}"
                 f"{'scenario(us)':>14}{'worst(us)':>13}{'slowdown':>10}{'busbw alone':>13}{'busbw':>9}  class")
    for r in rows:
        lines.append(f"{r['job']:<{jw}}{r['algo']:<16}{r['gpus']:>6}  {r['servers']:<{sw}}{r['repeats']:>8}"
                     f"{format_size(r['bytes']):>9}{r['alone_time_s'] * 1e6:>13.2f}{r['time_s'] * 1e6:>14.2f}"
                     f"{r['worst_time_s'] * 1e6:>13.2f}{r['slowdown']:>9.3f}x{r['alone_busbw_GBps']:>13.3f}"
                     f"{r['busbw_GBps']:>9.3f}  {r['class']}")
    late = [j.job for j in outcome.jobs if j.job.late]
    if late:
        lines.append("# late ranks (rank=lateness, in each of the job's collectives; in its times alone too): " +
                     "; ".join(f"{job.name}: {late_label(job.late)}" for job in late))
    if outcome.background:
        lines.append(f"# {'background':<14}{'kind':<14}{'flows':>6}{'rate(GB/s)':>12}{'start(us)':>12}"
                     f"{'nominal end(us)':>17}{'end(us)':>13}{'moved(GB)':>11}  class")
        for f in outcome.background:
            e = f.entry
            lines.append(f"  {e.name:<14}{e.kind:<14}{len(f.flows.paths):>6}{e.rate / 1e9:>12.3f}"
                         f"{e.start * 1e6:>12.2f}{(e.start + e.duration) * 1e6:>17.2f}{f.end_at.max() * 1e6:>13.2f}"
                         f"{f.flows.nbytes.sum() / 1e9:>11.3f}  {e.cls}")
    rows = met(outcome, None)
    more, rows = len(rows) - MET_ROWS, rows[:MET_ROWS]
    names = part_names(outcome)
    if rows:
        lines.append("# where jobs met: resources that carried bytes of more than one job or background entry, "
                     "busiest first (util over the makespan; each part's share of the bytes)")
        width = max(len(r[0]) for r in rows) + 2
        lines.append(f"  {'resource':<{width}}{'class':<16}{'util':>6}" + "".join(f"{n[:10]:>11}" for n in names))
        for name, cls, util, shares in rows:
            lines.append(f"  {name:<{width}}{cls:<16}{util:>6.0%}" + "".join(
                f"{'-' if x == 0 else f'{x:.0%}':>11}" for x in shares))
        if more > 0:
            lines.append(f"  ... and {more} more resource{'s' * (more != 1)} carried bytes of more than one part")
    else:
        lines.append("# where jobs met: nowhere (no resource carried bytes of more than one job or entry)")
    return "\n".join(lines)


def timeline(outcome, bins=400):
    """``(edges, {part name: GB/s on InfiniBand links per bin})`` over the makespan."""
    c = outcome.composite
    span = outcome.makespan or 1.0
    edges = np.linspace(0.0, span, bins + 1)
    elem_ib = np.array([cls == "ib" for cls in c.classes], bool)[c.rres]
    lengths = np.diff(c.rptr)
    route_ib = np.zeros(lengths.size, bool)
    nonempty = lengths > 0
    if elem_ib.size:
        route_ib[nonempty] = np.logical_or.reduceat(elem_ib, c.rptr[:-1][nonempty])
    out = {}
    for name, copies in zip(part_names(outcome), c.ops):
        ops = np.concatenate(copies)
        ops = ops[route_ib[c.route[ops]] & (c.op_bytes[ops] > 0)]
        out[name] = _rate_per_bin(outcome.start_at[ops], outcome.end_at[ops], c.op_bytes[ops], edges) / 1e9
    return edges, out


def _rate_per_bin(start, end, nbytes, edges):
    """Bytes per second in each bin, each op's bytes spread evenly over [start, end)."""
    keep = end > start
    start, end, nbytes = start[keep], end[keep], nbytes[keep]
    if start.size == 0:
        return np.zeros(edges.size - 1)
    rate = nbytes / (end - start)
    times = np.concatenate([start, end])
    order = np.argsort(times, kind="stable")
    t = times[order]
    level = np.cumsum(np.concatenate([rate, -rate])[order])
    moved = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(t))])
    cumulative = np.interp(edges, t, moved)
    return np.diff(cumulative) / np.diff(edges)


def plot(outcome, path):
    """The timeline figure (see the module docstring) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    rows = job_records(outcome)
    for i, j in enumerate(outcome.jobs):
        colour = colours[i % len(colours)]
        mine = [r for r in rows if r["job"] == j.job.name]
        for r in mine:
            top.plot([r["start_s"] * 1e3, (r["start_s"] + r["time_s"]) * 1e3], [r["busbw_GBps"]] * 2, color=colour,
                     lw=2.5, marker="|", ms=10, label=f"{j.job.name} ({mine[0]['algo']})" if r is mine[0] else None)
        top.axhline(mine[0]["alone_busbw_GBps"], color=colour, ls=":", lw=1)
    top.set_ylabel("busbw per collective (GB/s)")
    top.set_title("each collective's busbw over the time it ran (dotted: the job alone)", fontsize=9)
    top.legend(fontsize=8)
    edges, rates = timeline(outcome)
    mid = (edges[:-1] + edges[1:]) / 2 * 1e3
    for i, (name, rate) in enumerate(rates.items()):
        bottom.plot(mid, rate, color=colours[i % len(colours)], lw=1.2, label=name,
                    ls="-" if i < len(outcome.jobs) else "--")
    bottom.set_ylabel("InfiniBand bytes (GB/s)")
    bottom.set_xlabel("time (ms)")
    bottom.set_title("bytes each job and background entry moves over InfiniBand links", fontsize=9)
    bottom.legend(fontsize=8)
    fig.suptitle(f"scenario {outcome.scenario.name}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_trace(outcome, path):
    """Perfetto trace: one process per job (its repeats where they ran), one per background entry."""
    def groups():
        for pid, j in enumerate(outcome.jobs):
            for k, run in enumerate(j.runs):
                yield events(pid, run, name=f"job {j.job.name}: {run.schedule.algo} {format_size(run.nbytes)}",
                             shift=float(j.starts[k]), meta=k == 0)
        for i, f in enumerate(outcome.background):
            yield _flow_events(len(outcome.jobs) + i, f)

    write_events(groups(), path)


def _flow_events(pid, outcome):
    f = outcome.flows
    yield {"ph": "M", "name": "process_name", "pid": pid,
           "args": {"name": f"background {outcome.entry.name}: {outcome.entry.kind}"}}
    for tid, label in enumerate(f.labels):
        yield {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": label}}
        yield {"ph": "X", "name": "flow", "pid": pid, "tid": tid, "ts": float(outcome.start_at[tid] * 1e6),
               "dur": float((outcome.end_at[tid] - outcome.start_at[tid]) * 1e6),
               "args": {"bytes": float(f.nbytes[tid]), "rate_limit_GBps": float(f.rate[tid] / 1e9)}}


def command(args, max_memory):
    """``flyersim run --scenario FILE``: check the output paths, run, print, draw and trace."""
    from flyersim.sim.app.report import render
    from flyersim.sim.app.scenario_runner import run_scenario
    from flyersim.sim.outputs import atomic_path, check_figure, check_writable
    from flyersim.sim.scenario import load

    if args.trace:
        check_writable(args.trace, "--trace")
    if args.plot:
        check_figure(args.plot, "--plot")
    scenario = load(args.scenario)
    try:
        outcome = run_scenario(scenario, max_memory)
    except ValueError as err:
        raise ValueError(f"{scenario.where}: {err}") from None
    print(text(outcome) if args.format == "table" else render(job_records(outcome), args.format))
    if args.plot:
        with atomic_path(args.plot) as tmp:
            plot(outcome, tmp)
        print(f"# figure written to {args.plot}", file=sys.stderr)
    if args.trace:
        write_trace(outcome, args.trace)
        print(f"# trace of {outcome.composite.num_ops} ops written to {args.trace}", file=sys.stderr)
