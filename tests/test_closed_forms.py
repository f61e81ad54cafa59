"""With no contention, simulated times equal the closed forms of collectives.costs (Thakur-Rabenseifner-Gropp).

The cluster is single-switch with one GPU per server and every pool removed
except the GPU's reduce engine, so each GPU-to-GPU transfer costs
``alpha + n beta`` and each 2-way reduce ``n gamma`` with hand-known values:

- alpha: four PCIe hops (GPU-CPU-NIC, both ends) at 1 us, two network links
  at 2 us and the switch at 3 us = 11 us;
- beta: the slowest link on the path, the 10 GB/s network link;
- gamma: 1 / (50 GB/s) of GPU reduce throughput, no launch latency.

No two transfers ever share a directed link in these algorithms (each server
sends at most one and receives at most one message at a time over full-duplex
links), so the flow model must give the same times as the analytic one.
"""

import pytest

from flyersim import collectives
from flyersim.collectives import costs
from flyersim.sim.engine import simulate
from flyersim.sim.app.runner import layout_of
from flyersim.topologies import load
from flyersim.topologies.units import GB, us

ALPHA, BETA, GAMMA = 11 * us, 1 / (10 * GB), 1 / (50 * GB)
NO_POOLS = {f"parameters.{p}": "none" for p in (
    "gpu_bandwidth", "gpu_latency", "gpu_reduce_latency", "cpu_reduce_bandwidth", "cpu_reduce_latency",
    "nic_bandwidth", "nic_latency")}
OVERRIDES = {**NO_POOLS, "server.gpus": 1, "parameters.pcie_bandwidth": "40GB/s", "parameters.pcie_latency": "1us",
             "parameters.gpu_reduce_bandwidth": "50GB/s", "network.link_bandwidth": "10GB/s",
             "network.link_latency": "2us", "network.switch_latency": "3us"}

# (collective, algorithm) -> closed form f(p, n); the ones defined for p = 2^k only are marked
FORMS = {
    ("allreduce", "ring"): lambda p, n: costs.ring_allreduce(p, n, ALPHA, BETA, GAMMA),
    ("reduce_scatter", "ring"): lambda p, n: costs.ring_reduce_scatter(p, n, ALPHA, BETA, GAMMA),
    ("allgather", "ring"): lambda p, n: costs.ring_allgather(p, n, ALPHA, BETA),
    ("allreduce", "tree"): lambda p, n: costs.binomial_reduce(p, n, ALPHA, BETA, GAMMA)
    + costs.binomial_broadcast(p, n, ALPHA, BETA),
    ("reduce", "tree"): lambda p, n: costs.binomial_reduce(p, n, ALPHA, BETA, GAMMA),
    ("broadcast", "tree"): lambda p, n: costs.binomial_broadcast(p, n, ALPHA, BETA),
    ("allreduce", "rd"): lambda p, n: costs.recursive_doubling_allreduce(p, n, ALPHA, BETA, GAMMA),
    ("allreduce", "rabenseifner"): lambda p, n: costs.rabenseifner_allreduce(p, n, ALPHA, BETA, GAMMA),
    ("reduce_scatter", "rh"): lambda p, n: costs.recursive_halving_reduce_scatter(p, n, ALPHA, BETA, GAMMA),
    ("allgather", "rd"): lambda p, n: costs.recursive_doubling_allgather(p, n, ALPHA, BETA),
}
POWER_OF_TWO_ONLY = {("reduce_scatter", "rh"), ("allgather", "rd")}
RANKS = (2, 3, 4, 5, 6, 7, 8, 12, 13, 16, 24, 32)


def cluster(p):
    return load("single-switch", nodes=p, overrides=OVERRIDES)


def test_the_cluster_has_the_stated_alpha_beta_gamma():
    g = cluster(2)
    s = collectives.build("rd", layout_of(g))  # one exchange + one reduce per rank
    n = 1 << 20
    run = simulate(s, g, n, 4, "analytic")
    assert run.time == pytest.approx(ALPHA + n * BETA + n * GAMMA, rel=1e-12)
    assert (run.end_at - run.start_at)[s.kind == 0] == pytest.approx(n * BETA, rel=1e-12)


@pytest.mark.parametrize("model", ["analytic", "flow"])
@pytest.mark.parametrize("key", sorted(FORMS), ids="-".join)
def test_simulated_time_equals_closed_form(key, model):
    collective, algo = key
    for p in RANKS:
        if key in POWER_OF_TWO_ONLY and p & (p - 1):
            continue
        g = cluster(p)
        n = 4 * p * 1024 * 3  # bytes: float32 counts divisible by p and by every power of two up to 1024
        run = simulate(collectives.build(algo, layout_of(g), collective), g, n, 4, model)
        assert run.time == pytest.approx(FORMS[key](p, n), rel=1e-9), (p, run.time)
