"""A headless chromium driven over the DevTools protocol with aiohttp's websocket client.

`find_chromium()` says why there is none (for a skip); `Browser.launch()` starts chromium on a
free debugging port with its own temporary profile; `Page` sends commands, waits for
conditions and keeps every console message, uncaught exception and log entry it sees.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> tuple[str | None, str]:
    """(path, "") of a chromium binary, or (None, why there is none)."""
    configured = os.environ.get("GLM_CHROMIUM")
    if configured:
        if os.access(configured, os.X_OK):
            return configured, ""
        return None, f"GLM_CHROMIUM={configured} is not an executable"
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path, ""
    return None, (
        "no chromium on PATH (install it with scripts/setup_browser.sh, which .ci/run calls; "
        "or point GLM_CHROMIUM at a binary)"
    )


@dataclass
class Page:
    ws: aiohttp.ClientWebSocketResponse
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    console: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.json()
            if "id" in data:
                fut = self.pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
                continue
            self._event(data.get("method", ""), data.get("params", {}))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append({"type": params["type"], "text": text})
            if params["type"] in ("error", "assert"):
                self.errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            exc = details.get("exception", {}).get("description", details.get("text"))
            self.errors.append(f"uncaught: {exc}")
        elif method == "Log.entryAdded":
            entry = params["entry"]
            self.console.append({"type": entry["level"], "text": entry.get("text", "")})
            if entry["level"] == "error":
                self.errors.append(
                    f"log {entry.get('source')}: {entry.get('text')} {entry.get('url', '')}"
                )

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        ident = next(self.ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[ident] = fut
        await self.ws.send_json({"id": ident, "method": method, "params": params or {}})
        reply = await asyncio.wait_for(fut, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def eval(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression (promises awaited)."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        """Poll `expression` until it is truthy; return its value."""
        deadline = time.monotonic() + timeout
        while True:
            # a page still loading may not have the elements yet: that is "not yet", not an error
            value = await self.eval(
                f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()"
            )
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout}s for {expression}")
            await asyncio.sleep(0.1)

    async def viewport(self, width: int, height: int) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    async def screenshot(self, path: Path, width: int, height: int | None = None) -> None:
        """A PNG at `width` CSS pixels: the whole page, or its top `height` pixels."""
        if height is None:
            height = int(await self.eval("document.documentElement.scrollHeight"))
        await self.viewport(width, height)
        await asyncio.sleep(0.3)  # let the charts follow the resize
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


@dataclass
class Browser:
    process: subprocess.Popen[bytes]
    port: int
    session: aiohttp.ClientSession

    @classmethod
    async def launch(cls, binary: str, profile: Path) -> Browser:
        args = [
            binary,
            "--headless=new",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--metrics-recording-only",
            "--hide-scrollbars",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1366,900",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # chromium refuses to run as root with its sandbox
        process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if process.poll() is not None:
                raise RuntimeError(f"chromium exited with status {process.returncode}")
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("chromium did not open its debugging port within 30 s")
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        return cls(process, port, aiohttp.ClientSession())

    async def page(self) -> Page:
        async with self.session.get(f"http://127.0.0.1:{self.port}/json/list") as resp:
            targets = await resp.json()
        target = next(t for t in targets if t["type"] == "page")
        ws = await self.session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        page.start()
        for domain in ("Runtime", "Log", "Page"):
            await page.send(f"{domain}.enable")
        return page

    async def close(self) -> None:
        await self.session.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                await asyncio.to_thread(self.process.wait)
