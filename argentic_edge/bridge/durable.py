"""Durable outbox: what waits for a broker survives SIGKILL and restarts, in order.

The outbox of ``bridge/outbox.py``, with every message also in a SQLite file (standard library,
WAL mode) under the data directory. Memory stays the working copy: ``peek``/``popleft`` never
read the disk, and the file is only read once, when the store opens. Writes are write-behind and
batched: appends, settlements and requeues collect in memory and go to disk in one transaction
(``executemany``, one commit) when the event loop gets a turn, so a bus read batch of a thousand
messages costs one commit, not a thousand.

Guarantees, and where they end:

- While no broker is connected, a message is in the file from the batch that appended it until
  the link settled it (``done``); a restart finds them all, in their order, and sends them
  again. While one is (``connected(True)``), a message, waiting behind the broker's window or
  in flight, is written only once it has gone unacknowledged for ``write_after`` seconds (1 s):
  a broker that keeps up, bursts included, costs no write and wears no SD card, and a SIGKILL
  can take at most the last second's unacknowledged messages, as a power cut can. When the
  connection goes, everything unacknowledged is written at once. A message the broker got but
  did not acknowledge before a kill is sent twice (at-least-once), never skipped.
- ``synchronous=NORMAL``: a commit is in the WAL in the kernel's page cache without an fsync,
  which survives SIGKILL (the kernel writes it out) but not a power cut: after one, the last
  commits may be missing (never a broken file). ``sync_every`` bounds that window with an
  fsync (a WAL checkpoint) at most that many seconds after a write. See docs/uplinks.md for the
  measured costs of NORMAL and FULL.
- The disk failing (full, read-only, I/O error) never stops the outbox: it keeps working in
  memory, counts ``disk_errors``, logs once, and retries the writes later. A file that is not a
  readable outbox (garbage, truncated) is moved aside as ``*.corrupt-<time>`` and a new one
  started, so a damaged SD card cannot make the appliance crash at every start.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from argentic_edge.bridge.outbox import Outbox, Outgoing
from argentic_edge.bridge.routes import Counters
from argentic_edge.storage import describe_os_error

__all__ = ["DurableOutbox"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    echo INTEGER NOT NULL,
    route TEXT,
    created REAL NOT NULL
)
"""
INSERT = (
    "INSERT OR REPLACE INTO outbox (seq, topic, payload, qos, retain, echo, route, created) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
DELETE = "DELETE FROM outbox WHERE seq BETWEEN ? AND ?"
SYNCHRONOUS = "NORMAL"  # survives SIGKILL; see the module docstring for power loss
SYNC_EVERY = 1.0  # seconds: at most this long after a write, a checkpoint fsyncs the WAL
RELEASE_AFTER = 5.0  # seconds the outbox stays empty before its file is closed
WRITE_AFTER = 1.0  # seconds a message may go unacknowledged off disk while a broker is connected
RETRY_AFTER = 5.0  # seconds between attempts to write while the disk refuses
WAL_LIMIT = 4 * 1024 * 1024  # bytes the WAL file is truncated to after a checkpoint
CORRUPT = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)

Row = tuple[int, str, bytes, int, int, int, str | None, float]
CountersFor = Callable[[str], Counters | None]


def runs(numbers: list[int]) -> list[tuple[int, int]]:
    """Consecutive numbers as (first, last) ranges: messages are settled mostly in order, so a
    batch of a thousand deletions is usually one statement."""
    ranges: list[tuple[int, int]] = []
    numbers = sorted(numbers)
    first = last = numbers[0]
    for number in numbers[1:]:
        if number != last + 1:
            ranges.append((first, last))
            first = number
        last = number
    ranges.append((first, last))
    return ranges


class CorruptStore(Exception):
    """The file is not an outbox this version can read."""


class DurableOutbox(Outbox):
    """The memory outbox plus its copy on disk at ``path`` (see the module docstring).

    ``counters`` finds a route's counters by the ``route_key`` of a message loaded from disk,
    None when that route is gone (the message is still sent).
    """

    durable = True

    def __init__(
        self,
        path: Path,
        max_messages: int,
        max_bytes: int,
        max_age: float = 86_400.0,
        *,
        counters: CountersFor | None = None,
        synchronous: str = SYNCHRONOUS,
        sync_every: float = SYNC_EVERY,
        release_after: float = RELEASE_AFTER,
        write_after: float = WRITE_AFTER,
    ) -> None:
        super().__init__(max_messages, max_bytes, max_age)
        self.path = path
        self.synchronous = synchronous
        self.sync_every = sync_every
        self.release_after = release_after
        self.write_after = write_after
        self._connected = False  # a broker is connected: writes wait (``connected``)
        # held off disk (``track``, or appended while connected), places taken: since when
        self._unwritten: OrderedDict[Outgoing, float] = OrderedDict()
        self._write_planned = False
        self._release_planned = False
        self.disk_errors = 0
        self.disk_problem: str | None = None
        self.loaded = 0  # messages found on disk when opening
        self.commits = 0  # transactions written
        self._seq: dict[Outgoing, int] = {}  # every message the file holds: waiting, in flight
        self._low = 0  # the next sequence number for the front is below this
        self._high = 0  # the next one for the back is above this
        self._inserts: dict[int, Row] = {}  # written at the next flush, in this order
        self._deletes: list[int] = []
        self._scheduled = False
        self._retry_at = 0.0
        self._sync_at: float | None = None
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._counters = counters
        self._open()

    # --- opening ------------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            rows = self._open_file()
        except (CorruptStore, sqlite3.Error, OSError) as exc:
            self._disk_failed("open", exc)
            return
        self._load(rows)
        self._release_if_empty()

    def _open_file(self) -> list[Row]:
        """Open the file, or move a damaged one aside and start a new one."""
        try:
            return self._connect()
        except CorruptStore as exc:
            self._set_aside(str(exc))
        return self._connect()

    def _connect(self) -> list[Row]:
        """Open (or create, 0600 in a 0700 directory) the file and read what it holds."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # SQLite's -wal/-shm copy this
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        # timeout=0: a file another process holds is a disk error at once, never a wait that
        # would block the event loop
        db = sqlite3.connect(self.path, isolation_level=None, timeout=0)
        try:
            rows = self._prepare(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            if exc.sqlite_errorcode in CORRUPT:
                raise CorruptStore(str(exc)) from None
            raise
        except CorruptStore:
            db.close()
            raise
        self._db = db
        return rows

    def _prepare(self, db: sqlite3.Connection) -> list[Row]:
        # Before anything reads the file: one process owns it, so there is no shared-memory
        # index to lock per transaction, and a second appliance on the same data directory is
        # refused instead of interleaving its messages.
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CorruptStore(f"written by a newer version (format {version})")
        checked = db.execute("PRAGMA quick_check").fetchall()
        if checked != [("ok",)]:
            raise CorruptStore("; ".join(str(row[0]) for row in checked[:3]))
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
        db.execute(SCHEMA)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        rows: list[Row] = db.execute(
            "SELECT seq, topic, payload, qos, retain, echo, route, created FROM outbox ORDER BY seq"
        ).fetchall()
        return rows

    def _set_aside(self, reason: str) -> None:
        """Move the unreadable file (and its WAL, which belongs to it) out of the way."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for number in itertools.count(1):  # never over an earlier one set aside this second
            if not target.exists():
                break
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{number}")
        for suffix in ("", "-wal"):
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                os.replace(source, f"{target}{suffix}")
        Path(f"{self.path}-shm").unlink(missing_ok=True)
        log.warning(
            "outbox %s is damaged (%s): moved it aside to %s and started an empty one; what "
            "waited in it is not sent",
            self.path,
            reason,
            target,
        )

    def _load(self, rows: list[Row]) -> None:
        """Take what the file holds back into memory, oldest first, within today's bounds (a
        smaller bound than when they were written drops the oldest, counted)."""
        dropped = 0
        for row in rows:
            item = self._item(row)
            self._seq[item] = row[0]
            for old in Outbox.append(self, item):
                self._forget(old)
                dropped += 1
        if rows:
            self._low, self._high = rows[0][0], rows[-1][0]
            self.loaded = len(self)
            log.info(
                "outbox %s: %d message(s) waiting from before the restart, sent first%s",
                self.path,
                self.loaded,
                f"; {dropped} dropped, beyond today's bounds (buffer)" if dropped else "",
            )

    def _item(self, row: Row) -> Outgoing:
        _, topic, payload, qos, retain, echo, route, created = row
        counters = self._counters
        return Outgoing(
            topic,
            bytes(payload),
            qos,
            bool(retain),
            counters(route) if counters is not None and route is not None else None,
            echo=bool(echo),
            created=created,
            route_key=route,
        )

    def _reopen(self) -> bool:
        """After the file could not be opened: try again; what it holds (older than anything
        in memory) goes in front."""
        try:
            rows = self._open_file()
        except (CorruptStore, sqlite3.Error, OSError) as exc:
            self._disk_failed("open", exc)
            return False
        # renumbered in front of what waited in memory meanwhile (whose numbers they may share)
        self._deletes.extend(row[0] for row in rows)
        self.requeue([self._item(row) for row in rows])
        return True

    # --- the outbox interface ---------------------------------------------------------------

    def append(self, item: Outgoing) -> list[Outgoing]:
        dropped = super().append(item)
        for old in dropped:
            self._forget(old)
        if dropped and dropped[-1] is item:  # too large to wait at all
            return dropped
        self._reserve(item, hold=self._connected)
        return dropped

    def track(self, item: Outgoing) -> None:
        """In flight without having waited: written once it has gone unacknowledged for
        ``write_after`` seconds, then on disk until ``done`` like the rest, so a crash before
        the broker acknowledged it sends it again after the restart. Its place in the order is
        taken now. A broker that acknowledges in time (the common case) costs no write at all:
        an SD card is not worn by traffic that never waited."""
        self._reserve(item, hold=True)

    def _reserve(self, item: Outgoing, *, hold: bool) -> None:
        """``item`` takes the next place at the back; it is written at the next flush, or
        (``hold``) only once it has gone unacknowledged ``write_after`` seconds."""
        self._high += 1
        self._seq[item] = self._high
        if hold:
            self._unwritten[item] = time.monotonic()
            self._plan_write()
        else:
            self._inserts[self._high] = self._row(self._high, item)
            self._schedule()

    def connected(self, up: bool) -> None:
        """While a broker is connected, what is appended waits ``write_after`` seconds before
        it is written, like what ``track`` holds: behind a window that keeps moving it is sent
        and acknowledged long before. When the broker goes, everything unacknowledged is
        written at once: it now waits for a broker that is away."""
        self._connected = up
        if not up:
            self._write_unacknowledged(everything=True)

    def _plan_write(self) -> None:
        if self._write_planned or self._closed or not self._unwritten:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_unacknowledged(everything=True)
            return
        self._write_planned = True
        oldest = next(iter(self._unwritten.values()))
        delay = oldest + self.write_after - time.monotonic()
        loop.call_later(max(0.0, delay), self._write_unacknowledged)

    def _write_unacknowledged(self, everything: bool = False) -> None:
        """Into the file: what is held off disk and still unacknowledged after its delay
        (``everything``: all of it, when closing or when the broker went)."""
        self._write_planned = False
        due = time.monotonic() - self.write_after
        unwritten, written = self._unwritten, False
        while unwritten:
            item, sent = next(iter(unwritten.items()))
            if not everything and sent > due:
                break
            del unwritten[item]
            seq = self._seq[item]
            self._inserts[seq] = self._row(seq, item)
            written = True
        if written:
            self._schedule()
        self._plan_write()

    def expire(self) -> list[Outgoing]:
        dropped = super().expire()
        for item in dropped:
            self._forget(item)
        return dropped

    def done(self, item: Outgoing) -> None:
        """The link settled ``item``: it leaves the file (at the next flush)."""
        self._forget(item)

    def requeue(self, items: Iterable[Outgoing]) -> None:
        """Back to the front, in order: they get sequence numbers below everything on disk, so
        a restart finds them first too."""
        items = list(items)
        super().requeue(items)
        start = self._low - len(items)
        for seq, item in enumerate(items, start):
            old = self._seq.get(item)
            if self._unwritten.pop(item, None) is not None:
                old = None  # never written: nothing to take out of the file
            if old is not None and self._inserts.pop(old, None) is None:
                self._deletes.append(old)
            self._seq[item] = seq
            self._inserts[seq] = self._row(seq, item)
        self._low = start
        self._schedule()

    def clear(self) -> list[Outgoing]:
        items = super().clear()
        for item in items:
            self._forget(item)
        return items

    def close(self) -> None:
        """Write what is pending and close the file; what waits or is still in flight stays in
        it for the next start."""
        self._write_unacknowledged(everything=True)
        if not self.flush() and self._inserts:
            log.warning(
                "outbox %s: %d message(s) waited in memory only and are lost: %s",
                self.path,
                len(self._inserts),
                self.disk_problem,
            )
        self._closed = True
        db, self._db = self._db, None
        if db is None:
            return
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.debug("outbox %s: no checkpoint at close: %s", self.path, exc)
        db.close()

    def stats(self) -> dict[str, Any]:
        document = super().stats()
        document.update(
            path=str(self.path),
            in_flight=len(self._seq) - len(self),
            disk_errors=self.disk_errors,
            disk_problem=self.disk_problem,
        )
        return document

    # --- writing ------------------------------------------------------------------------------

    @staticmethod
    def _row(seq: int, item: Outgoing) -> Row:
        return (
            seq,
            item.topic,
            item.payload,
            item.qos,
            item.retain,
            item.echo,
            item.route_key,
            item.created,
        )

    def _forget(self, item: Outgoing) -> None:
        seq = self._seq.pop(item, None)
        if self._unwritten.pop(item, None) is not None:
            return  # acknowledged before it had to be written
        if seq is not None and self._inserts.pop(seq, None) is None:
            self._deletes.append(seq)
            self._schedule()

    def _schedule(self) -> None:
        """Flush when the event loop gets its next turn: everything this batch of bus messages
        (or acknowledgements) changed goes in one transaction. Without a loop, at once."""
        if self._scheduled or self._closed:
            return
        wait = self._retry_at - time.monotonic()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if wait <= 0:
                self.flush()
            return
        self._scheduled = True
        if wait > 0:
            loop.call_later(wait, self.flush)
        else:
            loop.call_soon(self.flush)

    def flush(self) -> bool:
        """Write what is pending in one transaction; False if it stays in memory for now."""
        self._scheduled = False
        if not self._inserts and not self._deletes:
            return True
        if self._closed:
            return False
        if self._db is None and not self._reopen():
            self._retry_at = time.monotonic() + RETRY_AFTER
            return False
        db = self._db
        assert db is not None
        try:
            db.execute("BEGIN")
            if self._deletes:
                db.executemany(DELETE, runs(self._deletes))
            db.executemany(INSERT, self._inserts.values())
            db.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            self._disk_failed("write", exc)
            self._retry_at = time.monotonic() + RETRY_AFTER
            return False
        self._deletes = []
        self._inserts = {}
        if self.disk_problem is not None:
            log.info("outbox %s: writing again; what waits is on disk", self.path)
            self.disk_problem = None
        self.commits += 1
        self._plan_release()
        self._plan_sync()
        return True

    def _plan_release(self) -> None:
        """Close the file once the outbox has stayed empty ``release_after`` seconds (at once
        without an event loop): not after every drained batch while a busy broker's window
        fills and empties, but soon after an outage is over."""
        if self._seq or self._release_planned:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._release_if_empty()
            return
        self._release_planned = True
        loop.call_later(self.release_after, self._release_if_empty)

    def _release_if_empty(self) -> None:
        """With nothing waiting or in flight, close the file: the common case (broker up,
        outbox empty) holds no file open, so the data directory can be remounted or unmounted;
        the next message that has to wait opens it again."""
        self._release_planned = False
        if self._seq or self._inserts or self._deletes or self._db is None:
            return
        db, self._db = self._db, None
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.debug("outbox %s: no checkpoint when emptied: %s", self.path, exc)
        db.close()

    def _plan_sync(self) -> None:
        """With synchronous=NORMAL, an fsync (a checkpoint) at most ``sync_every`` seconds
        after a write bounds what a power cut can take back."""
        if self.synchronous != "NORMAL" or self.sync_every <= 0 or self._sync_at is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._sync_at = time.monotonic() + self.sync_every
        loop.call_later(self.sync_every, self._sync)

    def _sync(self) -> None:
        self._sync_at = None
        if self._db is None:
            return
        try:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            self._disk_failed("sync", exc)

    def _disk_failed(self, action: str, exc: BaseException) -> None:
        """Count it; log the first of a run of failures only (the next success says so)."""
        self.disk_errors += 1
        reason = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        problem = f"cannot {action} {self.path}: {reason}"
        if self.disk_problem is None:
            log.warning(
                "outbox: %s; messages wait in memory only (lost if the appliance stops) and "
                "writing is tried again every %.0f s; counted in the status as disk_errors",
                problem,
                RETRY_AFTER,
            )
        self.disk_problem = problem
