"""The appliance's own errors: one family, so the command line can answer every one in words.

Every error a user can act on derives from ``EdgeError`` and carries a message that names what to
change (a key, a file, a port). ``cli.main`` catches the family once and exits with that message;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Something the user can fix; the message says what."""


class ServiceError(EdgeError):
    """A service cannot start as configured; the message names the key to change."""
