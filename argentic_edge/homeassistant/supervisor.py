"""The Supervisor's HTTP API, the few calls the add-on needs, and the files the Supervisor reads.

The Mosquitto add-on's address and credentials come from the Supervisor's MQTT service, the
ingress port from ``/addons/self/info``. One small client; the add-on runtime decides when to
call it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from argentic_edge.homeassistant.options import AddonError
from argentic_edge.storage import atomic_write

if TYPE_CHECKING:  # aiohttp loads only when the Supervisor is asked something
    import aiohttp

_LOGGER = logging.getLogger(__name__)

# Written once the web server listens; the Dockerfile's HEALTHCHECK curls the URL inside.
HEALTHZ_URL_PATH = Path("/run/argentic-edge/healthz-url")
SUPERVISOR_URL = "http://supervisor"
# Ingress requests reach the add-on from this address only (the Supervisor on the hassio network).
SUPERVISOR_INGRESS_ADDRESS = "172.30.32.2"


class SupervisorError(AddonError):
    """The Supervisor answered something the add-on cannot work with; retrying will not help."""


class SupervisorUnavailable(SupervisorError):
    """The Supervisor could not be reached or failed for now; worth retrying."""


class SupervisorClient:
    """The few Supervisor API calls the add-on needs, authenticated with SUPERVISOR_TOKEN.

    The API lives at ``http://supervisor`` unless ``SUPERVISOR_API`` says otherwise (as bashio
    honours it), which is how the add-on runs against addon/supervisor_standin.py outside
    Home Assistant.

    Use it as ``async with SupervisorClient() as supervisor:`` or call :meth:`close`. The token
    never appears in logs, exceptions or the repr.
    """

    def __init__(
        self, base_url: str | None = None, token: str | None = None, *, timeout: float = 10.0
    ) -> None:
        base_url = base_url or os.environ.get("SUPERVISOR_API") or SUPERVISOR_URL
        token = token if token is not None else os.environ.get("SUPERVISOR_TOKEN")
        if not token:
            raise SupervisorError(
                "SUPERVISOR_TOKEN is not set: the Supervisor API is only reachable from inside a "
                "Home Assistant add-on (the s6 run script must use with-contenv)"
            )
        self._base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"SupervisorClient({self._base_url!r})"

    async def __aenter__(self) -> SupervisorClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def mqtt_service(self) -> dict[str, Any] | None:
        """The MQTT service (host, port, ssl, username, password, protocol), or None when no
        add-on provides one (yet)."""
        status, body = await self._get("/services/mqtt")
        if status in (400, 404) or (status == 200 and body.get("result") == "error"):
            return None
        data = self._data("/services/mqtt", status, body)
        missing = [key for key in ("host", "port") if key not in data]
        if missing:
            raise SupervisorError(
                f"Supervisor API /services/mqtt: answer lacks {', '.join(missing)}"
            )
        return data

    async def addon_info(self) -> dict[str, Any]:
        """This add-on's info: ``ingress_port``, ``ingress_entry``, ``ip_address``, ``network``..."""
        status, body = await self._get("/addons/self/info")
        return self._data("/addons/self/info", status, body)

    async def wait_for_mqtt_service(
        self,
        *,
        initial_delay: float = 1.0,
        max_delay: float = 30.0,
        jitter: float = 0.2,
        timeout: float | None = None,
    ) -> dict[str, Any] | None:
        """Poll until the MQTT service is provided; None if ``timeout`` seconds pass first.

        At boot the Mosquitto add-on may start after this one, and the Supervisor may be busy:
        both are retried with exponential back-off (doubling from ``initial_delay`` up to
        ``max_delay``, each delay spread by ±``jitter``). A refused token is not retried.
        Cancelling the task stops the wait at once.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        delays = backoff_delays(initial_delay, max_delay, jitter)
        attempt = 0
        while True:
            attempt += 1
            try:
                service = await self.mqtt_service()
                reason = "no add-on provides it yet"
            except SupervisorUnavailable as exc:
                service, reason = None, str(exc)
            if service is not None:
                _LOGGER.info(
                    "MQTT service from the Supervisor: %s:%s (attempt %d)",
                    service["host"],
                    service["port"],
                    attempt,
                )
                return service
            log = _LOGGER.info if attempt == 1 else _LOGGER.debug
            log("Waiting for the Supervisor's MQTT service (%s); attempt %d", reason, attempt)
            delay = next(delays)
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    _LOGGER.warning(
                        "No MQTT service after %.0f s: install the Mosquitto broker add-on "
                        "or set mqtt_host",
                        timeout,
                    )
                    return None
                delay = min(delay, remaining)
            await asyncio.sleep(delay)

    async def _get(self, path: str) -> tuple[int, dict[str, Any]]:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout)
            )
        url = f"{self._base_url}{path}"
        try:
            async with self._session.get(url, headers=self._headers) as response:
                status = response.status
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
        except (TimeoutError, aiohttp.ClientError) as exc:
            reason = f"{exc.__class__.__name__} {exc}".strip()
            raise SupervisorUnavailable(f"Supervisor API {path} unreachable: {reason}") from exc
        if status == 401:
            raise SupervisorError(f"Supervisor API {path} refused the add-on's token (HTTP 401)")
        if status == 403:
            message = body.get("message") if isinstance(body, dict) else None
            hint = (
                "; config.yaml must list it (services: mqtt:want)"
                if path.startswith("/services/")
                else ""
            )
            raise SupervisorError(
                f"Supervisor API {path} denied access (HTTP 403): {message or 'forbidden'}{hint}"
            )
        if status >= 500:
            raise SupervisorUnavailable(f"Supervisor API {path} failed (HTTP {status})")
        return status, body if isinstance(body, dict) else {}

    @staticmethod
    def _data(path: str, status: int, body: Mapping[str, Any]) -> dict[str, Any]:
        data = body.get("data")
        if status != 200 or body.get("result") != "ok" or not isinstance(data, dict):
            message = body.get("message") or "no usable answer"
            raise SupervisorError(f"Supervisor API {path}: HTTP {status}, {message}")
        return data


def backoff_delays(initial: float, maximum: float, jitter: float) -> Iterator[float]:
    """Exponential back-off: ``initial`` doubling up to ``maximum``, each spread by ±``jitter``
    (a fraction) so that many clients restarting together do not retry in step."""
    delay = initial
    while True:
        yield min(maximum, delay) * (1.0 + jitter * (2.0 * random.random() - 1.0))
        delay = min(maximum, delay * 2.0)


def network_ports(info: Mapping[str, Any]) -> dict[int, int | None]:
    """The ports the user published on the add-on's Network tab: container port -> host port,
    None where the user (or the default) switched it off.

    With ``host_network`` Docker maps nothing; the app itself must listen on these numbers.
    """
    ports: dict[int, int | None] = {}
    for key, value in (info.get("network") or {}).items():
        number, _, _protocol = str(key).partition("/")
        ports[int(number)] = int(value) if value else None
    return ports


def write_healthz_url(port: int, path: Path = HEALTHZ_URL_PATH) -> Path:
    """Tell the Dockerfile's HEALTHCHECK where /healthz answers: the web listener on ``port``."""
    return atomic_write(path, f"http://127.0.0.1:{port}/healthz\n", mode=0o644)
