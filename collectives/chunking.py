"""Size-dependent pipeline chunking: how many chunks a pipelined algorithm cuts a message into.

Real implementations pipeline in chunks of a fixed *size*, not a fixed count:
NCCL's Simple protocol moves one step of ``NCCL_BUFFSIZE / NCCL_STEPS`` bytes
per slot of a connection's FIFO (``DEFAULT_BUFFSIZE (1 << 22)`` = 4 MiB in
``src/init.cc``, ``NCCL_STEPS 8`` in ``src/include/devcomm.h`` / ``device.h``:
512 KiB per step and channel). A fixed chunk count makes a deep pipeline (a
tree over 128 servers) spend most of its time filling and draining.

An algorithm whose pipeline depends on the message size is declared
``sized`` in the registry (:data:`collectives.ALGORITHMS`): its builder takes
``nbytes`` (bytes per rank; ``None`` when built without a size) and declares a
``chunk_bytes`` parameter, and runners build one schedule per (algorithm,
size). Its chunk count is
``ceil(nbytes / chunk_bytes)``, at least 1 and at most ``max_chunks``: the
cap bounds the schedule (ops grow linearly with chunks; 186 MiB in 512 KiB
chunks is 372 chunks, times every op of every node per chunk) and is a named,
documented parameter, never applied silently. A generator given an explicit
``chunks`` uses it instead.

>>> pipeline_chunks(186 << 20, 512 << 10, 4096), pipeline_chunks(1, 512 << 10)
(372, 1)
>>> pipeline_chunks(186 << 20, 512 << 10, 64), pipeline_chunks(None, 512 << 10, 64, fallback=8)
(64, 8)
>>> pipeline_chunks(1 << 20, 0, 8, algo="hfreduce")
Traceback (most recent call last):
ValueError: hfreduce: chunk_bytes must be a positive integer, got 0
"""

import numpy as np

NCCL_BUFFSIZE = 1 << 22                   # src/init.cc DEFAULT_BUFFSIZE: 4 MiB per channel and protocol Simple
NCCL_STEPS = 8                            # src/include/devcomm.h (device.h in later releases)
NCCL_STEP_BYTES = NCCL_BUFFSIZE // NCCL_STEPS  # 512 KiB: one Simple step, the tree's chunkSize (enqueue.cc)
ALLREDUCE_CHUNKSTEPS = NCCL_STEPS // 2    # src/include/collectives.h: a ring chunk is 4 steps = 2 MiB
DEFAULT_MAX_CHUNKS = 64                   # cap on pipeline chunks, bounding the schedule. Measured on 186 MiB hfreduce:
#   1,024 GPUs: 64 chunks 180k ops, time 23.6 ms; 256 chunks 720k ops, 21.9 ms (7 % faster, 8x the wall time);
#   10,000 GPUs: 64 chunks 1.76M ops, about a minute on 2 cores. Raise it with --param max_chunks=N.


def _positive(name, value, algo):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{algo}: {name} must be a positive integer, got {value!r}")
    return int(value)


def pipeline_chunks(nbytes, chunk_bytes, max_chunks=DEFAULT_MAX_CHUNKS, fallback=1, algo="chunks"):
    """``ceil(nbytes / chunk_bytes)`` clamped to ``1..max_chunks``; ``fallback`` when ``nbytes`` is None."""
    chunk_bytes = _positive("chunk_bytes", chunk_bytes, algo)
    max_chunks = _positive("max_chunks", max_chunks, algo)
    if nbytes is None:
        return int(fallback)
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 0:
        raise ValueError(f"{algo}: nbytes must be a non-negative integer, got {nbytes!r}")
    return int(min(max(1, -(-int(nbytes) // chunk_bytes)), max_chunks))


def choose_chunks(chunks, nbytes, chunk_bytes, max_chunks, fallback, algo, per=1):
    """An explicit ``chunks`` (validated) or the size-dependent count for ``nbytes / per`` bytes."""
    if chunks is not None:
        return _positive("chunks", chunks, algo)
    part = None if nbytes is None else -(-int(nbytes) // per)
    return pipeline_chunks(part, chunk_bytes, max_chunks, fallback, algo)
