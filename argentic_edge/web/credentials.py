"""The web's secrets on disk: the password hash, the session key and the open sessions.

Sessions are signed cookies (expiry, nonce, HMAC) whose nonce must also be among the open sessions
kept in the same 0600 file in the data directory, so they survive the web service's restarts (one
happens whenever the configuration is saved from the page, and a user should not be logged out by
their own save). A logout deletes the nonce: nothing can bring it back. At most ``MAX_SESSIONS``
stay open; past that the oldest is closed, which logs it out (never in). The signing key is mixed
with the password, so changing the password ends every session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argentic_edge.config import Secret
from argentic_edge.storage import atomic_write

log = logging.getLogger(__name__)

AUTH_FILE = "web-auth.json"
SESSION_LIFETIME = 7 * 86400
MAX_SESSIONS = 64


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class PasswordHash:
    """scrypt with a random salt; the parameters travel with the hash so they can be raised."""

    salt: bytes
    digest: bytes
    n: int = 2**14
    r: int = 8
    p: int = 1

    @classmethod
    def of(cls, password: str) -> PasswordHash:
        salt = secrets.token_bytes(16)
        probe = cls(salt, b"")
        return cls(salt, probe.derive(password))

    def derive(self, password: str) -> bytes:
        return hashlib.scrypt(
            password.encode(), salt=self.salt, n=self.n, r=self.r, p=self.p, dklen=32
        )

    def matches(self, password: str) -> bool:
        return hmac.compare_digest(self.derive(password), self.digest)

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": "scrypt",
            "n": self.n,
            "r": self.r,
            "p": self.p,
            "salt": self.salt.hex(),
            "hash": self.digest.hex(),
        }

    @classmethod
    def from_json(cls, data: Any) -> PasswordHash:
        if not isinstance(data, dict) or data.get("algorithm") != "scrypt":
            raise ValueError("expected an scrypt password record")
        return cls(
            bytes.fromhex(data["salt"]),
            bytes.fromhex(data["hash"]),
            int(data["n"]),
            int(data["r"]),
            int(data["p"]),
        )


@dataclass
class Credentials:
    """Checks the password and issues/validates session cookies and CSRF tokens."""

    path: Path
    root_key: bytes
    stored_password: PasswordHash | None
    configured_password: Secret | None
    sessions: dict[str, float] = field(default_factory=dict)  # open: nonce -> expiry
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def load(cls, data_dir: Path, configured: Secret | None, need_password: bool) -> Credentials:
        """Read the file, creating what is missing. Blocking (file I/O, scrypt): run in a thread.

        With no configured password and none stored, one is generated, stored hashed and logged
        once at WARNING: the only time the appliance logs a secret, so the user can log in.
        """
        path = data_dir / AUTH_FILE
        data = cls._read(path)
        try:
            root_key = bytes.fromhex(data["session_key"]) if "session_key" in data else b""
            stored = PasswordHash.from_json(data["password"]) if "password" in data else None
            sessions = {str(k): float(v) for k, v in dict(data.get("sessions", {})).items()}
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("web: %s is damaged (%s); creating new credentials", path, exc)
            root_key, stored, sessions = b"", None, {}
        credentials = cls(path, root_key or secrets.token_bytes(32), stored, configured, sessions)
        changed = not root_key
        if configured is None and stored is None and need_password:
            password = secrets.token_urlsafe(12)
            credentials.stored_password = PasswordHash.of(password)
            changed = True
            log.warning(
                "web: generated a password for the status page: %s (shown only this "
                "once; it is stored hashed in %s — set web.password to choose your own)",
                password,
                path,
                extra={"secret": True},
            )
        if changed:
            credentials.save()
        return credentials

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("web: cannot read %s (%s); creating new credentials", path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def save(self) -> None:
        data: dict[str, Any] = {
            "version": 2,
            "session_key": self.root_key.hex(),
            "sessions": dict(self.sessions),
        }
        if self.stored_password is not None:
            data["password"] = self.stored_password.to_json()
        atomic_write(self.path, json.dumps(data, indent=2) + "\n", mode=0o600)

    @property
    def has_password(self) -> bool:
        return self.configured_password is not None or self.stored_password is not None

    def check_password(self, given: str) -> bool:
        """Constant-time; blocking (scrypt) when the password is the generated one."""
        if self.configured_password is not None:
            expected = hashlib.sha256(self.configured_password.reveal().encode()).digest()
            return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), expected)
        if self.stored_password is not None:
            return self.stored_password.matches(given)
        return False

    @property
    def _key(self) -> bytes:
        """The signing key, bound to the current password so a new password ends all sessions."""
        if self.configured_password is not None:
            binding = hashlib.sha256(self.configured_password.reveal().encode()).digest()
        elif self.stored_password is not None:
            binding = self.stored_password.digest
        else:
            binding = b""
        return hmac.new(self.root_key, b"sessions:" + binding, hashlib.sha256).digest()

    def _mac(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())

    def new_session(self, now: float | None = None) -> str:
        """Open a session; its cookie value is ``<expiry>.<nonce>.<mac>``. Blocking (file write)."""
        current = now or time.time()
        expiry = int(current + SESSION_LIFETIME)
        nonce = _b64(secrets.token_bytes(16))
        with self._lock:
            self.sessions = {k: v for k, v in self.sessions.items() if v > current}
            self.sessions[nonce] = float(expiry)
            while len(self.sessions) > MAX_SESSIONS:
                del self.sessions[next(iter(self.sessions))]  # the oldest: logged out
            self.save()
        body = f"{expiry}.{nonce}"
        return f"{body}.{self._mac(body)}"

    def session(self, cookie: str, now: float | None = None) -> str | None:
        """The session's nonce when the cookie is genuine, unexpired and still open."""
        parts = cookie.split(".")
        if len(parts) != 3 or not parts[0].isdigit():
            return None
        body = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._mac(body), parts[2]):
            return None
        if int(parts[0]) < (now or time.time()) or parts[1] not in self.sessions:
            return None
        return parts[1]

    def csrf_token(self, subject: str) -> str:
        """The CSRF token for a session nonce (or for ``ingress``), derived, never stored."""
        return self._mac(f"csrf:{subject}")

    def revoke(self, cookie: str, now: float | None = None) -> None:
        """Log a session out for good. Blocking (file write)."""
        nonce = self.session(cookie, now)
        if nonce is None:
            return
        with self._lock:
            self.sessions.pop(nonce, None)
            self.save()
