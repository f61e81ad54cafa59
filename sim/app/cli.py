"""The ``flyersim`` command line: ``run`` a simulation, summarise a ``topo``.

Every user mistake ends with one ``flyersim: error: ...`` line and exit code 2;
Ctrl-C ends any command with one ``flyersim: interrupted`` line and exit code 130.
Output paths are checked before the work starts, and files appear whole or not
at all (:mod:`sim.outputs`).
"""

import argparse
import tomllib
import sys
from importlib.metadata import PackageNotFoundError, version

from flyersim import collectives
from flyersim.collectives.schedule import COLLECTIVES
from flyersim import topologies
from flyersim.topologies.config import preset_names
from flyersim.sim.app import calibrate, compare, mpibench, sensitivity, validate
from flyersim.sim.engine import MODELS
from flyersim.sim.explain import explain
from flyersim.sim.outputs import atomic_path, check_writable
from flyersim.sim.app.report import FORMATS, render
from flyersim.sim.app.runner import DTYPES, run_sizes, split_params
from flyersim.sim.app.sizes import size_list, sweep
from flyersim.sim.trace import write_trace


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _version():
    try:
        return version("flyersim")
    except PackageNotFoundError:
        return "unknown"


def _override(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_topology_args(p):
    where = p.add_mutually_exclusive_group()
    where.add_argument("--preset", default="fireflyer2",
                       help=f"built-in cluster ({', '.join(preset_names())}); default fireflyer2")
    where.add_argument("--topology", metavar="FILE.toml", help="custom cluster description instead of a preset")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--gpus", type=_positive_int, help="total GPUs (a multiple of the GPUs per server)")
    size.add_argument("--nodes", type=_positive_int, help="number of servers")
    p.add_argument("--zones", type=_positive_int, help="spread servers over this many network zones")
    p.add_argument("--set", dest="overrides", action="append", type=_override, default=[], metavar="KEY=VALUE",
                   help="override a topology parameter, e.g. --set network.link_bandwidth=100Gb/s (repeatable)")


def _literal(value):
    """A TOML literal (number, boolean, array) as such; anything else, e.g. 100Gb/s, as a string."""
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def _add_param_arg(p):
    p.add_argument("--param", dest="params", action="append", type=_override, default=[], metavar="KEY=VALUE",
                   help="set an algorithm parameter, e.g. --param max_chunks=256 (repeatable; "
                        "flyersim run --algo X --help-params lists X's)")


def _params(args):
    return {key: _literal(value) for key, value in args.params}


def _load_topology(args):
    overrides = {key: _literal(value) for key, value in args.overrides}
    return topologies.load(args.topology or args.preset, gpus=args.gpus, nodes=args.nodes,
                           zones=args.zones, overrides=overrides)


def _sizes(args):
    if args.sizes and args.begin:
        raise ValueError("give --sizes or -b/-e, not both")
    if args.begin or args.end:
        if not (args.begin and args.end):
            raise ValueError("-b and -e go together")
        return sweep(args.begin, args.end, factor=args.factor, increment=args.increment)
    return size_list(args.sizes or "184MiB")


def _cmd_run(args):
    algos = [a.strip() for a in args.algo.split(",") if a.strip()]
    if args.help_params:
        print("\n\n".join(collectives.help_params(a, args.collective) for a in algos))
        return
    if args.trace:
        check_writable(args.trace, "--trace")
    graph = _load_topology(args)
    params = _params(args)
    records, runs = run_sizes(graph, algos, _sizes(args), args.dtype, args.model, args.collective, keep_runs=True,
                              params=params)
    if args.format == "table":
        g = graph.graph
        print(f"# flyersim {g['name']}: {g['nodes'] * g['gpus_per_node']} GPUs on {g['nodes']} servers, "
              f"{args.collective}, model {args.model}")
    print(render(records, args.format))
    if args.explain:
        mine = split_params(algos, params, args.collective)
        blocks = [collectives.help_params(a, args.collective, mine[a]) for a in algos] + [explain(run) for run in runs]
        print("\n" + "\n\n".join(blocks), file=sys.stdout if args.format == "table" else sys.stderr)
    if args.trace:
        write_trace(runs, args.trace)
        print(f"# trace of {sum(r.schedule.num_ops for r in runs)} ops written to {args.trace}", file=sys.stderr)


def _cmd_compare(args):
    counts = compare.gpu_counts(args.gpus)
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    if not algos:
        raise ValueError("--algos: name at least one algorithm")
    sizes = size_list(args.sizes)
    if args.plot:
        check_writable(args.plot, "--plot")

    def load(n):
        return _load_topology(argparse.Namespace(**{**vars(args), "gpus": n, "nodes": None}))

    rows = compare.grid(load, counts, algos, sizes, args.dtype, args.model, args.collective, _params(args))
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
    top = _Parser(prog="flyersim", description="Simulate GPU-cluster collectives (Fire-Flyer 2, HFReduce, NCCL-style).")
    top.add_argument("--version", action="version", version=f"flyersim {_version()}")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="simulate collectives on a cluster and print nccl-tests style results")
    _add_topology_args(run)
    run.add_argument("--algo", default="ring", help=f"algorithm(s), comma-separated ({', '.join(collectives.names())})")
    run.add_argument("--collective", default="allreduce", choices=COLLECTIVES)
    run.add_argument("--sizes", help="comma-separated sizes, e.g. 1MiB,16MiB,184MiB (default 184MiB)")
    run.add_argument("-b", "--minbytes", dest="begin", help="nccl-tests style sweep: first size")
    run.add_argument("-e", "--maxbytes", dest="end", help="nccl-tests style sweep: last size")
    run.add_argument("-f", "--stepfactor", dest="factor", type=float, help="sweep factor (default 2)")
    run.add_argument("-i", "--stepbytes", dest="increment", help="sweep increment instead of a factor")
    run.add_argument("--dtype", default="float32", choices=DTYPES)
    run.add_argument("--model", default="flow", choices=MODELS,
                     help="flow: max-min fair sharing of every resource; analytic: no contention")
    run.add_argument("--format", default="table", choices=FORMATS)
    run.add_argument("--trace", metavar="FILE.json", help="write a Chrome/Perfetto trace of every op")
    run.add_argument("--explain", action="store_true",
                     help="each algorithm's parameter values, and per run the bytes each resource class carried "
                          "per message byte and the bottleneck (on stderr with --format csv/json)")
    run.add_argument("--help-params", action="store_true",
                     help="list the parameters of the --algo algorithm(s): name, type, default, meaning; then exit")
    _add_param_arg(run)
    run.set_defaults(func=_cmd_run)

    comp = sub.add_parser("compare", help="run algorithms x GPU counts x sizes; one tidy table and a figure")
    where = comp.add_mutually_exclusive_group()
    where.add_argument("--preset", default="fireflyer2",
                       help=f"built-in cluster ({', '.join(preset_names())}); default fireflyer2")
    where.add_argument("--topology", metavar="FILE.toml", help="custom cluster description instead of a preset")
    comp.add_argument("--gpus", required=True, help="comma-separated GPU counts, e.g. 16,128,1024")
    comp.add_argument("--zones", type=_positive_int, help="spread servers over this many network zones")
    comp.add_argument("--set", dest="overrides", action="append", type=_override, default=[], metavar="KEY=VALUE",
                      help="override a topology parameter (repeatable)")
    comp.add_argument("--algos", default="hfreduce,nccl,ring,dbtree",
                      help=f"comma-separated algorithms ({', '.join(collectives.names())})")
    comp.add_argument("--collective", default="allreduce", choices=COLLECTIVES)
    comp.add_argument("--sizes", default="186MiB", help="comma-separated sizes (default 186MiB)")
    comp.add_argument("--dtype", default="float32", choices=DTYPES)
    comp.add_argument("--model", default="flow", choices=MODELS)
    comp.add_argument("--format", default="table", choices=FORMATS)
    comp.add_argument("--plot", metavar="OUT.png", help="write busbw and algbw per algorithm to a figure")
    _add_param_arg(comp)
    comp.set_defaults(func=_cmd_compare)

    topo = sub.add_parser("topo", help="summarise a cluster: components, links, capacities, bisection")
    _add_topology_args(topo)
    topo.add_argument("--draw", metavar="OUT.png", help="also draw the topology")
    topo.set_defaults(func=_cmd_topo)

    sensitivity.add_parser(sub, _positive_int, lambda text: (_override(text)[0], _literal(_override(text)[1])))
    mpibench.add_parser(sub, _positive_int)
    calibrate.add_parser(sub, _positive_int)
    validate.add_parser(sub, _positive_int)
    return top


def main(argv=None):
    try:
        args = parser().parse_args(argv)
        args.func(args)
    except (ValueError, OSError) as err:  # user mistakes: bad preset, file, size, topology, algorithm
        print(f"flyersim: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flyersim: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
