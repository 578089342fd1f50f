"""The data directory's troubles: orphans of interrupted writes, and saying why a write failed.

``fsutil.atomic_write`` writes a hidden temporary file (``.<name>.<random>.tmp``) and renames it
over the target. A power cut (or SIGKILL) between the two leaves the temporary file behind: the
target is still whole, but the orphan stays forever and may hold a copy of a private key that
was since renewed. The appliance removes such orphans when it starts.
"""

from __future__ import annotations

import errno
import logging
import re
import time
from pathlib import Path

log = logging.getLogger(__name__)

TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # tempfile.mkstemp's 8 random characters
STALE_AFTER = 30.0  # seconds; a write in progress (another process: the certs CLI) is younger


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
        log.warning("removed %d temporary file(s) left by writes a power cut interrupted: %s",
                    len(removed), ", ".join(str(p) for p in removed))
    return removed


def describe_os_error(exc: OSError) -> str:
    """"No space left on device (ENOSPC)": the words and the errno, for status and API answers
    (the caller names the file)."""
    text = exc.strerror or str(exc)
    code = errno.errorcode.get(exc.errno) if exc.errno is not None else None
    return f"{text} ({code})" if code else text
