"""The ``flyersim`` command line: ``run`` a simulation, summarise a ``topo``.

Every user mistake ends with one ``flyersim: error: ...`` line and exit code 2;
Ctrl-C ends any command with one ``flyersim: interrupted`` line and exit code 130.
Output paths are checked before the work starts, and files appear whole or not
at all (:mod:`sim.outputs`).
"""

import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, version

from flyersim import collectives
from flyersim.collectives.schedule import COLLECTIVES
from flyersim import topologies
from flyersim.topologies.config import preset_names
from flyersim.sim.app import calibrate, compare, faults, mpibench, scenario_report, sensitivity, validate
from flyersim.sim.app.args import Parser, override, positive_int
from flyersim.sim.engine import MODELS
from flyersim.sim.explain import explain
from flyersim.sim.outputs import atomic_path, check_figure, check_writable
from flyersim.sim.app.report import FORMATS, footer, plural, render
from flyersim.sim.app.runner import DTYPES, run_sizes, split_params
from flyersim.sim.app.sizes import size_list, sweep
from flyersim.sim.budget import check_topology, memory_limit
from flyersim.sim.trace import write_trace


PAPER_SIZE = "186MiB"  # the Fire-Flyer paper's allreduce message per GPU (W. An et al., SC24, arXiv:2408.14158)


def _version():
    try:
        return version("flyersim")
    except PackageNotFoundError:
        return "unknown"


def _add_memory_arg(p):
    p.add_argument("--max-memory", metavar="SIZE",
                   help="refuse work estimated to need more memory than this, e.g. 8GB (default: the memory "
                        "available on this machine); checked before anything is built")


def _add_topology_args(p):
    where = p.add_mutually_exclusive_group()
    where.add_argument("--preset", default="fireflyer2",
                       help=f"built-in cluster ({', '.join(preset_names())}); default fireflyer2")
    where.add_argument("--topology", metavar="FILE.toml", help="custom cluster description instead of a preset")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--gpus", type=positive_int, help="total GPUs (a multiple of the GPUs per server)")
    size.add_argument("--nodes", type=positive_int, help="number of servers")
    p.add_argument("--zones", type=positive_int, help="spread servers over this many network zones")
    p.add_argument("--set", dest="overrides", action="append", type=override, default=[], metavar="KEY=VALUE",
                   help="override a topology parameter, e.g. --set network.link_bandwidth=100Gb/s (repeatable)")


def _add_param_arg(p):
    p.add_argument("--param", dest="params", action="append", type=override, default=[], metavar="KEY=VALUE",
                   help="set an algorithm parameter, e.g. --param max_chunks=256 (repeatable; "
                        "flyersim run --algo X --help-params lists X's)")


def _params(args):
    return dict(args.params)


def _load_topology(args):
    overrides = dict(args.overrides)
    limit = memory_limit(args.max_memory)
    return topologies.load(args.topology or args.preset, gpus=args.gpus, nodes=args.nodes,
                           zones=args.zones, overrides=overrides,
                           check_size=lambda what, elements: check_topology(what, elements, limit))


def _algos(text, collective, option):
    """Algorithm names in ``text``; none given: ring if ``collective`` has it, else its first algorithm."""
    if text is None:
        known = collectives.names(collective)
        return ["ring" if "ring" in known else known[0]]
    algos = [a.strip() for a in text.split(",") if a.strip()]
    if not algos:
        raise ValueError(f"{option}: name at least one algorithm (choose from "
                         f"{', '.join(collectives.names(collective))})")
    return algos


def _sizes(args):
    if args.sizes and args.begin:
        raise ValueError("give --sizes or -b/-e, not both")
    if args.begin or args.end:
        if not (args.begin and args.end):
            raise ValueError("-b and -e go together")
        return sweep(args.begin, args.end, factor=args.factor, increment=args.increment)
    return size_list(args.sizes or PAPER_SIZE)


# options a scenario file replaces: dest -> (option, default)
_NOT_WITH_SCENARIO = {
    "preset": ("--preset", "fireflyer2"), "topology": ("--topology", None), "gpus": ("--gpus", None),
    "nodes": ("--nodes", None), "zones": ("--zones", None), "overrides": ("--set", []), "algo": ("--algo", None),
    "collective": ("--collective", "allreduce"), "sizes": ("--sizes", None), "begin": ("-b", None),
    "end": ("-e", None), "factor": ("-f", None), "increment": ("-i", None), "dtype": ("--dtype", "float32"),
    "model": ("--model", "flow"), "explain": ("--explain", False), "help_params": ("--help-params", False),
    "params": ("--param", []),
    # what-ifs: a scenario gives them in [routing], [[faults]] and [[stragglers]]
    "routing": ("--routing", "ecmp"), "slow": ("--slow", []), "late": ("--late", []), "noise": ("--noise", 0.0),
    "seed": ("--seed", 0), "seeds": ("--seeds", 1), "fail": ("--fail", []),
}
# where a scenario file takes the what-ifs instead
_IN_SCENARIO = {"--routing": "[routing] policy", "--slow": "[[stragglers]] slow", "--noise": "[[stragglers]] noise",
                "--seed": "[[stragglers]] seed", "--fail": "[[faults]] fail", "--late": "a job's late = { RANK = TIME }"}


def _cmd_run(args):
    if args.scenario:
        given = [option for dest, (option, default) in _NOT_WITH_SCENARIO.items() if getattr(args, dest) != default]
        if given:
            instead = "; ".join(f"{option}: {_IN_SCENARIO[option]}" for option in given if option in _IN_SCENARIO)
            raise ValueError(f"--scenario: the scenario file gives the cluster, algorithms, sizes and routing; "
                             f"drop {', '.join(given)}{f' (in the file: {instead})' if instead else ''}")
        return scenario_report.command(args, memory_limit(args.max_memory))
    if args.plot:
        raise ValueError("--plot: flyersim run draws a scenario's timeline only (give --scenario; "
                         "flyersim compare --plot draws a grid)")
    algos = _algos(args.algo, args.collective, "--algo")
    if args.help_params:
        print("\n\n".join(collectives.help_params(a, args.collective) for a in algos))
        return
    if args.trace:
        check_writable(args.trace, "--trace")
    sizes = _sizes(args)
    stragglers = faults.stragglers(args)
    graph = faults.failed(_load_topology(args), args)
    params = _params(args)
    records, runs = run_sizes(graph, algos, sizes, args.dtype, args.model, args.collective, keep_runs=True,
                              params=params, max_memory=memory_limit(args.max_memory), stragglers=stragglers,
                              routing=args.routing, timeline=bool(args.trace), stream=not args.trace)
    if args.format == "table":
        g = graph.graph
        print(f"# flyersim {g['name']}: {plural(g['nodes'] * g['gpus_per_node'], 'GPU')} on "
              f"{plural(g['nodes'], 'server')}, {args.collective}, model {args.model}")
    print(render(records, args.format))
    if args.format == "table":
        print(footer(records))
        if args.seeds > 1:
            print(faults.seed_spread(records))
    if args.explain:
        mine = split_params(algos, params, args.collective)
        blocks = [collectives.help_params(a, args.collective, mine[a]) for a in algos] + [explain(run) for run in runs]
        print("\n" + "\n\n".join(blocks), file=sys.stdout if args.format == "table" else sys.stderr)
    if args.trace:
        write_trace(runs, args.trace)
        print(f"# trace of {sum(r.schedule.num_ops for r in runs)} ops written to {args.trace}", file=sys.stderr)


def _cmd_compare(args):
    counts = compare.gpu_counts(args.gpus)
    if args.algos is None and args.collective == "allreduce":
        args.algos = "hfreduce,nccl,ring,dbtree"
    algos = collectives.names(args.collective) if args.algos is None else _algos(args.algos, args.collective,
                                                                                 "--algos")
    sizes = size_list(args.sizes)
    if args.plot:
        check_figure(args.plot, "--plot")

    def load(n):
        return _load_topology(argparse.Namespace(**{**vars(args), "gpus": n, "nodes": None}))

    rows = compare.grid(load, counts, algos, sizes, args.dtype, args.model, args.collective, _params(args),
                        max_memory=memory_limit(args.max_memory))
    print(compare.table(rows) if args.format == "table" else render(rows, args.format))
    if args.plot:
        with atomic_path(args.plot) as tmp:
            compare.plot(rows, tmp)
        print(f"# figure written to {args.plot}", file=sys.stderr)


def _cmd_topo(args):
    if args.draw:
        check_writable(args.draw, "--draw")
    graph = _load_topology(args)
    print(topologies.format_summary(topologies.summary(graph)))
    if args.draw:
        with atomic_path(args.draw) as tmp:
            topologies.draw(graph, tmp)
        print(f"# drawing written to {args.draw}", file=sys.stderr)


def parser():
    top = Parser(prog="flyersim", description="Simulate GPU-cluster collectives (Fire-Flyer 2, HFReduce, NCCL-style).")
    top.add_argument("--version", action="version", version=f"flyersim {_version()}")
    sub = top.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = sub.add_parser("run", help="simulate collectives on a cluster and print nccl-tests style results")
    _add_topology_args(run)
    run.add_argument("--algo", "--algos", dest="algo",
                     help=f"algorithm(s), comma-separated (allreduce: {', '.join(collectives.names())}; default "
                          f"ring, or tree for broadcast and reduce)")
    run.add_argument("--collective", default="allreduce", choices=COLLECTIVES)
    run.add_argument("--sizes", "--size", dest="sizes",
                     help=f"comma-separated sizes, e.g. 1MiB,16MiB,{PAPER_SIZE} (default {PAPER_SIZE}, the "
                          f"Fire-Flyer paper's allreduce size)")
    run.add_argument("-b", "--minbytes", dest="begin", help="nccl-tests style sweep: first size")
    run.add_argument("-e", "--maxbytes", dest="end", help="nccl-tests style sweep: last size")
    run.add_argument("-f", "--stepfactor", dest="factor", type=float, help="sweep factor (default 2)")
    run.add_argument("-i", "--stepbytes", dest="increment", help="sweep increment instead of a factor")
    run.add_argument("--dtype", default="float32", choices=DTYPES)
    run.add_argument("--model", default="flow", choices=MODELS,
                     help="flow: max-min fair sharing of every resource; analytic: no contention")
    run.add_argument("--format", default="table", choices=FORMATS)
    run.add_argument("--trace", metavar="FILE.json", help="write a Chrome/Perfetto trace of every op")
    run.add_argument("--scenario", metavar="FILE.toml",
                     help="run several jobs, background traffic and traffic classes together on one cluster "
                          "(examples in experiments/scenarios/); the file gives the cluster, algorithms and sizes")
    run.add_argument("--plot", metavar="OUT.png", help="with --scenario: each job's busbw and traffic over time")
    run.add_argument("--explain", action="store_true",
                     help="each algorithm's parameter values, and per run the bytes each resource class carried "
                          "per message byte and the bottleneck (on stderr with --format csv/json)")
    run.add_argument("--help-params", action="store_true",
                     help="list the parameters of the --algo algorithm(s): name, type, default, meaning; then exit")
    _add_param_arg(run)
    _add_memory_arg(run)
    faults.add_arguments(run, positive_int)
    run.set_defaults(func=_cmd_run)

    comp = sub.add_parser("compare", help="run algorithms x GPU counts x sizes; one tidy table and a figure")
    where = comp.add_mutually_exclusive_group()
    where.add_argument("--preset", default="fireflyer2",
                       help=f"built-in cluster ({', '.join(preset_names())}); default fireflyer2")
    where.add_argument("--topology", metavar="FILE.toml", help="custom cluster description instead of a preset")
    comp.add_argument("--gpus", required=True, help="comma-separated GPU counts, e.g. 16,128,1024")
    comp.add_argument("--zones", type=positive_int, help="spread servers over this many network zones")
    comp.add_argument("--set", dest="overrides", action="append", type=override, default=[], metavar="KEY=VALUE",
                      help="override a topology parameter (repeatable)")
    comp.add_argument("--algos", "--algo", dest="algos",
                      help=f"comma-separated algorithms ({', '.join(collectives.names())}; default "
                           f"hfreduce,nccl,ring,dbtree for allreduce, every algorithm of another collective)")
    comp.add_argument("--collective", default="allreduce", choices=COLLECTIVES)
    comp.add_argument("--sizes", "--size", dest="sizes", default=PAPER_SIZE,
                      help=f"comma-separated sizes (default {PAPER_SIZE})")
    comp.add_argument("--dtype", default="float32", choices=DTYPES)
    comp.add_argument("--model", default="flow", choices=MODELS)
    comp.add_argument("--format", default="table", choices=FORMATS)
    comp.add_argument("--plot", metavar="OUT.png", help="write busbw and algbw per algorithm to a figure")
    _add_param_arg(comp)
    _add_memory_arg(comp)
    comp.set_defaults(func=_cmd_compare)

    topo = sub.add_parser("topo", help="summarise a cluster: components, links, capacities, bisection")
    _add_topology_args(topo)
    topo.add_argument("--draw", metavar="OUT.png", help="also draw the topology")
    _add_memory_arg(topo)
    topo.set_defaults(func=_cmd_topo)

    sensitivity.add_parser(sub)
    mpibench.add_parser(sub, positive_int)
    calibrate.add_parser(sub, positive_int)
    validate.add_parser(sub, positive_int)
    return top


def main(argv=None):
    try:
        args = parser().parse_args(faults.attach_values(sys.argv[1:] if argv is None else argv))
        args.func(args)
    except BrokenPipeError:  # `flyersim run ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (ValueError, OSError) as err:  # user mistakes: bad preset, file, size, topology, algorithm
        print(f"flyersim: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flyersim: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
