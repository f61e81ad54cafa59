"""Benchmarks of the simulator's cost (issue 10 targets). Not part of the default test run; run

    pytest --benchmark-enable -s tests/bench/bench_scale.py

(``-k hfreduce`` etc. for one). Each benchmark times one round and prints the
figure a user cares about (seconds per simulation, ops/s, MB, GB/s); none
asserts a wall time, since these machines are shared and noisy: compare the
ratios against the baselines measured in the same session (a 16-GPU run for
the simulations, ``python -c pass`` for start-up, a memory copy for the
reduce kernel). Numba caches should be warm (run twice after a change).

``tests/bench/cost_curve.py`` measures the cost curve from 16 to 10,000 GPUs
that ``docs/performance.md`` quotes; ``tests/bench/build_phase.py`` the CPU of
each step before the simulation (``-k build_phase`` runs it at 16 and 10,000 GPUs).

The ring targets run in a fresh process each, so peak memory is the
process's own (``VmHWM``). The 4,096-GPU ``fireflyer2`` ring (several
minutes on this machine) runs only with ``FLYERSIM_BENCH_BIG=1``.
"""

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flyersim import topologies
from flyersim.sim.app.runner import run_sizes

MiB, GiB = 2**20, 2**30
STAR = Path(__file__).with_name("star.toml")  # SimGrid's star: 12.5 GB/s, 1 us per host link


_PEAK = """
def peak_mb():  # this process's own high-water RSS: ru_maxrss would include the parent's, inherited by fork
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
"""

_CLI = _PEAK + """
import json, runpy, sys, time
start = time.perf_counter()
sys.argv = ["flyersim", *sys.argv[1:]]
try:
    runpy.run_module("flyersim", run_name="__main__")
finally:
    cpu = time.process_time()
    print(json.dumps({"wall": time.perf_counter() - start, "cpu": cpu, "peak_mb": peak_mb()}), file=sys.stderr)
"""


@pytest.mark.parametrize("preset, gpus, algo, size", [
    ("fireflyer2", 16, "hfreduce", "186MiB"),      # baseline
    ("fireflyer2", 10000, "hfreduce", "186MiB"),   # target < 10 s, < 1 GB
    ("fireflyer2", 10000, "nccl", "186MiB"),       # target < 20 s
])
def test_simulation(benchmark, preset, gpus, algo, size):
    """``flyersim run`` itself in a fresh process (start-up, build and simulation): wall and CPU seconds and
    peak RSS, as a user sees them."""
    def once():
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _CLI, "run", "--preset", preset, "--gpus", str(gpus),
                               "--algo", algo, "--size", size, "--format", "csv"],
                              check=True, capture_output=True, text=True)
        return {**json.loads(done.stderr.splitlines()[-1]), "process_wall": time.perf_counter() - start,
                "csv": done.stdout}

    got = benchmark.pedantic(once, rounds=1, iterations=1)
    header, row = got["csv"].splitlines()[:2]
    rec = dict(zip(header.split(","), row.split(",")))
    print(f"\n{preset} {gpus} GPUs {algo}: {got['process_wall']:.2f} s per flyersim run ({got['cpu']:.2f} s "
          f"CPU), peak {got['peak_mb']:.0f} MB RSS, simulated {float(rec['time_s']) * 1e6:,.2f} us")
    assert int(rec["gpus"]) == gpus and float(rec["time_s"]) > 0


_FRESH = _PEAK + """
import json, resource, sys, time
from flyersim import topologies
from flyersim.collectives import stream
from flyersim.sim import fluid
from flyersim.sim.app.runner import run_sizes
topology, gpus, algo, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
spent = {"solver": 0.0, "builder": 0.0}  # CPU of the thread in the solver's kernel; of the builder's thread
advance, produce = fluid._advance, stream.Stream._produce

def timed_advance(*args):
    t = time.thread_time()
    try:
        return advance(*args)
    finally:
        spent["solver"] += time.thread_time() - t

def timed_produce(self, build):
    t = time.thread_time()
    try:
        return produce(self, build)
    finally:
        spent["builder"] += time.thread_time() - t

fluid._advance, stream.Stream._produce = timed_advance, timed_produce
start, cpu = time.perf_counter(), time.process_time()
(rec,), (run,) = run_sizes(topologies.load(topology, gpus=gpus), [algo], [size], keep_runs=True, timeline=False,
                           stream=True)
print(json.dumps({"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu, "ops": run.num_ops,
                  "peak_mb": peak_mb(), "time_s": rec["time_s"],
                  "solver_cpu": spent["solver"], "builder_cpu": spent["builder"]}))
"""
BIG = os.environ.get("FLYERSIM_BENCH_BIG") == "1"


@pytest.mark.parametrize("topology, gpus, size", [
    (str(STAR), 16, GiB),                    # baseline
    (str(STAR), 2048, GiB),                  # target < 8.5 s, < 300 MB (SimGrid 4.1: 85 s, 72 MB)
    pytest.param("fireflyer2", 4096, 186 * MiB, marks=pytest.mark.skipif(
        not BIG, reason="4,096-GPU ring: minutes; set FLYERSIM_BENCH_BIG=1")),  # target < 60 s, < 1 GB
], ids=lambda x: Path(str(x)).stem)
def test_ring_streamed(benchmark, topology, gpus, size):
    """A streamed ring (``flyersim run``'s default) in a fresh process: wall and CPU seconds (of the solver's
    kernel, of the schedule's builder thread, of the rest: routes, dependencies, window), peak RSS."""
    def once():
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _FRESH, topology, str(gpus), "ring", str(size)], check=True,
                             capture_output=True, text=True).stdout
        return {**json.loads(out.splitlines()[-1]), "process_wall": time.perf_counter() - start}

    got = benchmark.pedantic(once, rounds=1, iterations=1)
    rest = got["cpu"] - got["solver_cpu"] - got["builder_cpu"]
    print(f"\n{Path(topology).stem} {gpus}-GPU ring: {got['wall']:.2f} s per simulation ({got['cpu']:.2f} s CPU: "
          f"solver {got['solver_cpu']:.2f}, builder thread {got['builder_cpu']:.2f}, the rest {rest:.2f}), "
          f"{got['process_wall']:.2f} s with start-up, {got['ops'] / got['cpu']:,.0f} ops per CPU second, "
          f"{got['ops']:,} ops, peak {got['peak_mb']:.0f} MB RSS, simulated {got['time_s']:.6g} s")
    assert got["ops"] == 3 * gpus * (gpus - 1) and got["time_s"] > 0


BUILD_PHASE = Path(__file__).with_name("build_phase.py")


@pytest.mark.parametrize("gpus, algo", [(16, "hfreduce"), (10000, "hfreduce"), (10000, "nccl")])
def test_build_phase(benchmark, gpus, algo):
    """Everything before the simulation (imports, topology, layout, router, NCCL search, schedule, routes),
    CPU seconds by step, in a fresh process (``tests/bench/build_phase.py``)."""
    def once():
        return subprocess.run([sys.executable, str(BUILD_PHASE), algo, str(gpus)], check=True, capture_output=True,
                              text=True).stdout.strip()

    line = benchmark.pedantic(once, rounds=1, iterations=1)
    print(f"\n{line}")
    assert line.startswith(f"{algo} {gpus} GPUs:") and "total" in line


# The same run in one process, CPU seconds after each step (the warm-up run below comes first).
STEPS = """
import contextlib, io, time
marks = [("interpreter", time.process_time())]
import numpy; marks.append(("numpy", time.process_time()))
import numba; marks.append(("numba", time.process_time()))
import networkx; marks.append(("networkx", time.process_time()))
from flyersim.sim.app import cli; marks.append(("flyersim modules", time.process_time()))
with contextlib.redirect_stdout(io.StringIO()):
    cli.main(["run", "--preset", "fireflyer2", "--gpus", "16", "--algo", "ring"])
marks.append(("the run", time.process_time()))
print(", ".join(f"{name} {t - marks[i - 1][1] if i else t:.3f}" for i, (name, t) in enumerate(marks)))
"""


def test_cli_startup(benchmark):
    """``flyersim run`` of a 16-GPU ring, start-up included (target < 0.5 s), against bare Python.

    With Python's bytecode cached, as after ``pip install`` (``PYTHONDONTWRITEBYTECODE`` is dropped for
    these runs: compiling flyersim's 60 modules from source would add about 0.1 s to every run).
    """
    cpu = []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def once(argv):
        start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        return time.perf_counter() - start

    bare = min(once([sys.executable, "-c", "pass"]) for _ in range(3))
    bare_cpu = min(cpu)
    cli = [sys.executable, "-m", "flyersim", "run", "--preset", "fireflyer2", "--gpus", "16", "--algo", "ring"]
    once(cli)  # warm the numba and bytecode caches
    steps = subprocess.run([sys.executable, "-c", STEPS], check=True, capture_output=True, text=True, env=env)
    cpu.clear()
    wall = benchmark.pedantic(once, args=(cli,), rounds=5, iterations=1)
    print(f"\nflyersim run, 16-GPU ring: {benchmark.stats.stats.min:.2f} s ({min(cpu):.2f} s CPU); "
          f"python -c pass: {bare:.2f} s ({bare_cpu:.2f} s CPU)\nCPU s by step: {steps.stdout.strip()}")
    assert wall > 0


def _synthetic(nflows=100_000, nres=2_000, spread=10.0, seed=0):
    """A solver-only problem: flows over 2-3 random resources, started at random times over ``spread`` seconds.

    About 60 flows share a resource at any time. The cost grows steeply with that density: the same flows
    started over one second (about 600 per resource) take minutes, since every event cascades through
    most of them.
    """
    from flyersim.sim.fluid import Network

    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 4, nflows)
    rptr = np.concatenate([[0], np.cumsum(lengths)])
    rres = np.concatenate([rng.choice(nres, k, replace=False) for k in lengths])
    return Network(rng.uniform(1e3, 1e5, nflows), np.arange(nflows), rptr, rres, rng.choice([1.0, 2.0], rres.size),
                   rng.uniform(0, spread, nflows), rng.uniform(1e6, 1e7, nres), np.zeros(nflows + 1, np.int64),
                   np.empty(0, np.int64))


def test_rate_solver_alone(benchmark):
    """The max-min solver on 10^5 flows over 2,000 resources, no schedule or routes around it."""
    def solve():
        net = _synthetic()
        start, cpu, t = time.perf_counter(), time.process_time(), net.next_time
        while t < np.inf:
            t = net.advance(t, 4096)
        return net, time.perf_counter() - start, time.process_time() - cpu

    net, wall, cpu = benchmark.pedantic(solve, rounds=1, iterations=1)
    n = net.end_at.size
    print(f"\nrate solver, {n:,} flows: {wall:.2f} s ({cpu:.2f} s CPU), {n / cpu:,.0f} flows per CPU second")
    assert not np.isnan(net.end_at).any()


def test_reduce_kernel_against_copy(benchmark):
    """``reduce_into`` of 8 x 64 MiB float32 against ``np.copyto`` of 64 MiB in the same run (target >= 80 %).

    Rates count the bytes the code asks for (a copy reads 1 and writes 1 array, the reduce reads 8 and
    writes 1); copy and reduce alternate, best of 7 each, so a busy neighbour slows both alike. Also
    in place (``out`` is the first input, as the MPI executor's ``data = data + recv``).
    """
    from flyersim.collectives.kernels import reduce_into

    n = 64 * MiB // 4
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(n).astype(np.float32) for _ in range(8)]
    out, dst, acc = np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.float32)
    expected = inputs[0] + inputs[1]
    for x in inputs[2:]:
        expected += x
    in_place = [acc, *inputs[1:]]

    def timed(f):
        start = time.perf_counter()
        f()
        return time.perf_counter() - start

    def restore():
        np.copyto(acc, inputs[0])

    reduce_into(out, inputs, "sum")  # compile / load the kernels
    reduce_into(acc, in_place, "sum")
    copy, fused, inplace = [], [], []
    for _ in range(7):
        copy.append(timed(lambda: np.copyto(dst, inputs[0])))
        fused.append(timed(lambda: reduce_into(out, inputs, "sum")))
        restore()
        inplace.append(timed(lambda: reduce_into(acc, in_place, "sum")))
    benchmark.pedantic(reduce_into, args=(out, inputs, "sum"), rounds=1, iterations=1)
    copy_rate = 2 * 4 * n / min(copy)
    for what, times in (("out of place", fused), ("in place", inplace)):
        rate = 9 * 4 * n / min(times)
        print(f"\nreduce_into 8 x 64 MiB float32, {what}: {rate / 1e9:.1f} GB/s of memory traffic, "
              f"copy {copy_rate / 1e9:.1f} GB/s: {rate / copy_rate:.0%} of the copy rate", end="")
    print()
    assert out.tobytes() == expected.tobytes()
    restore()
    reduce_into(acc, in_place, "sum")
    assert acc.tobytes() == expected.tobytes()
