"""The ``flyersim`` command line, in-process (``flyersim.sim.app.cli.main``) and once through the console script."""

import csv
import io
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from flyersim import collectives
from flyersim.sim.app.cli import main
from flyersim.sim.app.runner import layout_of
from flyersim.topologies import load

KEYS = {"collective", "algo", "model", "gpus", "nodes", "bytes", "time_s", "algbw_GBps", "busbw_GBps",
        "bottleneck"}
COLUMNS = ["size", "count", "type", "algo", "time(us)", "algbw(GB/s)", "busbw(GB/s)", "bottleneck"]
RUN = ["run", "--preset", "fireflyer2", "--gpus", "16", "--algo", "ring"]


def cli(capsys, *argv):
    """(exit code, stdout, stderr) of ``flyersim argv``; argparse's exits count as return codes."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def records(capsys, *argv):
    code, out, err = cli(capsys, *argv, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def test_version_through_the_console_script():
    exe = Path(sys.executable).with_name("flyersim")
    done = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"flyersim {version('flyersim')}"
    assert done.stderr == ""


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["topo", "--help"]])
def test_help_on_every_command(capsys, argv):
    code, out, err = cli(capsys, *argv)
    assert code == 0 and out.startswith("usage: flyersim") and err == ""


def test_run_prints_a_table_row_per_size(capsys):
    code, out, err = cli(capsys, *RUN, "--sizes", "1MiB,16MiB")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].startswith("# flyersim fireflyer2: 16 GPUs on 2 servers, allreduce, model flow")
    assert lines[1].split() == COLUMNS
    rows = [line.split(maxsplit=7) for line in lines[2:-1]]  # a pool's name has a space: "n0/cpu0 p2p_bandwidth"
    assert len(rows) == 2
    assert [r[0] for r in rows] == ["1048576", "16777216"]
    assert [r[1] for r in rows] == ["262144", "4194304"]
    assert all(r[2] == "float32" and r[3] == "ring" for r in rows)
    for r in rows:
        time_us, algbw, busbw = map(float, r[4:7])
        assert time_us > 0 and algbw == pytest.approx(int(r[0]) / time_us / 1e3, rel=1e-2)
        assert busbw == pytest.approx(algbw * 2 * 15 / 16, rel=1e-2)
        assert len(r) == 8 and r[7]         # a bottleneck resource is named
    mean = sum(float(r[6]) for r in rows) / 2   # nccl-tests' footer: bus bandwidth averaged over the sizes
    label, value = lines[-1].split(":")
    assert label == "# Avg bus bandwidth    " and value.endswith(" GB/s (ring)")
    assert float(value.split()[0]) == pytest.approx(mean, abs=2e-3)


def test_run_csv_and_json_agree(capsys):
    code, out, err = cli(capsys, *RUN, "--sizes", "1MiB,16MiB", "--format", "csv")
    assert code == 0 and err == ""
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 2 and KEYS <= set(rows[0])
    data = records(capsys, *RUN, "--sizes", "1MiB,16MiB")
    assert isinstance(data, list) and len(data) == 2 and all(KEYS <= set(d) for d in data)
    for row, rec in zip(rows, data):
        assert rec["collective"] == "allreduce" and rec["algo"] == "ring" and rec["model"] == "flow"
        assert rec["gpus"] == 16 and rec["nodes"] == 2
        assert int(row["bytes"]) == rec["bytes"] and float(row["time_s"]) == pytest.approx(rec["time_s"])
        assert row["bottleneck"] == rec["bottleneck"] != ""
        assert rec["algbw_GBps"] == pytest.approx(rec["bytes"] / rec["time_s"] / 1e9)
        assert rec["busbw_GBps"] == pytest.approx(rec["algbw_GBps"] * 2 * 15 / 16)
    assert [d["bytes"] for d in data] == [1 << 20, 16 << 20]


def test_run_model_and_dtype_options(capsys):
    [flow] = records(capsys, *RUN, "--sizes", "4MiB", "--dtype", "float16")
    [analytic] = records(capsys, *RUN, "--sizes", "4MiB", "--dtype", "float16", "--model", "analytic")
    assert flow["model"] == "flow" and analytic["model"] == "analytic"
    assert flow["count"] == analytic["count"] == 2 << 20
    assert flow["time_s"] >= analytic["time_s"]


def test_run_nccl_tests_sweep(capsys):
    data = records(capsys, *RUN, "-b", "8", "-e", "1K", "-f", "2")
    assert [d["bytes"] for d in data] == [8, 16, 32, 64, 128, 256, 512, 1024]
    data = records(capsys, *RUN, "-b", "1K", "-e", "4K", "-i", "1K")
    assert [d["bytes"] for d in data] == [1024, 2048, 3072, 4096]


def test_run_writes_a_chrome_trace(capsys, tmp_path):
    trace = tmp_path / "out.json"
    code, out, err = cli(capsys, *RUN, "--sizes", "1MiB,16MiB", "--trace", trace)
    assert code == 0 and "trace of" in err
    events = json.loads(trace.read_text())["traceEvents"]
    ops = collectives.build("ring", layout_of(load("fireflyer2", gpus=16))).num_ops
    complete = [e for e in events if e["ph"] == "X"]
    assert len(complete) == 2 * ops
    assert {e["pid"] for e in complete} == {0, 1}
    assert all(e["dur"] >= 0 and e["ts"] >= 0 and e["args"]["bytes"] >= 0 for e in complete)
    assert all(e["ph"] in ("X", "M") for e in events)


def test_run_with_a_user_topology_file(capsys, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('base = "single-switch"\nname = "mine"\nnodes = 3\n\n'
                    '[network]\nlink_bandwidth = "100Gb/s"\n')
    [rec] = records(capsys, "run", "--topology", path, "--sizes", "1MiB")
    assert rec["topology"] == "mine" and rec["gpus"] == 12 and rec["nodes"] == 3
    [rec] = records(capsys, "run", "--topology", path, "--gpus", "8", "--sizes", "1MiB")
    assert rec["gpus"] == 8 and rec["nodes"] == 2


def test_set_overrides_change_the_result(capsys):
    [slow] = records(capsys, "run", "--preset", "single-switch", "--gpus", "8", "--sizes", "16MiB",
                     "--set", "network.link_bandwidth=10Gb/s")
    [fast] = records(capsys, "run", "--preset", "single-switch", "--gpus", "8", "--sizes", "16MiB")
    assert slow["time_s"] > 5 * fast["time_s"]


def test_param_sets_an_algorithm_parameter(capsys):
    run = ["run", "--gpus", "16", "--algo", "hfreduce", "--sizes", "16MiB"]
    [one] = records(capsys, *run, "--param", "max_chunks=1")
    [many] = records(capsys, *run, "--param", "max_chunks=32")
    assert one["time_s"] > 1.5 * many["time_s"]  # one chunk cannot overlap the D2H, reduce, network and H2D stages


def test_help_params_lists_each_declared_parameter(capsys):
    code, out, _ = cli(capsys, "run", "--algo", "hfreduce,ring", "--help-params")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "# allreduce hfreduce: built per message size"
    assert [line.split()[0] for line in lines[1:7]] == ["chunks", "staging", "h2d", "buffers", "chunk_bytes",
                                                        "max_chunks"]
    assert "h2d          str   default 'gdrcopy'" in out and "ring takes no parameters" in out


def test_explain_shows_the_parameter_values_used(capsys):
    code, out, _ = cli(capsys, "run", "--gpus", "16", "--algo", "dbtree", "--sizes", "1MiB", "--param", "chunks=3",
                       "--explain")
    assert code == 0 and "chunks       int  set 3" in out and "max_chunks   int  default 64" in out


def test_topo_summary_and_drawing(capsys, tmp_path):
    code, out, err = cli(capsys, "topo", "--preset", "fireflyer2", "--gpus", "16")
    assert code == 0 and err == ""
    assert "16 GPUs" in out and "bisection" in out.lower()
    png = tmp_path / "out.png"
    code, out, err = cli(capsys, "topo", "--preset", "fireflyer2", "--gpus", "16", "--draw", png)
    assert code == 0 and "16 GPUs" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def _bad_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\n[server\ngpus = 2\n')
    return str(path)


BAD = [  # (argv, text the one error line must contain); "{tmp}" is the test's tmp_path
    (["run", "--preset", "fireflyer3"], "unknown preset 'fireflyer3'"),
    (["topo", "--preset", "fireflyer3"], "unknown preset 'fireflyer3'"),
    (["run", "--topology", "{tmp}/missing.toml"], "no such topology file"),
    (["run", "--topology", "{bad}"], "malformed TOML"),
    (["run", "--gpus", "16", "--set", "parameters.pcie_bandwidth=0GB/s"], "must be positive"),
    (["run", "--gpus", "16", "--set", "network.link_bandwidth=-100Gb/s"], "malformed bandwidth"),
    (["run", "--gpus", "12"], "not a multiple of the 8 GPUs"),
    (["topo", "--preset", "ring", "--gpus", "6"], "not a multiple of the 4 GPUs"),
    (["run", "--gpus", "0"], "expected a positive integer, got '0'"),
    (["run", "--gpus", "-8"], "expected a positive integer, got '-8'"),
    (["run", "--gpus", "16", "--sizes", "12QB"], "malformed size '12QB'"),
    (["run", "--gpus", "16", "--sizes", "0"], "sizes must be positive"),
    (["run", "--gpus", "16", "--sizes", "1MiB,0"], "sizes must be positive"),
    (["run", "--gpus", "16", "--sizes", "2", "--dtype", "float64"], "smaller than one float64 element"),
    (["run", "--gpus", "16", "--algo", "nosuch"], "unknown allreduce algorithm 'nosuch'"),
    (["run", "--gpus", "16", "--algo", "hfreduce", "--param", "h2d=3"], "hfreduce: h2d must be of type str"),
    (["run", "--gpus", "16", "--algo", "hfreduce", "--param", "h2d=dma"], "hfreduce: h2d must be one of gdrcopy, memcpy"),
    (["run", "--algo", "nosuch", "--help-params"], "unknown allreduce algorithm 'nosuch'"),
    (["run", "--gpus", "16", "--model", "fast"], "invalid choice: 'fast'"),
    (["run", "--gpus", "16", "--dtype", "bfloat16"], "invalid choice: 'bfloat16'"),
    (["run", "--gpus", "16", "-b", "8"], "-b and -e go together"),
    (["run", "--gpus", "16", "-e", "1K"], "-b and -e go together"),
    (["run", "--gpus", "16", "-b", "1K", "-e", "8"], "need 0 < begin <= end"),
    (["run", "--gpus", "16", "-b", "8", "-e", "1K", "-f", "1"], "factor (-f) must be a finite number greater than 1"),
    (["run", "--gpus", "16", "--sizes", "1MiB", "-b", "8", "-e", "1K"], "give --sizes or -b/-e, not both"),
    (["run", "--gpus", "16", "--set", "network.link_bandwidth"], "expected KEY=VALUE"),
    (["run", "--gpus", "16", "--set", "network.link_bandwith=1GB/s"], "unknown key 'network.link_bandwith'"),
    (["run", "--gpus", "16", "--set", "parameters.pcie_bw=1GB/s"], "no such parameter"),
    (["run", "--gpus", "16", "--format", "xml"], "invalid choice: 'xml'"),
    (["run", "--preset", "single-switch", "--nodes", "41"], "exceed the switch's 40 ports"),
    (["run", "--gpus", "16", "--algo", "ring", "--param", "max_chunks=8"], "has parameter 'max_chunks' (valid: none)"),
    (["run", "--gpus", "16", "--algo", "hfreduce", "--param", "max_chunks=0"], "max_chunks must be a positive"),
    (["run", "--gpus", "16", "--param", "max_chunks"], "expected KEY=VALUE"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([], "required: command"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) or "no-args" for a, _ in BAD])
def test_bad_input_is_one_line_on_stderr_and_exit_2(capsys, tmp_path, argv, message):
    argv = [a.format(tmp=tmp_path, bad=_bad_toml(tmp_path)) for a in argv]
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("flyersim") and ": error: " in err
    assert message in err
    assert "Traceback" not in err
