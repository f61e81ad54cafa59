"""The scenario experiments (interference, placement) in --quick mode: documented columns, sane values, a figure."""

import pytest

from flyersim.experiments import interference, placement, sweep


def run(module, tmp_path, *extra):
    out = tmp_path / module.NAME
    assert module.main(["--quick", "--out", str(out), *extra]) == 0
    path = out / f"{module.NAME}.csv"
    assert path.read_text().splitlines()[0].split(",") == module.COLUMNS
    assert (out / f"{module.NAME}.png").stat().st_size > 5000
    return sweep.read_csv(path)


def test_interference_a_job_in_its_own_service_level_suffers_no_more(tmp_path):
    rows = run(interference, tmp_path)
    assert {(r["requested_algo"], r["classes"], r["load_pct"]) for r in rows} == {
        (a, c, load) for a in ("hfreduce", "nccl") for c, load in
        (("one class", 0), ("one class", 100), ("separate SLs", 100))}
    for r in rows:
        assert r["slowdown"] >= 1 - 1e-9 and r["storage_GBps"] <= r["offered_GBps"] * (1 + 1e-9)
        assert r["time_s"] == pytest.approx(r["slowdown"] * r["alone_time_s"], rel=1e-8)  # CSV: 9 digits
        if r["load_pct"] == 0:
            assert r["slowdown"] == 1.0 and r["storage_GBps"] == 0
    for algo in ("hfreduce", "nccl"):
        one, own = (next(r for r in rows if r["requested_algo"] == algo and r["classes"] == c and r["load_pct"])
                    for c in interference.SETTINGS)
        assert own["slowdown"] <= one["slowdown"] * (1 + 1e-9)


def test_placement_packed_jobs_never_meet(tmp_path):
    rows = run(placement, tmp_path)
    packed = [r for r in rows if r["placement"] == "packed"]
    spread = [r for r in rows if r["placement"] == "spread"]
    assert len(packed) == len(spread) == 2 * 2  # two jobs, ecmp and adaptive
    assert {r["routing"] for r in rows} == {"ecmp", "adaptive"}
    assert all(r["slowdown"] == 1.0 and r["leaves"] == 1 for r in packed)
    assert all(r["slowdown"] >= 1 - 1e-9 and r["leaves"] == 2 for r in spread)


@pytest.mark.parametrize("module,args,message", [
    (interference, ["--loads", "0,-5"], "--loads"),
    (interference, ["--compute-weight", "nan"], "--compute-weight"),
    (interference, ["--duration", "1us"], "storage read ended before the job"),
    (placement, ["--routing", "magic"], "--routing: unknown policy 'magic'"),
    (placement, ["--oversubscription", "0.5"], "--oversubscription"),
])
def test_bad_arguments_end_in_one_line(tmp_path, capsys, module, args, message):
    try:
        code = module.main(["--quick", "--out", str(tmp_path), "--no-plot", *args])
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
