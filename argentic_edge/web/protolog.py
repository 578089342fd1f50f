"""aiohttp's server log, made safe for a port anyone on the LAN can reach.

aiohttp logs every request it cannot parse with a full traceback, and the parser's message quotes
the offending line verbatim: one unauthenticated client filled the log at about 1 MB/s, and a
bearer token or session cookie followed by a control byte went to it in clear. ``RequestErrors``
stands in for aiohttp's ``aiohttp.server`` logger in our request handlers: it counts, logs the
first malformed request (and the first internal failure) by the name of the error only, and never
a header value, a request line or a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger(__name__)


class RequestErrors:
    """The logger interface aiohttp's RequestHandler calls (``debug``, ``exception``,
    ``warning``), turned into counts for the web status."""

    def __init__(self) -> None:
        self.malformed = 0  # answered 400 by aiohttp's parser
        self.failed = 0  # anything else aiohttp caught outside our handlers

    def _record(self, exc: Any) -> None:
        kind = type(exc).__name__ if isinstance(exc, BaseException) else "no exception"
        if isinstance(exc, HttpProcessingError):
            if not self.malformed:
                log.warning(
                    "web: malformed HTTP request answered 400 (%s); further ones are "
                    "counted, not logged (status: web.requests.malformed)",
                    kind,
                )
            self.malformed += 1
            return
        if not self.failed:
            log.error(
                "web: the HTTP server failed to handle a request (%s); further failures "
                "are counted, not logged (status: web.requests.failed)",
                kind,
            )
        self.failed += 1

    def debug(self, msg: str, *args: Any, exc_info: Any = None, **kwargs: Any) -> None:
        """aiohttp logs non-HTTP traffic on a fresh connection at debug level."""
        if exc_info is not None:
            self._record(exc_info)

    def exception(self, msg: str, *args: Any, exc_info: Any = None, **kwargs: Any) -> None:
        self._record(exc_info)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        """aiohttp's own configuration warnings carry no request data: passed on as they are."""
        log.warning(msg, *args)

    def to_dict(self) -> dict[str, int]:
        return {"malformed": self.malformed, "failed": self.failed}
