"""Size-dependent pipeline chunking: chunk count = ceil(nbytes / chunk_bytes) capped at max_chunks."""

import math

import numpy as np
import pytest

from flyersim import collectives
from flyersim.collectives.chunking import DEFAULT_MAX_CHUNKS, NCCL_STEP_BYTES, pipeline_chunks
from flyersim.collectives.schedule import Layout
from flyersim.collectives.verify import verify
from flyersim.sim.app.runner import run_sizes
from flyersim.topologies import load

SIZED = ["hfreduce", "hfreduce-nvlink", "dbtree", "nccl-ring", "nccl-tree"]


def _layout(algo):
    pairs = ((0, 1), (2, 3)) if algo == "hfreduce-nvlink" else ()
    return Layout(nodes=3, gpus_per_node=4, sockets=2, nvlink_pairs=pairs)


def chunks_of(schedule):
    """Distinct pieces of the message a schedule's ops touch (its finest span denominator)."""
    return int(schedule.den.max())


@pytest.mark.parametrize("nbytes,chunk,cap", [(1, 512, 8), (512, 512, 8), (513, 512, 8), (186 << 20, 512 << 10, 4096),
                                              (186 << 20, 512 << 10, 100), (0, 7, 3)])
def test_count_is_ceil_of_size_over_chunk_capped(nbytes, chunk, cap):
    assert pipeline_chunks(nbytes, chunk, cap) == min(max(1, math.ceil(nbytes / chunk)), cap)


def test_default_chunk_is_nccl_step_and_cap_is_documented():
    assert NCCL_STEP_BYTES == 512 << 10
    assert pipeline_chunks(186 << 20, NCCL_STEP_BYTES, 10**6) == 372
    assert pipeline_chunks(186 << 20, NCCL_STEP_BYTES) == DEFAULT_MAX_CHUNKS


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_chunk_bytes_and_cap_fail_in_one_line(bad):
    with pytest.raises(ValueError, match="hfreduce: chunk_bytes must be (a positive integer|of type int)"):
        collectives.build("hfreduce", Layout(2, 2), nbytes=1 << 20, chunk_bytes=bad)
    with pytest.raises(ValueError, match="hfreduce: max_chunks must be (a positive integer|of type int)"):
        collectives.build("hfreduce", Layout(2, 2), nbytes=1 << 20, max_chunks=bad)


def test_only_algorithms_declared_sized_are_built_per_size():
    for algo in SIZED:
        assert collectives.get(algo).sized
    for algo in ["ring", "tree", "rd", "rabenseifner", "hier"]:
        assert not collectives.get(algo).sized
    lay = Layout(2, 4)
    assert collectives.schedule_key("ring", lay, 1 << 20) == ("ring", None)
    assert collectives.schedule_key("hfreduce", lay, 1 << 20) == ("hfreduce", 1 << 20)


@pytest.mark.parametrize("algo", SIZED)
def test_schedules_at_two_sizes_differ_and_verify(algo):
    layout = _layout(algo)
    small = collectives.build(algo, layout, nbytes=1 << 20, chunk_bytes=32 << 10)
    large = collectives.build(algo, layout, nbytes=4 << 20, chunk_bytes=32 << 10)
    verify(small)
    verify(large)
    assert large.num_ops > small.num_ops
    assert chunks_of(large) > chunks_of(small)


def test_hfreduce_chunk_count_follows_size_and_cap():
    layout = Layout(nodes=2, gpus_per_node=2, sockets=2)
    for nbytes, cap, want in [(3 << 20, 100, 6), (3 << 20, 4, 4), (1, 100, 1)]:
        s = collectives.build("hfreduce", layout, nbytes=nbytes, max_chunks=cap)
        assert chunks_of(s) == 2 * want  # each chunk is split in two halves, one per tree
    assert chunks_of(collectives.build("hfreduce", layout, nbytes=3 << 20, chunks=3)) == 6  # explicit count wins


def test_nccl_tree_halves_chunks_for_deep_trees_as_enqueue_cc():
    from flyersim.collectives.nccl.tree import tree_chunk_bytes
    assert tree_chunk_bytes(186 << 20, 2, 14) == 512 << 10   # 186 chunks per channel >= 8 x depth
    assert tree_chunk_bytes(64 << 20, 2, 14) == 256 << 10    # 64 < 112: halve once
    assert tree_chunk_bytes(1 << 20, 2, 14) == 32 << 10      # floors 128K, 64K, 32K


def test_runner_builds_one_schedule_per_size_for_sized_algorithms():
    graph = load("fireflyer2", gpus=16)
    recs, runs = run_sizes(graph, ["hfreduce", "ring"], [1 << 20, 8 << 20], keep_runs=True)
    hf = [r.schedule for r in runs if r.schedule.algo == "hfreduce"]
    ring = [r.schedule for r in runs if r.schedule.algo == "ring"]
    assert hf[0] is not hf[1] and chunks_of(hf[1]) > chunks_of(hf[0])
    assert ring[0] is ring[1]
    assert all(np.isfinite(r["time_s"]) for r in recs)
