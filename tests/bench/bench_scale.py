"""Scale benchmarks (issue targets: 128-GPU ring < 2 s, 1,024-GPU ring < 60 s, 10,000-GPU HFReduce < 60 s).

Not part of the default test run (file name ``bench_*``): run with

    pytest --benchmark-enable tests/bench/bench_scale.py

Each benchmark times one whole ``flyersim run`` pipeline (topology, schedule,
routes, flow-model simulation) once, and checks the result is sane; no
assertion on wall time, since these machines are shared and noisy. The
``baseline`` benchmark times the same pipeline on 16 GPUs in the same session,
so the ratios printed by pytest-benchmark compare like with like.
"""

import pytest
from flyersim import topologies
from flyersim.sim.app.runner import run_sizes

MiB = 2**20


def _run(preset, gpus, algo, size):
    graph = topologies.load(preset, gpus=gpus)
    (rec,) = run_sizes(graph, [algo], [size])
    return rec


@pytest.mark.parametrize("gpus, algo, size", [
    (16, "ring", 184 * MiB),       # baseline
    (128, "ring", 184 * MiB),
    (1024, "ring", 184 * MiB),
    (10000, "hfreduce", 186 * MiB),
])
def test_fireflyer2_scale(benchmark, gpus, algo, size):
    rec = benchmark.pedantic(_run, args=("fireflyer2", gpus, algo, size), rounds=1, iterations=1)
    assert rec["gpus"] == gpus and rec["time_s"] > 0
    assert 0 < rec["bottleneck_util"] <= 1 + 1e-9
