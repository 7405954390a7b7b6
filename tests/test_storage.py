"""The data dir under real faults: held by another gateway, damaged files, a read-only
directory and a full disk (small tmpfs mounts), against real `cachegate serve` processes."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from pathlib import Path

from gateway.processes import CACHEGATE, REPO
from conftest import FAST_SEMANTIC


def serve_once(data_dir: Path, upstream: str, port: int, timeout: float = 120) -> tuple[int, str]:
    """Run `cachegate serve` expecting it to exit on its own: (exit code, everything it said)."""
    done = subprocess.run(
        [
            *CACHEGATE,
            "serve",
            "--config",
            str(REPO / "configs/default.yaml"),
            "--port",
            str(port),
            "--upstream",
            upstream,
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **FAST_SEMANTIC},
    )
    return done.returncode, done.stdout + done.stderr


def ask(gw, prompt: str) -> str:
    raw = gw.client().chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
    )
    return raw.headers["x-cache-status"]


def test_a_second_gateway_on_a_data_dir_in_use_is_refused(make_gateway, mock_upstream):
    first = make_gateway()
    prompt = f"held {uuid.uuid4()}"
    assert ask(first, prompt) == "MISS"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, said = serve_once(first.data_dir, mock_upstream.url, port)
    assert code != 0
    assert "in use by another running gateway" in said and first.url in said
    assert len(said.strip().splitlines()) == 1, said
    # The refused one took nothing away from the first: it still serves, and says where.
    assert (first.data_dir / "gateway.json").exists()
    assert ask(first, prompt) == "HIT"


def test_a_port_in_use_is_one_clear_line(make_gateway, mock_upstream, tmp_path):
    taken = make_gateway()
    code, said = serve_once(tmp_path / "other", mock_upstream.url, taken.port)
    assert code != 0
    assert f"cannot listen on 127.0.0.1:{taken.port}" in said
    assert "Traceback" not in said and "Unclosed" not in said, said


def test_purge_of_a_data_dir_that_does_not_exist_says_so_and_creates_nothing(tmp_path):
    missing = tmp_path / "no-such-dir"
    done = subprocess.run(
        [*CACHEGATE, "purge", "--data-dir", str(missing), "--all"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode != 0
    assert "no entries at" in done.stderr and "purged" not in done.stdout
    assert not missing.exists()
