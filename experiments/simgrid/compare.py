"""The ring allreduce on SimGrid's star platform, by SimGrid's native C++ engine and by flyersim, side by side.

Builds ``ring_star.cpp`` against the installed SimGrid (``pkg-config simgrid``; Debian: ``apt-get install
libsimgrid-dev``), then for each rank count runs it and ``flyersim run --topology tests/bench/star.toml``
(the same star: one 12.5 GB/s, 1 us link per rank, full duplex) in fresh processes, checks that the
simulated times agree, and prints one Markdown row per run: simulated time, wall and CPU seconds, peak
resident memory. SimGrid runs its plain max-min model (``network/model:CM02``: no latency or bandwidth
correction factors) without its default 5 % reverse traffic per flow (``network/crosstraffic:0``), which
is what flyersim's flow model computes. Not part of the tests (it takes minutes):

    python experiments/simgrid/compare.py --ranks 512,2048 --size 1GiB
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAR = HERE.parents[1] / "tests" / "bench" / "star.toml"
SIMGRID_CFG = ["--cfg=network/model:CM02", "--cfg=network/crosstraffic:0"]
RTOL = 1e-9


def build(out):
    """Compile the SimGrid driver into ``out``; ``pkg-config`` finds SimGrid's headers and library."""
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "simgrid"], capture_output=True, text=True,
                           check=True).stdout.split()
    subprocess.run(["g++", "-O2", "-o", str(out), str(HERE / "ring_star.cpp"), *flags], check=True)


def measured(argv):
    """Run ``argv``; (stdout, wall s, CPU s, peak RSS MB) of that process alone."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"compare: {argv[0]} failed (exit {os.waitstatus_to_exitcode(status)})")
    return out, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", default="512,2048", help="comma-separated rank counts (default 512,2048)")
    p.add_argument("--size", default="1GiB", help="allreduce bytes per rank (default 1GiB)")
    args = p.parse_args(argv)
    from flyersim.topologies.units import parse_size
    nbytes = int(parse_size(args.size))
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "ring_star"
        build(exe)
        print("| ranks | engine | simulated s | wall s | CPU s | peak RSS MB |")
        print("|---:|---|---:|---:|---:|---:|")
        for n in (int(x) for x in args.ranks.split(",")):
            out, *sg = measured([str(exe), str(n), str(nbytes), *SIMGRID_CFG])
            t_sg = float(out.split()[-1])
            out, *fs = measured([sys.executable, "-m", "flyersim", "run", "--topology", str(STAR), "--gpus", str(n),
                                 "--algo", "ring", "--sizes", str(nbytes), "--format", "csv"])
            header, row = out.strip().splitlines()[:2]
            t_fs = float(dict(zip(header.split(","), row.split(",")))["time_s"])
            for name, t, (wall, cpu, rss) in (("SimGrid (C++ S4U)", t_sg, sg), ("flyersim", t_fs, fs)):
                print(f"| {n:,} | {name} | {t:.12g} | {wall:.2f} | {cpu:.2f} | {rss:,.0f} |", flush=True)
            if abs(t_fs - t_sg) > RTOL * t_sg:
                print(f"compare: simulated times differ at {n} ranks: SimGrid {t_sg!r}, flyersim {t_fs!r}",
                      file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
