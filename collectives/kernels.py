"""Element-wise reduction kernels (numba) for sum, max and min.

``combine(out, a, b, op)`` writes ``op(a, b)`` into ``out``; ``reduce_into``
folds k inputs in one pass over memory: block by block (a block stays in
cache), so each input is read once and ``out`` written once, in the same order
of operations per element as k-1 whole-array passes (identical bits). ``out`` may be one of the inputs (``data = data +
recv``). Supported dtypes: float16, float32, float64, int32; int32 sums wrap
like numpy's. max and min propagate NaN like ``np.maximum``/``np.minimum``.

numba has no float16 arithmetic on the CPU, so float16 uses numpy's ufuncs
(which compute each element in float32 and round once to float16).

>>> import numpy as np
>>> out = np.zeros(3, np.float32)
>>> reduce_into(out, [np.array([1, 2, 3], np.float32), np.array([4, 5, 6], np.float32),
...                   np.array([0, 9, 1], np.float32)], "max")
>>> out.tolist()
[4.0, 9.0, 6.0]
>>> a = np.array([1, -2], np.int32); combine(a, a, np.array([5, 5], np.int32), "sum"); a.tolist()
[6, 3]
>>> combine(a, a, a, "prod")
Traceback (most recent call last):
ValueError: unknown reduction op 'prod' (choose from sum, max, min)
"""

import numpy as np
from numba import njit

OPS = ("sum", "max", "min")
DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32))


@njit(cache=True, inline="always")
def _add(x, y):
    return x + y


@njit(cache=True, inline="always")
def _max(x, y):
    return x if (x > y or x != x) else y


@njit(cache=True, inline="always")
def _min(x, y):
    return x if (x < y or x != x) else y


BLOCK = 4096  # elements per block of a fold: its k+1 blocks stay in L1/L2


def _kernels(op):
    """numba kernels for scalar ``op``: ``pair(out, a, b)`` and ``fold(out, first, rest)`` over a tuple of inputs.

    ``fold`` goes one cache-sized block at a time, so each input is read once and ``out`` written once,
    with the same operations per element, in the same order, as ``pair`` applied k-1 times.
    """
    @njit(cache=True)
    def pair(out, a, b):
        for i in range(out.size):
            out[i] = op(a[i], b[i])

    @njit(cache=True)
    def fold(out, first, rest):
        for lo in range(0, out.size, BLOCK):
            o, a, b = out[lo:lo + BLOCK], first[lo:lo + BLOCK], rest[0][lo:lo + BLOCK]
            for i in range(o.size):
                o[i] = op(a[i], b[i])
            for j in range(1, len(rest)):
                b = rest[j][lo:lo + BLOCK]
                for i in range(o.size):
                    o[i] = op(o[i], b[i])
    return pair, fold


_NUMBA = {"sum": _kernels(_add), "max": _kernels(_max), "min": _kernels(_min)}
_NUMPY = {"sum": np.add, "max": np.maximum, "min": np.minimum}


def check_op(op, dtype):
    """Raise ValueError unless ``op`` and ``dtype`` are supported."""
    if op not in OPS:
        raise ValueError(f"unknown reduction op {op!r} (choose from {', '.join(OPS)})")
    if np.dtype(dtype) not in DTYPES:
        raise ValueError(f"unsupported dtype {np.dtype(dtype)} (choose from {', '.join(map(str, DTYPES))})")


def combine(out, a, b, op):
    """``out[:] = op(a, b)`` element-wise; all three 1-D arrays of one dtype and length."""
    check_op(op, out.dtype)
    if a.dtype != out.dtype or b.dtype != out.dtype:
        raise ValueError(f"dtype mismatch: out {out.dtype}, inputs {a.dtype} and {b.dtype}")
    if not (out.shape == a.shape == b.shape) or out.ndim != 1:
        raise ValueError(f"shape mismatch: out {out.shape}, inputs {a.shape} and {b.shape} (need equal 1-D)")
    if out.dtype == np.float16:
        _NUMPY[op](a, b, out=out)
    else:
        _NUMBA[op][0](out, a, b)


def reduce_into(out, inputs, op):
    """``out[:] = op(inputs[0], ..., inputs[k-1])`` for k >= 2 inputs; ``out`` may alias one input."""
    if len(inputs) < 2:
        raise ValueError(f"reduce_into needs at least two inputs, got {len(inputs)}")
    # Start from the input that shares memory with out, so no input is overwritten before it is read.
    first = next((i for i, x in enumerate(inputs) if np.may_share_memory(x, out)), 0)
    rest = [x for i, x in enumerate(inputs) if i != first]
    if out.dtype != np.float16 and all(x.dtype == out.dtype and x.shape == out.shape and x.flags.c_contiguous
                                       for x in inputs) and out.ndim == 1 and out.flags.c_contiguous:
        check_op(op, out.dtype)
        _NUMBA[op][1](out, inputs[first], tuple(rest))
        return
    combine(out, inputs[first], rest[0], op)
    for x in rest[1:]:
        combine(out, out, x, op)
