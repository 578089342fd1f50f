"""A small driver for headless Chromium over the Chrome DevTools Protocol (no selenium).

One browser process, one page, commands over the browser's websocket with a flattened session.
JavaScript errors and Content-Security-Policy violations on the page are collected, so a test can
assert that the page ran cleanly.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
]


class BrowserError(Exception):
    """Chromium refused a command, or a page script failed."""


class Browser:
    def __init__(
        self,
        process: asyncio.subprocess.Process,
        http: aiohttp.ClientSession,
        socket: aiohttp.ClientWebSocketResponse,
    ) -> None:
        self.process = process
        self.http = http
        self.socket = socket
        self.session_id: str | None = None
        self.problems: list[str] = []
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        self._reader = asyncio.create_task(self._read())
        self._drain: asyncio.Task[None] | None = None

    @classmethod
    async def launch(cls, profile: Path, timeout: float = 15.0) -> Browser:
        process = await asyncio.create_subprocess_exec(
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = (await process.stderr.readline()).decode(errors="replace")
                    if not line:
                        raise BrowserError("chromium exited before opening DevTools")
                    found = re.search(r"DevTools listening on (ws://\S+)", line)
                    if found:
                        break
        except BaseException:
            process.kill()
            await process.wait()
            raise
        drain = asyncio.create_task(_drain(process.stderr))
        http = aiohttp.ClientSession()
        socket = await http.ws_connect(found.group(1), max_msg_size=64 * 1024 * 1024)
        browser = cls(process, http, socket)
        browser._drain = drain
        target = await browser.send("Target.createTarget", url="about:blank")
        attached = await browser.send(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        browser.session_id = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            await browser.send(f"{domain}.enable")
        return browser

    async def _read(self) -> None:
        async for frame in self.socket:
            message = json.loads(frame.data)
            if "id" in message:
                future = self._pending.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)
                continue
            self._note(message)
            for entry in list(self._waiters):
                if entry[0] == message.get("method") and not entry[1].done():
                    entry[1].set_result(message.get("params", {}))
                    self._waiters.remove(entry)

    def _note(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.problems.append(
                f"exception: {details.get('exception', {}).get('description')}"
                f" ({details.get('text')})"
            )
        elif method == "Log.entryAdded" and params["entry"].get("source") in (
            "security",
            "violation",
        ):
            self.problems.append(f"{params['entry']['source']}: {params['entry']['text']}")

    async def send(self, method: str, timeout: float = 15.0, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[number] = future
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if self.session_id is not None and not method.startswith("Target."):
            message["sessionId"] = self.session_id
        await self.socket.send_str(json.dumps(message))
        async with asyncio.timeout(timeout):
            answer = await future
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result", {})

    def expect(self, event: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the next ``event``; create it before the action that causes it."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((event, future))
        return future

    async def grant_clipboard(self, origin: str) -> None:
        """Let the page at ``origin`` write and read the clipboard, as a user's click on a
        focused page may (granting is a browser-wide command, sent outside the page's session)."""
        session, self.session_id = self.session_id, None
        try:
            await self.send(
                "Browser.grantPermissions",
                permissions=["clipboardReadWrite", "clipboardSanitizedWrite"],
                origin=origin,
            )
        finally:
            self.session_id = session
        await self.send("Page.bringToFront")

    async def navigate(self, url: str, timeout: float = 15.0) -> None:
        loaded = self.expect("Page.loadEventFired")
        answer = await self.send("Page.navigate", url=url)
        if answer.get("errorText"):
            raise BrowserError(f"cannot open {url}: {answer['errorText']}")
        async with asyncio.timeout(timeout):
            await loaded

    async def evaluate(self, expression: str, timeout: float = 15.0) -> Any:
        answer = await self.send(
            "Runtime.evaluate",
            timeout=timeout,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            raise BrowserError(
                details.get("exception", {}).get("description") or details.get("text")
            )
        return answer["result"].get("value")

    async def wait_for(self, condition: str, timeout: float = 10.0) -> Any:
        """Until the JavaScript ``condition`` is truthy in the page; its value."""
        script = f"""new Promise((resolve, reject) => {{
            const deadline = Date.now() + {int(timeout * 1000)};
            const tick = () => {{
                let value;
                try {{ value = ({condition}); }} catch (error) {{ value = undefined; }}
                if (value) resolve(value);
                else if (Date.now() > deadline) reject(new Error("timed out waiting for: " +
                    {json.dumps(condition)}));
                else setTimeout(tick, 50);
            }};
            tick();
        }})"""
        return await self.evaluate(script, timeout=timeout + 5)

    async def submit_and_load(self, script: str, timeout: float = 15.0) -> None:
        """Run ``script`` (which submits a form or follows a link) and wait for the next page."""
        loaded = self.expect("Page.loadEventFired")
        await self.evaluate(script)
        async with asyncio.timeout(timeout):
            await loaded

    async def log_in(self, password: str) -> None:
        """Type ``password`` into the login page's form and submit it, as a user does."""
        await self.submit_and_load(
            f"document.getElementById('password').value = {json.dumps(password)};"
            "document.getElementById('login-form').submit()"
        )

    async def viewport(self, width: int = 1280, height: int = 900, mobile: bool = False) -> None:
        """Lay the page out as on a screen of this size (a phone's when ``mobile``)."""
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )

    async def screenshot(
        self, path: Path, *, width: int = 1280, height: int = 900, mobile: bool = False
    ) -> None:
        await self.viewport(width, height, mobile)
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.send("Browser.close", timeout=5)
        await self.socket.close()
        await self.http.close()
        self._reader.cancel()
        if self._drain is not None:
            self._drain.cancel()
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    """Keep reading Chromium's stderr so a full pipe never blocks it."""
    while await stream.readline():
        pass
