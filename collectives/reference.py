"""Reference executor: runs a schedule on real numpy data in one process and checks the result.

Every (location, buffer) is an N-element array; each rank's ``schedule.inputs``
buffers at its GPU start as a copy of its input, everything else as poison (NaN
for floats, the minimum integer for int32). Ops run in order: an xfer is a slice
copy (a multicast is its k copies), a reduce calls
:func:`collectives.kernels.reduce_into` on its inputs, each at its own location. Each ``expect``
entry is then compared with numpy's reduction of its contributors' inputs:
exactly for int32 and for max/min, and within the rounding bound
``(k-1) * eps * sum(|x|)`` for a float sum of k inputs. Catching undefined
reads is the verifier's job, not this one's.

>>> import numpy as np
>>> from flyersim.collectives.ring import ring_allreduce
>>> from flyersim.collectives.schedule import Layout
>>> inputs = [np.arange(5, dtype=np.int32) * (r + 1) for r in range(3)]
>>> out = run_reference(ring_allreduce(Layout(1, 3)), inputs)
>>> out[2]["data"].tolist()
[0, 6, 12, 18, 24]
"""

import numpy as np

from flyersim.collectives.kernels import check_op, reduce_into
from flyersim.collectives.schedule import XFER, span_bounds

_NUMPY_REDUCE = {"sum": np.sum, "max": np.max, "min": np.min}


class ResultMismatch(AssertionError):
    """A buffer does not hold the reduction its ``expect`` entry promises."""


def run_reference(schedule, inputs, op="sum"):
    """Execute ``schedule`` on ``inputs`` (one 1-D array per rank) and check every ``expect`` entry.

    Returns ``{rank: {buffer name: final array}}`` for the ranks' GPUs.
    """
    s = schedule
    p = s.layout.ranks
    if len(inputs) != p:
        raise ValueError(f"{s.algo}: need one input per rank ({p}), got {len(inputs)}")
    inputs = [np.asarray(x) for x in inputs]
    dtype, n = inputs[0].dtype, inputs[0].shape
    if any(x.ndim != 1 or x.shape != n or x.dtype != dtype for x in inputs):
        raise ValueError(f"{s.algo}: inputs must be 1-D arrays of one dtype and length")
    check_op(op, dtype)
    n = n[0]
    poison = np.nan if dtype.kind == "f" else np.iinfo(dtype).min
    bufs = {}

    def buf(loc, b):
        if (loc, b) not in bufs:
            is_input = loc < p and s.buffers[b] in s.inputs
            bufs[loc, b] = inputs[loc].copy() if is_input else np.full(n, poison, dtype)
        return bufs[loc, b]

    starts = span_bounds(n, s.lo, s.den).tolist()
    ends = span_bounds(n, s.hi, s.den).tolist()
    kind, src, dst, out = s.kind.tolist(), s.src.tolist(), s.dst.tolist(), s.out.tolist()
    in_ptr, in_buf, in_loc = s.in_ptr.tolist(), s.in_buf.tolist(), s.in_loc.tolist()
    for i in range(s.num_ops):
        a, b = starts[i], ends[i]
        if a == b:
            continue
        target = buf(dst[i], out[i])[a:b]
        if kind[i] == XFER:
            target[:] = buf(src[i], in_buf[in_ptr[i]])[a:b]
        else:
            reduce_into(target, [buf(loc, k)[a:b] for loc, k in
                                 zip(in_loc[in_ptr[i]:in_ptr[i + 1]], in_buf[in_ptr[i]:in_ptr[i + 1]])], op)
    for e in s.expect:
        _check(s, e, buf(e.loc, s.buffers.index(e.buf)), inputs, op)
    return {r: {name: buf(r, k) for k, name in enumerate(s.buffers)} for r in range(p)}


def wrong(got, want, mag, k, op):
    """Mask of the elements of ``got`` that are not the ``op`` of ``k`` contributions ``want``.

    Integer results and max/min must be exact (NaN matching NaN); a floating-point sum may differ from
    the exact sum ``want`` (float64) by the rounding of k-1 additions in any order: ``(k-1) eps`` times
    ``mag``, the sum of the contributions' magnitudes, plus k subnormals. Shared by the reference
    and MPI executors.

    >>> wrong(np.float32([3.0, 3.5]), np.array([3.0, 3.0]), np.array([3.0, 3.0]), 3, "sum").tolist()
    [False, True]
    """
    if op == "sum" and got.dtype.kind == "f":
        info = np.finfo(got.dtype)
        tol = (k - 1) * float(info.eps) * mag + k * float(info.smallest_subnormal)
        return ~(np.abs(got.astype(np.float64) - want) <= tol)
    expect = np.asarray(want).astype(got.dtype)
    same = got == expect
    if got.dtype.kind == "f":
        same |= np.isnan(got) & np.isnan(expect)
    return ~same


def _check(s, e, got, inputs, op):
    lo, hi, den = e.span
    a, b = int(span_bounds(len(got), lo, den)), int(span_bounds(len(got), hi, den))
    ranks = range(s.layout.ranks) if e.contributors is None else e.contributors
    stack = np.stack([inputs[r][a:b] for r in ranks]) if b > a else np.empty((len(ranks), 0), got.dtype)
    got = got[a:b]
    wide = stack.astype(np.float64)
    want = wide.sum(axis=0) if op == "sum" and got.dtype.kind == "f" else _NUMPY_REDUCE[op](stack, axis=0)
    bad = wrong(got, want, np.abs(wide).sum(axis=0), len(ranks), op)
    if bad.any():
        j = int(np.argmax(bad))
        where = f"{s.layout.location_names()[e.loc]}:{e.buf} [{lo}/{den}, {hi}/{den})"
        raise ResultMismatch(f"{s.algo}: {where}: element {a + j} is {got[j].item()}, expected {op} of ranks "
                             f"{list(ranks)} = {want[j].item()} ({int(bad.sum())} of {b - a} elements wrong)")
