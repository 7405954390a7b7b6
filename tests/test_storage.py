"""The data dir under real faults: held by another gateway, damaged files, a read-only
directory and a full disk (small tmpfs mounts), against real `cachegate serve` processes."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from conftest import FAST_SEMANTIC

from tools.processes import CACHEGATE, REPO


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


# `cachegate purge` as the user `nobody`: what it runs is imported first (the interpreter
# may live where `nobody` cannot read), then it gives up root.
PURGE_AS_NOBODY = """
import asyncio, encodings.idna, json, os, sys, urllib.request
from gateway import admin, backends, cli, datadir, store
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
cli.main(["purge", "--data-dir", sys.argv[1], "--all"])
"""


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's own are its user's only); before
    make_gateway in a test's arguments, it goes after the gateways stopped."""
    path = Path(tempfile.mkdtemp())
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_purge_by_another_user_goes_to_the_gateway_it_cannot_signal(open_dir, make_gateway):
    """The gateway runs as root, purge as `nobody`: os.kill(pid, 0) on the gateway is
    EPERM, which says the gateway is there, so the purge goes through it (its memory
    forgets too) instead of taking it for gone."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the purge as another user")
    gw = make_gateway(data_dir=open_dir / "data", env={"CACHEGATE_ADMIN_TOKEN": "purge-token"})
    prompt = f"purged by another user {uuid.uuid4()}"
    assert [ask(gw, prompt), ask(gw, prompt)] == ["MISS", "HIT"]
    done = subprocess.run(
        [sys.executable, "-c", PURGE_AS_NOBODY, str(gw.data_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "CACHEGATE_ADMIN_TOKEN": "purge-token"},
    )
    assert f"purged 1 entries (through {gw.url}/cache/purge)" in done.stdout, done.stderr
    assert ask(gw, prompt) == "MISS"


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small filesystem of its own at `path` (a full disk, a read-only one, for real)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Fill `disk` to the last byte; the file that does it (delete it to free the disk)."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(descriptor, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(descriptor)
    return filler


def stats(gw) -> httpx.Response:
    return httpx.get(f"{gw.url}/cache/stats", headers=gw.admin)


def add_filler_rows(entries_db: Path, count: int) -> None:
    """Rows enough that the file spans many pages (so half of it is missing pages)."""
    conn = sqlite3.connect(entries_db)
    conn.executemany(
        "INSERT INTO entries (key, tenant, namespace, endpoint, model, body, checksum, "
        "created_at, expires_at, last_used_at, size) VALUES (?, 't', 'default', 'chat', "
        "'m', ?, 'x', 0, 0, 0, 1)",
        [(f"filler{i}", os.urandom(2000)) for i in range(count)],
    )
    conn.commit()
    conn.close()


def cut_in_half(path: Path) -> None:
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2)


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size or 4096))


def directory(path: Path) -> None:
    path.unlink()
    (path / "x").mkdir(parents=True)


@pytest.mark.parametrize("name", ["entries.db", "ledger.db"])
@pytest.mark.parametrize("damage", [cut_in_half, random_bytes, directory])
def test_a_damaged_store_file_is_moved_aside_and_the_gateway_starts(make_gateway, name, damage):
    gw = make_gateway()
    prompt = f"damaged {uuid.uuid4()}"
    assert ask(gw, prompt) == "MISS"
    gw.stop()
    if name == "entries.db":
        add_filler_rows(gw.data_dir / name, 300)
    damage(gw.data_dir / name)
    gw.start()
    said = gw.log.read_text()
    assert f"{name} is damaged" in said and "moved aside" in said
    assert "Traceback" not in said, said
    assert list(gw.data_dir.glob(f"{name}.damaged-*"))
    asked = [ask(gw, prompt), ask(gw, prompt)]
    assert asked[1] == "HIT"
    assert asked[0] == ("MISS" if name == "entries.db" else "HIT")
    assert stats(gw).status_code == 200
    assert stats(gw).json()["requests"] >= 2


def test_a_damaged_row_is_dropped_and_the_request_goes_upstream(make_gateway):
    gw = make_gateway()
    prompt = f"damaged row {uuid.uuid4()}"
    assert ask(gw, prompt) == "MISS"
    gw.stop()
    conn = sqlite3.connect(gw.data_dir / "entries.db")
    conn.execute("UPDATE entries SET namespace = CAST(X'64656661756cff' AS TEXT)")
    conn.commit()
    conn.close()
    gw.start()
    listed = httpx.get(f"{gw.url}/cache/entries", headers=gw.admin)
    assert listed.status_code == 200
    assert [ask(gw, prompt), ask(gw, prompt)] == ["MISS", "HIT"]
    assert "Traceback" not in gw.log.read_text()


def test_a_read_only_data_dir_leaves_the_gateway_serving(make_gateway, tmp_path):
    with tmpfs(tmp_path / "disk", "64m") as disk:
        gw = make_gateway(data_dir=disk)
        kept = f"kept {uuid.uuid4()}"
        assert ask(gw, kept) == "MISS"
        gw.stop()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        gw.start()
        prompt = f"read-only {uuid.uuid4()}"
        assert [ask(gw, prompt), ask(gw, prompt)] == ["MISS", "HIT"]  # from memory
        assert stats(gw).status_code in (200, 503)
        purged = httpx.post(f"{gw.url}/cache/purge", headers=gw.admin, json={"all": True})
        assert purged.status_code in (200, 503)
        assert ask(gw, f"another {uuid.uuid4()}") == "MISS"
        said = gw.log.read_text()
        assert "Traceback" not in said, said
        gw.stop()


def test_a_full_disk_leaves_the_gateway_serving_and_keeps_the_ledger_rows(make_gateway, tmp_path):
    with tmpfs(tmp_path / "disk", "16m") as disk:
        gw = make_gateway(data_dir=disk)
        before = stats(gw).json()["requests"]
        filler = fill(disk)
        prompts = [f"full disk {i} {uuid.uuid4()}" for i in range(20)]
        for prompt in prompts:
            assert [ask(gw, prompt), ask(gw, prompt)] == ["MISS", "HIT"]
        purged = httpx.post(f"{gw.url}/cache/purge", headers=gw.admin, json={"all": True})
        assert purged.status_code in (200, 503), purged.text
        assert stats(gw).status_code == 200
        said = gw.log.read_text()
        assert "Traceback" not in said, said
        assert said.count("cannot write the ledger") <= 1  # once a minute, not per request
        assert said.count("serving from memory and upstream") <= 1
        filler.unlink()  # room again: the rows kept in memory are written
        written = before
        for _ in range(100):
            written = stats(gw).json()["requests"]
            if written >= before + 2 * len(prompts):
                break
            time.sleep(0.1)
        assert written >= before + 2 * len(prompts)
        gw.stop()


def test_a_disk_full_at_start_leaves_the_gateway_serving(make_gateway, tmp_path):
    with tmpfs(tmp_path / "disk", "4m") as disk:
        fill(disk)
        gw = make_gateway(data_dir=disk, env={"CACHEGATE_ADMIN_TOKEN": "full-disk-token"})
        prompt = f"full at start {uuid.uuid4()}"
        assert [ask(gw, prompt), ask(gw, prompt)] == ["MISS", "HIT"]
        assert stats(gw).status_code in (200, 503)
        assert "Traceback" not in gw.log.read_text()
        gw.stop()


def closed_by_gateway(sock: socket.socket) -> bytes:
    """Everything the gateway sends until it closes the connection (the socket's own
    timeout, far past the gateway's, fails the test instead of hanging it)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


@pytest.fixture(scope="module")
def impatient(tmp_path_factory, mock_upstream):
    from conftest import Gateway

    env = {
        "CACHEGATE_CLIENT_HEADER_TIMEOUT": "1",
        "CACHEGATE_CLIENT_BODY_TIMEOUT": "1",
        "CACHEGATE_CLIENT_IDLE_TIMEOUT": "8",  # longer than the sockets wait for the others
    }
    gw = Gateway(tmp_path_factory.mktemp("impatient") / "data", mock_upstream.url, env)
    yield gw
    gw.stop()


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Ty"],
    ids=["nothing", "half a header"],
)
def test_a_client_that_sends_no_complete_headers_is_cut_off(impatient, sent):
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=5) as sock:
        sock.sendall(sent)
        assert closed_by_gateway(sock) == b""
    assert impatient.alive()


def test_a_client_that_stops_its_body_halfway_is_cut_off(impatient):
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=5) as sock:
        sock.sendall(head + b'{"model": "gpt-4o-mini", ')
        closed_by_gateway(sock)
    assert impatient.alive()


def test_an_idle_keep_alive_connection_is_closed(impatient):
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_by_gateway(sock).startswith(b"HTTP/1.1 200")
