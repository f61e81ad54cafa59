"""A schedule as a stream of batches: its ops in order, a few at a time, never all at once.

:func:`stream` runs an algorithm's builder (any registered one, unchanged) in
a helper thread whose :class:`~collectives.schedule.ScheduleBuilder` hands
its ops to the consumer in batches instead of keeping them: the ops of
consecutive ``xfer``, ``multicast`` or ``reduce`` calls, once they are
``min_ops`` or more (fewer, larger batches: less work per op for the
consumer), and waits while the consumer lags more than ``max_ops`` ops
behind. A ring of p ranks has p^2 ops but only p per call, so a
consumer that drops the batches it no longer needs (the simulator's window,
:mod:`sim.fluid`) holds memory linear in p. Batches carry global op ids (a
dependency names any earlier op), in the order the builder appended them.

>>> from flyersim.collectives.schedule import Layout
>>> s = stream("ring", Layout(nodes=1, gpus_per_node=4))
>>> [(first, batch.num_ops) for first, batch in s]    # 9 calls of 4 ops, handed on together
[(0, 36)]
>>> [(first, batch.num_ops) for first, batch in stream("ring", Layout(1, 4), min_ops=10)]
[(0, 12), (12, 12), (24, 12)]
>>> s.num_ops, s.schedule.algo, s.schedule.num_ops   # the built schedule keeps no op
(36, 'ring', 0)
"""

import queue
import threading

from flyersim import collectives
from flyersim.collectives.schedule import SINK


class Stream:
    """Iterator over ``(first op id, batch schedule)``; afterwards ``schedule`` (no ops) and ``num_ops``.

    The builder hands on the ops of consecutive calls together once they are ``min_ops`` or more. It
    runs ahead of the consumer by up to ``max_ops`` ops (and always one batch), so it can build while the
    consumer computes without the GIL (the simulator's numba kernels release it).
    :meth:`close` stops the builder early (its thread ends at its next batch).
    """

    def __init__(self, build, max_ops=1 << 16, min_ops=1 << 14):
        self.min_ops = min_ops  # the builder hands on its calls' ops together once they are this many
        self._queue = queue.Queue()
        self._room = threading.Condition()
        self._queued, self._max_ops = 0, max_ops  # ops handed over and not taken yet; the most allowed
        self._closed = threading.Event()
        self._builder = None
        self.schedule, self.num_ops = None, 0
        self._thread = threading.Thread(target=self._produce, args=(build,), daemon=True)
        self._thread.start()

    # ---- the builder's side (helper thread)
    def claim(self, builder):
        if self._builder is not None:
            raise RuntimeError("an algorithm built two schedules at once; it cannot be streamed")
        self._builder = builder

    def put(self, first, batch):
        n = batch.num_ops if first >= 0 else 0
        with self._room:
            while self._queued and self._queued + n > self._max_ops and not self._closed.is_set():
                self._room.wait()
            if self._closed.is_set():
                raise _Closed()
            self._queued += n
        self._queue.put((first, batch))

    def done(self, schedule):
        self._header = schedule

    def _produce(self, build):
        token = SINK.set(self)
        try:
            self._header = None
            result = build()
            if result is not self._header:
                raise RuntimeError("the algorithm returned a schedule other than the one it streamed")
            self.put(-1, (result, self._builder.num_ops))
        except _Closed:
            return
        except BaseException as err:  # handed to the consumer, raised there
            try:
                self.put(-1, err)
            except _Closed:
                return
        finally:
            SINK.reset(token)

    # ---- the consumer's side
    def __iter__(self):
        return self

    def __next__(self):
        if self.schedule is not None or self._closed.is_set():
            raise StopIteration
        first, item = self._queue.get()
        if first >= 0:
            with self._room:
                self._queued -= item.num_ops
                self._room.notify()
            return first, item
        if isinstance(item, BaseException):
            self.close()
            raise item
        self.schedule, self.num_ops = item
        raise StopIteration

    def close(self):
        """Stop the builder (if still running) and drop what it queued."""
        with self._room:
            self._closed.set()
            self._room.notify()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join()


class _Closed(Exception):
    """The consumer closed the stream: the builder stops."""


def stream(algo, layout, collective="allreduce", nbytes=None, search=None, min_ops=1 << 14, **params):
    """The schedule :func:`collectives.build` would return, as a :class:`Stream` of batches of ``min_ops`` ops
    or more (but the last)."""
    return Stream(lambda: collectives.build(algo, layout, collective, nbytes=nbytes, search=search, **params),
                  min_ops=min_ops)
