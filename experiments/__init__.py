"""Experiment scripts (``python experiments/NAME.py``): thin sweeps that write a tidy CSV and a figure.

:func:`loading` wraps a script's imports, so that Ctrl-C while its modules
load ends as Ctrl-C later does (:func:`flyersim.experiments.sweep.main`): one
``NAME.py: interrupted`` line and exit code 130, not a traceback.

>>> with loading("demo.py"):
...     import json
"""

import sys
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def loading(script):
    """Context for a script's imports: a KeyboardInterrupt inside becomes one line and ``SystemExit(130)``."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"{Path(script).name}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
