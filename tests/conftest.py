"""Real processes: `cachegate mock-upstream` and `cachegate serve`, on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
CACHEGATE = [sys.executable, "-m", "gateway.cli"]
ARTIFACTS = REPO / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_line(process: subprocess.Popen, log: Path, needle: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise RuntimeError(f"process exited ({process.returncode}):\n{log.read_text()}")
        time.sleep(0.05)
    raise TimeoutError(f"no {needle!r} after {timeout}s:\n{log.read_text()}")


class MockUpstream:
    def __init__(self, tmp: Path, latency_ms: float = 0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = tmp / f"mock-{self.port}.log"
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
        wait_for_line(self.process, self.log, "listening")
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/mock/calls")
                break
            except httpx.ConnectError:
                time.sleep(0.05)

    def calls(self, route: str = "chat") -> int:
        return httpx.get(f"http://127.0.0.1:{self.port}/mock/calls").json().get(route, 0)

    def last(self) -> dict:
        return httpx.get(f"http://127.0.0.1:{self.port}/mock/last").json()

    def reset(self) -> None:
        httpx.post(f"http://127.0.0.1:{self.port}/mock/reset")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Gateway:
    """A `cachegate serve` process; restartable on the same data dir and port."""

    def __init__(
        self,
        data_dir: Path,
        upstream: str,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.upstream = upstream
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "CACHEGATE_SEMANTIC_EMBEDDER": "hashing",
            "CACHEGATE_SEMANTIC_VERIFIER": "cosine",
            **(env or {}),
        }
        self.args = args or []
        self.log = data_dir.parent / f"gateway-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("a") as log:
            log.write("\n--- start ---\n")
        ready_before = self.log.read_text().count("cachegate listening")
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
        deadline = time.monotonic() + 180
        while self.log.read_text().count("cachegate listening") == ready_before:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                raise TimeoutError(self.log.read_text())
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def alive(self) -> bool:
        return httpx.get(f"{self.url}/healthz").status_code == 200

    def client(self, api_key: str = "sk-test-a", **kwargs):
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, **kwargs)

    def async_client(self, api_key: str = "sk-test-a"):
        import openai

        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0)


@pytest.fixture(scope="session")
def mock_upstream(tmp_path_factory) -> Iterator[MockUpstream]:
    mock = MockUpstream(tmp_path_factory.mktemp("mock"))
    yield mock
    mock.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, mock_upstream) -> Iterator[Gateway]:
    """A gateway shared by a module's tests; tests keep apart with unique prompts."""
    gw = Gateway(tmp_path_factory.mktemp("gw") / "data", mock_upstream.url)
    yield gw
    gw.stop()


@pytest.fixture
def make_gateway(tmp_path, mock_upstream):
    """A fresh gateway of the test's own (own data dir), with optional env and args."""
    started: list[Gateway] = []

    def make(
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        upstream: str | None = None,
        data_dir: Path | None = None,
    ) -> Gateway:
        gw = Gateway(
            data_dir or tmp_path / f"data{len(started)}", upstream or mock_upstream.url, env, args
        )
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()
