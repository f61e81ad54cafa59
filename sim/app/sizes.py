"""Message-size lists for the CLI: explicit lists or nccl-tests' -b/-e/-f/-i sweeps.

>>> size_list("1MiB,16MiB")
[1048576, 16777216]
>>> sweep("8", "64", factor=2)
[8, 16, 32, 64]
>>> sweep("1K", "4K", increment="1K")
[1024, 2048, 3072, 4096]
"""

import math

from flyersim.topologies.units import parse_size


def size_list(text):
    """Sizes in a comma-separated list such as ``4KiB,1MiB,186MiB``."""
    sizes = [parse_size(part) for part in text.split(",") if part.strip()]
    if not sizes:
        raise ValueError(f"no sizes in {text!r}")
    if min(sizes) <= 0:
        raise ValueError(f"sizes must be positive, got {text!r}")
    return sizes


def sweep(begin, end, factor=None, increment=None):
    """nccl-tests style sweep from ``begin`` to ``end`` by a ``factor`` (default 2) or an ``increment``."""
    lo, hi = parse_size(begin), parse_size(end)
    if lo <= 0 or hi < lo:
        raise ValueError(f"need 0 < begin <= end, got -b {begin} -e {end}")
    if factor is not None and increment is not None:
        raise ValueError("give a factor (-f) or an increment (-i), not both")
    sizes = [lo]
    if increment is not None:
        step = parse_size(increment)
        if step <= 0:
            raise ValueError(f"increment must be positive, got {increment!r}")
        while sizes[-1] + step <= hi:
            sizes.append(sizes[-1] + step)
        return sizes
    factor = 2 if factor is None else factor
    if not 1 < factor < math.inf:
        raise ValueError(f"factor (-f) must be a finite number greater than 1, got {factor}")
    while sizes[-1] * factor <= hi:
        sizes.append(int(sizes[-1] * factor))
    return sizes
