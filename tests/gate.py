"""The solver gate: a fingerprint of every op's end time over a small grid, recorded in ``tests/gate.json``.

A change to the solver or engine must not move any answer (more than 1e-9
relative is a bug; a pure refactoring moves no bit). ``tests/test_gate.py``
re-simulates every case and compares it with the recorded fingerprint:

- ``time_s``, the exact sum of all end times and 16 sampled end times, to
  1e-9 relative (the rule);
- ``end_sha256``, a hash of every op's end time, bit for bit (so no drift
  goes unnoticed, however small).

A deliberate *model* change (a new resource, a preset value, an algorithm's
schedule) legitimately moves answers: re-record in its own commit, saying why,

    python -m tests.gate --write          # the default grid (seconds)
    python -m tests.gate --write --slow   # also the 1,024-GPU cases (about a minute)

run from the repository root. A solver change never re-records. ``python -m
tests.gate`` (no ``--write``) prints what differs without writing.
"""

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).with_name("gate.json")
MiB = 2**20
SIZE = 186 * MiB
ALGOS = ("hfreduce", "nccl", "ring", "dbtree", "hier")
CASES = [("fireflyer2", gpus, algo, SIZE) for gpus in (16, 128) for algo in ALGOS]
SLOW_CASES = [("fireflyer2", 1024, algo, SIZE) for algo in ("hfreduce", "nccl")]
SAMPLES = 16
RTOL = 1e-9


def key(case):
    """The JSON key of a case, e.g. ``fireflyer2/128/ring/195035136``."""
    return "/".join(str(x) for x in case)


def simulate(case):
    """The run of one case (flow model, float32), its schedule streamed (as ``flyersim run`` does)."""
    from flyersim import topologies
    from flyersim.sim.app.runner import run_sizes

    preset, gpus, algo, size = case
    _, (run,) = run_sizes(topologies.load(preset, gpus=gpus), [algo], [size], keep_runs=True, stream=True)
    return run


def fingerprint(run):
    """What the gate keeps of a run: op count, time, an exact sum, samples and a hash of every op's end time."""
    end = np.ascontiguousarray(run.end_at, "<f8")
    picks = np.linspace(0, end.size - 1, SAMPLES).round().astype(int)
    return {"ops": int(end.size), "time_s": float(run.time), "end_fsum": math.fsum(end.tolist()),
            "end_sample": [float(end[i]) for i in picks], "end_sha256": hashlib.sha256(end.tobytes()).hexdigest()}


def differences(expected, got, rtol=RTOL):
    """Human-readable differences between two fingerprints, empty when they agree."""
    out = []
    if expected["ops"] != got["ops"]:
        return [f"{got['ops']} ops, recorded {expected['ops']}"]
    worst = max(_rel(a, b) for a, b in zip([expected["time_s"], expected["end_fsum"], *expected["end_sample"]],
                                           [got["time_s"], got["end_fsum"], *got["end_sample"]]))
    if worst > rtol:
        out.append(f"end times moved by up to {worst:.3g} relative (time {got['time_s']!r}, recorded "
                   f"{expected['time_s']!r})")
    elif expected["end_sha256"] != got["end_sha256"]:
        out.append(f"end times within {rtol:g} relative (up to {worst:.3g}) but not bit for bit")
    return out


def _rel(a, b):
    return abs(a - b) / max(abs(a), abs(b)) if a != b else 0.0


def load():
    """The recorded fingerprints, by case key."""
    return json.loads(DATA.read_text())


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tests.gate", description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help=f"re-record {DATA.name} (model changes only)")
    p.add_argument("--slow", action="store_true", help="include the 1,024-GPU cases")
    args = p.parse_args(argv)
    cases = CASES + (SLOW_CASES if args.slow else [])
    recorded = load() if DATA.exists() else {}
    out, bad = dict(recorded), 0
    for case in cases:
        got = fingerprint(simulate(case))
        diff = differences(recorded[key(case)], got) if key(case) in recorded else ["not recorded"]
        print(f"{key(case)}: {'; '.join(diff) or 'same'}")
        bad += bool(diff)
        out[key(case)] = got
    if args.write:
        DATA.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
        print(f"wrote {DATA}")
    return 1 if bad and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
