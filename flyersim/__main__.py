"""``python -m flyersim ...`` (and the ``flyersim`` console script) runs the ``flyersim`` command line."""

import gc
import sys


def console():
    """The ``flyersim`` command; Ctrl-C while its modules load ends as Ctrl-C later does (one line, exit 130).

    Once the command is done, its objects are frozen out of the garbage collector: the interpreter's last
    collections at exit would otherwise walk the 10^5 objects numba and networkx built and dispose of
    numba's compiled-code objects one by one, 0.2 s of CPU that a 16-GPU ``flyersim run`` (0.5 s in
    all) spent after printing its result. Exit handlers and file flushes still run.
    """
    try:
        from flyersim.sim.app.cli import main
    except KeyboardInterrupt:
        print("flyersim: interrupted", file=sys.stderr)
        return 130
    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(console())
