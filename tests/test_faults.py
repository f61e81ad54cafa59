"""Routing policies, per-instance slowdowns, failures, late ranks and OS noise (issue 12 items 3 and 4)."""

import numpy as np
import pytest

from flyersim import collectives, topologies
from flyersim.sim.app.runner import layout_of
from flyersim.sim.routes import alternative_bound, build_routes
from flyersim.topologies import Router
from flyersim.topologies.routing import MAX_ALTERNATIVES


# ---------------------------------------------------------------- equal-cost alternatives

@pytest.mark.parametrize("preset, gpus, src, dst", [
    ("fireflyer2", 8 * 21, "n0/gpu0", "n20/gpu3"),     # two leaves of one zone: 20 spines
    ("fireflyer2", 8 * 21, "n0/gpu0", "n1/gpu0"),      # one leaf: one path
    ("fat-tree", 4 * 64, "n0/gpu0", "n63/gpu1"),       # several zones
    ("single-switch", 8, "n0/gpu0", "n1/gpu0"),
])
def test_alternatives_are_distinct_equal_cost_paths_ecmp_first(preset, gpus, src, dst):
    graph = topologies.load(preset, gpus=gpus)
    router = Router(graph)
    paths = router.paths(src, dst)
    assert paths[0] == router.path(src, dst)
    assert 1 <= len(paths) <= MAX_ALTERNATIVES
    assert len({tuple(p) for p in paths}) == len(paths)
    assert {len(p) for p in paths} == {len(paths[0])}
    for p in paths:
        assert p[0] == src and p[-1] == dst and all(graph.has_edge(u, v) for u, v in zip(p, p[1:]))


def test_alternatives_cover_every_spine_and_the_cap_spreads_them():
    router = Router(topologies.load("fireflyer2", gpus=8 * 21))
    spines = [p[7] for p in router.paths("n0/gpu0", "n20/gpu0")]
    assert sorted(spines) == sorted(f"z0/spine{s}" for s in range(20))
    few = [p[7] for p in router.paths("n0/gpu0", "n20/gpu0", limit=4)]
    assert len(set(few)) == 4 and few[0] == spines[0]


def test_inside_a_server_there_is_one_path():
    router = Router(topologies.load("fireflyer2", gpus=16))
    assert router.paths("n0/gpu0", "n0/gpu5") == [router.path("n0/gpu0", "n0/gpu5")]


def test_adaptive_routes_keep_the_ecmp_routes_first_and_add_equal_latency_candidates():
    graph = topologies.load("fireflyer2", gpus=8 * 21)
    schedule = collectives.build("ring", layout_of(graph), "allreduce")
    ecmp, adaptive = build_routes(graph, schedule), build_routes(graph, schedule, routing="adaptive")
    n = ecmp.rlat.size
    assert ecmp.alt_ptr is None
    assert np.array_equal(ecmp.rptr, adaptive.rptr[:n + 1]) and ecmp.names == adaptive.names[:len(ecmp.names)]
    assert np.array_equal(ecmp.op_route, adaptive.op_route)
    sizes = np.diff(adaptive.alt_ptr)
    assert sizes.size == adaptive.rlat.size and sizes.max() == 20 and sizes.min() == 0
    assert not sizes[n:].any()  # the alternatives themselves are fixed
    for r in np.flatnonzero(sizes):
        options = adaptive.alt_idx[adaptive.alt_ptr[r]:adaptive.alt_ptr[r + 1]]
        assert options[0] == r and len(set(options.tolist())) == options.size
        assert np.allclose(adaptive.rlat[options], adaptive.rlat[r], rtol=1e-12)


@pytest.mark.parametrize("algo", ["ring", "rabenseifner", "hfreduce"])
def test_the_alternative_bound_bounds_the_alternatives_adaptive_routing_keeps(algo):
    graph = topologies.load("fireflyer2", gpus=8 * 21)  # two leaves: 20 paths between them, 1 within one
    schedule = collectives.build(algo, layout_of(graph), "allreduce")
    kept = np.maximum(np.diff(build_routes(graph, schedule, routing="adaptive").alt_ptr) - 1, 0).sum()
    assert 0 < kept <= alternative_bound(schedule)
    assert alternative_bound(collectives.build(algo, layout_of(topologies.load("fireflyer2", gpus=8)))) == 0


def test_a_run_whose_alternatives_do_not_fit_is_refused_before_its_routes_are_built(monkeypatch):
    from flyersim.sim.app import runner
    graph = topologies.load("fireflyer2", gpus=320)
    runner.run_sizes(graph, ["rabenseifner"], [1 << 20], max_memory=200 * 10**6)  # about 160 MB estimated

    def never(*args, **kwargs):
        raise AssertionError("routes built")

    monkeypatch.setattr(runner, "build_routes", never)
    with pytest.raises(ValueError, match=r"alternative routes \(adaptive routing\).*or static routing \(ecmp\)"):
        runner.run_sizes(graph, ["rabenseifner"], [1 << 20], max_memory=200 * 10**6, routing="adaptive")


def test_unknown_routing_is_refused():
    graph = topologies.load("fireflyer2", gpus=16)
    schedule = collectives.build("ring", layout_of(graph), "allreduce")
    with pytest.raises(ValueError, match="unknown routing 'static'"):
        build_routes(graph, schedule, routing="static")


# ---------------------------------------------------------------- adaptive routing vs ECMP

def _two_transfers(graph, pairs):
    from flyersim.collectives.schedule import ScheduleBuilder

    layout = layout_of(graph)
    b = ScheduleBuilder(layout, "allreduce", "two-flows")
    names = layout.location_names()
    for src, dst in pairs:
        b.xfer(src=names.index(src), dst=names.index(dst), span=(0, 1, 1), src_buf="data", dst_buf="data")
    return b.build()


def _colliding_pairs(router, servers):
    """Two GPU-to-GPU transfers between the first two leaves (distinct servers) that ECMP puts on one spine."""
    by_spine = {}
    for i in range(20):
        for j in range(20, servers):
            path = router.path(f"n{i}/gpu0", f"n{j}/gpu0")
            by_spine.setdefault(path[7], []).append((i, j))
    for spine, options in sorted(by_spine.items()):
        for a, b in [(a, b) for a in options for b in options]:
            if a[0] != b[0] and a[1] != b[1]:
                return spine, [(f"n{a[0]}/gpu0", f"n{a[1]}/gpu0"), (f"n{b[0]}/gpu0", f"n{b[1]}/gpu0")]
    raise AssertionError("no collision found")


@pytest.mark.parametrize("model", ["flow", "analytic"])
def test_adaptive_routing_splits_two_flows_that_ecmp_hashes_onto_one_spine(model):
    from flyersim.sim.engine import simulate

    # a network slower than everything inside the servers (6.25 GB/s), so the spine links bind
    graph = topologies.load("fireflyer2", gpus=8 * 40, overrides={"network.link_bandwidth": "50Gb/s"})
    spine, pairs = _colliding_pairs(Router(graph), 40)
    schedule = _two_transfers(graph, pairs)
    n = 1 << 26
    ecmp = simulate(schedule, build_routes(graph, schedule), n, 4, model)
    routes = build_routes(graph, schedule, routing="adaptive")
    adaptive = simulate(schedule, routes, n, 4, model, alternatives=(routes.alt_ptr, routes.alt_idx))
    alone = simulate(_two_transfers(graph, pairs[:1]), build_routes(graph, _two_transfers(graph, pairs[:1])),
                     n, 4, model)
    bandwidth = 50e9 / 8
    assert (alone.end_at - alone.start_at)[0] == pytest.approx(n / bandwidth, rel=1e-9)
    assert adaptive.time == pytest.approx(alone.time, rel=1e-12)  # the second flow took another spine
    if model == "flow":  # under the hash they share the spine's links: each at half rate, 2n/B
        assert (ecmp.end_at - ecmp.start_at) == pytest.approx([2 * n / bandwidth] * 2, rel=1e-9)
    assert adaptive.time <= ecmp.time
    taken = {routes.names[k] for r in adaptive.op_route for k in routes.rres[routes.rptr[r]:routes.rptr[r + 1]]}
    assert sum(spine in name for name in taken) == 2  # one flow on the hashed spine (up and down links)


# ---------------------------------------------------------------- one slow link: closed form

def test_half_rate_pcie_under_the_network_rate_changes_nothing_and_a_fifth_gives_the_closed_form():
    """The closed-form cluster of ``test_closed_forms`` (one GPU per server, PCIe 40 GB/s, network 10 GB/s).

    Slowing GPU k's PCIe link (both directions) to beta_s makes every send from k and every send into k
    take T_s = alpha + c beta_s (c = n/p), the others T_f. Ranks k-1 and k then step at T_s, each send
    waiting for the previous (the ring's sendrecv order), while the fast ranks wait on them; with
    T_s - T_f >= c gamma the reduce of each received piece hides behind the previous send except twice:
    rank k's first reduce-scatter send after its first reduce, and the allgather's start, which waits for
    the reduce at k+1 of the last piece k sent. So for p >= 3,
    T = 2(p-1) (alpha + c beta_s) + 2 c gamma. At half rate (20 GB/s) the link is still faster than the
    network and the ring's closed form holds unchanged.
    """
    from test_closed_forms import ALPHA, BETA, GAMMA, cluster
    from flyersim.collectives import costs
    from flyersim.sim.engine import simulate
    from flyersim.sim.stragglers import Stragglers
    from flyersim.topologies.units import GB

    for p in (3, 4, 5, 8, 13):
        graph = cluster(p)
        schedule = collectives.build("ring", layout_of(graph))
        n = 4 * p * 1024 * 3
        c = n / p
        routes = build_routes(graph, schedule)
        for model in ("analytic", "flow"):
            half = simulate(schedule, Stragglers(slow=(("n1/gpu0<->n1/cpu0", 0.5),)).routes(graph, routes), n, 4,
                            model)
            assert half.time == pytest.approx(costs.ring_allreduce(p, n, ALPHA, BETA, GAMMA), rel=1e-9)
            fifth = simulate(schedule, Stragglers(slow=(("n1/gpu0<->n1/cpu0", 0.2),)).routes(graph, routes), n, 4,
                             model)
            beta_s = 1 / (8 * GB)
            assert (beta_s - BETA) * c >= c * GAMMA  # the condition above
            assert fifth.time == pytest.approx(2 * (p - 1) * (ALPHA + c * beta_s) + 2 * c * GAMMA, rel=1e-9), p


def test_a_slow_component_scales_its_pools_and_links_and_a_link_takes_a_bandwidth():
    from flyersim.sim.stragglers import Stragglers

    graph = topologies.load("fireflyer2", gpus=16)
    schedule = collectives.build("hfreduce", layout_of(graph), nbytes=1 << 24)
    routes = build_routes(graph, schedule)
    slowed = Stragglers(slow=(("n1/nic0", 0.5), ("n0/nic0->z0/leaf0", "100Gb/s"))).routes(graph, routes)
    ratio = dict(zip(routes.names, slowed.capacity / routes.capacity))
    assert ratio["n1/nic0 bandwidth"] == 0.5 and ratio["n1/nic0->n1/rp7"] == 0.5 and ratio["n1/rp7->n1/nic0"] == 0.5
    assert ratio["z0/leaf0->n1/nic0"] == 0.5 and ratio["n1/nic0->z0/leaf0"] == 0.5
    assert slowed.capacity[routes.names.index("n0/nic0->z0/leaf0")] == 100e9 / 8
    assert ratio["z0/leaf0->n0/nic0"] == 1.0 and ratio["n0/nic0 bandwidth"] == 1.0
    assert sum(r != 1.0 for r in ratio.values()) == 6
    assert Stragglers().routes(graph, routes) is routes


# ---------------------------------------------------------------- late ranks

@pytest.mark.parametrize("model", ["analytic", "flow"])
@pytest.mark.parametrize("algo", ["ring", "hfreduce", "nccl", "dbtree"])
def test_a_late_rank_delays_the_collective_by_at_most_its_lateness(algo, model):
    """A theorem without contention (fixed op durations: shifting every op by d is a valid schedule, so the
    longest path with release times is at most the old one plus d); under max-min sharing it holds here, but
    not always: the late rank's catch-up traffic gets no priority over the others' (README, stragglers)."""
    from flyersim.sim.app.runner import run_sizes
    from flyersim.sim.stragglers import Stragglers

    graph = topologies.load("fireflyer2", gpus=16)
    late = [0.0, 1e-5, 1e-3, 2e-2]
    records = run_sizes(graph, [algo], [1 << 24], model=model,
                        stragglers=[Stragglers(late=((5, d),)) for d in late])
    base = records[0]["time_s"]
    assert base == run_sizes(graph, [algo], [1 << 24], model=model)[0]["time_s"]
    for d, r in zip(late, records):
        assert r["time_s"] <= base + d * (1 + 1e-12), (d, r["time_s"], base)
        assert r["time_s"] >= d  # nothing of the late rank's finishes before it starts
    assert records[-1]["time_s"] > base  # a lateness longer than the collective shows


def test_a_late_rank_on_the_closed_form_cluster_adds_exactly_what_its_chain_waits():
    """Closed-form cluster (no two transfers share a link, so flow = analytic): rank 0 late by d delays a ring
    allreduce by exactly d when d exceeds one step, since every rank's next send waits on rank 0's chain."""
    from test_closed_forms import ALPHA, BETA, GAMMA, cluster
    from flyersim.collectives import costs
    from flyersim.sim.engine import simulate
    from flyersim.sim.stragglers import Stragglers

    p, n = 5, 4 * 5 * 1024 * 3
    graph = cluster(p)
    schedule = collectives.build("ring", layout_of(graph))
    base = costs.ring_allreduce(p, n, ALPHA, BETA, GAMMA)
    for d in (1e-3, 1e-2):
        for model in ("analytic", "flow"):
            run = simulate(Stragglers(late=((0, d),)).schedule(schedule), graph, n, 4, model)
            assert run.time == pytest.approx(base + d, rel=1e-9)


def test_late_start_releases_the_first_ops_touching_the_rank_only():
    from flyersim.collectives.schedule import Layout
    from flyersim.collectives.transforms import late_start

    layout = Layout(nodes=1, gpus_per_node=4)
    s = collectives.build("tree", layout, "broadcast")  # rank 3 is first touched by a send that waits for others
    late = late_start(s, {3: 1e-3})
    first = np.flatnonzero(late.release > 0)
    assert first.size >= 1
    assert all(3 in (s.src[op], s.dst[op]) for op in first)
    touching = np.flatnonzero((s.src == 3) | (s.dst == 3))
    assert first[0] == touching[0]
    with pytest.raises(ValueError, match="late rank 4 is not a rank 0..3"):
        late_start(s, {4: 1.0})


# ---------------------------------------------------------------- OS noise

def test_noise_slows_only_cpu_driven_engines_per_server_with_a_seed():
    from flyersim.sim.app.runner import run_sizes
    from flyersim.sim.stragglers import NOISY_CLASSES, Stragglers

    graph = topologies.load("fireflyer2", gpus=32)
    seeds = [Stragglers(noise=0.1, seed=s) for s in range(3)]
    base = {a: run_sizes(graph, [a], [1 << 24])[0]["time_s"] for a in ("ring", "hfreduce")}
    ring = run_sizes(graph, ["ring"], [1 << 24], stragglers=seeds)
    assert [r["time_s"] for r in ring] == [base["ring"]] * 3 and [r["seed"] for r in ring] == [0, 1, 2]
    hf = [r["time_s"] for r in run_sizes(graph, ["hfreduce"], [1 << 24], stragglers=seeds)]
    assert min(hf) > base["hfreduce"] and len(set(hf)) == 3
    assert hf == [r["time_s"] for r in run_sizes(graph, ["hfreduce"], [1 << 24], stragglers=seeds)]
    routes = build_routes(graph, collectives.build("hfreduce", layout_of(graph), nbytes=1 << 24))
    x = seeds[0].slowdowns(4, routes)
    draws = np.random.default_rng(0).exponential(0.1, 4)
    for name, cls, value in zip(routes.names, routes.classes, x):
        assert value == (draws[int(name[1])] if cls in NOISY_CLASSES else 0.0)
    noisy = seeds[0].routes(graph, routes)
    assert np.allclose(noisy.capacity, routes.capacity / (1 + x), rtol=1e-15)


# ---------------------------------------------------------------- failures

def test_routes_avoid_a_failed_spine_and_a_failed_cable():
    from flyersim.topologies.faults import check_reachable, fail

    graph = topologies.load("fireflyer2", gpus=8 * 21)
    router = Router(graph)
    hashed = router.path("n0/gpu0", "n20/gpu0")
    other = "z0/spine0" if hashed[7] != "z0/spine0" else "z0/spine1"
    broken = check_reachable(fail(graph, [hashed[7], f"z0/leaf0<->{other}"]))
    assert hashed[7] not in broken and not broken.has_edge("z0/leaf0", other) and broken.has_edge(other, "z0/leaf1")
    for src, dst in [("n0/gpu0", "n20/gpu0"), ("n3/gpu5", "n20/gpu2"), ("n20/gpu1", "n7/gpu0")]:
        for path in Router(broken).paths(src, dst):
            assert hashed[7] not in path and all(broken.has_edge(u, v) for u, v in zip(path, path[1:]))
    assert len(Router(broken).paths("n0/gpu0", "n20/gpu0")) == 18
    assert graph.has_node(hashed[7])  # the original is untouched


@pytest.mark.parametrize("fails, message", [
    (["z0/leaf1"], "ranks 160-167 (server n20) are cut off from the other 160 ranks by the failure of z0/leaf1"),
    (["n3/nic0"], "ranks 24-31 (server n3) are cut off from the other 160 ranks"),
    (["n3/nic0<->z0/leaf0", "n4/nic0->z0/leaf0"], "ranks 24-39 (servers n3-n4) are cut off"),
])
def test_a_collective_that_cannot_complete_names_the_ranks_cut_off(fails, message):
    from flyersim.topologies.errors import TopologyError
    from flyersim.topologies.faults import check_reachable, fail

    graph = topologies.load("fireflyer2", gpus=8 * 21)
    with pytest.raises(TopologyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_reachable(fail(graph, fails))


def test_a_run_with_a_failed_spine_completes_and_matches_ecmp_without_failures_elsewhere(capsys):
    from flyersim.sim.app.cli import main

    assert main(["run", "--gpus", "168", "--algo", "ring", "--sizes", "1MiB", "--fail", "z0/spine3",
                 "--format", "csv"]) == 0
    assert "z0/spine3" not in capsys.readouterr().out


# ---------------------------------------------------------------- experiments/stragglers.py

def test_stragglers_experiment_every_case_and_its_baseline(tmp_path):
    from test_experiments import check_records, run
    from flyersim.experiments import stragglers

    rows = run(stragglers, tmp_path)
    check_records(rows)
    cases = [(c, s) for c, s, _ in stragglers.CASES]
    assert sorted((r["case"], r["severity"], r["requested_algo"], r["gpus"]) for r in rows) == \
        sorted((c, s, a, g) for c, s in cases for a in ("hfreduce", "nccl", "ring", "dbtree") for g in (16, 32))
    for r in rows:
        base = next(b["time_s"] for b in rows if b["case"] == stragglers.BASE
                    and (b["requested_algo"], b["gpus"]) == (r["requested_algo"], r["gpus"]))
        assert r["slowdown_pct"] == pytest.approx(100 * (r["time_s"] / base - 1), rel=1e-7, abs=1e-6)
        if r["case"] == "late rank":  # 1 ms dwarfs a 1 MiB allreduce
            assert r["time_s"] >= {"1 ms": 1e-3, "4 ms": 4e-3}[r["severity"]]


# ---------------------------------------------------------------- scenario tables

SCENE = """
[topology]
preset = "fireflyer2"
gpus = 168
set = {{ "network.link_bandwidth" = "50Gb/s" }}
[[jobs]]
name = "a"
servers = [0, 1, 20]
algo = "{algo}"
size = "4MiB"
{extra}
"""


@pytest.mark.parametrize("algo, extra, run_kwargs, failed", [
    ("hfreduce", '[[stragglers]]\nslow = "n1/gpu0"\nfactor = 0.25\n[[stragglers]]\nnoise = 0.2\nseed = 4',
     {"stragglers": (("n1/gpu0", 0.25),), "noise": 0.2, "seed": 4}, []),
    ("ring", '[routing]\npolicy = "adaptive"', {"routing": "adaptive"}, []),
    ("hfreduce", 'late = { 3 = "1ms", 17 = "50us" }\n[routing]\npolicy = "adaptive"',
     {"routing": "adaptive", "late": ((3, 1e-3), (17, 5e-5))}, []),
    ("ring", '[[faults]]\nfail = "z0/spine0"\n[[faults]]\nfail = "z0/leaf1<->z0/spine1"', {}, ["z0/spine0",
                                                                                            "z0/leaf1<->z0/spine1"]),
])
def test_a_scenario_job_alone_under_what_ifs_is_flyersim_run_with_the_same_options(algo, extra, run_kwargs, failed):
    """One job on servers 0, 1 and 20 (two leaves): alone and in the scenario it takes exactly the time the
    engine gives its schedule under the same routing, failures and stragglers (as flyersim run does)."""
    import dataclasses

    from flyersim.sim.app.scenario_runner import run_scenario
    from flyersim.sim.engine import simulate
    from flyersim.sim.placement import placed
    from flyersim.sim.scenario import loads
    from flyersim.sim.stragglers import Stragglers
    from flyersim.topologies.faults import fail

    out = run_scenario(loads(SCENE.format(algo=algo, extra=extra)))
    (job,) = out.jobs
    assert job.runs[0].time == job.alone.time
    graph = topologies.load("fireflyer2", gpus=168, overrides={"network.link_bandwidth": "50Gb/s"})
    graph = fail(graph, failed) if failed else graph
    routing = run_kwargs.get("routing", "ecmp")
    stragglers = Stragglers(slow=run_kwargs.get("stragglers", ()), late=run_kwargs.get("late", ()),
                            noise=run_kwargs.get("noise", 0.0), seed=run_kwargs.get("seed", 0))
    layout = dataclasses.replace(layout_of(graph), nodes=3)
    schedule = stragglers.schedule(dataclasses.replace(collectives.build(algo, layout, nbytes=4 << 20),
                                                       layout=placed(layout, (0, 1, 20))))
    routes = stragglers.routes(graph, build_routes(graph, schedule, routing=routing))
    alternatives = None if routes.alt_ptr is None else (routes.alt_ptr, routes.alt_idx)
    assert simulate(schedule, routes, 4 << 20, alternatives=alternatives).time == job.alone.time
    if failed:
        used = {routes.names[k] for k in routes.rres}
        assert not any("z0/spine0" in name or "z0/leaf1->z0/spine1" == name for name in used)


def test_the_example_scenarios_what_if_tables_run_when_uncommented(tmp_path, capsys):
    import re
    from pathlib import Path

    from flyersim.sim.app.cli import main

    example = Path(__file__).parents[1] / "experiments" / "scenarios" / "shared_cluster.toml"
    head, tail = example.read_text().split("# Routing, failed parts")
    tail = re.sub(r"^# (\[|\w+ = )", r"\1", tail, flags=re.M)
    assert "[routing]" in tail and "[[faults]]" in tail and tail.count("[[stragglers]]") == 2
    path = tmp_path / "what_if.toml"
    path.write_text(head + "# Routing, failed parts" + tail)
    assert main(["run", "--scenario", str(path)]) == 0
    out = capsys.readouterr().out
    assert "z0/spine3" not in out and "hfreduce" in out


def test_a_server_with_several_nics_routes_around_a_failed_one():
    from pathlib import Path

    from flyersim.topologies.faults import check_reachable, fail

    variant = Path(__file__).parents[1] / "experiments" / "variants" / "fireflyer2-8nic.toml"
    graph = topologies.load(variant, gpus=32)
    assert "n1/nic7" in Router(graph).path("n1/gpu3", "n2/gpu3")
    broken = check_reachable(fail(graph, ["n1/nic7"]))  # its cable fails; the server keeps seven NICs
    router = Router(broken)
    for path in router.paths("n1/gpu3", "n2/gpu3") + [router.path("n2/gpu0", "n1/gpu3")]:
        assert "n1/nic7" not in path and all(broken.has_edge(u, v) for u, v in zip(path, path[1:]))
    assert Router(graph).path("n2/gpu0", "n3/gpu1") == router.path("n2/gpu0", "n3/gpu1")  # elsewhere as before


def test_the_readme_noise_example_is_what_the_command_prints(capsys):
    from pathlib import Path

    from flyersim.sim.app.cli import main

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    command = "flyersim run --gpus 128 --algo hfreduce,nccl --noise 0.05 --seeds 8"
    assert f"$ {command}\n" in readme
    assert main(command.split()[1:]) == 0
    spread = [line for line in capsys.readouterr().out.splitlines() if "over 8 seeds" in line]
    assert len(spread) == 2
    for line in spread:
        assert line in readme, f"README's noise example is stale; the command now prints:\n{line}"


def test_the_table_of_a_run_over_seeds_has_a_seed_column():
    from flyersim.sim.app.report import table
    row = {"bytes": 1024, "count": 256, "type": "float32", "algo": "hfreduce", "time_s": 1e-3, "algbw_GBps": 1.0,
           "busbw_GBps": 1.0, "bottleneck": "x", "bottleneck_util": 0.9}
    head, *lines = table([{**row, "seed": 0}, {**row, "seed": 7}]).splitlines()
    assert head.split()[4] == "seed" and [line.split()[4] for line in lines] == ["0", "7"]
    assert "seed" not in table([row])
