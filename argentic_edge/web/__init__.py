"""The status page, JSON API, metrics and configuration editor (aiohttp)."""

from argentic_edge.web.app import create_app
from argentic_edge.web.service import WebError, WebService

__all__ = ["WebError", "WebService", "create_app"]
