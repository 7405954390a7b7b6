"""Run `cachegate mock-upstream` and `cachegate serve` as child processes on free ports.

The demo, the evaluation, the benchmark and the tests all drive real processes
through these two classes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHEGATE = [sys.executable, "-m", "gateway.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_text(
    process: subprocess.Popen, log: Path, needle: str, count: int = 1, timeout: float = 180
) -> None:
    """Wait until `needle` appears `count` times in the log; fail if the process exits."""
    deadline = time.monotonic() + timeout
    while log.read_text(errors="replace").count(needle) < count:
        if process.poll() is not None:
            raise RuntimeError(
                f"{log.name}: process exited ({process.returncode}):\n"
                f"{log.read_text(errors='replace')[-4000:]}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"{log.name}: no {needle!r} after {timeout}s")
        time.sleep(0.05)


def stop(process: subprocess.Popen | None, timeout: float = 20) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class MockUpstreamProcess:
    def __init__(self, log_dir: Path, latency_ms: float = 0, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log_dir / f"mock-upstream-{self.port}.log"
        self.process = subprocess.Popen(
            [
                *CACHEGATE,
                "mock-upstream",
                "--port",
                str(self.port),
                "--latency-ms",
                str(latency_ms),
            ],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        wait_for_text(self.process, self.log, "listening")

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            return json.load(r)

    def calls(self, route: str = "chat") -> int:
        return self._get("/mock/calls").get(route, 0)

    def last(self) -> dict:
        return self._get("/mock/last")

    def reset(self) -> None:
        urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{self.port}/mock/reset", method="POST"),
            timeout=10,
        ).close()

    def stop(self) -> None:
        stop(self.process)


class GatewayProcess:
    """A `cachegate serve` process; restartable on the same data dir and port."""

    def __init__(
        self,
        data_dir: Path,
        upstream: str,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        port: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.upstream = upstream
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.args = args or []
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir.parent / f"gateway-{self.port}.log"
        self.log.touch()
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        ready_before = self.log.read_text(errors="replace").count("cachegate listening")
        self.process = subprocess.Popen(
            [
                *CACHEGATE,
                "serve",
                "--config",
                str(REPO / "configs/default.yaml"),
                "--port",
                str(self.port),
                "--upstream",
                self.upstream,
                "--data-dir",
                str(self.data_dir),
                *self.args,
            ],
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=REPO,
        )
        wait_for_text(self.process, self.log, "cachegate listening", ready_before + 1)

    @property
    def admin_token(self) -> str:
        """The admin token: CACHEGATE_ADMIN_TOKEN if given, else the one it generated."""
        return self.env.get("CACHEGATE_ADMIN_TOKEN") or (
            (self.data_dir / "admin-token").read_text().strip()
        )

    @property
    def admin(self) -> dict[str, str]:
        """The headers that open its admin routes."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def stop(self) -> None:
        stop(self.process)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()
