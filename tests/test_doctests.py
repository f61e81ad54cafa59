"""Run every docstring example of the installed ``flyersim`` package, one test per module.

Modules are imported by their package names (``flyersim.sim.fluid``), never by
file path, so each is loaded once, as users load it.
"""

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("flyersim.sim", "flyersim.topologies", "flyersim.collectives")  # experiments: tests/test_experiments.py


def _modules(package):
    pkg = importlib.import_module(package)
    return [package] + [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")]


MODULES = sorted(name for package in PACKAGES for name in _modules(package))


def test_every_subpackage_is_found():
    assert {"flyersim.sim.fluid", "flyersim.sim.app.cli", "flyersim.topologies.routing",
            "flyersim.collectives.verify"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
