"""CPU seconds of everything a ``flyersim run`` does before and around the simulation, step by step.

    python tests/bench/build_phase.py hfreduce 10000 [--preset fireflyer2] [--rounds 1]

Prints one line per round: ``imports``, ``topology`` (read, build, validate), ``layout`` (the server's
facts), ``router``, ``search`` (NCCL's graph search, for the algorithms that need it), ``schedule``
(the streamed builder, batches collected in a list first, so its thread's CPU is not charged to the
routes), ``routes`` (:class:`sim.routes.RouteTable` ``add`` over every batch, ``elements`` after each batch that
found new routes, as the engine calls them, and the final ``routes`` numbering), then the total. The simulation itself is not run (``tests/bench/cost_curve.py``
measures it). CPU time is process time: on this shared machine wall time follows the load.
Run it from two checkouts (``PYTHONPATH=OLD/tree-with-a-flyersim-package``) alternately to compare.
"""

import argparse
import time

T = time.process_time
START = T()

from flyersim import collectives, topologies  # noqa: E402  (the imports are the first step timed)
from flyersim.collectives.stream import stream  # noqa: E402
from flyersim.sim.app.runner import layout_of, search_of  # noqa: E402
from flyersim.sim.routes import RouteTable  # noqa: E402
from flyersim.topologies import Router  # noqa: E402

PAPER_SIZE = 186 * 2**20


def steps(algo, gpus, preset="fireflyer2", size=PAPER_SIZE):
    """``[(step, CPU s)]`` of one build of ``algo`` on ``gpus`` GPUs of ``preset``, and the counts."""
    marks, t = [], T()

    def mark(name):
        nonlocal t
        now = T()
        marks.append((name, now - t))
        t = now

    graph = topologies.load(preset, gpus=gpus)
    mark("topology")
    layout = layout_of(graph)
    mark("layout")
    router = Router(graph)
    mark("router")
    search = search_of(graph, layout) if collectives.get(algo).search else None
    mark("search")
    name, nbytes = collectives.schedule_key(algo, layout, size, "allreduce", search)[:2]
    batches = list(stream(name, layout, nbytes=nbytes, search=search))
    mark("schedule")
    table = RouteTable(graph, layout, algo, router)
    for first, batch in batches:
        known = table.size
        table.add(batch, first)
        if table.size != known:  # as the engine does: its solver takes the routes found so far
            table.elements()
    table.routes()
    mark("routes")
    counts = {"ops": sum(b.num_ops for _, b in batches), "routes": table.size,
              "elements": graph.number_of_nodes() + graph.number_of_edges()}
    return marks, counts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("algo")
    p.add_argument("gpus", type=int)
    p.add_argument("--preset", default="fireflyer2")
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args(argv)
    imports = T() - START
    for i in range(args.rounds):
        marks, counts = steps(args.algo, args.gpus, args.preset)
        marks = ([("imports", imports)] if i == 0 else []) + marks
        print(f"{args.algo} {args.gpus} GPUs: " + ", ".join(f"{n} {s:.2f}" for n, s in marks)
              + f"; total {sum(s for _, s in marks):.2f} s CPU ({counts['ops']:,} ops, {counts['routes']:,} routes, "
              f"{counts['elements']:,} graph elements)", flush=True)


if __name__ == "__main__":
    main()
