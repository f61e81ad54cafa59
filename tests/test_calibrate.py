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
    assert errors == (["flyersim: error: --size must be at least 4 B (one float32), got '2B'"]
                      if COMM.rank == 0 else [])
