"""The data directory's contract: where each part lives in it, power-loss-safe writes, and
sweeping up after interrupted ones.

The appliance lives on SD cards that lose power. Every file it owns (configuration, keys,
certificates, state) is written to a temporary file in the same directory, fsynced, then renamed
over the target, and the directory is fsynced so the rename itself is durable. A reader therefore
sees either the old file or the new one, never half of either.

A power cut (or SIGKILL) between the write and the rename leaves the temporary file
(``.<name>.<random>.tmp``) behind: the target is still whole, but the orphan stays forever and may
hold a copy of a private key that was since renewed. The appliance removes such orphans when it
starts.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # tempfile.mkstemp's 8 random characters
STALE_AFTER = 30.0  # seconds; a write in progress (another process: the certs CLI) is younger
# The data directory's layout, named here only: the appliance, the CLI and the tests agree on it.
FEDERATION_DIR = "federation"  # this node's CURVE keys and the trusted peers
CERTS_DIR = "certs"  # the local CA, the server certificate, issued bundles
INSPECTOR_DIR = "inspector"  # the page's recording of bus traffic
SAVED_CONFIG_NAME = "argentic-edge.yaml"  # what the web editor writes when run without --config
HOMEASSISTANT_FILE = "homeassistant.json"  # what Home Assistant discovery did once (migrations)
OUTBOX_DIR = "outbox"  # one SQLite file per uplink: what waits for its broker
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def federation_dir(data_dir: Path) -> Path:
    return data_dir / FEDERATION_DIR


def certs_dir(data_dir: Path) -> Path:
    return data_dir / CERTS_DIR


def homeassistant_state_path(data_dir: Path) -> Path:
    return data_dir / HOMEASSISTANT_FILE


def inspector_dir(data_dir: Path) -> Path:
    return data_dir / INSPECTOR_DIR


def saved_config_path(data_dir: Path) -> Path:
    return data_dir / SAVED_CONFIG_NAME


def outbox_path(data_dir: Path, uplink: str) -> Path:
    """The durable outbox file of one uplink. A name that is not a plain file name (slashes,
    spaces, non-ASCII) is spelled safely and made unique by a hash of the real name."""
    if SAFE_NAME.match(uplink):
        stem = uplink
    else:
        digest = hashlib.sha256(uplink.encode("utf-8")).hexdigest()[:12]
        stem = f"{re.sub(r'[^A-Za-z0-9._-]', '_', uplink)[:40]}-{digest}"
    return data_dir / OUTBOX_DIR / f"{stem}.sqlite3"


def atomic_write(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o600) -> Path:
    """Replace ``path`` with ``data`` atomically; the file is created with ``mode`` from the start.

    The temporary file gets its permissions before any byte is written, so a private key is
    never readable by others, not even for an instant.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(target.parent)
    return target


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable; some filesystems refuse to open directories, which is harmless."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def sweep_stale_temp_files(root: Path, older_than: float = STALE_AFTER) -> list[Path]:
    """Remove interrupted atomic writes' temporary files under ``root``; returns what went."""
    if not root.is_dir():
        return []
    limit = time.time() - older_than
    removed = []
    for path in root.rglob(".*.tmp"):
        try:
            if TEMP_NAME.match(path.name) and path.is_file() and path.stat().st_mtime < limit:
                path.unlink()
                removed.append(path)
        except OSError as exc:  # read-only or vanished: the orphan is harmless where it is
            log.debug("cannot remove %s: %s", path, exc.strerror)
    if removed:
        log.warning(
            "removed %d temporary file(s) left by writes a power cut interrupted: %s",
            len(removed),
            ", ".join(str(p) for p in removed),
        )
    return removed


def describe_os_error(exc: OSError) -> str:
    """ "No space left on device (ENOSPC)": the words and the errno, for status and API answers
    (the caller names the file)."""
    text = exc.strerror or str(exc)
    code = errno.errorcode.get(exc.errno) if exc.errno is not None else None
    return f"{text} ({code})" if code else text
