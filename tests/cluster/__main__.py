"""``python -m tests.cluster``: build emulated nodes, run an MPI job on them, tear them down.

    python -m tests.cluster up --nodes 4 --rate 1gbit [--spine 1gbit] [--tag fsdemo]
    python -m tests.cluster run --nodes 4 --ppn 2 --rate 1gbit -- flyersim validate --algos ring
    python -m tests.cluster down --tag fsdemo [--nodes 4]

``up`` prints the namespaces and leaves them in place for a look by hand
(``ip netns exec fsdemon0 tc -s qdisc``; no process runs in them); ``run``
builds its own nodes, runs the job under hydra's manual launcher
and removes everything when the job ends, fails or is interrupted; ``down``
removes what ``up`` built. A program name without a slash is looked up beside
this Python (the venv's ``flyersim``, ``python``).
"""

import argparse
import os
import shutil
import signal
import sys
from pathlib import Path

from .emulate import Cluster, why_not


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _program(name):
    if "/" in name:
        return name
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("up", "run", "down"):
        q = sub.add_parser(name)
        q.add_argument("--nodes", type=int, default=2, help="emulated hosts (default 2)")
        q.add_argument("--tag", help="namespace name prefix (default fs<pid>)")
        if name != "down":
            q.add_argument("--rate", default="1gbit", help="per-direction rate of every node link (tc syntax)")
            q.add_argument("--spine", help="rate of an oversubscribed link between the two halves of the nodes")
        if name == "run":
            q.add_argument("--ppn", type=int, default=1, help="MPI ranks per node (default 1)")
            q.add_argument("--timeout", type=float, default=600, help="seconds before the job is killed")
            q.add_argument("program", nargs=argparse.REMAINDER, help="-- command and its arguments")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # a kill still tears the nodes down
    try:
        if args.cmd == "down":
            if not args.tag:
                raise ValueError("down needs the --tag that up printed")
            cluster = Cluster(args.nodes, tag=args.tag)
            cluster.namespaces = [f"{args.tag}sw"] + [cluster.ns(k) for k in range(args.nodes)]
            cluster.down()
            return 0
        reason = why_not()
        if reason:
            raise ValueError(reason)
        tag = args.tag or (f"fsup{os.getpid()}" if args.cmd == "up" else None)  # kept: not reaped as stale
        cluster = Cluster(args.nodes, args.rate, args.spine, tag=tag)
        if args.cmd == "up":
            cluster.up()
            print(f"# {args.nodes} nodes at {args.rate}" + (f", spine {args.spine}" if args.spine else ""))
            for k in range(args.nodes):
                print(f"{cluster.ns(k)}  {cluster.address(k)}  hostname {cluster.hostname(k)}")
            print(f"# remove with: python -m tests.cluster down --tag {cluster.tag} --nodes {args.nodes}")
            return 0
        program = args.program[1:] if args.program[:1] == ["--"] else args.program
        if not program:
            raise ValueError("run needs a command after --")
        with cluster:
            code, out, err = cluster.mpiexec([_program(program[0]), *program[1:]], args.ppn, args.timeout)
        sys.stdout.write(out)
        sys.stderr.write(err)
        return code
    except (ValueError, RuntimeError, TimeoutError) as err:
        print(f"tests.cluster: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tests.cluster: interrupted (namespaces removed)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
