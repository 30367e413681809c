"""tests/python/_cluster.py — a real multi-process loom cluster for the pytest
suites: a head and N node daemons started with the `loom` CLI (so that tests
can kill them as an operator or a crash would), stopped with `loom stop`.

    c = Cluster(tmp_path, daemons=3, cpus=2)   # head (no CPUs of its own) + 3 daemons
    loom.init(c.address, state_dir=c.state_dir)
    ...
    c.kill_daemon(c.daemon_pids()[0])           # SIGKILL, as a crash would
    c.stop()

Every wait is bounded (WAIT seconds).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import List, Optional

WAIT = 30.0


def loom_bin() -> str:
    path = os.environ.get("LOOM_BIN")
    if not path:
        raise RuntimeError("LOOM_BIN is not set (ctest sets it to the build's loom)")
    return path


def _cmdline(pid: int) -> List[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _children(pid: int) -> List[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(d))
    return out


class Cluster:
    """A head and `daemons` node daemons of `cpus` CPUs each, in their own
    state dir under `tmp`."""

    def __init__(self, tmp: os.PathLike, daemons: int = 3, cpus: int = 2,
                 head_cpus: int = 0, heartbeat_timeout_ms: int = 2000,
                 daemon_args: Optional[List[List[str]]] = None) -> None:
        self.state_dir = os.path.join(str(tmp), "state")
        self.cpus = cpus
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        head = ["start", "--head", "--port", "0", "--heartbeat-timeout-ms", str(heartbeat_timeout_ms)]
        head += ["--num-cpus", str(head_cpus)] if head_cpus else ["--no-node"]
        self._run(*head)
        with open(os.path.join(self.state_dir, "address")) as f:
            self.address = f.read().strip()
        for i in range(daemons):
            extra = daemon_args[i] if daemon_args and i < len(daemon_args) else []
            self.add_daemon(*extra)
        want = daemons + (1 if head_cpus else 0)
        self.wait_nodes(want)

    # ---- commands --------------------------------------------------------------

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run([loom_bin(), *args, "--state-dir", self.state_dir],
                           capture_output=True, text=True, timeout=WAIT * 2)
        if check and p.returncode != 0:
            raise RuntimeError(f"loom {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
        return p

    def add_daemon(self, *extra: str) -> None:
        """Start one more node daemon (of `cpus` CPUs) joining the head."""
        self._run("start", "--address", self.address, "--num-cpus", str(self.cpus), *extra)

    def status(self) -> dict:
        return json.loads(self._run("status", "--json").stdout)

    def alive_nodes(self) -> int:
        try:
            return sum(1 for n in self.status()["nodes"] if n["state"] == "alive")
        except (RuntimeError, ValueError, KeyError):
            return -1

    def wait_nodes(self, n: int, timeout: float = WAIT) -> None:
        """Wait until exactly n nodes are alive."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.alive_nodes() == n:
                return
            time.sleep(0.1)
        raise TimeoutError(f"{n} nodes alive: not within {timeout} s (now {self.alive_nodes()})")

    def stop(self) -> None:
        self._run("stop", check=False)

    # ---- processes -------------------------------------------------------------

    def _pids(self) -> List[int]:
        d = os.path.join(self.state_dir, "pids")
        out = []
        for name in os.listdir(d) if os.path.isdir(d) else []:
            if name.isdigit() and _cmdline(int(name)):   # one file per live process, named by its pid
                out.append(int(name))
        return out

    def head_pid(self) -> Optional[int]:
        for p in self._pids():
            if "_head" in _cmdline(p):
                return p
        return None

    def daemon_pids(self) -> List[int]:
        return [p for p in self._pids() if "_node" in _cmdline(p)]

    def executor_pids(self, daemon: Optional[int] = None) -> List[int]:
        """The executors (task and actor processes) of one daemon, or of all."""
        daemons = [daemon] if daemon else self.daemon_pids()
        return [c for d in daemons for c in _children(d) if "executor" in _cmdline(c)]

    @staticmethod
    def kill(pid: int) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def kill_head(self) -> None:
        """SIGKILL the head and wait until it is gone (a zombie counts)."""
        pid = self.head_pid()
        if pid:
            self.kill(pid)
            deadline = time.monotonic() + WAIT
            while _cmdline(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    def start_head(self) -> None:
        """Start the head again on the same state dir and port."""
        port = self.address.rsplit(":", 1)[1]
        self._run("start", "--head", "--no-node", "--port", port,
                  "--heartbeat-timeout-ms", str(self.heartbeat_timeout_ms))

    def restart_head(self) -> None:
        """Kill the head and start it again on the same state dir and port."""
        self.kill_head()
        self.start_head()
