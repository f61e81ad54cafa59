"""``flyersim sensitivity`` and the uncertainty summaries behind it."""

import csv
import io

import pytest

from flyersim.experiments import uncertainty
from flyersim.sim.app.cli import main


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_summarise_ranks_parameters_by_swing_and_bands_the_draws():
    base = {"gpus": 8, "requested_algo": "hfreduce", "bytes": 1024}
    rows = [{**base, "kind": "base", "parameter": "", "busbw_GBps": 5.0},
            {**base, "kind": "low", "parameter": "a", "busbw_GBps": 4.9},
            {**base, "kind": "high", "parameter": "a", "busbw_GBps": 5.0},
            {**base, "kind": "low", "parameter": "b", "busbw_GBps": 3.0},
            {**base, "kind": "high", "parameter": "b", "busbw_GBps": 7.0},
            *({**base, "kind": "sample", "parameter": "", "busbw_GBps": v} for v in (2.0, 6.0, 4.0))]
    entry = uncertainty.summarise(rows)[8, "hfreduce", 1024]
    assert entry["base"] == 5.0 and entry["band"] == (2.0, 4.0, 6.0)
    assert entry["tornado"] == [("b", 3.0, 7.0), ("a", 4.9, 5.0)]


def test_joint_draws_stay_in_range_and_are_seeded():
    span = uncertainty.ranges("fireflyer2")
    one = uncertainty.points("fireflyer2", 8, ["hfreduce"], [1 << 20], samples=5, seed=3, one_at_a_time=False)
    two = uncertainty.points("fireflyer2", 8, ["hfreduce"], [1 << 20], samples=5, seed=3, one_at_a_time=False)
    assert one == two and len(one) == 6
    for pt in one[1:]:
        assert set(pt["params"]) == {"chunk_bytes", "buffers"}
        for key, value in pt["overrides"].items():
            low, high = span[key.split(".", 1)[1]]
            assert low <= value <= high
    assert all(isinstance(pt["overrides"]["parameters.reduce_threads"], int) for pt in one[1:])


def test_a_parameter_set_on_the_command_line_is_not_swept():
    assert "xgmi_bandwidth" not in uncertainty.ranges("fireflyer2", {"parameters.xgmi_bandwidth": "64GB/s"})


def test_sensitivity_table_and_csv(capsys):
    args = ["sensitivity", "--gpus", 8, "--algo", "hfreduce", "--sizes", "1MiB", "--samples", 2]
    code, out, _ = cli(capsys, *args)
    assert code == 0
    lines = out.splitlines()
    assert lines[1].startswith("# hfreduce, 8 GPUs, 1 MiB: busbw") and "joint band" in lines[2]
    swings = [float(line.split()[-1]) for line in lines[4:]]
    assert swings == sorted(swings, reverse=True) and swings[0] > 0
    code, out, _ = cli(capsys, *args, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[0]["parameter"] == "(joint)"
    lo, med, hi = (float(rows[0][k]) for k in ("low_busbw_GBps", "median_busbw_GBps", "high_busbw_GBps"))
    assert lo <= med <= hi
    # one H2D store thread per socket binds a one-server HFReduce: more threads is faster
    threads = next(r for r in rows if r["parameter"] == "gdrcopy_threads")
    assert float(threads["high_busbw_GBps"]) > float(threads["low_busbw_GBps"])


@pytest.mark.parametrize("argv,message", [
    (["sensitivity", "--preset", "ring", "--gpus", 8, "--algo", "ring"], "declare no parameter with a range"),
    (["sensitivity", "--gpus", 8, "--algo", "nosuch", "--samples", 1], "unknown allreduce algorithm"),
])
def test_sensitivity_bad_input_is_one_line(capsys, argv, message):
    code, out, err = cli(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
