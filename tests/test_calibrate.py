"""flyersim calibrate at any process count (plain pytest, and mpiexec -n 2 / -n 4 in CI)."""

import tomllib

import pytest
from mpi4py import MPI

from flyersim import topologies
from flyersim.sim.app import cli
from flyersim.sim.app.microbench import Figure, rate

COMM = MPI.COMM_WORLD


def test_rate_subtracts_fixed_cost_and_swaps_quartiles():
    got = rate(10, Figure(2.0, 1.5, 3.0), Figure(1.0, 0.5, 1.5))
    assert (got.value, got.low, got.high) == (10.0, 5.0, 20.0)


def test_writes_a_loadable_topology_whose_parameters_say_how_measured(tmp_path, capsys):
    path = COMM.bcast(str(tmp_path / "measured.toml"))
    assert cli.main(["calibrate", "--out", path, "--size", "64KiB", "--repeats", "3"]) == 0
    COMM.Barrier()
    if COMM.rank:
        assert capsys.readouterr().out == ""
        return
    graph = topologies.load(path)
    assert graph.graph["nodes"] * graph.graph["gpus_per_node"] == COMM.size
    text = open(path).read()
    params = tomllib.loads(text)["parameters"]
    body = text.split("[parameters]")[1].split("[server]")[0].strip().splitlines()
    assert sorted(line.split("=")[0].strip() for line in body) == sorted(params)
    for line in body:
        assert "#" in line and len(line.split("#", 1)[1].strip()) > 20, line
    measured = [line for line in body if "median" in line]
    assert {line.split("=")[0].strip() for line in measured} >= {"pcie_bandwidth", "reduce_bandwidth",
                                                                   "reduce_latency", "host_bandwidth"}
    assert "mpiexec -n" in text.splitlines()[0]


def test_bad_size_is_one_line_from_rank_zero(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["calibrate", "--out", str(tmp_path / "x.toml"), "--size", "2B"])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert stop.value.code == 2
    assert errors == (["flyersim: error: --size must be at least 4 B (one float32), got 2B"]
                      if COMM.rank == 0 else [])


def _figures(**values):
    unit = {True: "B/s", False: "s"}
    return {k: (Figure(v, v, v), unit["bandwidth" in k], "test") for k, v in values.items()}


def test_leaf_size_writes_leaves_under_one_spine_link_of_the_measured_uplink_rate():
    from flyersim.sim.app.calibrate import toml

    base = dict(p2p_bandwidth=1e9, pcie_bandwidth=1e9, host_bandwidth=2e9, reduce_bandwidth=1e9, nic_bandwidth=2e8,
                link_bandwidth=1e8, message_latency=1e-6, copy_latency=1e-6, reduce_latency=1e-6, nic_latency=1e-6)
    for uplink in (0.6e8, 1.9e8):  # a spine slower than one node link, and one faster
        graph = topologies.loads(toml(_figures(**base, uplink_bandwidth=uplink), 4, 1, "cmd", leaf_size=2))
        leaf_up = [(u, v) for u, v in graph.edges if u == "z0/leaf0" and v.startswith("z0/spine")]
        assert len(leaf_up) == 1
        assert graph.edges[leaf_up[0]]["bandwidth"] == pytest.approx(uplink, rel=1e-5)
        assert graph.edges["n0/nic0", "z0/leaf0"]["bandwidth"] == pytest.approx(1e8, rel=1e-5)
        assert graph.has_edge("n1/nic0", "z0/leaf0") and graph.has_edge("n2/nic0", "z0/leaf1")
    single = topologies.loads(toml(_figures(**base), 4, 1, "cmd"))
    assert single.graph["shape"] == "single-switch" and "bandwidth" not in single.nodes["sw0"]


def test_a_measured_switch_pool_is_shared_by_every_flow_through_the_switch():
    """Four one-way flows on four nodes, each under its links' rate, together twice the switch's pool."""
    from flyersim.sim.app.calibrate import toml
    from flyersim.sim.app.runner import run_sizes

    base = dict(p2p_bandwidth=1e10, pcie_bandwidth=1e10, host_bandwidth=2e10, reduce_bandwidth=1e10,
                nic_bandwidth=2e8, link_bandwidth=1e8, message_latency=0.0, copy_latency=0.0, reduce_latency=0.0,
                nic_latency=0.0)
    free, = run_sizes(topologies.loads(toml(_figures(**base), 4, 1, "cmd")), ["ring"], [64 << 20])
    pooled, = run_sizes(topologies.loads(toml(_figures(**base, switch_bandwidth=2e8), 4, 1, "cmd")), ["ring"],
                        [64 << 20])
    assert pooled["time_s"] == pytest.approx(2 * free["time_s"], rel=0.01)  # the reduces do not double


def _quick(nodes=2, gpus=2, **over):
    """A calibrated nodes x gpus topology; bandwidths not given never bind."""
    from flyersim.sim.app.calibrate import toml

    base = dict(p2p_bandwidth=1e15, pcie_bandwidth=1e15, host_bandwidth=1e15, reduce_bandwidth=1e15,
                nic_bandwidth=1e15, link_bandwidth=1e15, message_latency=0.0, copy_latency=0.0, reduce_latency=0.0,
                nic_latency=0.0)
    return topologies.loads(toml(_figures(**{**base, **over}), nodes, gpus, "cmd"))


def test_a_message_pays_message_latency_once_and_a_local_copy_only_copy_latency():
    """Op-kind-aware costs: a ring of 4 GPUs is 2 x 3 dependent messages (each 1 ms, whichever ends), and
    no local copy; HFReduce's GPU<->host copies pay copy_latency (no message), its host-to-host
    messages message_latency (no GPU end)."""
    from flyersim.sim.app.runner import run_sizes

    ms = 1e-3
    (ring,) = run_sizes(_quick(message_latency=ms), ["ring"], [4096])
    assert ring["time_s"] == pytest.approx(6 * ms, rel=1e-6)
    (only_copies,) = run_sizes(_quick(copy_latency=ms), ["ring"], [4096])
    assert only_copies["time_s"] < 1e-9
    (hf_copy,) = run_sizes(_quick(copy_latency=ms), ["hfreduce"], [4096])
    (hf_msg,) = run_sizes(_quick(message_latency=ms), ["hfreduce"], [4096])
    assert hf_copy["time_s"] >= 2 * ms * (1 - 1e-9)  # at least a D2H and an H2D in series
    assert hf_msg["time_s"] >= ms * (1 - 1e-9)  # the two nodes' hosts exchange at least once


def test_mpi_table_unknown_key_is_one_clear_line():
    from flyersim.sim.app.calibrate import toml

    good = toml(_figures(p2p_bandwidth=1e9, pcie_bandwidth=1e9, host_bandwidth=1e9, reduce_bandwidth=1e9,
                         nic_bandwidth=1e9, link_bandwidth=1e9, message_latency=1e-6, copy_latency=1e-6,
                         reduce_latency=1e-6, nic_latency=1e-6), 2, 1, "cmd")
    with pytest.raises(topologies.TopologyError, match=r"unknown key 'mpi.message_latncy'"):
        topologies.loads(good.replace("message_latency = \"$message", "message_latncy = \"$message"))


def test_pair_pool_binds_exchanges_between_two_nodes_not_one_way_traffic():
    """[mpi] pair_bandwidth: two nodes exchanging share it (both directions together); a ring of four
    nodes, one way between each pair of nodes, does not meet it when it is above one link's rate."""
    from flyersim.sim.app.runner import run_sizes

    fast = dict(message_latency=0.0, link_bandwidth=1e8, nic_bandwidth=2e8)
    (free,) = run_sizes(_quick(**fast), ["rabenseifner"], [64 << 20])
    (pooled,) = run_sizes(_quick(**fast, pair_bandwidth=1e8), ["rabenseifner"], [64 << 20])
    assert pooled["time_s"] == pytest.approx(2 * free["time_s"], rel=0.01)  # 2 nodes: every network op exchanges
    (ring,) = run_sizes(_quick(4, 1, **fast), ["ring"], [64 << 20])
    (ring_pooled,) = run_sizes(_quick(4, 1, **fast, pair_bandwidth=1.5e8), ["ring"], [64 << 20])
    assert ring_pooled["time_s"] == pytest.approx(ring["time_s"], rel=1e-9)
    (ring_slow,) = run_sizes(_quick(4, 1, **fast, pair_bandwidth=0.5e8), ["ring"], [64 << 20])
    assert ring_slow["time_s"] == pytest.approx(2 * ring["time_s"], rel=0.01)  # below one link: it binds
