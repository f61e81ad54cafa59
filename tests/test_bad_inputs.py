"""A corpus of bad inputs: each is refused before any work with one line naming the problem, exit code 2.

Cases are data (command line or TOML, expected exit code, words the error must contain) and run
in-process, so the corpus costs seconds. Limits on size use ``--max-memory`` so the answer does not
depend on the memory this machine has free.
"""

from pathlib import Path

import pytest

from flyersim.experiments import scaling
from flyersim.sim.app.cli import main

# ---------------------------------------------------------------- command lines

COMMANDS = [
    # sizes of work: refused up front with the estimate, the limit and a way forward
    ("run --gpus 10000000 --max-memory 8GB", ["1250000 servers", "needs about", "limit of 8 GB", "fewer servers"]),
    ("run --gpus 4096 --sizes 1MiB --max-memory 200MB", ["ring on 4096 GPUs", "50.3M ops", "limit of 0.2 GB",
                                                        "fewer GPUs"]),
    ("run --gpus 4096 --sizes 1MiB --max-memory 8GB --trace ring.json", ["ring on 4096 GPUs", "50.3M ops",
                                                                          "limit of 8 GB"]),
    ("run --gpus 16 --algo hfreduce --param chunks=100000000 --max-memory 8GB", ["hfreduce on 16 GPUs",
                                                                                "6.4G ops", "--param max_chunks"]),
    ("compare --gpus 16,4096 --algos ring --sizes 1MiB --max-memory 200MB", ["ring on 4096 GPUs", "needs about"]),
    ("topo --nodes 100000000 --max-memory 8GB", ["100000000 servers", "needs about"]),
    ("run --max-memory 0", ["--max-memory", "positive"]),
    ("run --max-memory lots", ["--max-memory", "malformed size 'lots'"]),
    # numbers: range and finiteness, with the key named
    ("run --sizes 1e400", ["size '1e400'", "finite"]),
    ("run --sizes 1e20", ["2^53"]),
    ("run --sizes 0", ["sizes must be positive"]),
    ("run -b 1K -e 1M -f nan", ["factor", "nan"]),
    ("run -b 1K -e 1M -f inf", ["factor", "inf"]),
    ("run -b 1M -e 1K", ["begin <= end"]),
    ("run --gpus 0", ["--gpus", "positive integer"]),
    ("run --gpus 12", ["gpus=12", "multiple of the 8 GPUs"]),
    ("run --zones 0", ["--zones", "positive integer"]),
    ("run --set network.link_bandwidth=nan", ["network.link_bandwidth", "finite"]),
    ("run --set network.link_bandwidth=inf", ["network.link_bandwidth", "finite"]),
    ("run --set network.link_bandwidth=0", ["network.link_bandwidth", "positive"]),
    ("run --set parameters.pcie_latency=-1us", ["latency", "malformed time '-1us'"]),
    ("run --gpus 16 --algo hfreduce --param max_chunks=0", ["hfreduce", "max_chunks", "positive integer"]),
    ("run --gpus 16 --algo hfreduce --param chunks=nan", ["hfreduce", "chunks", "type int", "nan"]),
    ("run --gpus 16 --param max_chunks=4", ["no algorithm run", "max_chunks"]),
    ("run --gpus 16 --algo hfreduce --param chunk=4", ["no algorithm run", "'chunk'", "valid: chunks"]),
    # names
    ("run --algo ,", ["--algo", "name at least one algorithm"]),
    ("run --algo nosuch", ["unknown allreduce algorithm 'nosuch'"]),
    ("run --collective broadcast --algo ring", ["unknown broadcast algorithm 'ring'", "tree"]),
    ("compare --gpus 16 --algos ,", ["--algos", "name at least one algorithm"]),
    ("compare --gpus 16,x", ["--gpus", "positive integers"]),
    ("run --preset nosuch", ["unknown preset 'nosuch'"]),
    ("run --topology /no/such.toml", ["no such topology file"]),
    ("run --set server.nvlink_pairs=[[0,0]]", ["nvlink_pairs", "to itself"]),
    ("run --set server.nvlink_pairs=[[0,1],[1,0]]", ["nvlink_pairs", "twice"]),
    # what-ifs: routing, stragglers and faults (sim/app/faults.py)
    ("run --routing static", ["--routing", "invalid choice", "adaptive"]),
    ("run --gpus 16 --slow n9/gpu0=0.5", ["--slow n9/gpu0=0.5", "no component 'n9/gpu0'", "2 servers"]),
    ("run --gpus 16 --slow n0/gpu0<->n0/rp1=0.5", ["no link n0/gpu0<->n0/rp1", "links to n0/rp0"]),
    ("run --gpus 16 --slow n0/gpu0=0", ["--slow n0/gpu0=0", "factor > 0"]),
    ("run --gpus 16 --slow n0/gpu0=nan", ["--slow n0/gpu0=nan", "factor > 0"]),
    ("run --gpus 16 --slow n0/gpu0=fast", ["--slow n0/gpu0=fast", "factor > 0"]),
    ("run --gpus 16 --slow n0/nic0=100Gb/s", ["a component takes a factor", "n0/nic0<->"]),
    ("run --gpus 16 --slow n0/nic0<->z0/leaf0=-1Gb/s", ["--slow", "factor > 0"]),
    ("run --gpus 16 --slow =0.5", ["--slow", "TARGET=FACTOR"]),
    ("run --gpus 16 --late 16=1ms", ["--late 16", "ranks 0..15"]),
    ("run --gpus 16 --late x=1ms", ["--late", "RANK=TIME"]),
    ("run --gpus 16 --late -1=1ms", ["--late", "RANK=TIME", "a rank 0, 1,", "'-1=1ms'"]),
    ("run --gpus 16 --late 3=-1us", ["--late", "malformed time"]),
    ("run --gpus 16 --late 3=1e400", ["--late", "finite"]),
    ("run --gpus 16 --slow n0/gpu0=0.5 --slow n0/gpu0=0.25", ["--slow n0/gpu0=0.25", "already slowed by "
                                                              "--slow n0/gpu0=0.5"]),
    ("run --gpus 16 --late 0=2ms --late 0=1ms", ["--late 0", "given twice"]),
    ("run --gpus 16 --late 0=1e300s", ["--late 0=", "at most 1 hour"]),
    ("run --gpus 16 --late 0=-0.001", ["--late 0=-0.001", ">= 0"]),
    ("run --gpus 16 --slow n0/gpu0=2", ["--slow n0/gpu0=2", "factor <= 1", "bandwidth with its unit"]),
    ("run --gpus 16 --slow n0/gpu0=1e-300", ["--slow n0/gpu0=1e-300", "1e-06 <= factor"]),
    ("run --gpus 16 --noise -0.1", ["--noise", "mean slowdown >= 0"]),
    ("run --gpus 16 --noise inf", ["--noise", "mean slowdown >= 0"]),
    ("run --gpus 16 --seeds 4", ["--seeds needs --noise"]),
    ("run --gpus 16 --noise 0.1 --seeds 0", ["--seeds", "positive integer"]),
    ("run --gpus 16 --noise 0.1 --seeds 100000000", ["--seeds 100000000", "at most 1000"]),
    ("run --gpus 16 --noise 0.1 --seed -1", ["--seed -1", ">= 0"]),
    ("run --gpus 16 --fail z0/spine99", ["--fail z0/spine99", "no component"]),
    ("run --gpus 16 --fail n0/gpu0", ["--fail n0/gpu0", "inside a server", "--slow"]),
    ("run --gpus 16 --fail n0/gpu0<->n0/rp0", ["--fail", "inside a server"]),
    ("run --gpus 16 --fail z0/leaf0", ["cannot complete", "ranks 0-15", "cut off", "z0/leaf0"]),
    ("run --gpus 24 --fail n1/nic0", ["cannot complete", "ranks 8-15 (server n1)", "other 16 ranks"]),
    # output paths: checked before the work
    ("run --trace /no/such/dir/t.json", ["--trace", "/no/such/dir", "does not exist"]),
    ("compare --gpus 16 --plot /no/such/dir/x.png", ["--plot", "does not exist"]),
    ("topo --draw /no/such/dir/x.png", ["--draw", "does not exist"]),
    ("run --trace /proc/t.json", ["--trace", "cannot write /proc/t.json"]),
    ("topo --draw /tmp", ["--draw", "is a folder"]),
]


def _cli(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command,words", COMMANDS, ids=[c for c, _ in COMMANDS])
def test_bad_command_is_one_line_exit_2(capsys, command, words):
    code, out, err = _cli(capsys, command.split())
    assert code == 2, (code, err)
    assert err.startswith("flyersim") and err.count("\n") == 1 and "Traceback" not in err, err
    assert all(word in err for word in words), err
    assert out == ""


# ---------------------------------------------------------------- TOML descriptions

GOOD = """
name = "tiny"
nodes = 2
[server]
gpus = 2
[[server.device]]
name = "cpu0"
kind = "cpu"
[[server.device]]
name = "host0"
kind = "memory"
bandwidth = "100GB/s"
engine = "cpu0"
[[server.device]]
name = "nic0"
kind = "nic"
[[server.link]]
ends = ["gpu*", "cpu0"]
bandwidth = "24GB/s"
kind = "pcie"
[[server.link]]
ends = ["nic0", "cpu0"]
bandwidth = "24GB/s"
kind = "pcie"
[[server.link]]
ends = ["host0", "cpu0"]
bandwidth = "100GB/s"
kind = "memory"
[network]
shape = "single-switch"
link_bandwidth = "25GB/s"
"""

LINK = '\n[[server.link]]\nends = {ends}\nbandwidth = "24GB/s"\nkind = "pcie"\n'


def _with(old, new):
    assert old in GOOD
    return GOOD.replace(old, new, 1)


TOMLS = [
    ("duplicate link", GOOD + LINK.format(ends='["nic0", "cpu0"]'), ["server.link #4 ['nic0', 'cpu0']",
                                                                     "already linked by server.link #2",
                                                                     "one link per pair"]),
    ("duplicate link reversed", GOOD + LINK.format(ends='["cpu0", "gpu1"]'), ["gpu1", "already linked"]),
    ("self-loop", GOOD + LINK.format(ends='["cpu0", "cpu0"]'), ["server.link #4 ['cpu0', 'cpu0']", "to itself"]),
    ("link to unknown device", GOOD + LINK.format(ends='["nic0", "cpu9"]'), ["unknown device 'cpu9'"]),
    ("duplicate device", GOOD + '[[server.device]]\nname = "nic0"\nkind = "nic"\n', ["nic0", "defined twice"]),
    ("duplicate key", _with("gpus = 2", "gpus = 2\ngpus = 4"), ["malformed TOML", "line"]),
    ("unreachable GPU", _with('ends = ["gpu*", "cpu0"]', 'ends = ["gpu0", "cpu0"]'), ["gpu1", "no path"]),
    ("nested arrays", GOOD + "description = " + "[" * 8 + "]" * 8 + "\n", ["nested 10 deep", "at most 6"]),
    ("absurd nesting", GOOD + "description = " + "[" * 5000 + "]" * 5000 + "\n", ["nested hundreds deep"]),
    ("float node count", _with("nodes = 2", "nodes = 1e20"), ["nodes", "whole number"]),
    ("huge node count", _with("nodes = 2", "nodes = 100000000000"), ["100000000000 servers", "needs about"]),
    ("huge server", _with("gpus = 2", "gpus = 100000"), ["server.gpus", "at most 1024", "nodes"]),
    ("NaN bandwidth", _with('bandwidth = "100GB/s"', "bandwidth = nan"), ["host0.bandwidth", "finite"]),
    ("infinite bandwidth", _with('link_bandwidth = "25GB/s"', "link_bandwidth = inf"),
     ["network.link_bandwidth", "finite"]),
    ("overflowing bandwidth", _with('link_bandwidth = "25GB/s"', 'link_bandwidth = "1e999GB/s"'),
     ["network.link_bandwidth", "finite"]),
    ("zero bandwidth", _with('link_bandwidth = "25GB/s"', 'link_bandwidth = "0GB/s"'),
     ["network.link_bandwidth", "positive"]),
    ("negative latency", _with('link_bandwidth = "25GB/s"', 'link_bandwidth = "25GB/s"\nlink_latency = -1'),
     ["network.link_latency", "positive"]),
    ("unknown key", _with("gpus = 2", "gpus = 2\ngpu_count = 2"), ["unknown key 'server.gpu_count'"]),
    ("base not a name", "base = 5\n" + GOOD, ["base", "preset name or .toml path"]),
    ("missing network", GOOD.split("[network]")[0], ["missing [network] table"]),
]


@pytest.mark.parametrize("case,text,words", TOMLS, ids=[c for c, _, _ in TOMLS])
def test_bad_toml_is_one_line_naming_the_file(tmp_path, capsys, case, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, out, err = _cli(capsys, ["topo", "--topology", str(path), "--max-memory", "8GB"])
    assert code == 2, (code, err)
    assert err.startswith(f"flyersim: error: {path}") and err.count("\n") == 1, err
    assert all(word in err for word in words), err


def test_the_corpus_base_toml_is_good(tmp_path, capsys):
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    code, out, err = _cli(capsys, ["run", "--topology", str(path), "--sizes", "1MiB"])
    assert code == 0 and err == "" and "tiny: 4 GPUs on 2 servers" in out


def test_a_binary_file_is_not_toml(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\xff\xfe\x00\x01" * 16)
    code, out, err = _cli(capsys, ["topo", "--topology", str(path)])
    assert code == 2 and err == f"flyersim: error: {path}: not a TOML text file (not UTF-8)\n"


# ---------------------------------------------------------------- experiment scripts

def _script(capsys, argv):
    try:
        code = scaling.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


CSVS = [
    ("missing", None, ["no", "scaling.csv", "to redraw"]),
    ("foreign", "a,b\n1,2\n", ["not this experiment's CSV", "no column"]),
    ("truncated", None, ["line 3", "truncated"]),
    ("empty", "", ["no column"]),
]


@pytest.mark.parametrize("case,text,words", CSVS, ids=[c for c, _, _ in CSVS])
def test_replot_refuses_a_bad_csv(tmp_path, capsys, case, text, words):
    if case == "truncated":  # a real CSV cut in the middle of its second row
        assert _script(capsys, ["--quick", "--no-plot", "--out", str(tmp_path)])[0] == 0
        full = (tmp_path / "scaling.csv").read_text().splitlines()
        text = "\n".join(full[:2] + [full[2][: len(full[2]) // 2]]) + "\n"
    if text is not None:
        (tmp_path / "scaling.csv").write_text(text)
    code, err = _script(capsys, ["--replot", "--out", str(tmp_path)])
    assert code == 2 and err.startswith("scaling.py: error: --replot") and err.count("\n") == 1, err
    assert all(word in err for word in words), err
    assert not (tmp_path / "scaling.png").exists()


@pytest.mark.parametrize("argv,words", [
    (["--size", "1e400"], ["--size", "finite"]),
    (["--gpus", "16,0"], ["--gpus", "positive integer"]),
    (["--algos", "nosuch"], ["unknown allreduce algorithm 'nosuch'"]),
    (["--algos", ","], ["--algos", "expected comma-separated names"]),
    (["--out", "/proc/flyersim-test"], ["--out", "cannot create folder"]),
    (["--set", "network.link_bandwidth=nan"], ["network.link_bandwidth", "finite"]),
])
def test_bad_experiment_arguments(tmp_path, capsys, argv, words):
    argv = ["--quick", "--out", str(tmp_path)] + argv if "--out" not in argv else ["--quick"] + argv
    code, err = _script(capsys, argv)
    assert code == 2 and err.startswith("scaling.py: error:") and err.count("\n") == 1, err
    assert all(word in err for word in words), err


@pytest.mark.parametrize("weight", ["1e308", "1e-300", "0"])
def test_interference_refuses_a_weight_out_of_range(capsys, weight):
    from flyersim.experiments import interference
    with pytest.raises(SystemExit) as exit_:
        interference.main(["--compute-weight", weight])
    err = capsys.readouterr().err.splitlines()[-1]
    assert exit_.value.code == 2 and "--compute-weight" in err, err


def test_crossover_refuses_a_nan_factor(tmp_path, capsys):
    from flyersim.experiments import crossover

    code = crossover.main(["--factor", "nan", "--out", str(tmp_path), "--no-plot"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("crossover.py: error: factor") and "finite" in err and err.count("\n") == 1


def test_a_point_too_big_for_its_share_of_memory_is_refused_before_it_is_built():
    from flyersim.experiments.sweep import point, run_point

    with pytest.raises(ValueError, match="ring on 4096 GPUs needs about 50.3M ops"):
        run_point({**point("fireflyer2", 4096, ["ring"], [1 << 20]), "max_memory": 200 * 10**6})  # streamed: its window


def test_jobs_above_the_cpu_count_are_capped_with_a_note(tmp_path, capsys):
    code, err = _script(capsys, ["--quick", "--no-plot", "--jobs", "1000", "--out", str(tmp_path)])
    assert code == 0, err
    assert "# --jobs 1000 capped at" in err and (tmp_path / "scaling.csv").is_file()


# ---------------------------------------------------------------- scenario files (flyersim run --scenario)

SCENARIO = """
[topology]
preset = "fireflyer2"
gpus = 32
[classes]
fast = { weight = 1, sl = 2 }
[[jobs]]
name = "a"
gpus = 16
algo = "ring"
size = "1MiB"
class = "fast"
[[jobs]]
name = "b"
servers = [2, 3]
algo = "hfreduce"
size = "1MiB"
[[background]]
name = "s"
kind = "storage-read"
jobs = ["a"]
rate = "5GB/s"
duration = "1ms"
storage_leaves = ["z0/leaf1"]
"""


def _scene(old, new):
    assert old in SCENARIO, old
    return SCENARIO.replace(old, new, 1)


SCENARIOS = [
    # keys and names
    ("unknown key", _scene('size = "1MiB"\nclass', 'size = "1MiB"\nrepeats = 2\nclass'),
     ["unknown key 'jobs.a.repeats'", "repeat"]),
    ("unknown top-level key", "jbos = 1\n" + SCENARIO, ["unknown key 'jbos'"]),
    ("missing topology", SCENARIO.replace('[topology]\npreset = "fireflyer2"\ngpus = 32\n', ""),
     ["missing [topology] table"]),
    ("no jobs", SCENARIO.split("[[jobs]]")[0], ["at least one [[jobs]]"]),
    ("two weights on one SL", _scene("sl = 2", "sl = 0").replace("weight = 1", "weight = 4"),
     ["classes.fast", "SL0 already has weight 1", "class default"]),
    ("a number as the name", "name = 5\n" + SCENARIO, ["name: must be a non-empty string", "5"]),
    ("an entry named like a switch", _scene('name = "s"', 'name = "z0/spine"'), ["background[0].name", "'z0/spine'"]),
    ("an entry named like a server", _scene('name = "s"', 'name = "n0"'), ["background[0].name", "a server's or zone's name"]),
    ("a storage leaf twice", _scene('storage_leaves = ["z0/leaf1"]', 'storage_leaves = ["z0/leaf1", "z0/leaf1"]'),
     ["background.s.storage_leaves", "'z0/leaf1' is listed twice"]),
    ("a period without repeats", _scene('size = "1MiB"\nclass', 'size = "1MiB"\nperiod = "1ms"\nclass'),
     ["jobs.a.period", "runs once"]),
    ("name twice", _scene('name = "b"', 'name = "a"'), ["name 'a' is used twice"]),
    ("unknown algorithm", _scene('algo = "ring"', 'algo = "rign"'), ["jobs.a.algo", "unknown allreduce algorithm"]),
    ("unknown parameter", _scene('algo = "hfreduce"', 'algo = "hfreduce"\nparams = { chunk = 4 }'),
     ["jobs.b.params", "no parameter 'chunk'"]),
    ("unknown class", _scene('class = "fast"', 'class = "slow"'), ["jobs.a.class", "unknown class 'slow'"]),
    ("unknown placement", _scene('gpus = 16\nalgo', 'gpus = 16\nplacement = "tight"\nalgo'),
     ["jobs.a.placement", "unknown policy 'tight'"]),
    ("unknown background kind", _scene('kind = "storage-read"', 'kind = "backup"'), ["background.s.kind"]),
    ("background of no job", _scene('jobs = ["a"]', 'jobs = ["c"]'), ["background.s.jobs", "no job named 'c'"]),
    ("unknown routing policy", SCENARIO + '[routing]\npolicy = "magic"\n', ["routing.policy", "'magic'"]),
    ("unknown fault key", SCENARIO + '[[faults]]\nlink = "x"\n', ["unknown key 'faults[0].link'", "fail"]),
    ("unknown failed switch", SCENARIO + '[[faults]]\nfail = "z0/spine99"\n', ["faults[0].fail (z0/spine99)",
                                                                              "no component"]),
    ("failure cuts a job off", SCENARIO + '[[faults]]\nfail = "n2/nic0"\n',
     ["job b cannot complete", "its ranks 0-7 (server n2)", "cut off"]),
    ("failure cuts a background entry off", _scene("servers = [2, 3]", "servers = [2]") +
     '[[background]]\nname = "t"\nkind = "all-to-all"\nservers = [2, 3]\nrate = "1GB/s"\nduration = "1ms"\n'
     '[[faults]]\nfail = "n3/nic0"\n',
     ["background t cannot complete", "its server n3 is cut off from its other 1 server", "failure of n3/nic0"]),
    ("failure cuts storage off", SCENARIO + '[[faults]]\nfail = "z0/leaf1"\n',
     ["background s cannot complete", "no network path from s/st0", "after the failure of z0/leaf1"]),
    ("description a number", "description = 5\n" + SCENARIO, ["description: must be a non-empty string"]),
    ("unknown preset", _scene('preset = "fireflyer2"', 'preset = "fireflyr2"'),
     ["topology: unknown preset 'fireflyr2'"]),
    ("misspelt override", _scene("gpus = 32", 'gpus = 32\nset = { "parameters.xgmi_bandwith" = "1GB/s" }'),
     ["topology: override 'parameters.xgmi_bandwith': no such parameter"]),
    ("straggler without a factor", SCENARIO + '[[stragglers]]\nslow = "n0/gpu0"\n',
     ["stragglers[0]", "give factor = 0.5 or bandwidth"]),
    ("straggler on an unknown part", SCENARIO + '[[stragglers]]\nslow = "n9/gpu0"\nfactor = 0.5\n',
     ["stragglers[0].factor (n9/gpu0=0.5)", "no component"]),
    ("straggler with a zero factor", SCENARIO + '[[stragglers]]\nslow = "n0/gpu0"\nfactor = 0\n',
     ["stragglers[0].factor (n0/gpu0=0)", "factor > 0"]),
    ("negative noise", SCENARIO + '[[stragglers]]\nnoise = -0.1\n', ["stragglers[0].noise", ">= 0"]),
    ("a number as a bandwidth", SCENARIO + '[[stragglers]]\nslow = "n0/gpu0"\nbandwidth = 0.01\n',
     ["stragglers[0].bandwidth", "with its unit"]),
    ("a bandwidth as a factor", SCENARIO + '[[stragglers]]\nslow = "n0/gpu0"\nfactor = "1Gb/s"\n',
     ["stragglers[0].factor", "a number such as 0.5"]),
    ("a factor as a string", SCENARIO + '[[stragglers]]\nslow = "n0/gpu0"\nfactor = "0.5"\n',
     ["stragglers[0].factor", "a number such as 0.5", "'0.5'"]),
    ("slow and noise in one table", SCENARIO + '[[stragglers]]\nslow = "n0/gpu0"\nfactor = 0.5\nnoise = 0.1\n',
     ["stragglers[0]", "slow or noise, not both"]),
    ("two noise tables", SCENARIO + '[[stragglers]]\nnoise = 0.1\n[[stragglers]]\nnoise = 0.2\n',
     ["stragglers[1].noise", "stragglers[0] already gives the noise"]),
    ("one part slowed twice", SCENARIO + '[[stragglers]]\nslow = "n0/gpu0"\nfactor = 0.5\n'
     '[[stragglers]]\nslow = "n0/gpu0"\nfactor = 0.25\n', ["stragglers[1].factor", "already slowed by stragglers[0]"]),
    ("a seed without noise", SCENARIO + '[[stragglers]]\nslow = "n0/gpu0"\nfactor = 0.5\nseed = 3\n',
     ["stragglers[0].seed", "only a noise table"]),
    ("a negative noise seed", SCENARIO + '[[stragglers]]\nnoise = 0.1\nseed = -1\n', ["stragglers[0].seed", ">= 0"]),
    ("late rank among the stragglers", SCENARIO + '[[stragglers]]\nrank = 3\nlate = "1ms"\n',
     ["unknown key 'stragglers[0].late'", "its job's late = { RANK = TIME }"]),
    ("late rank beyond the job", _scene('size = "1MiB"\nclass', 'size = "1MiB"\nlate = { 16 = "1ms" }\nclass'),
     ["jobs.a.late.16", "no rank 16", "job a has ranks 0..15"]),
    ("negative lateness", _scene('size = "1MiB"\nclass', 'size = "1MiB"\nlate = { 3 = -0.001 }\nclass'),
     ["jobs.a.late.3", "must not be negative"]),
    ("negative lateness with a unit", _scene('size = "1MiB"\nclass', 'size = "1MiB"\nlate = { 3 = "-1ms" }\nclass'),
     ["jobs.a.late.3", "malformed time"]),
    ("late rank not a number", _scene('size = "1MiB"\nclass', 'size = "1MiB"\nlate = { rank = 3 }\nclass'),
     ["unknown key 'jobs.a.late.rank'", "ranks of the job", '{ 3 = "200us" }']),
    ("negative late rank", _scene('size = "1MiB"\nclass', 'size = "1MiB"\nlate = { -1 = "1ms" }\nclass'),
     ["unknown key 'jobs.a.late.-1'"]),
    ("late rank as a list", _scene('size = "1MiB"\nclass', 'size = "1MiB"\nlate = [3]\nclass'),
     ["jobs.a.late", "a table of RANK = TIME"]),
    ("late rank given twice", _scene('size = "1MiB"\nclass', 'size = "1MiB"\nlate = { 3 = "1ms", 03 = "2ms" }\nclass'),
     ["jobs.a.late", "rank 3 is given twice"]),
    ("lateness over an hour", _scene('size = "1MiB"\nclass', 'size = "1MiB"\nlate = { 3 = 7200 }\nclass'),
     ["jobs.a.late.3", "at most 1 hour"]),
    ("malformed", SCENARIO + "[[jobs]\n", ["malformed TOML"]),
    # placement
    ("unknown server", _scene("servers = [2, 3]", "servers = [2, 99]"), ["jobs.b.servers", "no server 99",
                                                                          "0..3"]),
    ("overlapping placements", _scene("servers = [2, 3]", "servers = [0, 1]").replace(
        'gpus = 16\nalgo = "ring"', 'servers = [1, 2]\nalgo = "ring"'), ["jobs.b.servers", "server 1",
                                                                         "also in job a", "must not overlap"]),
    ("job larger than the cluster", _scene("gpus = 16\nalgo", "gpus = 1024\nalgo"),
     ["jobs.a", "needs 128 servers", "larger than the cluster's 4"]),
    ("no servers left", _scene("gpus = 16\nalgo", "gpus = 24\nalgo"), ["jobs.a", "needs 3 servers",
                                                                        "only 2 of the cluster's 4 are free"]),
    ("not whole servers", _scene("gpus = 16\nalgo", "gpus = 12\nalgo"), ["jobs.a.gpus", "multiple of the 8"]),
    ("server listed twice", _scene("servers = [2, 3]", "servers = [2, 2]"), ["jobs.b.servers", "twice"]),
    ("both servers and gpus", _scene("servers = [2, 3]", "servers = [2, 3]\ngpus = 16"),
     ["jobs.b", "one of servers, gpus or nodes"]),
    ("storage on a spine", _scene('storage_leaves = ["z0/leaf1"]', 'storage_leaves = ["z0/spine0"]'),
     ["background.s.storage_leaves", "'z0/spine0' is not a leaf"]),
    ("storage beyond the leaf's ports", _scene('storage_leaves = ["z0/leaf1"]',
                                                'storage_leaves = ["z0/leaf0"]\nstorage_nodes = 30'),
     ["background.s.storage_leaves", "leaf z0/leaf0 has 16 free ports of 40"]),
    ("background on an unknown leaf", _scene('jobs = ["a"]', 'leaves = ["z0/leaf7"]'),
     ["background.s.leaves", "no servers on 'z0/leaf7'"]),
    # numbers
    ("negative size", _scene('size = "1MiB"\nclass', 'size = "-1MiB"\nclass'), ["jobs.a.size", "malformed size"]),
    ("zero size", _scene('size = "1MiB"\nclass', 'size = 0\nclass'), ["jobs.a.size", "positive"]),
    ("size below an element", _scene('size = "1MiB"\nclass', 'size = 2\nclass'), ["jobs.a.size", "one float32"]),
    ("zero repeat", _scene('size = "1MiB"\nclass', 'size = "1MiB"\nrepeat = 0\nclass'),
     ["jobs.a.repeat", "whole number >= 1"]),
    ("zero period", _scene('size = "1MiB"\nclass', 'size = "1MiB"\nperiod = "0s"\nclass'),
     ["jobs.a.period", "positive"]),
    ("negative start", _scene('size = "1MiB"\nclass', 'size = "1MiB"\nstart = "-1ms"\nclass'),
     ["jobs.a.start", "malformed time"]),
    ("NaN rate", _scene('rate = "5GB/s"', "rate = nan"), ["background.s.rate", "finite"]),
    ("zero duration", _scene('duration = "1ms"', 'duration = "0s"'), ["background.s.duration", "positive"]),
    ("negative weight", _scene("weight = 1", "weight = -1"), ["classes.fast.weight", "0.001..1000"]),
    ("infinite weight", _scene("weight = 1", "weight = inf"), ["classes.fast.weight", "0.001..1000"]),
    ("huge weight", _scene("weight = 1", "weight = 1e308"), ["classes.fast.weight", "0.001..1000", "0..255"]),
    ("tiny weight", _scene("weight = 1", "weight = 1e-300"), ["classes.fast.weight", "0.001..1000"]),
    ("start after an hour", _scene('size = "1MiB"\nclass', 'size = "1MiB"\nstart = "1e12s"\nclass'),
     ["jobs.a.start", "at most 1 hour"]),
    ("period over an hour", _scene('size = "1MiB"\nclass', 'size = "1MiB"\nrepeat = 2\nperiod = "1e6s"\nclass'),
     ["jobs.a.period", "at most 1 hour"]),
    ("background for 1e30 s", _scene('duration = "1ms"', 'duration = "1e30s"'),
     ["background.s.duration", "at most 1 hour"]),
    ("service level 16", _scene("sl = 2", "sl = 16"), ["classes.fast.sl", "0..15"]),
    ("float gpus", _scene("gpus = 16\nalgo", "gpus = 16.5\nalgo"), ["jobs.a.gpus", "whole number"]),
    # sizes of work
    ("too many ops", _scene('size = "1MiB"\nclass', 'size = "1MiB"\nrepeat = 1000000\nclass'),
     ["scenario bad (2 jobs, 1000001 collectives, 2 background flows)", "needs about", "limit of 8 GB",
      "fewer repeats", "params = { max_chunks = ... }"]),
    ("huge cluster", _scene("gpus = 32", "gpus = 800000000"), ["100000000 servers", "needs about"]),
]


@pytest.mark.parametrize("case,text,words", SCENARIOS, ids=[c for c, _, _ in SCENARIOS])
def test_bad_scenario_is_one_line_naming_the_file_and_key(tmp_path, capsys, case, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, out, err = _cli(capsys, ["run", "--scenario", str(path), "--max-memory", "8GB"])
    assert code == 2, (code, err)
    assert err.startswith(f"flyersim: error: {path}: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert all(word in err for word in words), err
    assert out == ""


def test_the_figure_formats_are_matplotlibs():
    from matplotlib.backend_bases import FigureCanvasBase

    from flyersim.sim.outputs import FIGURE_FORMATS
    assert set(FIGURE_FORMATS) == set(FigureCanvasBase.get_supported_filetypes())


def test_a_failure_is_checked_per_job(tmp_path, capsys):
    """Job b alone on n2 needs no network: failing n2's NIC cuts no job off, so the scenario runs."""
    path = tmp_path / "ok.toml"
    path.write_text(_scene("servers = [2, 3]", "servers = [2]") + '[[faults]]\nfail = "n2/nic0"\n')
    code, out, err = _cli(capsys, ["run", "--scenario", str(path)])
    assert code == 0 and err == "" and "2 jobs, 1 background" in out, err


def test_the_corpus_scenario_is_good(tmp_path, capsys):
    path = tmp_path / "good.toml"
    path.write_text(SCENARIO)
    code, out, err = _cli(capsys, ["run", "--scenario", str(path)])
    assert code == 0 and err == "" and "2 jobs, 1 background" in out


@pytest.mark.parametrize("argv,words", [
    (["run", "--scenario", "/no/such.toml"], ["--scenario", "no such file"]),
    (["run", "--scenario", str(Path(__file__).resolve().parents[1] / "experiments" / "scenarios")],
     ["--scenario", "is a folder", ".toml files"]),
    (["run", "--scenario", "x.toml", "--algo", "ring", "--gpus", "16"], ["--scenario", "drop --gpus, --algo"]),
    (["run", "--scenario", "x.toml", "--slow", "n0/gpu0=0.5", "--routing", "adaptive"],
     ["--scenario", "drop --routing, --slow", "(in the file: --routing: [routing] policy; --slow: [[stragglers]] slow)"]),
    (["run", "--scenario", "x.toml", "--late", "3=1ms"], ["drop --late", "--late: a job's late = { RANK = TIME }"]),
    (["run", "--plot", "/tmp/x.png"], ["--plot", "give --scenario"]),
    (["run", "--scenario", "x.toml", "--plot", "/no/such/dir/x.png"], ["--plot", "does not exist"]),
    (["run", "--scenario", "x.toml", "--plot", "x.txt"], ["--plot", "cannot draw a figure as x.txt"]),
    (["compare", "--gpus", "16", "--plot", "grid.txt"], ["--plot", "cannot draw a figure as grid.txt"]),
])
def test_bad_scenario_command_lines(capsys, argv, words):
    code, out, err = _cli(capsys, argv)
    assert code == 2 and err.count("\n") == 1 and all(word in err for word in words), err
