"""``flyersim.jit.njit``: cached code loads in a fresh process without numba's compiler registries, same answers."""

import os
import subprocess
import sys

# Prints a reduction's result and whether numba's registry modules (linear algebra among them) got imported.
PROGRAM = """
import sys
import numpy as np
from flyersim.collectives.kernels import reduce_into
out = np.empty(5, np.float32)
reduce_into(out, [np.arange(5, dtype=np.float32)] * 3, "sum")
print(out.tolist(), 'numba.np.linalg' in sys.modules)
"""


def test_cached_code_loads_without_registries(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}

    def run():
        return subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True,
                              check=True).stdout.split()

    # an empty cache compiles, and numba's compiler loads its registries; loading from the cache must not
    assert run() == ["[0.0,", "3.0,", "6.0,", "9.0,", "12.0]", "True"]
    assert run() == ["[0.0,", "3.0,", "6.0,", "9.0,", "12.0]", "False"]
