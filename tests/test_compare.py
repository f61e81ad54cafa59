"""flyersim compare: one tidy row per (GPUs, algorithm, size), a figure, one-line errors."""

import csv
import io
import json

import pytest

from flyersim.sim.app.cli import main

BASE = ["compare", "--preset", "fireflyer2", "--model", "analytic"]


def test_grid_rows_and_figure(tmp_path, capsys):
    png = tmp_path / "out.png"
    assert main(BASE + ["--gpus", "8,16", "--algos", "hfreduce,nccl,ring", "--sizes", "1MiB,4MiB",
                        "--format", "csv", "--plot", str(png)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(int(r["gpus"]), r["requested_algo"], int(r["bytes"])) for r in rows] == [
        (g, a, s) for g in (8, 16) for a in ("hfreduce", "nccl", "ring") for s in (1 << 20, 4 << 20)]
    assert {r["algo"] for r in rows if r["requested_algo"] == "nccl"} <= {"nccl-ring", "nccl-tree"}
    assert all(float(r["busbw_GBps"]) == pytest.approx(float(r["algbw_GBps"]) * 2 * (int(r["gpus"]) - 1)
                                                       / int(r["gpus"])) for r in rows)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_gpu_count_several_sizes_json_and_table(tmp_path, capsys):
    assert main(BASE + ["--gpus", "8", "--algos", "ring", "--sizes", "1MiB,2MiB", "--format", "json",
                        "--plot", str(tmp_path / "by_size.png")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["bytes"] for r in rows] == [1 << 20, 2 << 20] and (tmp_path / "by_size.png").exists()
    assert main(BASE + ["--gpus", "8", "--algos", "ring", "--sizes", "1MiB"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["gpus", "size", "algo", "runs"] and len(out) == 2


@pytest.mark.parametrize("args,message", [
    (["--gpus", "8,x"], "--gpus: expected comma-separated positive integers, got '8,x'"),
    (["--gpus", "12"], "gpus=12 is not a multiple of the 8 GPUs per server"),
    (["--gpus", "8", "--algos", "nosuch"], "unknown allreduce algorithm 'nosuch'"),
    (["--gpus", "8", "--algos", ","], "--algos: name at least one algorithm"),
    (["--gpus", "8", "--sizes", "1 parsec"], "malformed size '1 parsec'"),
    (["--gpus", "8", "--plot", "/no/such/dir/x.png"], "--plot: folder /no/such/dir of x.png does not exist"),
])
def test_bad_inputs_one_line_exit_2(args, message, capsys):
    assert main(BASE + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("flyersim: error: ") and message in err and err.count("\n") == 1
