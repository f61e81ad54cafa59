"""Schedules: a collective algorithm as a DAG of ``xfer`` and ``reduce`` ops.

Every buffer holds a whole message of N elements and every op works on a
*span* ``(lo, hi, den)``: elements ``[N*lo//den, N*hi//den)`` of it, the same
elements in every buffer the op touches. Integer flooring splits any N into
``den`` nearly equal parts without remainder cases, so a schedule is correct
for every message size. Pipelined algorithms choose their chunk count from
the size (declared ``sized`` in the registry; see :mod:`collectives.chunking`)
and are built once per size; all others build one schedule for every size.

Locations are integers: ranks ``0..p-1`` are the GPUs (one rank plays one GPU),
then one host memory per (node, socket); :class:`Layout` names them as the
topology does (``n3/gpu5``, ``n3/host0``).

Op kinds:

- ``XFER``: copy the span of buffer ``inputs[0]`` at ``src`` to buffer ``out``
  at ``dst`` (its one input location ``in_loc`` is ``src``).
- ``REDUCE``: combine the span of the k buffers ``inputs``, input j at
  location ``in_loc[j]``, into buffer ``out`` at ``dst`` (``src == dst``); the
  engine that owns ``dst`` does it, reading inputs elsewhere remotely (a CPU
  reading the other socket's memory over xGMI). Every input must be in the
  node of ``dst``.
- an XFER's ``engine`` says what drives the copy: ``"dma"`` (a GPU copy
  engine or a NIC, the default) or ``"cpu"`` (CPU threads storing into the
  destination, GDRCopy). Only the simulator reads it (``sim.routes`` charges
  CPU-driven copies to the socket's store engine); verifier and executors
  ignore it.
- an op's ``release`` (seconds, optional) is the earliest time it may become
  ready, whatever its dependencies (a rank that starts late:
  :func:`collectives.transforms.late_start`). Only the simulator reads it.
- *multicast*: k XFERs of one source span to k destinations that share a
  ``group`` (the op id of the first; -1 for an ordinary op). Verifier and
  executors treat them as the k copies they are; the simulator moves them as
  one flow that reads the source once and crosses the union of the paths
  (GDRCopy: one host read serves the GPUs of a NUMA node).

Dependencies point only to earlier ops, so op order is a topological order
and every schedule is acyclic by construction.

>>> layout = Layout(nodes=1, gpus_per_node=2)
>>> b = ScheduleBuilder(layout, "allreduce", "example", buffers=("data", "recv"))
>>> sent = b.xfer(src=[0, 1], dst=[1, 0], span=(0, 1, 1), src_buf="data", dst_buf="recv")
>>> summed = b.reduce(at=[0, 1], inputs=("data", "recv"), out="data", span=(0, 1, 1), deps=[sent[::-1], sent])
>>> s = b.build()
>>> s.num_ops, s.kind.tolist(), s.deps(2).tolist()
(4, [0, 0, 1, 1], [1, 0])
>>> s.span_elements(5).tolist()
[5, 5, 5, 5]
"""

from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np

XFER, REDUCE = 0, 1
KIND_NAMES = ("xfer", "reduce")
ENGINES = ("dma", "cpu")  # what drives an xfer (column ``engine``)
COLLECTIVES = ("allreduce", "reduce_scatter", "allgather", "broadcast", "reduce")
# Where the builder created in this context hands its ops, batch by batch, instead of keeping them
# (see :mod:`collectives.stream`); None: builders keep every op.
SINK = ContextVar("schedule_sink", default=None)


@dataclass(frozen=True)
class Layout:
    """Where a collective's ranks live, and the server facts algorithms may use.

    ``nodes`` x ``gpus_per_node`` GPUs (one rank each), ``sockets`` host
    memories per node. The rest describes one server (every server alike),
    as ``topologies.facts.server_facts`` finds it in a topology:

    - ``nvlink_pairs``: NVLink-bridged GPU pairs by local index (empty: none);
    - ``gpu_sockets[j]``: socket of local GPU j; ``nic_sockets``: socket of each
      NIC; ``gpu_paths[i][j]`` / ``nic_paths[j]``: path class (NCCL's
      ``LOC NVL PIX PXB PHB SYS``) from GPU i to GPU j / to GPU j's NIC
      (empty: not described);
    - ``cpu_vendor`` (``amd``, ``intel``) and ``gpu_arch`` (CUDA compute capability x 10).

    The defaults, used when a layout is built without a topology, live here
    and only here: GPUs in contiguous blocks per socket (GPU0-3 on socket 0 and
    GPU4-7 on socket 1 with 8 GPUs on 2 sockets, as Fire-Flyer 2's Fig. 4), one
    NIC on the last socket, AMD EPYC and A100, as flyersim's presets.

    This class is the one home of location arithmetic: locations are ranks
    ``0..p-1`` then one host memory per (node, socket).

    >>> lay = Layout(nodes=2, gpus_per_node=4, sockets=2)
    >>> lay.location_names()[3:6], lay.gpu_sockets, lay.nic_socket
    (['n0/gpu3', 'n1/gpu0', 'n1/gpu1'], (0, 0, 1, 1), 1)
    >>> lay.host(1, 1), lay.location_names()[11], lay.node_of_location([5, 11]).tolist(), lay.rank(1, 2)
    (11, 'n1/host1', [1, 1], 6)
    >>> Layout(1, 2, 2, gpu_sockets=(0, 2))
    Traceback (most recent call last):
    ValueError: layout gpu_sockets must give a socket 0..1 for each of the 2 GPUs, got (0, 2)
    """

    nodes: int
    gpus_per_node: int
    sockets: int = 1
    nvlink_pairs: tuple = ()
    gpu_sockets: tuple = ()
    nic_sockets: tuple = ()
    gpu_paths: tuple = ()
    nic_paths: tuple = ()
    cpu_vendor: str = "amd"
    gpu_arch: int = 80

    def __post_init__(self):
        for name in ("nodes", "gpus_per_node", "sockets"):
            if not isinstance(getattr(self, name), (int, np.integer)) or getattr(self, name) < 1:
                raise ValueError(f"layout {name} must be a positive integer, got {getattr(self, name)!r}")
        g, sockets = self.gpus_per_node, self.sockets
        defaults = {"gpu_sockets": tuple(j * sockets // g for j in range(g)), "nic_sockets": (sockets - 1,)}
        for name, default in defaults.items():
            value = tuple(int(x) for x in getattr(self, name)) or default
            if (name == "gpu_sockets" and len(value) != g) or not all(0 <= x < sockets for x in value):
                count = f"each of the {g} GPUs" if name == "gpu_sockets" else "each NIC"
                raise ValueError(f"layout {name} must give a socket 0..{sockets - 1} for {count}, "
                                 f"got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "nvlink_pairs", tuple(tuple(int(x) for x in p) for p in self.nvlink_pairs))

    def gpu_socket(self, local):
        """Socket of local GPU ``local``."""
        return self.gpu_sockets[local]

    @property
    def nic_socket(self):
        """Socket of a node's first NIC."""
        return self.nic_sockets[0]

    @property
    def ranks(self):
        return self.nodes * self.gpus_per_node

    @property
    def num_locations(self):
        return self.ranks + self.nodes * self.sockets

    def gpu(self, rank):
        return rank

    def rank(self, node, local):
        """Rank of local GPU ``local`` of ``node`` (arrays broadcast)."""
        return np.asarray(node) * self.gpus_per_node + local if np.ndim(node) or np.ndim(local) \
            else node * self.gpus_per_node + local

    def node_of(self, rank):
        return np.asarray(rank) // self.gpus_per_node if np.ndim(rank) else rank // self.gpus_per_node

    def local(self, rank):
        """Index of GPU ``rank`` inside its node."""
        return np.asarray(rank) % self.gpus_per_node if np.ndim(rank) else rank % self.gpus_per_node

    def host(self, node, socket=0):
        return self.ranks + np.asarray(node) * self.sockets + socket if np.ndim(node) else self.ranks + node * self.sockets + socket

    def node_of_location(self, loc):
        """Node of location(s) ``loc`` (a GPU rank or a host memory), as an array."""
        loc = np.asarray(loc)
        return np.where(loc < self.ranks, loc // self.gpus_per_node, (loc - self.ranks) // self.sockets)

    def location_names(self):
        g = self.gpus_per_node
        gpus = [f"n{r // g}/gpu{r % g}" for r in range(self.ranks)]
        hosts = [f"n{n}/host{s}" for n in range(self.nodes) for s in range(self.sockets)]
        return gpus + hosts


@dataclass(frozen=True)
class Expect:
    """Postcondition: span of ``buf`` at ``loc`` holds the reduction of ``contributors``' inputs there.

    ``contributors`` is a tuple of ranks, or ``None`` for all ranks.
    """

    loc: int
    buf: str
    span: tuple
    contributors: tuple = None


@dataclass(frozen=True)
class Schedule:
    """A built schedule: op columns as numpy arrays (see module docstring)."""

    layout: Layout
    collective: str
    algo: str
    buffers: tuple
    kind: np.ndarray      # int8, XFER or REDUCE
    src: np.ndarray       # int32 location read from (== dst for REDUCE)
    dst: np.ndarray       # int32 location written
    out: np.ndarray       # int16 buffer written
    lo: np.ndarray        # int64 span numerator start
    hi: np.ndarray        # int64 span numerator end
    den: np.ndarray       # int64 span denominator
    in_ptr: np.ndarray    # int64 CSR: inputs of op i are in_buf[in_ptr[i]:in_ptr[i+1]]
    in_buf: np.ndarray    # int16 buffer ids read
    in_loc: np.ndarray    # int32 location of each input (parallel to in_buf; an xfer's is its src)
    dep_ptr: np.ndarray   # int64 CSR: deps of op i are dep_idx[dep_ptr[i]:dep_ptr[i+1]]
    dep_idx: np.ndarray   # int64 op ids, all < i
    group: np.ndarray = None  # int64 multicast group of each op (op id of its first member), -1 if none
    engine: np.ndarray = None  # int8 index into ENGINES of each op (None: all "dma")
    release: np.ndarray = None  # float64 seconds before which each op is not ready (None: all 0)
    inputs: tuple = ("data",)  # buffers holding each rank's input at its GPU
    expect: tuple = field(default=())

    @property
    def num_ops(self):
        return len(self.kind)

    def deps(self, op):
        return self.dep_idx[self.dep_ptr[op]:self.dep_ptr[op + 1]]

    def op_inputs(self, op):
        return self.in_buf[self.in_ptr[op]:self.in_ptr[op + 1]]

    def op_input_locs(self, op):
        return self.in_loc[self.in_ptr[op]:self.in_ptr[op + 1]]

    def span_elements(self, count):
        """Elements each op moves or produces for a message of ``count`` elements."""
        return span_bounds(count, self.hi, self.den) - span_bounds(count, self.lo, self.den)

    def describe(self, op):
        """One readable line for an op, for error messages and traces."""
        names = self.layout.location_names()
        span = f"[{self.lo[op]}/{self.den[op]}, {self.hi[op]}/{self.den[op]})"
        at = self.dst[op]
        ins = ",".join(self.buffers[b] if loc == at else f"{names[loc]}:{self.buffers[b]}"
                       for b, loc in zip(self.op_inputs(op), self.op_input_locs(op)))
        if self.kind[op] == XFER:
            ins = ",".join(self.buffers[b] for b in self.op_inputs(op))
            many = "" if self.group is None or self.group[op] < 0 else f" (multicast {self.group[op]})"
            by = "" if self.engine is None or self.engine[op] == 0 else f" by {ENGINES[self.engine[op]]}"
            return (f"xfer {names[self.src[op]]}:{ins} -> {names[self.dst[op]]}:{self.buffers[self.out[op]]} "
                    f"{span}{many}{by}")
        return f"reduce {names[self.dst[op]]}:{ins} -> {self.buffers[self.out[op]]} {span}"


def span_bounds(count, num, den):
    """First element index of fraction ``num/den`` of a ``count``-element message (floor)."""
    return (np.int64(count) * np.asarray(num, dtype=np.int64)) // np.asarray(den, dtype=np.int64)


class ScheduleBuilder:
    """Appends ops in batches; every argument broadcasts like numpy.

    ``deps`` is a list whose items are op ids (scalars or arrays broadcast
    against the batch); -1 means "no dependency" for that op.
    """

    def __init__(self, layout, collective, algo, buffers=("data",), inputs=("data",)):
        if collective not in COLLECTIVES:
            raise ValueError(f"unknown collective {collective!r} (choose from {', '.join(COLLECTIVES)})")
        self.layout, self.collective, self.algo = layout, collective, algo
        self.buffers = tuple(buffers)
        self.inputs = tuple(inputs)
        self._expect = []
        self.num_ops = 0
        self._sink = SINK.get()
        if self._sink is not None:
            self._sink.claim(self)
        self._reset()

    def _reset(self):
        """Start a new batch of kept ops (all of them, unless a sink takes them batch by batch)."""
        self._cols = {k: [] for k in ("kind", "src", "dst", "out", "lo", "hi", "den", "nin")}
        self._in_bufs, self._in_locs, self._groups, self._deps, self._engines = [], [], [], [], []
        self._first = self.num_ops

    def _flush(self, last=False):
        """Hand the ops appended since the last flush to the sink, as one schedule of op ids ``_first`` on,
        once they are the sink's ``min_ops`` or more (or the ``last``)."""
        pending = self.num_ops - self._first
        if self._sink is not None and pending and (last or pending >= self._sink.min_ops):
            batch = self._columns()
            first = self._first
            self._reset()
            self._sink.put(first, batch)

    def _buf(self, name):
        try:
            return self.buffers.index(name)
        except ValueError:
            raise ValueError(f"buffer {name!r} not declared (have {', '.join(self.buffers)})") from None

    def _append(self, kind, src, dst, out, ins, span, deps, in_locs=None, group=None, engine="dma"):
        if engine not in ENGINES:
            raise ValueError(f"{self.algo}: unknown copy engine {engine!r} (choose from {', '.join(ENGINES)})")
        # one int64 table, row per column: src, dst, each input's location, lo, hi, den, each dependency
        lo, hi, den = span
        columns = [src, dst, *(src if x is None else x for x in (in_locs or [None] * len(ins))), lo, hi, den, *deps]
        columns = [np.asarray(c) for c in columns]
        shape = np.broadcast_shapes(*(c.shape for c in columns))
        table = np.empty((len(columns),) + shape, np.int64)
        for i, c in enumerate(columns):
            table[i] = c
        m = int(np.prod(shape))
        first = self.num_ops
        if m == 0:
            return np.empty(0, dtype=np.int64)
        table = table.reshape(len(columns), m)
        nl = len(ins)
        locs, (lo, hi, den), dep_rows = table[:2 + nl], table[2 + nl:5 + nl], table[5 + nl:]
        src, dst = locs[0], locs[1]
        if ((den < 1) | (lo < 0) | (hi <= lo) | (hi > den)).any():
            raise ValueError(f"{self.algo}: bad span(s) {span!r}: need 0 <= lo < hi <= den")
        n_loc = self.layout.num_locations
        if ((locs < 0) | (locs >= n_loc)).any():
            raise ValueError(f"{self.algo}: location out of range 0..{n_loc - 1}")
        if kind != XFER:
            away = self.layout.node_of_location(locs[2:]) != self.layout.node_of_location(dst)
            if away.any():
                j, k = np.unravel_index(np.argmax(away), away.shape)
                names = self.layout.location_names()
                raise ValueError(f"{self.algo}: a reduce's inputs must be in one node: the reduce at "
                                 f"{names[dst[k]]} has an input at {names[locs[2 + j, k]]}")
        if dep_rows.size and ((dep_rows >= first) | (dep_rows < -1)).any():
            raise ValueError(f"{self.algo}: a dependency must name an earlier op (or -1)")
        cols = self._cols
        cols["kind"].append(np.full(m, kind, np.int8))
        cols["src"].append(src.astype(np.int32))
        cols["dst"].append(dst.astype(np.int32))
        cols["out"].append(np.full(m, out, np.int16))
        cols["lo"].append(lo), cols["hi"].append(hi), cols["den"].append(den)
        cols["nin"].append(np.full(m, nl, np.int64))
        self._in_bufs.append(np.tile(np.asarray(ins, np.int16), m))
        self._in_locs.append(locs[2:].T.astype(np.int32).ravel())
        self._groups.append(np.full(m, -1, np.int64) if group is None else np.broadcast_to(group, (m,)).astype(np.int64))
        self._deps.append(dep_rows.T)
        self._engines.append(np.full(m, ENGINES.index(engine), np.int8))
        self.num_ops += m
        return np.arange(first, first + m)

    def xfer(self, src, dst, span, src_buf="data", dst_buf="data", deps=(), engine="dma"):
        """Copy ``span`` of ``src_buf`` at ``src`` into ``dst_buf`` at ``dst``, driven by ``engine``; returns the new op ids."""
        self._flush()
        return self._append(XFER, src, dst, self._buf(dst_buf), (self._buf(src_buf),), span, deps, engine=engine)

    def multicast(self, src, dsts, span, src_buf="data", dst_buf="data", deps=(), engine="dma"):
        """Copy ``span`` of ``src_buf`` at ``src`` into ``dst_buf`` at every location of ``dsts``, reading it once.

        ``dsts`` is a sequence of k location arguments (each broadcasting like
        ``src``). Returns op ids of shape ``(k, m)``: row j is the copy to
        ``dsts[j]``; all k copies of a column form one multicast group.
        """
        dsts = list(dsts)
        if not dsts:
            raise ValueError(f"{self.algo}: a multicast needs at least one destination")
        first = self.xfer(src, dsts[0], span, src_buf, dst_buf, deps, engine)  # flushes; the copies go together
        if len(dsts) == 1 or first.size == 0:
            return np.stack([first] * len(dsts))
        self._groups[-1] = first.copy()
        rows = [first]
        for d in dsts[1:]:
            rows.append(self._append(XFER, src, d, self._buf(dst_buf), (self._buf(src_buf),), span, deps, group=first,
                                     engine=engine))
            if rows[-1].size != first.size:
                raise ValueError(f"{self.algo}: multicast destinations must broadcast to one batch shape")
        return np.stack(rows)

    def reduce(self, at, inputs, out, span, deps=(), input_locs=None):
        """Combine ``span`` of the buffers ``inputs`` into ``out`` at ``at``; returns the new op ids.

        Input j is at ``input_locs[j]`` (default: ``at``; each entry broadcasts
        like ``at``, ``None`` meaning ``at``). An input may also be given as a
        ``(buffer, location)`` pair. Inputs must be in the node of ``at``.
        """
        if len(inputs) < 2:
            raise ValueError(f"{self.algo}: a reduce needs at least two inputs")
        self._flush()
        locs = [None] * len(inputs) if input_locs is None else list(input_locs)
        if len(locs) != len(inputs):
            raise ValueError(f"{self.algo}: input_locs must give one location per input ({len(inputs)})")
        names = []
        for j, item in enumerate(inputs):
            if isinstance(item, tuple):
                names.append(item[0])
                locs[j] = item[1]
            else:
                names.append(item)
        ins = tuple(self._buf(b) for b in names)
        locs = [at if x is None else x for x in locs]
        return self._append(REDUCE, at, at, self._buf(out), ins, span, deps, in_locs=locs)

    def expect(self, loc, buf, span, contributors=None):
        """Declare that ``span`` of ``buf`` at ``loc`` ends as the reduction of ``contributors`` (None: all)."""
        self._buf(buf)
        self._expect.append(Expect(int(loc), buf, tuple(int(x) for x in span),
                                   None if contributors is None else tuple(int(c) for c in contributors)))

    def build(self):
        """Freeze into a :class:`Schedule` (with a sink: hand it the last ops and return a schedule of none)."""
        self._flush(last=True)
        schedule = self._columns()
        if self._sink is not None:
            self._sink.done(schedule)
        return schedule

    def _columns(self):
        """The ops appended since the last flush as a :class:`Schedule` (dependencies keep global op ids)."""
        def cat(parts, dtype):  # one part (a batch of one call) as it is
            if len(parts) == 1:
                return parts[0].astype(dtype, copy=False)
            return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)

        nin = cat(self._cols["nin"], np.int64)
        in_ptr = np.zeros(nin.size + 1, np.int64)
        np.cumsum(nin, out=in_ptr[1:])
        in_buf, in_loc = cat(self._in_bufs, np.int16), cat(self._in_locs, np.int32)
        group, engine = cat(self._groups, np.int64), cat(self._engines, np.int8)
        dep_ptr, dep_idx = _deps_to_csr(self._deps, self.num_ops - self._first)
        return Schedule(
            layout=self.layout, collective=self.collective, algo=self.algo, buffers=self.buffers,
            **{name: cat(self._cols[name], dtype) for name, dtype in (
                ("kind", np.int8), ("src", np.int32), ("dst", np.int32), ("out", np.int16), ("lo", np.int64),
                ("hi", np.int64), ("den", np.int64))},
            in_ptr=in_ptr, in_buf=in_buf, in_loc=in_loc, group=group, engine=engine, dep_ptr=dep_ptr, dep_idx=dep_idx,
            inputs=self.inputs, expect=tuple(self._expect),
        )


def _deps_to_csr(blocks, num_ops):
    """CSR of the non-negative entries of per-batch (m, k) dependency matrices."""
    counts, idx = [], []
    for block in blocks:
        valid = block >= 0
        counts.append(valid.sum(axis=1))
        idx.append(block[valid])
    counts = np.concatenate(counts) if counts else np.empty(0, np.int64)
    dep_ptr = np.zeros(num_ops + 1, np.int64)
    np.cumsum(counts, out=dep_ptr[1:])
    dep_idx = np.concatenate(idx).astype(np.int64, copy=False) if idx else np.empty(0, np.int64)
    return dep_ptr, dep_idx
