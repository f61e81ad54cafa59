"""Server facts from a topology graph, and the layout filled from them in one place."""

import pytest

from flyersim.sim.app.runner import layout_of
from flyersim.topologies import TopologyError, load
from flyersim.topologies.facts import server_facts, server_routes


def test_fireflyer2_facts_follow_the_paper_figure():
    f = server_facts(load("fireflyer2", gpus=16))
    assert f.gpu_sockets == (0, 0, 0, 0, 1, 1, 1, 1) and f.nic_sockets == (1,)  # Fig. 4: NIC on socket 1
    assert f.gpu_paths[5][6] == "PIX"                         # GPU5 and GPU6 share root port rp5
    assert f.gpu_paths[0][3] == "PHB" and f.gpu_paths[3][4] == "SYS"
    assert f.nic_paths == ("SYS",) * 4 + ("PHB",) * 4
    assert (f.cpu_model, f.cpu_vendor, f.gpu_model, f.gpu_arch) == ("amd-rome", "amd", "a100-pcie", 80)


def test_nvlink_bridges_and_switches_are_nvl():
    bridged = server_facts(load("fireflyer2", nodes=1, overrides={"server.nvlink_pairs": [[0, 1], [2, 3]]}))
    assert bridged.nvlink_pairs == ((0, 1), (2, 3)) and bridged.gpu_paths[0][1] == "NVL"
    assert bridged.gpu_paths[0][2] == "PHB"
    dgx = server_facts(load("dgx-a100", nodes=2))
    assert {c for row in dgx.gpu_paths for c in row} == {"LOC", "NVL"} and set(dgx.nic_paths) == {"PIX"}
    assert len(dgx.nic_sockets) == 8


def test_layout_carries_the_facts_and_keeps_defaults_for_unstated_models():
    lay = layout_of(load("fireflyer2", gpus=16))
    assert lay.nic_socket == 1 and lay.gpu_paths[5][6] == "PIX" and lay.cpu_vendor == "amd"
    intel = layout_of(load("single-switch", nodes=1, overrides={"server.cpu_model": "intel-icelake",
                                                                 "server.gpu_model": "h100-sxm5"}))
    assert (intel.cpu_vendor, intel.gpu_arch) == ("intel", 90)
    unstated = layout_of(load("ring", nodes=2, overrides={"server.cpu_model": None, "server.gpu_model": None}))
    assert (unstated.cpu_vendor, unstated.gpu_arch) == ("amd", 80)  # Layout's defaults


def test_unknown_model_is_one_clear_error():
    with pytest.raises(TopologyError, match="server.cpu_model: unknown model 'amd-zen9' .choices: amd-rome"):
        load("ring", overrides={"server.cpu_model": "amd-zen9"})


def test_routes_cover_what_nccl_search_rates():
    routes = server_routes(load("fireflyer2", gpus=16))
    assert ("n0/gpu7", "n1/gpu4") in routes and ("n0/host1", "n1/gpu4") in routes
    assert ("n0/gpu0", "n0/host1") in routes and ("n0/host1", "n0/gpu0") in routes
    out = routes["n0/gpu7", "n1/gpu4"]
    assert [link.kind for link in out if link.network] == ["ib", "ib"]   # NIC -> leaf -> NIC
    assert out[0].name == "n0/gpu7->n0/rp6" and out[0].kind == "pcie"
    assert routes["n0/gpu3", "n0/gpu3"] == ()


def test_routes_are_found_when_looked_up_and_list_their_keys():
    routes = server_routes(load("fireflyer2", gpus=16))  # 8 GPUs, 2 host memories, 8 GPUs of server 1
    keys = list(routes)
    assert len(keys) == len(set(keys)) == len(routes) == 8 * 8 + 2 * 8 * 2 + (8 + 2) * 8
    assert not routes.found                                        # nothing routed yet
    assert routes["n0/gpu0", "n1/gpu0"] is routes["n0/gpu0", "n1/gpu0"]  # found once, kept
    assert ("n1/gpu0", "n0/gpu0") not in routes and ("n0/gpu0", "z0/leaf0") not in routes
    with pytest.raises(KeyError):
        routes["n1/gpu0", "n0/gpu0"]
