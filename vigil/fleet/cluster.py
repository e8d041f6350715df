"""Run NATS servers on this machine: one server or a JetStream cluster of three on 127.0.0.1.

For trying the fleet on one machine (``vigil fleet server``), the tests and ``vigil bench fleet``.
Production runs its own NATS deployment; workers and publishers only need its URLs.

Each server gets free ports (client, cluster route, HTTP monitoring) and its own JetStream folder;
:meth:`LocalCluster.wait_ready` waits for the JetStream meta leader (a condition, not a sleep).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from vigil.errors import ConfigError


def nats_server_binary() -> str | None:
    """The ``nats-server`` program on PATH (Debian puts it in /usr/sbin), or ``None``."""
    return shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if os.access(p, os.X_OK)), None
    )


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Node:
    """One server: its name, ports, folder and process."""

    name: str
    port: int
    cluster_port: int
    http_port: int
    folder: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def jsz(self) -> dict:
        """The server's JetStream report (``/jsz``)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/jsz", timeout=2) as r:  # noqa: S310
            return json.loads(r.read())


class LocalCluster:
    """``size`` NATS servers with JetStream on 127.0.0.1 (``size`` 1: a single server, no cluster).

    >>> LocalCluster(size=2)
    Traceback (most recent call last):
    ...
    vigil.errors.ConfigError: servers: a JetStream cluster needs 1 or 3+ servers (a quorum), got 2
    """

    def __init__(self, size: int = 3, folder: str | Path | None = None, max_store: str = "2G") -> None:
        if size != 1 and size < 3:
            raise ConfigError(f"a JetStream cluster needs 1 or 3+ servers (a quorum), got {size}", key="servers")
        self._tmp = None if folder is not None else tempfile.TemporaryDirectory(prefix="vigil-nats-")
        self.folder = Path(folder if folder is not None else self._tmp.name)
        self.max_store = max_store
        ports = free_ports(3 * size)
        self.nodes = [
            Node(f"n{i + 1}", ports[3 * i], ports[3 * i + 1], ports[3 * i + 2], self.folder / f"n{i + 1}")
            for i in range(size)
        ]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def _config(self, node: Node) -> Path:
        node.folder.mkdir(parents=True, exist_ok=True)
        lines = [
            f"server_name: {node.name}",
            f"listen: 127.0.0.1:{node.port}",
            f"http: 127.0.0.1:{node.http_port}",
            "max_payload: 8MB",  # checkpoints of thousands of channels (see docs/fleet.md)
            f'jetstream {{ store_dir: "{node.folder / "js"}", max_memory_store: 256MB, max_file_store: {self.max_store} }}',
        ]
        if len(self.nodes) > 1:
            routes = ", ".join(f"nats-route://127.0.0.1:{o.cluster_port}" for o in self.nodes if o is not node)
            lines.append(f"cluster {{ name: vigil, listen: 127.0.0.1:{node.cluster_port}, routes: [{routes}] }}")
        path = node.folder / "nats.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, node: Node | None = None) -> LocalCluster:
        """Start every server (or one that was stopped)."""
        binary = nats_server_binary()
        if binary is None:
            raise ConfigError(
                "nats-server is not installed: apt-get install nats-server (or scripts/install-test-deps.sh)",
                key="nats-server",
            )
        for n in [node] if node is not None else self.nodes:
            n.folder.mkdir(parents=True, exist_ok=True)
            log = open(self.folder / f"{n.name}.log", "ab")  # noqa: SIM115 - handed to the server process
            n.process = subprocess.Popen([binary, "-c", str(self._config(n))], stdout=log, stderr=log)
            log.close()
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> str:
        """Wait until every running server reports the same JetStream meta leader; returns its name."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            leaders = set()
            try:
                for n in self.running():
                    meta = n.jsz().get("meta_cluster") or {}
                    leaders.add(meta.get("leader") or (n.name if len(self.nodes) == 1 else ""))
            except OSError as err:
                last = str(err)
                leaders = {""}
            if len(leaders) == 1 and "" not in leaders:
                return leaders.pop()
            time.sleep(0.2)
        raise TimeoutError(f"NATS servers not ready after {timeout_s} s ({last or 'no JetStream leader'})")

    def running(self) -> list[Node]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def leader(self) -> Node:
        """The server that is the JetStream meta leader now."""
        name = self.wait_ready()
        return next(n for n in self.nodes if n.name == name)

    def kill(self, node: Node) -> None:
        """SIGKILL one server (its JetStream folder stays for a restart)."""
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait()
        node.process = None

    def stop(self) -> None:
        for n in self.nodes:
            if n.process is not None and n.process.poll() is None:
                n.process.terminate()
                try:
                    n.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    n.process.kill()
                    n.process.wait()
            n.process = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
