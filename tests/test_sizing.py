"""The op bounds of collectives.sizing hold for every registered algorithm, and are not loose."""

import pytest

from flyersim import collectives, topologies
from flyersim.collectives.sizing import OPS, op_bound
from flyersim.sim.app.runner import layout_of, search_of

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
    record = collectives.get(algo, collective)
    search = search_of(graph, layout) if record.search else None
    params = {"max_chunks": 8} if "max_chunks" in record.params else {}  # the cap's path, at a fraction of the time
    checked = 0
    for nbytes in SIZES if record.sized else [None]:
        try:
            real = collectives.build(algo, layout, collective, nbytes, search, **params).num_ops
        except ValueError:  # this algorithm cannot serve this layout (e.g. hfreduce-nvlink without bridges)
            continue
        bound = op_bound(algo, layout, nbytes, collective, search, **params)
        assert real <= bound <= 4 * real + 16, (nbytes, real, bound)
        checked += 1
    if not checked:
        pytest.skip(f"{algo} cannot serve {nodes} x {preset}")


def test_an_algorithm_that_picks_by_size_takes_the_larger_bound_of_what_it_may_pick():
    graph = topologies.load("fireflyer2", nodes=4)
    layout = layout_of(graph)
    search = search_of(graph, layout)
    for nbytes in SIZES[1:]:
        assert op_bound("nccl", layout, nbytes, search=search) == max(
            op_bound("nccl-ring", layout, nbytes, search=search), op_bound("nccl-tree", layout, nbytes, search=search))
        assert collectives.schedule_key("nccl", layout, nbytes, search=search)[0] in OPS["allreduce", "nccl"]


def test_bound_follows_the_chunk_parameters():
    layout = layout_of(topologies.load("fireflyer2", nodes=2))
    small = op_bound("hfreduce", layout, 186 << 20)
    assert op_bound("hfreduce", layout, 186 << 20, max_chunks=256) == 4 * small
    assert op_bound("hfreduce", layout, 186 << 20, chunks=1) * 64 == small
    with pytest.raises(ValueError, match="hfreduce has no parameter 'chunk'"):
        op_bound("hfreduce", layout, 1 << 20, chunk=4)
