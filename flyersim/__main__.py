"""``python -m flyersim ...`` (and the ``flyersim`` console script) runs the ``flyersim`` command line."""

import sys


def console():
    """The ``flyersim`` command; Ctrl-C while its modules load ends as Ctrl-C later does (one line, exit 130)."""
    try:
        from flyersim.sim.app.cli import main
    except KeyboardInterrupt:
        print("flyersim: interrupted", file=sys.stderr)
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(console())
