"""The HTML pages: status, configuration, login, and the inspector's four.

Pages are small static skeletons filled in by the scripts in ``static/`` from the JSON API, so the
server side only substitutes a few escaped values. Every link is relative: the same pages work at
``/``, behind a reverse proxy's prefix and under Home Assistant's ingress path.
"""

from __future__ import annotations

import functools
import html
from pathlib import Path
from string import Template

from aiohttp import web

from argentic_edge import __version__
from argentic_edge.web.keys import APPLIANCE, IDENTITY

TEMPLATES = Path(__file__).parent / "templates"


@functools.cache
def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


def _page(
    request: web.Request,
    title: str,
    body: str,
    scripts: tuple[str, ...],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    identity = request.get(IDENTITY)
    appliance = request.app[APPLIANCE]
    logout = ""
    if identity is not None and identity.kind == "session":
        logout = _template("logout.html").substitute(csrf=html.escape(identity.csrf or ""))
    text = _template("layout.html").substitute(
        title=html.escape(title),
        csrf=html.escape(identity.csrf or "") if identity is not None else "",
        node=html.escape(appliance.config.node_name),
        version=html.escape(__version__),
        nav="" if identity is None else _template("nav.html").template,
        logout=logout,
        body=body,
        scripts="".join(f'<script src="static/{name}" defer></script>' for name in scripts),
    )
    return web.Response(text=text, content_type="text/html", status=status, headers=headers)


async def index(request: web.Request) -> web.Response:
    return _page(request, "Status", _template("index.html").template, ("common.js", "status.js"))


async def config(request: web.Request) -> web.Response:
    return _page(
        request, "Configuration", _template("config.html").template, ("common.js", "config.js")
    )


INSPECTOR_PAGES = {
    "overview": "Overview",
    "traffic": "Traffic",
    "tasks": "Tasks",
    "tools": "Tools",
}


async def inspector_page(request: web.Request) -> web.Response:
    """The inspector's pages: one template and one script each, on the shared helpers."""
    page = request.path.rsplit("/", 1)[-1]
    return _page(
        request,
        INSPECTOR_PAGES[page],
        _template(f"{page}.html").template,
        ("common.js", "inspector.js", f"{page}.js"),
    )


def render_login(
    request: web.Request, error: str = "", status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = _template("login.html").substitute(error=message)
    return _page(request, "Log in", body, (), status, headers)
