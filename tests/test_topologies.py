"""Tests of the topologies package: presets, builders, routing, validation, summary."""

import random

import pytest

from flyersim.topologies import Router, TopologyError, draw, format_summary, load, preset_names, summary, validate
from flyersim.topologies.units import GB, parse_bandwidth, us
from flyersim.topologies.config import read

PRESETS = ["dgx-a100", "fat-tree", "fireflyer2", "ring", "single-switch", "torus"]


def test_presets_listed():
    assert preset_names() == PRESETS


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_load_at_default_size(preset):
    g = load(preset)
    assert g.graph["name"] == preset
    gpus = [n for n, k in g.nodes(data="kind") if k == "gpu"]
    assert len(gpus) == g.graph["nodes"] * g.graph["gpus_per_node"]
    assert all(g.has_edge(b, a) for a, b in g.edges())


@pytest.mark.parametrize("preset,gpus", [("fireflyer2", 8), ("fireflyer2", 128), ("fireflyer2", 1024),
                                         ("dgx-a100", 64), ("fat-tree", 4), ("fat-tree", 256),
                                         ("single-switch", 8), ("ring", 12)])
def test_presets_load_at_several_sizes(preset, gpus):
    g = load(preset, gpus=gpus)
    assert sum(1 for _, k in g.nodes(data="kind") if k == "gpu") == gpus


def test_fireflyer2_full_cluster_has_two_zones():
    g = load("fireflyer2", gpus=10000)
    assert g.graph["zones"] == 2
    assert {"iz/sw0", "iz/sw1"} <= set(g)
    zone0 = {g.nodes[n]["server"] for n in g.predecessors("z0/leaf0") if g.nodes[n]["kind"] == "nic"}
    assert len(zone0) == 19 and 0 in zone0      # one leaf port goes to the inter-zone switch
    assert load("fireflyer2", gpus=16).graph["zones"] == 1


def test_fireflyer2_zones_can_be_forced():
    g = load("fireflyer2", gpus=128, zones=2)
    assert g.graph["zones"] == 2
    path = Router(g).path("n0/gpu0", "n15/gpu0")
    assert any(n.startswith("z0/") for n in path) and any(n.startswith("z1/") for n in path)
    assert any(n.startswith("iz/") for n in path)


def test_fireflyer2_server_internals():
    g = load("fireflyer2", gpus=8)
    rp = lambda gpu: [n for n in g.successors(gpu) if g.nodes[n]["kind"] == "rootport"]
    assert rp("n0/gpu5") == rp("n0/gpu6") == ["n0/rp5"]
    assert len({rp(f"n0/gpu{j}")[0] for j in range(8)}) == 7
    assert g.nodes["n0/rp5"]["bandwidth"] == 37.5 * GB
    assert g.nodes["n0/cpu1"]["p2p_bandwidth"] == parse_bandwidth("9GiB/s")
    assert g.nodes["n0/host0"]["bandwidth"] == 133 * GB and g.nodes["n0/host0"]["engine"] == "n0/cpu0"
    assert g.nodes["n0/nic0"]["server"] == 0 and g.graph["nvlink_pairs"] == ()
    socket1 = set(g.successors("n0/cpu1"))
    assert {"n0/rp4", "n0/rp5", "n0/rp6", "n0/rp7", "n0/cpu0", "n0/host1"} == socket1


def test_nvlink_pairs_override():
    g = load("fireflyer2", gpus=8, overrides={"server.nvlink_pairs": [[0, 1], [2, 3]]})
    assert g.graph["nvlink_pairs"] == ((0, 1), (2, 3))
    assert g.edges["n0/gpu1", "n0/gpu0"]["kind"] == "nvlink"
    assert g.edges["n0/gpu0", "n0/gpu1"]["bandwidth"] == 300 * GB
    assert Router(g).path("n0/gpu0", "n0/gpu1") == ["n0/gpu0", "n0/gpu1"]


def test_parameter_and_device_overrides():
    g = load("fireflyer2", gpus=8, overrides={"parameters.xgmi_bandwidth": "96GB/s",
                                              "server.device.cpu0.p2p_bandwidth": "none"})
    assert g.edges["n0/cpu0", "n0/cpu1"]["bandwidth"] == 96 * GB
    assert "p2p_bandwidth" not in g.nodes["n0/cpu0"] and "p2p_bandwidth" in g.nodes["n0/cpu1"]


def test_path_crosses_nic_and_switch():
    g = load("fireflyer2", gpus=16)
    path = Router(g).path("n0/gpu0", "n1/gpu0")
    assert path[0] == "n0/gpu0" and path[-1] == "n1/gpu0"
    assert "n0/nic0" in path and "n1/nic0" in path and "z0/leaf0" in path
    assert all(g.has_edge(a, b) for a, b in zip(path, path[1:]))


def test_ecmp_spreads_over_spines_deterministically():
    g = load("fireflyer2", gpus=8 * 60)        # 3 leaves
    pairs = [(f"n{i}/gpu{j}", f"n{40 + i}/gpu{j}") for i in range(20) for j in range(8)]
    spines = [[n for n in Router(g).path(*p) if "spine" in n] for p in pairs]
    assert all(len(s) == 1 for s in spines)
    assert len({s[0] for s in spines}) > 10
    again = Router(g)
    assert [[n for n in again.path(*p) if "spine" in n] for p in pairs] == spines


def test_rails_keep_nic_k_on_rail_k():
    g = load("dgx-a100", nodes=4)
    leaves = {n: [m for m in g.successors(n) if g.nodes[m]["kind"] == "switch"] for n in g
              if g.nodes[n]["kind"] == "nic"}
    assert leaves["n0/nic3"] == leaves["n3/nic3"] != leaves["n3/nic2"]
    path = Router(g).path("n0/gpu0", "n1/gpu0")
    assert path[:3] == ["n0/gpu0", "n0/pciesw0", path[2]] and path[2] in ("n0/nic0", "n0/nic1")


@pytest.mark.parametrize("shape,nodes", [("single-switch", 2), ("ring", 4)])
def test_closed_form_alpha_beta(shape, nodes):
    """With pools removed, a GPU-to-GPU transfer costs the sum of link/switch latencies and
    the slowest link's bandwidth."""
    no_pools = {f"parameters.{p}": "none" for p in (
        "gpu_bandwidth", "gpu_reduce_bandwidth", "gpu_latency", "gpu_reduce_latency",
        "cpu_reduce_bandwidth", "cpu_reduce_latency", "nic_bandwidth", "nic_latency")}
    overrides = {**no_pools, "parameters.pcie_bandwidth": "10GB/s", "parameters.pcie_latency": "1us",
                 "network.link_bandwidth": "4GB/s", "network.link_latency": "2us"}
    if shape == "single-switch":
        overrides["network.switch_latency"] = "3us"
    g = load(shape, nodes=nodes, overrides=overrides)
    path = Router(g).path("n0/gpu1", f"n{nodes - 1}/gpu2")
    pools = {"bandwidth", "reduce_bandwidth", "latency", "reduce_latency", "p2p_bandwidth"}
    assert not any(pools & set(g.nodes[n]) for n in path if g.nodes[n]["kind"] != "switch")
    alpha = sum(g.nodes[n].get("latency", 0) for n in path) + sum(
        g.edges[a, b]["latency"] for a, b in zip(path, path[1:]))
    beta = 1 / min(g.edges[a, b]["bandwidth"] for a, b in zip(path, path[1:]))
    hops = 1 if shape == "ring" else 2                          # network links on the path
    assert alpha == pytest.approx(4 * us + hops * 2 * us + (3 * us if shape == "single-switch" else 0))
    assert beta == pytest.approx(1 / (4 * GB))


def test_torus_neighbours():
    g = load("torus")                                           # 4 x 4
    neighbours = {m for m in g.successors("n0/nic0") if g.nodes[m]["kind"] == "nic"}
    assert neighbours == {"n1/nic0", "n3/nic0", "n4/nic0", "n12/nic0"}
    assert len(Router(g).path("n0/nic0", "n10/nic0")) == 5     # 2 + 2 hops


def test_fat_tree_three_levels_and_oversubscription():
    g = load("fat-tree", nodes=64, overrides={"network.levels": 3})
    assert any("core" in n for n in g)
    assert summary(g)["bisection_bandwidth"] > 0
    thin = load("fat-tree", nodes=16, overrides={"network.oversubscription": 3})
    assert summary(thin)["bisection_bandwidth"] < summary(load("fat-tree", nodes=16))["bisection_bandwidth"]


def test_routes_on_full_cluster_are_valid():
    g = load("fireflyer2", gpus=10000)
    router = Router(g)
    gpus = [n for n, k in g.nodes(data="kind") if k == "gpu"]
    rnd = random.Random(0)
    for _ in range(2000):
        a, b = rnd.sample(gpus, 2)
        path = router.path(a, b)
        assert path[0] == a and path[-1] == b and len(set(path)) == len(path)
        assert all(g.has_edge(u, v) for u, v in zip(path, path[1:]))
        servers = {g.nodes[n]["server"] for n in path} - {None}
        assert servers == {g.nodes[a]["server"], g.nodes[b]["server"]}


def test_summary_and_draw(tmp_path):
    g = load("fireflyer2", gpus=10000)
    info = summary(g)
    assert info["gpus"] == 10000 and info["nodes_by_kind"]["nic"] == 1250
    assert info["bisection_bandwidth"] == pytest.approx(66 * 24.15 * GB / 2)   # 33 inter-zone links per zone, HDR effective rate
    assert "10000 GPUs" in format_summary(info)
    draw(g, tmp_path / "ff.png")
    assert (tmp_path / "ff.png").stat().st_size > 1000


def _write(tmp_path, text):
    path = tmp_path / "custom.toml"
    path.write_text(text)
    return str(path)


MINIMAL = """
name = "mini"
[server]
gpus = 2
[[server.device]]
name = "cpu0"
kind = "cpu"
[[server.device]]
name = "host0"
kind = "memory"
[[server.device]]
name = "nic0"
kind = "nic"
[[server.link]]
ends = ["gpu*", "cpu0"]
bandwidth = {bw}
kind = "pcie"
[[server.link]]
ends = ["host0", "cpu0"]
bandwidth = "10GB/s"
kind = "memory"
[[server.link]]
ends = ["nic0", "{end}"]
bandwidth = "10GB/s"
kind = "pcie"
[network]
shape = "single-switch"
link_bandwidth = "1GB/s"
"""


def test_user_file_loads(tmp_path):
    g = load(_write(tmp_path, MINIMAL.format(bw='"5GB/s"', end="cpu0")), nodes=3)
    assert g.graph["name"] == "mini" and g.edges["n2/gpu1", "n2/cpu0"]["bandwidth"] == 5 * GB


@pytest.mark.parametrize("kwargs,message", [
    (dict(preset_or_path="fireflyer3"), "unknown preset 'fireflyer3' (choices: dgx-a100"),
    (dict(preset_or_path="fireflyer2", gpus=12), "not a multiple of the 8 GPUs"),
    (dict(preset_or_path="fireflyer2", nodes=0), "nodes must be at least 1"),
    (dict(preset_or_path="fireflyer2", nodes=2000, zones=2), "do not fit 2 zone(s) of 760 servers"),
    (dict(preset_or_path="single-switch", nodes=41), "exceed the switch's 40 ports"),
    (dict(preset_or_path="torus", nodes=8), "holds 16 servers, not 8"),
    (dict(preset_or_path="ring", zones=2), "zones apply to fat-tree networks only"),
    (dict(preset_or_path="ring", overrides={"network.zones": 2}), "unknown key 'network.zones'"),
    (dict(preset_or_path="fireflyer2", overrides={"parameters.pcie_bandwidth": "0GB/s"}), "must be positive"),
    (dict(preset_or_path="fireflyer2", overrides={"parameters.pcie_bandwidth": "-3GB/s"}), "malformed bandwidth"),
    (dict(preset_or_path="fireflyer2", overrides={"parameters.pcie_bandwidth": "24 GB"}), "malformed bandwidth"),
    (dict(preset_or_path="fireflyer2", overrides={"parameters.pcie_latency": "1 fortnight"}), "malformed time"),
    (dict(preset_or_path="fireflyer2", overrides={"network.link_bandwith": "1GB/s"}),
     "unknown key 'network.link_bandwith'"),
    (dict(preset_or_path="fireflyer2", overrides={"server.gpuz": 8}), "unknown key 'server.gpuz'"),
    (dict(preset_or_path="fireflyer2", overrides={"parameters.pcie_bw": "1GB/s"}), "no such parameter"),
    (dict(preset_or_path="fireflyer2", overrides={"server.device.cpu0.kind": "fpga"}), "unknown device kind 'fpga'"),
    (dict(preset_or_path="fireflyer2", overrides={"server.nvlink_pairs": [[0, 8]]}), "not a pair of GPU indices"),
    (dict(preset_or_path="fireflyer2", overrides={"network.shape": "mesh"}), "unknown shape 'mesh'"),
    (dict(preset_or_path="fireflyer2", overrides={"network.levels": 4}), "must be 2 or 3"),
])
def test_bad_input_raises_one_clear_line(kwargs, message):
    with pytest.raises(TopologyError) as err:
        load(**kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("bw,end,message", [
    ('"5GB/s"', "rp9", "unknown device 'rp9'"),
    ("0", "cpu0", "must be positive"),
])
def test_bad_user_file(tmp_path, bw, end, message):
    with pytest.raises(TopologyError, match=message):
        load(_write(tmp_path, MINIMAL.format(bw=bw, end=end)))


def test_disconnected_gpu_is_reported(tmp_path):
    text = MINIMAL.format(bw='"5GB/s"', end="cpu0").replace('ends = ["gpu*", "cpu0"]', 'ends = ["gpu0", "cpu0"]')
    with pytest.raises(TopologyError, match="GPU n0/gpu1 has no path"):
        load(_write(tmp_path, text))


def test_validate_catches_edited_graphs():
    g = load("ring", nodes=2)
    g.edges["n0/gpu0", "n0/cpu0"]["bandwidth"] = 0
    with pytest.raises(TopologyError, match="bandwidth must be positive"):
        validate(g)
    g = load("ring", nodes=2)
    g.remove_edge("n1/nic0", "n0/nic0")
    with pytest.raises(TopologyError, match="no reverse direction"):
        validate(g)
    g = load("ring", nodes=2)
    g.nodes["n0/cpu0"]["kind"] = "fpga"
    with pytest.raises(TopologyError, match="unknown kind 'fpga'"):
        validate(g)


@pytest.mark.parametrize("nodes", [1, 2])
def test_dgx_gpus_meet_on_nvswitch_not_on_their_shared_pcie_switch(nodes):
    """Two hops either way; the router takes the wider NVLink path (50 GB/s vs 24 GB/s PCIe)."""
    g = load("dgx-a100", nodes=nodes)
    router = Router(g)
    for i in range(8):
        for j in range(8):
            if i != j:
                path = router.path(f"n{nodes - 1}/gpu{i}", f"n{nodes - 1}/gpu{j}")
                assert len(path) == 3 and g.nodes[path[1]]["kind"] == "nvswitch", path
    assert Router(g).path("n0/gpu0", "n0/gpu1") == router.path("n0/gpu0", "n0/gpu1")  # deterministic
    assert router.path("n0/gpu0", "n0/nic0") == ["n0/gpu0", "n0/pciesw0", "n0/nic0"]  # fewest hops still first


def test_ranged_parameters_hold_their_value(tmp_path):
    spec = read("fireflyer2")
    assert spec.ranges["memory_bandwidth"] == (103 * GB, 143 * GB) and "pcie_bandwidth" not in spec.ranges
    bad = tmp_path / "bad.toml"
    bad.write_text('base = "fireflyer2"\n[parameters]\nxgmi_bandwidth = { value = "200GB/s", range = ["64GB/s", "108GB/s"] }\n')
    with pytest.raises(TopologyError, match="outside its range"):
        read(str(bad))
    bad.write_text('base = "fireflyer2"\n[parameters]\nxgmi_bandwidth = { value = "96GB/s", range = "64GB/s" }\n')
    with pytest.raises(TopologyError, match=r"range: must be \[low, high\]"):
        read(str(bad))
    bad.write_text('base = "fireflyer2"\n[parameters]\nreduce_threads = { value = 2.5, range = [1, 4] }\n')
    with pytest.raises(TopologyError, match="whole number"):
        read(str(bad))


@pytest.mark.parametrize("nccl,message", [
    ({"nccl.version": 2.1}, "expected a release as a string"),
    ({"nccl.net_gdr_level": "NEAR"}, "expected one of LOC, NVL, PIX, PXB, PHB, SYS"),
    ({"nccl.gdr": "PXB"}, "unknown key 'nccl.gdr'"),
])
def test_nccl_platform_table_is_checked(nccl, message):
    with pytest.raises(TopologyError, match=message):
        load("fireflyer2", gpus=8, overrides=nccl)
    assert load("fireflyer2", gpus=8).graph["nccl"] == {"version": (2, 10), "net_gdr_level": "PHB"}


def test_validate_names_the_first_gpu_cut_off_from_host_memory_or_from_gpu0():
    g = load("single-switch", nodes=2).copy()
    g.remove_edges_from([("n0/cpu0", "n0/host0"), ("n0/host0", "n0/cpu0")])  # server 0's memory cut off
    with pytest.raises(TopologyError, match="GPU n0/gpu0 has no path to host memory in its server"):
        validate(g)
    g = load("single-switch", nodes=2).copy()
    g.remove_edges_from([("n1/gpu2", "n1/cpu0"), ("n1/cpu0", "n1/gpu2")])
    g.add_edge("n1/gpu2", "n1/gpu3", bandwidth=1e9, latency=0.0)  # still linked both ways, to a GPU cut off
    g.add_edge("n1/gpu3", "n1/gpu2", bandwidth=1e9, latency=0.0)
    g.remove_edges_from([("n1/gpu3", "n1/cpu0"), ("n1/cpu0", "n1/gpu3")])
    with pytest.raises(TopologyError, match="GPU n1/gpu2 has no path to n0/gpu0"):
        validate(g)
