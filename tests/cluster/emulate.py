"""K emulated nodes on one machine: network namespaces, veth pairs on a bridge, ``tc tbf``-shaped links.

Each node is a network namespace ``<tag>n<k>`` with one interface ``eth0``
(address ``10.213.0.<k+1>/16``), wired by a veth pair to a Linux bridge in the
switch namespace ``<tag>sw``. A ``tbf`` qdisc shapes both ends of every pair
to ``rate``, so every node has a full-duplex NIC of ``rate`` per direction.
With ``spine`` set, nodes ``0 .. K/2-1`` hang off bridge ``br0`` and the rest
off ``br1``, and the two bridges are joined by one veth pair shaped to
``spine`` per direction (an oversubscribed spine when ``spine`` is below
``K/2 x rate``).

Each MPI "node" must look like its own host to MPICH: :meth:`Cluster.mpiexec`
starts hydra's ``mpiexec -launcher manual`` in node 0's namespace, reads the
proxy commands it prints and starts proxy k inside namespace k under
``unshare --uts --ipc`` with hostname ``<tag>-node<k>`` (its own System V /
POSIX IPC, so MPICH cannot take a shared-memory shortcut between nodes) and
``FI_PROVIDER=tcp``. ``MPIR_CVAR_NOLOCAL=1`` (``nolocal=True``) also sends the
messages between ranks of one node over TCP, but then MPICH's shared-memory
split puts every rank alone (checked with MPICH 5.0.2), so a node's ranks can no
longer share host buffers; it is off by default: ranks of one node use shared
memory as on a real host, and only traffic between nodes crosses the shaped
links.

A waiting MPICH rank polls its progress engine without pause; the emulated
nodes' ranks all share this machine's cores, so every rank waiting for a
message would take CPU from those with work to do (copies, reductions, TCP):
eight ranks on two cores took turns, and a message cost 1.3 ms more per
message through the executor than raw MPI at 16 MiB. ``THROTTLE`` (MPICH's ch4
progress throttle, MPICH 5) has a rank yield its core (``sched_yield``) after
polls that find nothing, as a node's own idle cores would let it: that cost
fell to 0.3 ms, user CPU of a 16 MiB validation from 55 to 37 s (one A/B run
each). A caller's ``env`` may override it.

The tbf bucket (``burst``, 256 KiB = 2 ms at 1 Gbit/s) must hold a few TCP
segment trains: with 64 KiB a 16 MiB exchange in both directions at once
reached 41-60 MB/s per direction on a 1 Gbit/s link, with 256 KiB 87-118 MB/s
(one direction alone: 114-120 MB/s). Nothing is addressed outside these namespaces; every command has
a timeout; :meth:`Cluster.down` kills every process group this object started
and deletes the namespaces, also after an error (use the object as a context
manager).

>>> why_not() is None or isinstance(why_not(), str)
True
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

# MPICH 5's ch4 progress throttle (src/mpid/ch4/src/ch4_progress.h): yield the core after empty polls
THROTTLE = {"MPIR_CVAR_CH4_PROGRESS_THROTTLE": "1", "MPIR_CVAR_CH4_PROGRESS_THROTTLE_NO_PROGRESS_COUNT": "1"}

RATE = re.compile(r"^\d+(\.\d+)?(bit|kbit|mbit|gbit)$")
MPIEXEC = Path(sys.executable).parent / "mpiexec"
COMMAND_TIMEOUT = 10  # seconds for any one ip/tc command


def why_not():
    """None if this machine can build emulated nodes, else the reason (for a pytest skip)."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "building network namespaces needs root"
    for tool in ("ip", "tc", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    if not MPIEXEC.exists():
        return f"no hydra mpiexec beside {sys.executable} (pip install mpich)"
    probe = f"fsprobe{os.getpid()}"
    try:
        _sh(["ip", "netns", "add", probe])
        _sh(["ip", "-n", probe, "link", "add", "name", "a", "type", "veth", "peer", "name", "b"])
        _sh(["tc", "-n", probe, "qdisc", "add", "dev", "a", "root", "tbf", "rate", "1gbit", "burst", "64kb",
             "latency", "50ms"])
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as err:
        return f"cannot build a shaped network namespace here: {err}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=COMMAND_TIMEOUT)
    return None


def reap_stale():
    """Delete namespaces a killed cluster left (``fs<pid>...`` whose process is gone and that hold none).

    Returns their names. A process killed outright (SIGKILL, a CI timeout) cannot tear down its own.
    """
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    gone = []
    for line in done.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(r"fs(\d+)(sw|n\d+)", name)
        if not m or Path(f"/proc/{m[1]}").exists():
            continue
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        if not pids.stdout.split():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=COMMAND_TIMEOUT)
            gone.append(name)
    return gone


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _sh(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip() or done.returncode}")


class Cluster:
    """``nodes`` emulated hosts joined by ``rate``-shaped links (``tc`` rate syntax, e.g. ``1gbit``).

    ``burst`` is the tbf bucket in bytes; ``spine`` the rate of the link
    between the two halves, or None for one bridge.
    """

    def __init__(self, nodes=2, rate="1gbit", spine=None, burst=256 * 1024, tag=None):
        if nodes < 1 or nodes > 250:
            raise ValueError(f"nodes must be 1..250, got {nodes}")
        for name, value in (("rate", rate), ("spine", spine)):
            if value is not None and not RATE.match(value):
                raise ValueError(f"{name} must read like 1gbit or 500mbit, got {value!r}")
        if spine is not None and nodes < 2:
            raise ValueError("a spine needs at least 2 nodes")
        self.nodes, self.rate, self.spine, self.burst = nodes, rate, spine, burst
        self.tag = tag or f"fs{os.getpid()}"  # reap_stale reads the owner pid back from the name
        self.namespaces, self.groups = [], []
        self._term = None  # the SIGTERM handler the context manager replaced

    # -- building -------------------------------------------------------------------------------------

    def ns(self, k):
        """Namespace of node ``k``."""
        return f"{self.tag}n{k}"

    def hostname(self, k):
        return f"{self.tag}-node{k}"

    def address(self, k):
        return f"10.213.{(k + 1) // 256}.{(k + 1) % 256}"

    def _shape(self, ns, dev, rate):
        _sh(["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", str(self.burst),
             "latency", "100ms"])

    def up(self):
        """Create the namespaces, bridges and shaped links; returns self."""
        sw = f"{self.tag}sw"
        try:
            self._add_ns(sw)
            bridges = ["br0", "br1"] if self.spine else ["br0"]
            for br in bridges:
                _sh(["ip", "-n", sw, "link", "add", "name", br, "type", "bridge"])
                _sh(["ip", "-n", sw, "link", "set", br, "up"])
            if self.spine:
                _sh(["ip", "-n", sw, "link", "add", "name", "sp0", "type", "veth", "peer", "name", "sp1"])
                for k, br in enumerate(bridges):
                    _sh(["ip", "-n", sw, "link", "set", f"sp{k}", "master", br, "up"])
                    self._shape(sw, f"sp{k}", self.spine)
            for k in range(self.nodes):
                ns, port = self.ns(k), f"v{k}"
                self._add_ns(ns)
                _sh(["ip", "-n", sw, "link", "add", "name", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
                br = bridges[1] if self.spine and k >= self.nodes // 2 else "br0"
                _sh(["ip", "-n", sw, "link", "set", port, "master", br, "up"])
                _sh(["ip", "-n", ns, "addr", "add", f"{self.address(k)}/16", "dev", "eth0"])
                _sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
                _sh(["ip", "-n", ns, "link", "set", "lo", "up"])
                self._shape(ns, "eth0", self.rate)
                self._shape(sw, port, self.rate)
        except BaseException:
            self.down()
            raise
        return self

    def _add_ns(self, name):
        _sh(["ip", "netns", "add", name])
        self.namespaces.append(name)

    # -- running --------------------------------------------------------------------------------------

    def _spawn(self, cmd, **kw):
        proc = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.groups.append(proc)
        return proc

    def mpiexec(self, argv, ranks_per_node=1, timeout=120, env=None, nolocal=False):
        """Run ``argv`` on ``nodes x ranks_per_node`` MPI ranks (consecutive ranks per node).

        Returns ``(returncode, stdout, stderr)``; stdout is the job's output
        without hydra's launch lines. Raises ``TimeoutError`` (after killing
        the job) if it runs longer than ``timeout`` seconds.
        """
        mpich = {"FI_PROVIDER": "tcp", "MPIR_CVAR_NOLOCAL": "1" if nolocal else "0",
                 **{k: (env or {}).get(k, v) for k, v in THROTTLE.items()}}
        env = {**os.environ, **(env or {}), **mpich}
        hosts = ",".join(self.address(k) for k in range(self.nodes))
        launcher = self._spawn(
            ["ip", "netns", "exec", self.ns(0), str(MPIEXEC), "-launcher", "manual", "-hosts", hosts,
             "-ppn", str(ranks_per_node), "-n", str(self.nodes * ranks_per_node),
             *[x for kv in mpich.items() for x in ("-genv", *kv)], *map(str, argv)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + timeout
        proxies = []
        try:
            lines = self._launch_lines(launcher, deadline)
            for k, line in enumerate(lines):
                proxies.append(self._spawn(
                    ["ip", "netns", "exec", self.ns(k), "unshare", "--uts", "--ipc", "sh", "-c",
                     f'hostname "$0" && exec "$@"', self.hostname(k), *line.split()],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))  # ranks' output: via mpiexec
            out, err = launcher.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            self._kill([launcher, *proxies])
            self._reap(grace=0)
            raise TimeoutError(f"MPI job did not finish in {timeout} s: {' '.join(map(str, argv))}") from None
        for p in proxies:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._kill([launcher, *proxies])
        self._reap(grace=5)
        return launcher.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    @staticmethod
    def _launch_lines(launcher, deadline):
        """Hydra's ``HYDRA_LAUNCH:`` proxy commands, read until ``HYDRA_LAUNCH_END``."""
        text = b""
        os.set_blocking(launcher.stdout.fileno(), False)
        try:
            while b"HYDRA_LAUNCH_END" not in text:
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired("mpiexec", 0)
                chunk = launcher.stdout.read()
                if chunk:
                    text += chunk
                elif launcher.poll() is not None:
                    raise RuntimeError(f"mpiexec exited before launching: {launcher.stderr.read().decode()}")
                else:
                    time.sleep(0.02)
        finally:
            os.set_blocking(launcher.stdout.fileno(), True)
        head, _, rest = text.partition(b"HYDRA_LAUNCH_END")
        if rest.strip():
            raise RuntimeError(f"unexpected output before the job started: {rest[:200]!r}")
        return [line.split(":", 1)[1].strip() for line in head.decode().splitlines()
                if line.startswith("HYDRA_LAUNCH:")]

    def _kill(self, procs):
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=COMMAND_TIMEOUT)

    def _in_namespaces(self):
        pids = []
        for ns in self.namespaces:
            done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                                  timeout=COMMAND_TIMEOUT)
            pids += [int(x) for x in done.stdout.split()]
        return pids

    def _reap(self, grace):
        """Kill what is left inside our namespaces (ranks a killed proxy orphaned) after ``grace`` seconds."""
        end = time.monotonic() + grace
        while self._in_namespaces() and time.monotonic() < end:
            time.sleep(0.1)
        for pid in self._in_namespaces():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        end = time.monotonic() + COMMAND_TIMEOUT
        while self._in_namespaces() and time.monotonic() < end:
            time.sleep(0.05)

    def alive(self):
        """Processes this cluster started that still run, plus any process left in its namespaces."""
        return [p.pid for p in self.groups if p.poll() is None] + self._in_namespaces()

    # -- tearing down ---------------------------------------------------------------------------------

    def down(self):
        """Kill what this cluster started and delete its namespaces (safe to call twice)."""
        self._kill(self.groups)
        self._reap(grace=0)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=COMMAND_TIMEOUT)
        self.namespaces = []

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # a kill (SIGTERM) still tears it down
            self._term = signal.signal(signal.SIGTERM, _interrupt)
        return self.up()

    def __exit__(self, *exc):
        self.down()
        if self._term is not None:
            signal.signal(signal.SIGTERM, self._term)
            self._term = None
