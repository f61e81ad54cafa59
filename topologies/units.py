"""SI unit helpers and parsers for sizes, bandwidths and times.

Everything inside flyersim is in bytes, seconds and bytes/second; these helpers
turn human strings into those units and back.

>>> parse_size("186MiB")
195035136
>>> parse_bandwidth("200Gb/s")
25000000000.0
>>> parse_time("90ns")
9e-08
>>> format_size(195035136)
'186MiB'
"""

import math
import re

KiB, MiB, GiB, TiB = 2**10, 2**20, 2**30, 2**40
KB, MB, GB, TB = 10**3, 10**6, 10**9, 10**12
ns, us, ms = 1e-9, 1e-6, 1e-3
MAX_SIZE = 2**53  # float64 counts every byte exactly up to here; times and bandwidths are floats

_SIZE_UNITS = {
    "": 1, "B": 1,
    "K": KiB, "KiB": KiB, "KB": KB,
    "M": MiB, "MiB": MiB, "MB": MB,
    "G": GiB, "GiB": GiB, "GB": GB,
    "T": TiB, "TiB": TiB, "TB": TB,
}
_BANDWIDTH_UNITS = {
    "B/s": 1.0, "KB/s": 1e3, "MB/s": 1e6, "GB/s": 1e9, "TB/s": 1e12,
    "KiB/s": KiB, "MiB/s": MiB, "GiB/s": GiB,
    "b/s": 1 / 8, "Kb/s": 1e3 / 8, "Mb/s": 1e6 / 8, "Gb/s": 1e9 / 8, "Tb/s": 1e12 / 8,
}
_TIME_DIVISORS = {"s": 1, "ms": 10**3, "us": 10**6, "µs": 10**6, "ns": 10**9}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµ/]*)\s*$")


def _parse(text, units, what):
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = text
    else:
        match = _NUMBER.match(str(text))
        if not match or match.group(2) not in units:
            raise ValueError(f"malformed {what} {text!r} (units: {', '.join(u for u in units if u)})")
        value = float(match.group(1)) * units[match.group(2)]
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} is not a finite number")
    return value


def parse_size(text):
    """Bytes in a size such as ``186MiB``, ``1G`` (binary, as nccl-tests) or ``4096``.

    >>> parse_size("1G"), parse_size("1GB"), parse_size(8)
    (1073741824, 1000000000, 8)
    """
    value = _parse(text, _SIZE_UNITS, "size")
    if value != int(value) or value < 0:
        raise ValueError(f"malformed size {text!r}: must be a whole, non-negative number of bytes")
    if value > MAX_SIZE:
        raise ValueError(f"size {text!r} is above 2^53 bytes (8 PiB), where byte counts stop being exact")
    return int(value)


def parse_bandwidth(text):
    """Bytes/second in a bandwidth such as ``24GB/s`` or ``200Gb/s`` (bits)."""
    return float(_parse(text, _BANDWIDTH_UNITS, "bandwidth"))


def parse_time(text):
    """Seconds in a time such as ``1.5us``, ``90ns`` or ``0.001``."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = _NUMBER.match(str(text))
        if not match or match.group(2) not in _TIME_DIVISORS:
            raise ValueError(f"malformed time {text!r} (units: s, ms, us, ns)")
        value = float(match.group(1)) / _TIME_DIVISORS[match.group(2)]
    if not math.isfinite(value):
        raise ValueError(f"time {text!r} is not a finite number")
    return value


def format_size(nbytes):
    """The shortest exact binary-unit spelling of a byte count.

    >>> format_size(1536), format_size(3 * GiB), format_size(1000)
    ('1.5KiB', '3GiB', '1000B')
    """
    for name, unit in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if nbytes >= unit and (nbytes * 2) % unit == 0:
            value = nbytes / unit
            return f"{value:g}{name}"
    return f"{nbytes}B"
