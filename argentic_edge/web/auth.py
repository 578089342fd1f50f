"""Who may use the web: the Supervisor through ingress, scripts with the API token, and browsers
that logged in with the password. Plus the login form, its rate limit and logout.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from argentic_edge.config import Secret
from argentic_edge.web.credentials import SESSION_LIFETIME, Credentials
from argentic_edge.web.keys import IDENTITY, Identity
from argentic_edge.web.pages import render_login

log = logging.getLogger(__name__)

SUPERVISOR_ADDRESS = "172.30.32.2"
SESSION_COOKIE = "argentic_edge_session"
PAGES = frozenset({"index", "config"})
PUBLIC = frozenset({"healthz", "login", "login_post", "static"})
PUBLIC_IN_INGRESS = frozenset({"healthz"})
MAX_PASSWORD = 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class _Attempts:
    failures: deque[float] = field(default_factory=deque)
    lockouts: int = 0
    locked_until: float = 0.0


class LoginLimiter:
    """At most ``attempts`` password checks per ``window`` seconds and client address; each
    lockout doubles the next one (up to ``max_lockout``). An attempt is taken before its password
    is checked (``attempt``), so parallel logins cannot all pass the limit while their checks run;
    a success gives the address a clean slate. Bounded: the oldest addresses are forgotten.

    Failed logins are logged at most once a ``window`` in all (with the number since the last
    such warning): the status page keeps only the last 50 warnings, and failed logins from many
    addresses must not push the others out. ``failed_total`` counts wrong passwords and
    ``refused_total`` the attempts answered 429."""

    def __init__(
        self,
        attempts: int = 5,
        window: float = 60.0,
        max_lockout: float = 900.0,
        max_clients: int = 1024,
    ) -> None:
        self.attempts, self.window, self.max_lockout = attempts, window, max_lockout
        self.max_clients = max_clients
        self._clients: OrderedDict[str, _Attempts] = OrderedDict()
        self.failed_total = 0
        self.refused_total = 0
        self._unreported = 0
        self._warned_at: float | None = None

    def attempt(self, client: str, now: float) -> float:
        """Take one attempt for ``client``: 0 when its password may be checked now (the attempt
        is then counted, whatever the outcome), else the seconds until it may try again."""
        state = self._clients.setdefault(client, _Attempts())
        self._clients.move_to_end(client)
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        if state.locked_until > now:
            self.refused_total += 1
            return state.locked_until - now
        if state.locked_until and now - state.locked_until > self.max_lockout:
            state.lockouts = 0  # quiet for long enough: start afresh
        while state.failures and now - state.failures[0] > self.window:
            state.failures.popleft()
        state.failures.append(now)
        if len(state.failures) >= self.attempts:
            state.locked_until = now + min(self.window * 2**state.lockouts, self.max_lockout)
            state.lockouts += 1
            state.failures.clear()
        return 0.0

    def failed(self, client: str, now: float) -> None:
        """A wrong password: counted; warned about at most once a window."""
        self.failed_total += 1
        self._unreported += 1
        if self._warned_at is not None and now - self._warned_at < self.window:
            return
        log.warning(
            "web: failed login from %s (%d since the last such warning; at most one is "
            "logged a minute, status: web.logins.failed counts them all)",
            client,
            self._unreported,
        )
        self._warned_at, self._unreported = now, 0

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)

    def to_dict(self) -> dict[str, int]:
        return {"failed": self.failed_total, "refused": self.refused_total}


class Access:
    """The access rules of one web application (mode, tokens, credentials, rate limit)."""

    def __init__(self, *, ingress: bool, supervisor_address: str, api_token: Secret | None) -> None:
        self.ingress = ingress
        self.supervisor_address = supervisor_address
        self._token_digest = (
            hashlib.sha256(api_token.reveal().encode()).digest() if api_token is not None else None
        )
        self.credentials: Credentials | None = None  # loaded at startup (file I/O)
        self.limiter = LoginLimiter()

    def _bearer_ok(self, header: str) -> bool:
        if self._token_digest is None or header[:7].lower() != "bearer ":
            return False
        given = hashlib.sha256(header[7:].strip().encode()).digest()
        return hmac.compare_digest(given, self._token_digest)

    def identify(self, request: web.Request) -> Identity | None:
        assert self.credentials is not None
        if self.ingress and request.remote == self.supervisor_address:
            return Identity("ingress", self.credentials.csrf_token("ingress"))
        if self._bearer_ok(request.headers.get("Authorization", "")):
            return Identity("token", None)
        cookie = request.cookies.get(SESSION_COOKIE)
        if not self.ingress and cookie:
            nonce = self.credentials.session(cookie)
            if nonce is not None:
                return Identity("session", self.credentials.csrf_token(nonce), cookie)
        return None


ACCESS = web.AppKey("access", Access)


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/metrics"


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the Identity, or refuse: 403 outside ingress in add-on mode, 401 for the API,
    a redirect to the login page for pages."""
    access = request.app[ACCESS]
    identity = access.identify(request)
    route = request.match_info.route.name
    if identity is None and route not in (PUBLIC_IN_INGRESS if access.ingress else PUBLIC):
        if access.ingress:
            raise web.HTTPForbidden(
                text="In add-on mode this page is reached through Home Assistant (ingress) only.\n"
            )
        if route in PAGES:
            raise web.HTTPFound("login")  # relative: works under any path prefix
        raise web.HTTPUnauthorized(
            headers={"WWW-Authenticate": 'Bearer realm="argentic-edge"'},
            text="Log in on the page, or send Authorization: Bearer <web.api_token>.\n",
        )
    if identity is not None:
        request[IDENTITY] = identity
    return await handler(request)


async def login_page(request: web.Request) -> web.Response:
    if IDENTITY in request:
        raise web.HTTPFound("./")
    return render_login(request)


async def login(request: web.Request) -> web.Response:
    """Check the password; on success set the session cookie and go to the status page."""
    access = request.app[ACCESS]
    credentials = access.credentials
    assert credentials is not None
    client = request.remote or "unknown"
    form = await request.post()
    password = form.get("password")
    if not isinstance(password, str) or not 0 < len(password) <= MAX_PASSWORD:
        return render_login(request, "Enter the password.", status=400)
    wait = access.limiter.attempt(client, time.monotonic())  # no await between this and the check
    if wait > 0:
        return render_login(
            request,
            f"Too many attempts. Try again in {int(wait) + 1} seconds.",
            status=429,
            headers={"Retry-After": str(int(wait) + 1)},
        )
    ok = await asyncio.get_running_loop().run_in_executor(
        None, credentials.check_password, password
    )
    if not ok:
        access.limiter.failed(client, time.monotonic())
        return render_login(request, "Wrong password.", status=401)
    access.limiter.succeeded(client)
    cookie = await asyncio.get_running_loop().run_in_executor(None, credentials.new_session)
    response = web.HTTPSeeOther("./")
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=SESSION_LIFETIME,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    access = request.app[ACCESS]
    identity = request[IDENTITY]
    if identity.cookie is not None and access.credentials is not None:
        await asyncio.get_running_loop().run_in_executor(
            None, access.credentials.revoke, identity.cookie
        )
    response = web.HTTPSeeOther("login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response
