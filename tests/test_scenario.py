"""Scenarios: several jobs and background flows in one network (sim.scenario, sim.placement, sim.background,
sim.composite, sim.app.scenario_runner and scenario_report).

The anchor: one job, no background, one class gives exactly what ``flyersim run`` gives, op by op.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from flyersim.sim.app import scenario_report as report
from flyersim.sim.app.cli import main
from flyersim.sim.app.runner import run_sizes
from flyersim.sim.app.scenario_runner import run_scenario
from flyersim.sim.placement import pick, place, server_leaves
from flyersim.sim.scenario import loads
from flyersim.sim.stragglers import Stragglers
from flyersim.topologies import load

TOPO = '[topology]\npreset = "fireflyer2"\ngpus = {gpus}\n'


def job(name, algo="ring", size="1MiB", **keys):
    """A [[jobs]] table; ``keys`` as TOML values (strings quoted)."""
    body = {"name": name, "algo": algo, "size": size, **keys}
    return "[[jobs]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in body.items())


def scenario(*tables, gpus=32):
    return loads(TOPO.format(gpus=gpus) + "".join(tables))


# ---------------------------------------------------------------- one job is today's answer

@pytest.mark.parametrize("algo", ["ring", "hfreduce", "nccl"])
def test_one_job_alone_is_flyersim_run_bit_for_bit(algo):
    out = run_scenario(scenario(job("a", algo, "4MiB", gpus=32)))
    (record,) = run_sizes(load("fireflyer2", gpus=32), [algo], [4 << 20])
    mine = out.jobs[0]
    assert mine.runs[0].time == mine.alone.time == record["time_s"]
    assert np.array_equal(mine.runs[0].end_at, mine.alone.end_at)  # the composite vs sim.engine.simulate, op by op


def test_one_job_scenario_prints_the_same_time_as_flyersim_run(tmp_path, capsys):
    path = tmp_path / "one.toml"
    path.write_text(TOPO.format(gpus=16) + job("a", "hfreduce", "16MiB", gpus=16))
    assert main(["run", "--scenario", str(path), "--format", "csv"]) == 0
    scenario_csv = capsys.readouterr().out.splitlines()
    assert main(["run", "--gpus", "16", "--algo", "hfreduce", "--sizes", "16MiB", "--format", "csv"]) == 0
    run_csv = capsys.readouterr().out.splitlines()
    mine, theirs = (dict(zip(rows[0].split(","), rows[1].split(","))) for rows in (scenario_csv, run_csv))
    assert mine["time_s"] == theirs["time_s"] and mine["busbw_GBps"] == theirs["busbw_GBps"]
    assert mine["slowdown"] == "1.0"


# ---------------------------------------------------------------- repeats and start times

def test_repeats_run_back_to_back_and_each_takes_the_time_alone():
    out = run_scenario(scenario(job("a", gpus=16, repeat=3)))
    j = out.jobs[0]
    for k, run in enumerate(j.runs):
        assert run.time == pytest.approx(j.alone.time, rel=1e-9)
        if k:  # copy k starts when copy k-1's last op ends
            assert j.starts[k] == pytest.approx(j.starts[k - 1] + j.runs[k - 1].time, rel=1e-12)


def test_start_and_period_delay_copies_with_zero_byte_timers():
    out = run_scenario(scenario(job("a", gpus=16, repeat=2, start="1ms", period="50ms")))
    j = out.jobs[0]
    assert j.starts.tolist() == [pytest.approx(1e-3), pytest.approx(51e-3)]
    assert j.runs[1].time == pytest.approx(j.alone.time, rel=1e-9)


# ---------------------------------------------------------------- late ranks (issue 12 item 4)

@pytest.mark.parametrize("algo", ["ring", "hfreduce"])
def test_a_late_rank_in_a_scenario_is_flyersim_run_late_bit_for_bit(algo):
    out = run_scenario(scenario(job("a", algo, "4MiB", gpus=16) + 'late = { 3 = "4ms", 5 = "200us" }\n', gpus=16))
    graph = load("fireflyer2", gpus=16)
    (late,) = run_sizes(graph, [algo], [4 << 20], stragglers=Stragglers(late=((3, 4e-3), (5, 2e-4))))
    (on_time,) = run_sizes(graph, [algo], [4 << 20])
    mine = out.jobs[0]
    assert mine.runs[0].time == mine.alone.time == late["time_s"]
    assert 4e-3 < late["time_s"] <= (on_time["time_s"] + 4e-3) * (1 + 1e-12)  # late by at most its lateness
    assert np.array_equal(mine.runs[0].end_at, mine.alone.end_at)  # the composite's late gates vs the engine's


def test_a_late_rank_is_late_in_every_repeat_from_its_start():
    late = 'late = { 3 = "1ms" }\n'
    back_to_back = run_scenario(scenario(job("a", gpus=16, repeat=3) + late)).jobs[0]
    timed = run_scenario(scenario(job("a", gpus=16, repeat=2, start="2ms", period="10ms") + late)).jobs[0]
    for j in (back_to_back, timed):
        assert j.alone.time > 1e-3
        assert [run.time for run in j.runs] == [pytest.approx(j.alone.time, rel=1e-9)] * len(j.runs)
    assert timed.starts.tolist() == [pytest.approx(2e-3), pytest.approx(12e-3)]
    assert back_to_back.starts[1] == pytest.approx(back_to_back.runs[0].time, rel=1e-12)


def test_a_job_whose_every_rank_is_late_counts_from_its_start_not_its_first_op():
    every = "late = { " + ", ".join(f'{r} = "1ms"' for r in range(16)) + " }\n"
    j = run_scenario(scenario(job("a", gpus=16, start="3ms") + every)).jobs[0]
    assert j.starts[0] == pytest.approx(3e-3) and j.runs[0].time == pytest.approx(j.alone.time, rel=1e-9)
    assert float(j.runs[0].ready_at.min()) == pytest.approx(1e-3)


def test_the_report_lists_late_ranks(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(TOPO.format(gpus=32) + job("a", gpus=16) + 'late = { 3 = "1ms", 5 = "200us" }\n'
                    + job("b", gpus=16))
    assert main(["run", "--scenario", str(path)]) == 0
    assert "# late ranks (rank=lateness, in each of the job's collectives; in its times alone too): " \
           "a: 3=1000us 5=200us\n" in capsys.readouterr().out
    assert main(["run", "--scenario", str(path), "--format", "json"]) == 0
    assert [r["late"] for r in json.loads(capsys.readouterr().out)] == ["3=1000us 5=200us", ""]


# ---------------------------------------------------------------- jobs that share and jobs that do not

def test_jobs_on_their_own_leaves_never_meet():
    out = run_scenario(scenario(job("a", gpus=128), job("b", gpus=128), gpus=320))  # packed: leaf0, leaf1
    assert [report.servers_label(j.servers) for j in out.jobs] == ["n0-n15", "n20-n35"]
    assert report.met(out) == []
    assert all(j.runs[0].time == j.alone.time for j in out.jobs)


def test_spread_jobs_meet_on_spine_links_and_here_neither_speeds_up(monkeypatch):
    # Not a general law: fair sharing is not monotone in the order of flows, and elsewhere sharing makes a
    # spread job up to 0.013 % faster than alone (docs/gallery/placement.csv); in this case neither is.
    out = run_scenario(scenario(job("a", "hfreduce", "16MiB", gpus=64, placement="spread"),
                                job("b", "hfreduce", "16MiB", gpus=64, placement="spread"), gpus=320))
    rows = report.met(out)
    assert rows and any("spine" in name for name, *_ in rows)
    for name, cls, util, shares in rows:
        assert 0 < util <= 1 + 1e-9 and shares.sum() == pytest.approx(1.0) and (shares > 0).sum() >= 2
    assert all(j.runs[0].time >= j.alone.time * (1 - 1e-9) for j in out.jobs)
    lines = report.text(out).splitlines()
    assert lines[1].split()[:2] == ["job", "algo"]  # one-letter job names do not glue the header
    monkeypatch.setattr(report, "MET_ROWS", 1)  # a cut list says how many it leaves out
    assert len(rows) == 2 and report.text(out).splitlines()[-1] == \
        "  ... and 1 more resource carried bytes of more than one part"


# ---------------------------------------------------------------- background flows

def test_a_rate_limited_storage_read_alone_takes_its_duration_plus_latency():
    text = (job("a", gpus=16) + '[[background]]\nname = "s"\nkind = "storage-read"\nservers = [3]\n'
            'rate = "5GB/s"\nduration = "2ms"\nstart = "1ms"\nstorage_leaves = ["z0/leaf1"]\n')
    out = run_scenario(scenario(text))
    f = out.background[0]
    latency = out.composite.rlat[out.composite.route[out.composite.ops[1][0]]][0]
    assert f.flows.labels == ["s/st0->n3/host1"] and f.flows.nbytes[0] == pytest.approx(1e7)
    assert f.end_at[0] == pytest.approx(1e-3 + latency + 2e-3, rel=1e-12)
    assert out.graph.has_edge("s/st0", "z0/leaf1") and out.graph.has_edge("z0/leaf1", "z0/spine0")


def test_an_all_to_all_sends_rate_over_the_others():
    text = (job("a", gpus=16) + '[[background]]\nname = "x"\nkind = "all-to-all"\nservers = [1, 2, 3]\n'
            'rate = "6GB/s"\nduration = "1ms"\n')
    f = run_scenario(scenario(text)).background[0]
    assert len(f.flows.labels) == 6 and f.flows.rate.tolist() == [3e9] * 6


def test_background_slows_a_job_that_shares_its_nics():
    storage = ('[[background]]\nname = "s"\nkind = "storage-read"\njobs = ["a"]\nrate = "20GB/s"\n'
               'duration = "20ms"\nstorage_leaves = ["z0/leaf1"]\nstorage_nodes = 4\n')
    out = run_scenario(scenario(job("a", "hfreduce", "16MiB", gpus=32), storage))
    j = out.jobs[0]
    assert j.runs[0].time > j.alone.time * (1 + 1e-3)
    assert any(name == "z0/leaf0->n0/nic0" for name, *_ in report.met(out))


# ---------------------------------------------------------------- placement

def test_placement_policies():
    g = load("fireflyer2", nodes=60)
    leaves = server_leaves(g)
    free = list(range(5, 60))
    assert pick("packed", 10, free, leaves) == tuple(range(5, 15))  # best fit: leaf0, 15 free
    assert pick("packed", 16, free, leaves) == tuple(range(20, 36))  # leaf0 too small: leaf1
    assert pick("packed", 45, free, leaves) == tuple(range(5, 10)) + tuple(range(20, 60))  # fullest leaves first
    assert pick("spread", 3, free, leaves) == (5, 20, 40)
    assert pick("random", 4, free, leaves, seed=3) == pick("random", 4, free, leaves, seed=3)
    assert pick("random", 4, free, leaves, seed=3) != pick("random", 4, free, leaves, seed=4)


def test_spread_alternates_zones():
    g = load("fireflyer2", nodes=80, zones=2)
    leaves = server_leaves(g)
    chosen = pick("spread", 4, list(range(80)), leaves)
    assert [leaves[s].split("/")[0] for s in chosen].count("z0") == 2


def test_explicit_servers_are_placed_first():
    s = scenario(job("a", gpus=16), job("b", servers=[0, 1]))
    assert place(s.jobs, load("fireflyer2", gpus=32)) == {"a": (2, 3), "b": (0, 1)}


# ---------------------------------------------------------------- reports

def test_timeline_integrates_to_the_bytes_on_infiniband():
    out = run_scenario(scenario(job("a", "hfreduce", "4MiB", gpus=32),
                                '[[background]]\nname = "x"\nkind = "all-to-all"\nservers = [0, 1]\n'
                                'rate = "2GB/s"\nduration = "1ms"\n'))
    edges, rates = report.timeline(out)
    c = out.composite
    ib = np.array([cls == "ib" for cls in c.classes])
    for p, (name, rate) in enumerate(rates.items()):
        ops = np.concatenate(c.ops[p])
        on_ib = [ib[c.rres[c.rptr[r]:c.rptr[r + 1]]].any() for r in c.route[ops]]
        assert np.sum(rate * 1e9 * np.diff(edges)) == pytest.approx(c.op_bytes[ops][on_ib].sum(), rel=1e-9), name


def test_text_report_trace_and_plot(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(TOPO.format(gpus=32) + job("a", gpus=16, repeat=2) + job("b", gpus=16)
                    + '[[background]]\nname = "x"\nkind = "all-to-all"\nservers = [0, 3]\nrate = "2GB/s"\n'
                      'duration = "1ms"\n')
    trace, png = tmp_path / "t.json", tmp_path / "t.png"
    assert main(["run", "--scenario", str(path), "--trace", str(trace), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "flyersim scenario s: fireflyer2, 32 GPUs on 4 servers; 2 jobs, 1 background" in out
    assert "where jobs met" in out
    events = json.loads(trace.read_text())["traceEvents"]
    processes = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert processes == {0: "job a: ring 1MiB", 1: "job b: ring 1MiB", 2: "background x: all-to-all"}
    assert png.stat().st_size > 0


def test_csv_has_a_row_per_repeat(capsys, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(TOPO.format(gpus=16) + job("a", gpus=16, repeat=3))
    assert main(["run", "--scenario", str(path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["repeat"] for r in rows] == [0, 1, 2] and {r["job"] for r in rows} == {"a"}


# ---------------------------------------------------------------- traffic classes reach the solver

def _reads(name, cls, server=3, rate="100GB/s", duration="1ms"):
    return (f'[[background]]\nname = "{name}"\nkind = "storage-read"\nservers = [{server}]\nrate = "{rate}"\n'
            f'duration = "{duration}"\nstorage_leaves = ["z0/leaf1"]\nclass = "{cls}"\n')


def test_two_classes_on_one_link_share_it_by_weight_and_the_rest_goes_to_the_survivor():
    classes = '[classes]\ngold = { weight = 3, sl = 1 }\nbronze = { weight = 1, sl = 2 }\n'
    out = run_scenario(scenario(classes, job("a", servers=[0]), _reads("g", "gold"), _reads("b", "bronze")))
    gold, bronze = out.background
    assert gold.start_at[0] == bronze.start_at[0]
    volume, link = gold.flows.nbytes[0], out.graph.edges["z0/leaf0", "n3/nic0"]["bandwidth"]
    t0 = gold.start_at[0]
    assert gold.end_at[0] - t0 == pytest.approx(volume / (0.75 * link), rel=1e-9)  # 3/4 of the link
    assert bronze.end_at[0] - t0 == pytest.approx(2 * volume / link, rel=1e-9)    # then all of it: no waste
    share = out.composite.share
    assert set(share[np.concatenate(out.composite.ops[1])]) == {3.0}
    assert set(share[np.concatenate(out.composite.ops[2])]) == {1.0}


@pytest.mark.parametrize("gold_weight,gold_time", [(2, 1.5), (1, 2.0)])
def test_a_class_gets_its_part_of_a_link_however_many_flows_it_has(gold_weight, gold_time):
    # gold has one read into n3, bronze (weight 1) three. Weight 2: the NIC's link gives gold 2/3 and bronze's
    # three reads 1/9 each (per-flow weights would give gold 2/5); weight 1 (another lane of equal weight): each
    # lane half (per flow gold would get 1/4). When gold ends, bronze's three split the link.
    classes = f'[classes]\ngold = {{ weight = {gold_weight}, sl = 1 }}\nbronze = {{ weight = 1, sl = 2 }}\n'
    out = run_scenario(scenario(classes, job("a", servers=[0]), _reads("g", "gold"),
                                *(_reads(f"b{i}", "bronze") for i in range(3))))
    gold, *bronze = out.background
    volume, link = gold.flows.nbytes[0], out.graph.edges["z0/leaf0", "n3/nic0"]["bandwidth"]
    t0 = gold.start_at[0]
    assert gold.end_at[0] - t0 == pytest.approx(gold_time * volume / link, rel=1e-9)
    assert [b.end_at[0] - t0 for b in bronze] == pytest.approx([4 * volume / link] * 3, rel=1e-9)


def test_a_job_in_a_heavier_class_suffers_less_from_storage():
    def slowdown(weight):
        classes = f'[classes]\ncompute = {{ weight = {weight}, sl = 1 }}\n'
        storage = ('[[background]]\nname = "s"\nkind = "storage-read"\njobs = ["a"]\nrate = "20GB/s"\n'
                   'duration = "20ms"\nstorage_leaves = ["z0/leaf1"]\nstorage_nodes = 4\n')
        j = run_scenario(scenario(classes, job("a", "hfreduce", "16MiB", gpus=32, **{"class": "compute"}),
                                  storage)).jobs[0]
        return j.runs[0].time / j.alone.time

    assert 1.0 <= slowdown(8) < slowdown(1)


def test_a_class_on_the_default_lane_changes_nothing():
    plain = run_scenario(scenario(job("a", gpus=16), job("b", gpus=16)))
    named = run_scenario(scenario('[classes]\nx = { weight = 1, sl = 0 }\n', job("a", gpus=16, **{"class": "x"}),
                                  job("b", gpus=16)))
    for p, n in zip(plain.jobs, named.jobs):
        assert np.array_equal(p.runs[0].end_at, n.runs[0].end_at)


# ---------------------------------------------------------------- routing policies

@pytest.mark.parametrize("algo", ["ring", "hfreduce"])
def test_one_adaptive_job_is_flyersim_run_routing_adaptive_bit_for_bit(algo):
    out = run_scenario(scenario(job("a", algo, "4MiB", gpus=168), '[routing]\npolicy = "adaptive"\n', gpus=168))
    (record,) = run_sizes(load("fireflyer2", gpus=168), [algo], [4 << 20], routing="adaptive")
    mine = out.jobs[0]
    assert mine.runs[0].time == mine.alone.time == record["time_s"]
    assert np.array_equal(mine.runs[0].end_at, mine.alone.end_at)
    assert np.array_equal(mine.runs[0].op_route, mine.alone.op_route)  # the same candidates taken


def test_adaptive_storage_reads_spread_over_the_spines_static_ones_collide():
    def achieved(policy):
        text = ('[[background]]\nname = "s"\nkind = "storage-read"\nleaves = ["z0/leaf0"]\nrate = "20GB/s"\n'
                'duration = "1ms"\nstorage_leaves = ["z0/leaf1"]\nstorage_nodes = 20\n'
                f'[routing]\npolicy = "{policy}"\n')
        f = run_scenario(scenario(job("a", servers=[0]), text, gpus=160)).background[0]
        return f.flows.nbytes / (f.end_at - f.start_at)

    static, adaptive = achieved("ecmp"), achieved("adaptive")
    assert static.min() < 0.75 * 20e9  # two or more reads hashed onto one 24.15 GB/s spine link
    assert adaptive.min() == pytest.approx(20e9, rel=1e-6)  # 20 reads over 20 spines: each at its rate limit


def _adaptive_budget_scenario(policy, servers=40):
    """A job across two leaves and an all-to-all among 40 servers (two leaves of 20): both get alternatives."""
    return scenario(job("a", "rabenseifner", servers=[0, 20]),
                    '[[background]]\nname = "x"\nkind = "all-to-all"\nservers = ' + str(list(range(servers)))
                    + '\nrate = "1GB/s"\nduration = "100us"\n' + f'[routing]\npolicy = "{policy}"\n', gpus=8 * servers)


def _alternatives(composite):
    return int(np.maximum(np.diff(composite.alt_ptr) - 1, 0).sum())


def test_the_memory_estimate_counts_adaptive_routings_alternatives_as_an_upper_bound():
    import tracemalloc

    from flyersim.sim.budget import BYTES_PER_ALTERNATIVE
    outcomes, peaks = {}, {}
    for policy in ("ecmp", "adaptive"):
        tracemalloc.start()
        outcomes[policy] = run_scenario(_adaptive_budget_scenario(policy))
        peaks[policy] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    static, adaptive = outcomes["ecmp"].budget, outcomes["adaptive"].budget
    assert static["alternatives"] == 0 and outcomes["ecmp"].composite.alt_ptr is None
    assert static["ops"] == adaptive["ops"]
    assert adaptive["bytes"] - static["bytes"] == BYTES_PER_ALTERNATIVE * adaptive["alternatives"]
    kept = _alternatives(outcomes["adaptive"].composite)  # 800 flows across the leaves x 19 other spines, + the job's
    assert 800 * 19 < kept <= adaptive["alternatives"]
    assert peaks["adaptive"] - peaks["ecmp"] <= BYTES_PER_ALTERNATIVE * kept  # what they cost, traced by Python


def test_an_adaptive_scenario_over_the_limit_is_refused_where_the_static_one_fits():
    limit = run_scenario(_adaptive_budget_scenario("ecmp", servers=24)).budget["bytes"] + 10**6
    run_scenario(_adaptive_budget_scenario("ecmp", servers=24), max_memory=limit)
    with pytest.raises(ValueError, match=r"alternative routes \(adaptive routing\).*or static routing \(ecmp\)"):
        run_scenario(_adaptive_budget_scenario("adaptive", servers=24), max_memory=limit)  # 552 flows x 31


# ---------------------------------------------------------------- the documented examples

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "experiments" / "scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_scenario_runs(path, capsys):
    assert main(["run", "--scenario", str(path), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["slowdown"] >= 1 - 1e-9 and r["busbw_GBps"] > 0 for r in rows)


def test_there_are_examples():
    assert len(EXAMPLES) >= 2


def test_the_nccl_search_is_shared_only_by_jobs_of_the_same_layout_and_params(monkeypatch):
    from flyersim.sim.app import scenario_runner
    calls = []

    def counting(graph, layout, version):
        calls.append(version)
        return search_of(graph, layout, version)

    search_of = scenario_runner.search_of
    monkeypatch.setattr(scenario_runner, "search_of", counting)
    versions = ['"2.10.3"', '"2.23"', '"2.23"']
    tables = "".join(f'[[jobs]]\nname = "j{i}"\nalgo = "nccl"\nsize = "1MiB"\ngpus = 16\n'
                     f'params = {{ nccl_version = {v} }}\n' for i, v in enumerate(versions))
    run_scenario(scenario(tables, gpus=48))
    assert calls == ["2.10.3", "2.23"]  # one search per distinct params, the third job reuses the second's


def test_classes_whose_sharing_does_not_settle_give_one_error_line(monkeypatch):
    from flyersim.sim.app import scenario_runner

    def gives_up(composite):
        raise RuntimeError("class-fair sharing did not converge (or not to a class-fair allocation within 1e-9)")
    monkeypatch.setattr(scenario_runner, "simulate_composite", gives_up)
    classes = '[classes]\ngold = { weight = 3, sl = 1 }\nbronze = { weight = 1, sl = 2 }\n'
    with pytest.raises(ValueError, match=r"traffic classes .*gold \(SL1, weight 3\).*did not converge"):
        run_scenario(scenario(classes, job("a", servers=[0]), _reads("g", "gold"), _reads("b", "bronze")))
