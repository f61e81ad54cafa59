"""Element-wise reduction kernels (numba) for sum, max and min.

``combine(out, a, b, op)`` writes ``op(a, b)`` into ``out``; ``reduce_into``
folds k inputs in one pass over memory: each element is
``op(...op(op(x0, x1), x2)..., xk-1)``, the order of k-1 pairwise passes
(identical bits), computed in a register, so each input is read once and
``out`` written once. ``out`` may be one of the inputs (``data = data + recv``).
Supported dtypes: float16, float32, float64, int32; int32 sums wrap like
numpy's. max and min propagate NaN like ``np.maximum``/``np.minimum``.

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

from flyersim.jit import njit

OPS = ("sum", "max", "min")
DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32))
# Inputs folded per pass over memory. The pass is one loop whose inner fold over the inputs the compiler
# unrolls (their count is part of the tuple's type), so it vectorises; with more than 8 arrays the
# compiler's run-time overlap checks give up and it runs element by element, 12x slower (16 inputs,
# measured). More inputs take further passes, each folding the next ones into ``out``: same order.
GROUP = 7


@njit(inline="always")
def _add(x, y):
    return x + y


@njit(inline="always")
def _max(x, y):
    return x if (x > y or x != x) else y


@njit(inline="always")
def _min(x, y):
    return x if (x < y or x != x) else y


@njit(inline="always")
def _fold_with(f, out, first, rest):
    for i in range(out.size):
        acc = f(first[i], rest[0][i])
        for j in range(1, len(rest)):
            acc = f(acc, rest[j][i])
        out[i] = acc


@njit(inline="always")
def _fold_into_with(f, out, rest):
    # out is the first input: read through the same array, since the compiler's overlap check would
    # otherwise find a second name for out's memory and fall back to one element at a time (3x slower)
    for i in range(out.size):
        acc = f(out[i], rest[0][i])
        for j in range(1, len(rest)):
            acc = f(acc, rest[j][i])
        out[i] = acc


@njit()
def _fold(op, out, first, rest):
    """``out[i] = op(...op(op(first[i], rest[0][i]), rest[1][i])..., rest[-1][i])``; ``op``: index in OPS."""
    if op == 0:
        _fold_with(_add, out, first, rest)
    elif op == 1:
        _fold_with(_max, out, first, rest)
    else:
        _fold_with(_min, out, first, rest)


@njit()
def _fold_into(op, out, rest):
    """:func:`_fold` with ``first`` being ``out`` itself."""
    if op == 0:
        _fold_into_with(_add, out, rest)
    elif op == 1:
        _fold_into_with(_max, out, rest)
    else:
        _fold_into_with(_min, out, rest)


_NUMPY = {"sum": np.add, "max": np.maximum, "min": np.minimum}


def check_op(op, dtype):
    """Raise ValueError unless ``op`` and ``dtype`` are supported."""
    if op not in OPS:
        raise ValueError(f"unknown reduction op {op!r} (choose from {', '.join(OPS)})")
    if np.dtype(dtype) not in DTYPES:
        raise ValueError(f"unsupported dtype {np.dtype(dtype)} (choose from {', '.join(map(str, DTYPES))})")


def _fold_numba(out, first, rest, op):
    """``out = op(first, *rest)`` by the numba kernels, up to GROUP inputs of ``rest`` per pass."""
    code = OPS.index(op)
    for lo in range(0, len(rest), GROUP):
        group = tuple(rest[lo:lo + GROUP])
        if first.ctypes.data == out.ctypes.data and first.strides == out.strides:
            _fold_into(code, out, group)
        else:
            _fold(code, out, first, group)
        first = out


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
        _fold_numba(out, a, [b], op)


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
        _fold_numba(out, inputs[first], rest, op)
        return
    combine(out, inputs[first], rest[0], op)
    for x in rest[1:]:
        combine(out, out, x, op)
