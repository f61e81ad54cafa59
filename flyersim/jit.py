"""``njit``: numba's ``njit(cache=True)`` whose cached machine code loads without numba's compiler start-up.

Before loading a cached function, numba refreshes its whole typing and lowering registry: it imports
about a hundred of its own modules (linear algebra, random, typed containers, ...), 0.11 s of CPU
on the build machine, a sixth of a 16-GPU ``flyersim run`` before. Cached code needs none of that, only
numba's runtime (allocation and reference counting), which this loader initialises; a cache miss
compiles as usual, and numba's compiler refreshes the registries itself before it compiles. Only
the functions decorated here load this way; the code they run and its results are numba's own.
Use it as numba's (in a module file: numba caches by source file)::

    @njit(error_model="numpy")
    def total(x):
        return x.sum()

``tests/test_jit.py`` checks that a cached call leaves the registries unloaded.
"""

from numba import njit as _numba_njit
from numba.core.caching import FunctionCache
from numba.core.runtime.nrt import rtsys


class _Cache(FunctionCache):
    """numba's on-disk cache of one function, loading cached code with numba's runtime only."""

    def load_overload(self, sig, target_context):
        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)


def njit(**options):
    """Decorator: ``numba.njit(cache=True, **options)`` with the light cache loader above."""
    def decorate(fn):
        dispatcher = _numba_njit(**options)(fn)
        dispatcher._cache = _Cache(fn)  # what numba's cache=True does, with the loader above
        return dispatcher
    return decorate
