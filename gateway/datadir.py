"""The data dir's own files, besides the stores: who holds it, where it is served, the
admin token, and what happens to a store file that cannot be read.

    gateway.lock   held (flock) by the gateway that serves the dir, for its whole life
    gateway.json   {"url", "pid"} of that gateway, for `cachegate purge --data-dir`
    admin-token    the generated admin token (mode 0600) when CACHEGATE_ADMIN_TOKEN is unset
    *.damaged-<time>  a store file that could not be read at start, moved aside
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import IO

log = logging.getLogger("cachegate")

LOCK_FILE = "gateway.lock"
SERVING_FILE = "gateway.json"
ADMIN_TOKEN_FILE = "admin-token"
COMPLAINT_SECONDS = 60.0


class DataDirInUse(Exception):
    """Another running gateway holds the data dir."""


def hold(data_dir: Path) -> IO[str] | None:
    """Lock `data_dir` for this process's life (keep the returned file open); raises
    DataDirInUse when another gateway holds it. The kernel drops the lock when the process
    ends, however it ends, so a crash leaves nothing to clean up. None when the dir cannot
    take a lock file (read-only): the gateway then serves without writing there anyway."""
    path = data_dir / LOCK_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        lock = path.open("a+")
    except OSError as exc:
        try:
            lock = path.open("r")  # a read-only dir that held a gateway before
        except OSError:
            log.warning("cannot lock %s (%s); serving without the lock", data_dir, exc.strerror)
            return None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise DataDirInUse(
            f"{data_dir} is in use by another running gateway{serving_description(data_dir)}; "
            "stop it, or give this one another --data-dir"
        ) from None
    return lock


def held(data_dir: Path) -> bool:
    """Whether a running gateway holds `data_dir`."""
    try:
        with (data_dir / LOCK_FILE).open("r") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def announce(data_dir: Path, url: str) -> None:
    """Say in the data dir that this process serves it, and where."""
    try:
        (data_dir / SERVING_FILE).write_text(json.dumps({"url": url, "pid": os.getpid()}))
    except OSError as exc:
        log.warning(
            "cannot write %s (%s): `cachegate purge --data-dir` will not find this gateway",
            data_dir / SERVING_FILE,
            exc.strerror,
        )


def withdraw(data_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (data_dir / SERVING_FILE).unlink(missing_ok=True)


def serving_gateway(data_dir: Path) -> str | None:
    """The URL of the running gateway that serves `data_dir`, if one does."""
    try:
        serving = json.loads((data_dir / SERVING_FILE).read_text())
        pid, url = int(serving["pid"]), str(serving["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:  # no such process: a crash left the file
        return None
    except PermissionError:  # EPERM: the process is there, run by another user
        pass
    return url


def serving_description(data_dir: Path) -> str:
    url = serving_gateway(data_dir)
    return f" ({url})" if url else ""


def read_admin_token(data_dir: Path) -> str | None:
    """The token generated into `data_dir`, if there is one."""
    try:
        return (data_dir / ADMIN_TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


def admin_token(configured: str | None, data_dir: Path) -> str:
    """The admin token: the configured one, else the one kept in the data dir, generated
    there (mode 0600) at the first start. A dir that cannot keep it gets one for this run."""
    if configured:
        return configured
    kept = read_admin_token(data_dir)
    if kept:
        return kept
    token = secrets.token_urlsafe(24)
    path = data_dir / ADMIN_TOKEN_FILE
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(token + "\n")
    except FileExistsError:  # another process wrote it first
        return read_admin_token(data_dir) or token
    except OSError as exc:
        with contextlib.suppress(OSError):  # a full disk leaves an empty file: not a token
            path.unlink()
        log.warning(
            "cannot keep the admin token in %s (%s); this run's token is in the dashboard "
            "URL below",
            path,
            exc.strerror,
        )
    return token


def set_aside(path: Path, why: str) -> Path | None:
    """Move a store file that cannot be read out of the way (`<name>.damaged-<time>`,
    with its -wal and -shm files), with one loud log line; None if it could not be moved."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    try:
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{path}{suffix}")
            if source.exists() or source.is_symlink():
                shutil.move(source, f"{aside}{suffix}")
    except OSError as exc:
        log.error("%s is damaged (%s) and cannot be moved aside: %s", path, why, exc.strerror)
        return None
    log.error(
        "%s is damaged (%s): moved aside to %s and a fresh one started; the old one is "
        "kept for inspection",
        path,
        why,
        aside,
    )
    return aside


class Complaints:
    """A problem logged once a minute, not once a request: a full disk (or an upstream
    that is down) would otherwise fill the log (and the disk) with the same line. A disk
    that is nearly full takes some writes and refuses others; the line that it works again
    is rate-limited the same way, so even that flapping is two lines a minute."""

    def __init__(self, logger: logging.Logger, every: float = COMPLAINT_SECONDS) -> None:
        self._log = logger
        self._every = every
        self._last: dict[str, float] = {}  # topic -> when it was last logged
        self._quiet: dict[str, int] = {}  # topic -> how often it was not logged since
        self._open: set[str] = set()  # topics complained about and not resolved since

    def say(self, topic: str, message: str, *args: object) -> None:
        self._open.add(topic)
        self._rate_limited(topic, message, args)

    def resolved(self, topic: str, message: str, *args: object) -> None:
        """Log that `topic` is over, if it was complained about."""
        if topic in self._open:
            self._open.discard(topic)
            self._rate_limited(f"{topic} resolved", message, args)

    def _rate_limited(self, topic: str, message: str, args: tuple[object, ...]) -> None:
        now = time.monotonic()
        last = self._last.get(topic)
        if last is not None and now - last < self._every:
            self._quiet[topic] = self._quiet.get(topic, 0) + 1
            return
        quiet = self._quiet.pop(topic, 0)
        self._last[topic] = now
        suffix = f" ({quiet} more like it in the last minute)" if quiet else ""
        self._log.warning(message + suffix, *args)
