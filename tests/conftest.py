"""Real processes: `cachegate mock-upstream` and `cachegate serve`, on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tools.processes import REPO, GatewayProcess, MockUpstreamProcess

ARTIFACTS = REPO / "test-artifacts"
# Tests of the gateway's plumbing use the tiny deterministic embedder and raw cosine;
# the semantic-quality tests start gateways with the real model (test_semantic.py).
FAST_SEMANTIC = {"CACHEGATE_SEMANTIC_EMBEDDER": "hashing", "CACHEGATE_SEMANTIC_VERIFIER": "cosine"}


class Gateway(GatewayProcess):
    def __init__(
        self,
        data_dir: Path,
        upstream: str,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        super().__init__(data_dir, upstream, {**FAST_SEMANTIC, **(env or {})}, args)

    def alive(self) -> bool:
        return httpx.get(f"{self.url}/healthz").status_code == 200

    def client(self, api_key: str = "sk-test-a", **kwargs):
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, **kwargs)

    def async_client(self, api_key: str = "sk-test-a"):
        import openai

        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0)


@pytest.fixture(scope="session")
def mock_upstream(tmp_path_factory) -> Iterator[MockUpstreamProcess]:
    mock = MockUpstreamProcess(tmp_path_factory.mktemp("mock"))
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
