"""``python -m flyersim ...`` (and the ``flyersim`` console script) runs the ``flyersim`` command line."""

import gc
import sys


def console():
    """The ``flyersim`` command; Ctrl-C while its modules load ends as Ctrl-C later does (one line, exit 130).

    The garbage collector stays off while the modules load, and the 10^5 objects they made (which live
    as long as the process) are then frozen out of it: collections during the imports and the run took
    0.04 s of CPU. Once the command is done, its objects are frozen too: the interpreter's last
    collections at exit would otherwise walk them all and dispose of numba's compiled-code objects one
    by one, 0.15-0.2 s of CPU after a 16-GPU ``flyersim run`` printed its result. Exit handlers and file
    flushes still run.
    """
    gc.disable()
    try:
        from flyersim.sim.app.cli import main
    except KeyboardInterrupt:
        print("flyersim: interrupted", file=sys.stderr)
        return 130
    finally:
        gc.freeze()
        gc.enable()
    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(console())
