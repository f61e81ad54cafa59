"""Ctrl-C ends any command promptly with one line and exit code 130, and leaves no partial output.

Each test starts a long command in its own process group and sends SIGINT to the whole group, as a
terminal does; the timeouts only bound a hung test, they are not measurements.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLYERSIM = str(Path(sys.executable).with_name("flyersim"))


def _children(pid):
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _interrupt(argv, ready, limit=120):
    """Start ``argv``, wait until ``ready(proc)`` holds, send SIGINT to its group; (code, stderr, seconds to end)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=ROOT)
    deadline = time.monotonic() + limit
    while not ready(proc) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, f"ended before the interrupt: {proc.communicate()}"
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err, time.monotonic() - sent


def test_ctrl_c_stops_a_run_and_leaves_no_trace_file(tmp_path):
    trace = tmp_path / "t.json"
    started = time.monotonic()
    code, err, took = _interrupt([FLYERSIM, "run", "--gpus", "2048", "--algo", "ring", "--sizes", "1MiB",
                                  "--trace", str(trace)], lambda p: time.monotonic() - started > 4)
    assert code == 130 and err == "flyersim: interrupted\n", err
    assert list(tmp_path.iterdir()) == []
    print(f"run ended {took:.2f} s after SIGINT")


def test_ctrl_c_stops_jobs_workers_at_once(tmp_path):
    script = [sys.executable, str(ROOT / "experiments" / "scaling.py"), "--gpus", "1024,2048", "--algos", "ring",
              "--size", "1MiB", "--jobs", "2", "--out", str(tmp_path), "--no-plot"]
    workers = []

    def two_workers_busy(proc):
        workers[:] = _children(proc.pid)
        return len(workers) >= 2 and time.sleep(1) is None

    code, err, took = _interrupt(script, two_workers_busy)
    assert code == 130 and err.splitlines() == ["scaling.py: interrupted"], err
    assert not any(_alive(pid) for pid in workers)
    assert list(tmp_path.iterdir()) == []
    print(f"sweep ended {took:.2f} s after SIGINT")


# Runs an experiment script as `python experiments/NAME.py` does, with Ctrl-C arriving while its
# imports load (the moment is forced: importing the plots module raises KeyboardInterrupt).
_DURING_IMPORTS = """
import runpy, sys
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "flyersim.experiments.plots":
            raise KeyboardInterrupt
sys.meta_path.insert(0, CtrlC())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "experiments").glob("*.py")
                                          if p.name not in ("__init__.py", "plots.py", "sweep.py")))
def test_ctrl_c_while_an_experiment_script_loads_is_one_line_and_exit_130(script):
    done = subprocess.run([sys.executable, "-c", _DURING_IMPORTS, str(ROOT / "experiments" / script), "--help"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert (done.returncode, done.stderr) == (130, f"{script}: interrupted\n")
