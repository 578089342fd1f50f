"""Typed keys for what the web application shares between handlers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from argentic_edge.web.appliance import Appliance

APPLIANCE = web.AppKey("appliance", Appliance)


@dataclass(frozen=True)
class Identity:
    """Who sent a request: the Supervisor (ingress), a script (bearer token) or a browser session.

    ``csrf`` is the token a mutating request from this identity must carry; bearer-token requests
    have none because they carry no ambient credential a third-party page could ride on.
    """

    kind: Literal["ingress", "token", "session"]
    csrf: str | None
    cookie: str | None = None  # the session cookie, so logout can revoke it


IDENTITY = web.RequestKey("identity", Identity)
