"""``flyersim sensitivity``: which uncertain preset parameter moves a prediction most, and the joint band.

Every parameter a description declares with a range (``{ value = ..., range = [low, high] }``), and every
unpublished algorithm parameter with a declared range (``hfreduce.buffers``), is set
to its low and then its high end, the others kept (one at a time: a tornado, largest swing first),
then all are drawn together ``--samples`` times, seeded (the band: min / median / max busbw). Points
run in parallel over ``--jobs`` local processes, or on the MPI workers under ``mpiexec ... python -m
mpi4py.futures``, with the experiment scripts' machinery (:mod:`experiments.uncertainty`, which this
command imports when it runs: the command line is the one place the simulator's app reaches for it).

    flyersim sensitivity --preset fireflyer2 --gpus 128 --algo hfreduce,nccl --sizes 186MiB --jobs 2
"""

import sys

from flyersim.sim.app.args import override, positive_int
from flyersim.sim.app.report import FORMATS, render
from flyersim.sim.app.sizes import size_list
from flyersim.sim.engine import MODELS


def add_parser(sub):
    """Register ``flyersim sensitivity`` on the CLI's subparsers."""
    p = sub.add_parser("sensitivity", help="sweep each uncertain preset parameter over its range (tornado) "
                                           "and all of them jointly (busbw band)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--preset", default="fireflyer2", help="built-in cluster; default fireflyer2")
    where.add_argument("--topology", metavar="FILE.toml", help="custom cluster description instead of a preset")
    p.add_argument("--gpus", type=positive_int, required=True, help="total GPUs")
    p.add_argument("--zones", type=positive_int, help="spread servers over this many network zones")
    p.add_argument("--set", dest="overrides", action="append", type=override, default=[], metavar="KEY=VALUE",
                   help="override a topology parameter (repeatable); a parameter set here is not swept")
    p.add_argument("--algo", default="hfreduce,nccl", help="comma-separated algorithms (default hfreduce,nccl)")
    p.add_argument("--sizes", default="186MiB", help="comma-separated sizes (default 186MiB)")
    p.add_argument("--samples", type=positive_int, default=16, help="joint draws (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the joint draws (default 0)")
    p.add_argument("--jobs", type=positive_int, default=1, help="simulate points on N local processes")
    p.add_argument("--model", default="flow", choices=MODELS)
    p.add_argument("--top", type=positive_int, help="show only the N largest swings")
    p.add_argument("--format", default="table", choices=FORMATS)
    p.set_defaults(func=command)


def command(args):
    """Entry point of ``flyersim sensitivity``."""
    from flyersim.experiments import sweep, uncertainty

    algos = [a.strip() for a in args.algo.split(",") if a.strip()]
    overrides = dict(args.overrides)
    preset = args.topology or args.preset
    if not uncertainty.ranges(preset, overrides) and not any(uncertainty.algorithm_ranges(a) for a in algos):
        raise ValueError(f"{preset} and {', '.join(algos)} declare no parameter with a range: nothing to sweep")
    pts = uncertainty.points(preset, args.gpus, algos, size_list(args.sizes), samples=args.samples,
                             seed=args.seed, overrides=overrides, zones=args.zones, model=args.model)
    sweep.check(pts)
    summary = uncertainty.summarise(sweep.run_points(pts, args.jobs, desc="sensitivity"))
    if args.format == "table":
        kinds = [p["labels"]["kind"] for p in pts]
        print(f"# flyersim sensitivity {preset}: {kinds.count('low') + kinds.count('high')} one-at-a-time points, "
              f"{args.samples} joint draws per algorithm (seed {args.seed})")
        print(uncertainty.report(summary, args.top))
    else:
        print(render(uncertainty.tidy(summary), args.format))
    sys.stdout.flush()
