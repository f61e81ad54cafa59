"""The op bounds of collectives.sizing hold for every registered algorithm, and are not loose."""

import pytest

from flyersim import collectives, topologies
from flyersim.collectives.sizing import OPS, op_bound
from flyersim.sim.app.runner import layout_of
from flyersim.sim.nccl_topo import nccl_params

NVLINK = {"server.nvlink_pairs": [[0, 1], [2, 3], [4, 5], [6, 7]], "server.nvlink_bandwidth": "200GB/s"}
CASES = [("fireflyer2", 1, {}), ("fireflyer2", 2, {}), ("fireflyer2", 3, {}), ("fireflyer2", 4, NVLINK),
         ("ring", 3, {}), ("ring", 4, {}), ("single-switch", 4, {}), ("dgx-a100", 2, {})]
SIZES = [None, 4096, 186 << 20]  # no size, NCCL's smallest tree chunks, the chunk cap


def test_every_registered_algorithm_has_a_bound():
    assert set(OPS) == set(collectives.ALGORITHMS)


@pytest.mark.parametrize("collective,algo", sorted(k for k, v in OPS.items() if not isinstance(v, tuple)))
@pytest.mark.parametrize("preset,nodes,overrides", CASES)
def test_bound_is_above_the_real_count_and_within_4x(collective, algo, preset, nodes, overrides):
    graph = topologies.load(preset, nodes=nodes, overrides=overrides)
    layout = layout_of(graph)
    facts = nccl_params(graph)
    checked = 0
    for nbytes in SIZES:
        sized = {} if nbytes is None or not collectives.size_dependent(algo, collective) else {"nbytes": nbytes}
        if collectives.takes(algo, "max_chunks", collective):
            sized["max_chunks"] = 8  # the cap's path at a fraction of the default's build time
        try:
            real = collectives.build(algo, layout, collective, **facts, **sized).num_ops
        except ValueError:  # this algorithm cannot serve this layout (e.g. hfreduce-nvlink without bridges)
            continue
        bound = op_bound(algo, layout, sized.pop("nbytes", None), collective, **facts, **sized)
        assert real <= bound <= 4 * real + 16, (nbytes, real, bound)
        checked += 1
    if not checked:
        pytest.skip(f"{algo} cannot serve {nodes} x {preset}")


def test_a_size_dependent_name_takes_the_larger_bound_of_what_it_resolves_to():
    graph = topologies.load("fireflyer2", nodes=4)
    layout, facts = layout_of(graph), nccl_params(graph)
    for nbytes in SIZES[1:]:
        assert op_bound("nccl", layout, nbytes, **facts) == max(
            op_bound("nccl-ring", layout, nbytes, **facts), op_bound("nccl-tree", layout, nbytes, **facts))
        assert collectives.resolve("nccl", layout, nbytes, **facts) in OPS["allreduce", "nccl"]


def test_bound_follows_the_chunk_parameters():
    layout = layout_of(topologies.load("fireflyer2", nodes=2))
    small = op_bound("hfreduce", layout, 186 << 20)
    assert op_bound("hfreduce", layout, 186 << 20, max_chunks=256) == 4 * small
    assert op_bound("hfreduce", layout, 186 << 20, chunks=1) * 64 == small
