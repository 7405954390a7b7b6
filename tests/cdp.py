"""Headless Chromium driven over the Chrome DevTools protocol (its websocket, through
aiohttp's client): set the viewport, run JavaScript in the page, take screenshots."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

# Headless Chromium as DESIGN.md runs it here: no sandbox (root), and none of the
# background connections this machine's closed network refuses.
HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
FLAGS = (*HEADLESS, "--hide-scrollbars", "--remote-debugging-port=0")


class Chromium:
    """One headless Chromium with a fresh profile; `async with` opens its first page."""

    def __init__(self) -> None:
        binary = shutil.which("chromium")
        if binary is None:
            pytest.fail(
                "chromium is not installed; run `make install` (scripts/install-system-packages.sh)"
            )
        self.profile = tempfile.TemporaryDirectory(ignore_cleanup_errors=True)
        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile.name}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.port = self._devtools_port(Path(self.profile.name) / "DevToolsActivePort")
        self.session: aiohttp.ClientSession | None = None
        self.socket: aiohttp.ClientWebSocketResponse | None = None
        self.ids = itertools.count(1)

    def _devtools_port(self, announced: Path) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if announced.exists() and announced.read_text().strip():
                return int(announced.read_text().split()[0])
            if self.process.poll() is not None:
                pytest.fail(f"chromium exited with {self.process.returncode}")
            time.sleep(0.1)
        pytest.fail("chromium did not open its DevTools port")

    async def __aenter__(self) -> Chromium:
        self.session = aiohttp.ClientSession()
        async with self.session.get(f"http://127.0.0.1:{self.port}/json/list") as listed:
            pages = [t for t in await listed.json() if t["type"] == "page"]
        self.socket = await self.session.ws_connect(
            pages[0]["webSocketDebuggerUrl"], max_msg_size=0
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.socket is not None:
            await self.socket.close()
        if self.session is not None:
            await self.session.close()
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.profile.cleanup()

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result (events in between are skipped)."""
        assert self.socket is not None
        number = next(self.ids)
        await self.socket.send_str(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads((await self.socket.receive(timeout=90)).data)
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if a promise)."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, what: str) -> Any:
        """Poll `expression` until it is truthy (the page loads and refreshes on its own)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                value = await self.evaluate(expression)
            except RuntimeError:  # the page is still loading: no body yet, say
                value = None
            if value:
                return value
            await self.evaluate("new Promise(r => setTimeout(r, 100))")
        pytest.fail(f"the page never showed {what}")

    async def open(self, url: str, width: int, height: int = 900) -> None:
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        await self.call("Page.enable")
        await self.call("Page.navigate", url=url)

    async def screenshot(self, path: Path) -> None:
        """The whole page, as tall as its content, as a PNG."""
        metrics = await self.call("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        shot = await self.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        )
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
