"""A stand-in for the Home Assistant Supervisor API, for tests and for running the add-on by hand.

It answers the calls argentic-edge makes in add-on mode, the way the Supervisor does:

- ``GET /services/mqtt``: ``{"result": "ok", "data": {...}}``, or HTTP 400 ``Service not
  enabled`` while no broker add-on provides the service (the stand-in can start that way and
  switch to available after a number of requests, like a Mosquitto add-on still booting);
- ``GET /addons/self/info``: this add-on's info (ingress port and entry, IP address, ports);
- anything without ``Authorization: Bearer <token>`` gets HTTP 401.

Run it beside a local Mosquitto and point the app at it:

    python addon/supervisor_standin.py --port 8123 --token dev --mqtt-host 127.0.0.1 --mqtt-port 1883
    SUPERVISOR_TOKEN=dev SUPERVISOR_API=http://127.0.0.1:8123 argentic-edge run --addon
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class SupervisorState:
    """What the stand-in answers; tests change it while the server runs."""

    token: str
    mqtt: dict[str, Any] | None = None
    # Answer "not enabled" to this many /services/mqtt requests before the service appears.
    mqtt_unavailable_for: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    # False: the add-on did not declare the service in config.yaml, so the Supervisor says 403.
    mqtt_access: bool = True
    mqtt_requests: int = 0
    rejected_requests: int = 0
    # Set at every /services/mqtt request, so a test can await one instead of polling.
    mqtt_requested: asyncio.Event = field(default_factory=asyncio.Event)

    def mqtt_answer(self) -> dict[str, Any] | None:
        """Count one request for the service and say what it sees: the data, or None."""
        self.mqtt_requests += 1
        self.mqtt_requested.set()
        if self.mqtt is None or self.mqtt_requests <= self.mqtt_unavailable_for:
            return None
        return self.mqtt


STATE = web.AppKey("state", SupervisorState)


def default_info(ingress_port: int = 8099) -> dict[str, Any]:
    """An ``/addons/self/info`` answer shaped like the Supervisor's for this add-on."""
    return {
        "name": "Argentic Edge",
        "slug": "local_argentic_edge",
        "hostname": "local-argentic-edge",
        "version": "0.1.0",
        "state": "started",
        "ip_address": "172.30.32.1",
        "host_network": True,
        "ingress": True,
        "ingress_port": ingress_port,
        "ingress_entry": "/api/hassio_ingress/standin-ingress-token",
        "ingress_url": "/api/hassio_ingress/standin-ingress-token/",
        "network": {"5555/tcp": 5555, "5556/tcp": 5556, "5557/tcp": 5557, "8099/tcp": None},
    }


@web.middleware
async def _require_token(request: web.Request, handler: Any) -> web.StreamResponse:
    state = request.app[STATE]
    if request.headers.get("Authorization") != f"Bearer {state.token}":
        state.rejected_requests += 1
        return web.json_response({"result": "error", "message": "Unauthorized"}, status=401)
    return await handler(request)


async def _mqtt_service(request: web.Request) -> web.Response:
    if not request.app[STATE].mqtt_access:
        return web.json_response(
            {"result": "error", "message": "No access to mqtt service!"}, status=403
        )
    data = request.app[STATE].mqtt_answer()
    if data is None:
        answer = {"result": "error", "message": "Service not enabled", "data": {}}
        return web.json_response(answer, status=400)
    return web.json_response({"result": "ok", "data": data})


async def _addon_info(request: web.Request) -> web.Response:
    return web.json_response({"result": "ok", "data": request.app[STATE].info})


def create_app(state: SupervisorState) -> web.Application:
    """The stand-in's aiohttp application, answering from ``state``."""
    app = web.Application(middlewares=[_require_token])
    app[STATE] = state
    app.router.add_get("/services/mqtt", _mqtt_service)
    app.router.add_get("/addons/self/info", _addon_info)
    return app


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description="Serve a stand-in for the Home Assistant Supervisor API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--token", required=True, help="the SUPERVISOR_TOKEN clients must send")
    parser.add_argument(
        "--mqtt-host", help="offer an MQTT service on this host (default: none offered)"
    )
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--mqtt-username", default="addons")
    parser.add_argument("--mqtt-password", default="")
    parser.add_argument("--mqtt-ssl", action="store_true")
    parser.add_argument(
        "--mqtt-after",
        type=int,
        default=0,
        help="answer 'not enabled' to this many requests before offering the service",
    )
    parser.add_argument("--ingress-port", type=int, default=8099)
    args = parser.parse_args(argv[1:])
    mqtt = None
    if args.mqtt_host:
        mqtt = {
            "addon": "core_mosquitto",
            "host": args.mqtt_host,
            "port": args.mqtt_port,
            "ssl": args.mqtt_ssl,
            "protocol": "3.1.1",
            "username": args.mqtt_username,
            "password": args.mqtt_password,
        }
    state = SupervisorState(
        token=args.token,
        mqtt=mqtt,
        mqtt_unavailable_for=args.mqtt_after,
        info=default_info(args.ingress_port),
    )
    web.run_app(create_app(state), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
